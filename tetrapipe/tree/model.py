"""The shape of a drawn process tree: processes, their events and alerts, grouped by container.

These are plain data classes with no database behind them, so the renderers
(:mod:`tetrapipe.commands.tree_text`, :mod:`tetrapipe.tree.html`) and ``--format json``
(:meth:`TreeView.to_dict`) share one model; :mod:`tetrapipe.tree.build` fills it
from the history and :mod:`tetrapipe.tree.fold` arranges it. The time helpers
here read and write the offsets the tree shows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from tetrapipe.errors import UsageProblem
from tetrapipe.units import SEVERITY_RANK, parse_duration

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ash", "ksh", "mksh", "busybox", "csh", "tcsh", "fish"})
DEFAULT_LATE_AFTER = dt.timedelta(minutes=5)


class TreeError(UsageProblem):
    """A selection that matches nothing, said the way a person can fix it (exit 2, like a usage error)."""


@dataclass
class Selection:
    """What to draw; every field narrows it. Times are naive UTC."""

    pod: str | None = None
    namespace: str | None = None
    container: str | None = None
    exec_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def describe(self) -> str:
        parts = []
        if self.pod:
            parts.append(f"pod {self.namespace + '/' if self.namespace else ''}{self.pod}")
        elif self.namespace:
            parts.append(f"namespace {self.namespace}")
        if self.container:
            parts.append(f"container {self.container}")
        if self.exec_id:
            parts.append(f"process {self.exec_id}")
        if self.since:
            parts.append(f"since {self.since:%Y-%m-%d %H:%M:%S}")
        if self.until:
            parts.append(f"until {self.until:%Y-%m-%d %H:%M:%S}")
        return ", ".join(parts) or "everything"


@dataclass
class Event:
    """One hook event of a process, with a one-line label."""

    time: dt.datetime | None
    kind: str
    function: str | None
    category: str  # connect, listen, file, other
    label: str
    write: bool = False
    detail: dict = field(default_factory=dict)


@dataclass
class Alert:
    rule_id: str
    title: str | None
    severity: str
    message: str | None
    time: dt.datetime | None
    count: int = 1


@dataclass
class Node:
    """One process."""

    exec_id: str
    parent_exec_id: str | None
    node_name: str | None
    pid: int | None
    binary: str | None
    arguments: str | None
    cwd: str | None = None
    uid: int | None = None
    flags: str | None = None
    start_time: dt.datetime | None = None
    exit_time: dt.datetime | None = None
    exit_status: int | None = None
    exit_signal: str | None = None
    namespace: str | None = None
    pod: str | None = None
    container_name: str | None = None
    container_id: str | None = None
    image: str | None = None
    container_start_time: dt.datetime | None = None
    in_init_tree: bool | None = None
    seen_exec: bool = True
    parent_binary: str | None = None
    ancestor_binaries: list[str | None] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    event_count: int = 0
    alerts: list[Alert] = field(default_factory=list)
    late_shell: bool = False
    injected: bool = False  # first process of an exec into the container (kubectl exec, nsenter)
    focus: bool = False
    on_path: bool = False  # an ancestor of the focused process (its other children not shown)
    other_children: int = 0

    @property
    def name(self) -> str:
        return (self.binary or "?").rsplit("/", 1)[-1]

    @property
    def since_container_start(self) -> dt.timedelta | None:
        if self.start_time is None or self.container_start_time is None:
            return None
        return self.start_time - self.container_start_time

    @property
    def exited(self) -> bool:
        return self.exit_time is not None

    def status(self) -> str:
        """Exit as Tetragon reports it: a clean exit has no status (zero is omitted)."""
        if self.exit_signal:
            return f"killed by {self.exit_signal}"
        if self.exit_time is not None:
            return f"exit {self.exit_status or 0}"
        return "running"

    @property
    def worst_severity(self) -> str | None:
        if not self.alerts:
            return None
        return max(self.alerts, key=lambda a: SEVERITY_RANK.get(a.severity, -1)).severity

    def descendants(self) -> int:
        return sum(1 + c.descendants() for c in self.children)


@dataclass
class Shown:
    """A line of the drawn tree: one process, or identical siblings folded (``members``)."""

    node: Node
    members: list[Node]
    children: list[Shown]
    hidden_children: int = 0  # beyond the per-node limit

    @property
    def count(self) -> int:
        return len(self.members)


@dataclass
class Entry:
    """Roots of a container that share the parent outside it (shim, runc, ...), with that parent's lineage."""

    parent_exec_id: str | None
    parent_binary: str | None
    lineage: list[str | None]  # binaries above that parent, nearest first (None = unknown)
    roots: list[Shown]


@dataclass
class Group:
    """One container of a pod (or the host, for processes without a container)."""

    namespace: str | None
    pod: str | None
    container_name: str | None
    container_id: str | None
    image: str | None
    container_start_time: dt.datetime | None
    node_name: str | None
    entries: list[Entry]

    @property
    def title(self) -> str:
        if self.pod is None:
            return f"host {self.node_name or '?'}"
        return f"{self.namespace or '?'}/{self.pod}"


#: levels of processes drawn below the top (and climbed above a focused one). Deeper chains happen only by
#: accident or on purpose (a payload nesting ``sh -c`` hundreds deep to break the drawing): past this the
#: tree says it is cut and where to look further (``--exec-id`` of a deep process)
DRAW_DEPTH = 100
DEPTH_CUT_NOTE = f"cut {DRAW_DEPTH} levels deep: draw a deeper process with --exec-id"


@dataclass
class TreeView:
    selection: Selection
    groups: list[Group]
    processes: int
    late_after: dt.timedelta
    truncated: bool = False
    nodes: dict[str, Node] = field(default_factory=dict)
    #: a chain went deeper than the drawing goes (:data:`tetrapipe.tree.build.DRAW_DEPTH`): what is below is not shown
    depth_cut: bool = False

    @property
    def late_shells(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.late_shell]

    @property
    def alerts(self) -> list[Alert]:
        return [a for n in self.nodes.values() for a in n.alerts]

    def counts(self) -> dict[str, int]:
        evs = [e for n in self.nodes.values() for e in n.events]
        return {
            "processes": self.processes,
            "connections": sum(e.category == "connect" for e in evs),
            "file_events": sum(e.category == "file" for e in evs),
            "alerts": len(self.alerts),
            "late_shells": len(self.late_shells),
        }

    def to_dict(self) -> dict:
        """The tree for programs (``--format json``) and for the HTML page.

        Long only because it spells out every key: the whole JSON shape, which
        the page's script and external programs both read, stays in one place.
        """

        def node(n: Node) -> dict:
            return {
                "exec_id": n.exec_id,
                "parent_exec_id": n.parent_exec_id,
                "node_name": n.node_name,
                "pid": n.pid,
                "binary": n.binary,
                "arguments": n.arguments,
                "cwd": n.cwd,
                "uid": n.uid,
                "flags": n.flags,
                "start_time": _iso(n.start_time),
                "exit_time": _iso(n.exit_time),
                "status": n.status(),
                "exit_status": n.exit_status,
                "exit_signal": n.exit_signal,
                "since_container_start": _seconds(n.since_container_start),
                "namespace": n.namespace,
                "pod": n.pod,
                "container_name": n.container_name,
                "container_id": n.container_id,
                "image": n.image,
                "in_init_tree": n.in_init_tree,
                "seen_exec": n.seen_exec,
                "parent_binary": n.parent_binary,
                "ancestor_binaries": n.ancestor_binaries,
                "late_shell": n.late_shell,
                "injected": n.injected,
                "focus": n.focus,
                "children": len(n.children),
                "descendants": n.descendants(),
                "event_count": n.event_count,
                "events": [
                    {
                        "time": _iso(e.time),
                        "kind": e.kind,
                        "function": e.function,
                        "category": e.category,
                        "label": e.label,
                        "write": e.write,
                    }
                    for e in n.events
                ],
                "alerts": [
                    {
                        "rule_id": a.rule_id,
                        "title": a.title,
                        "severity": a.severity,
                        "message": a.message,
                        "time": _iso(a.time),
                        "count": a.count,
                    }
                    for a in n.alerts
                ],
            }

        def shown(s: Shown) -> dict:
            return {
                "exec_id": s.node.exec_id,
                "count": s.count,
                "members": [m.exec_id for m in s.members],
                "children": [shown(c) for c in s.children],
                "hidden_children": s.hidden_children,
                "other_children": s.node.other_children,
                "on_path": s.node.on_path,
            }

        return {
            "selection": self.selection.describe(),
            "late_after_seconds": self.late_after.total_seconds(),
            "counts": self.counts(),
            "truncated": self.truncated,
            "depth_cut": self.depth_cut,
            "groups": [
                {
                    "title": g.title,
                    "namespace": g.namespace,
                    "pod": g.pod,
                    "container_name": g.container_name,
                    "container_id": g.container_id,
                    "image": g.image,
                    "node_name": g.node_name,
                    "container_start_time": _iso(g.container_start_time),
                    "entries": [
                        {
                            "parent_exec_id": e.parent_exec_id,
                            "parent_binary": e.parent_binary,
                            "lineage": e.lineage,
                            "roots": [shown(r) for r in e.roots],
                        }
                        for e in g.entries
                    ],
                }
                for g in self.groups
            ],
            "processes": {k: node(n) for k, n in self.nodes.items()},
        }


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _seconds(d: dt.timedelta | None) -> float | None:
    return None if d is None else d.total_seconds()


# --- times and durations ------------------------------------------------------------------------------


def parse_time(text: str, newest: dt.datetime | None) -> dt.datetime:
    """An ISO time (UTC when no zone), or a duration back from ``newest`` (the history's latest event)."""
    try:
        back = parse_duration(text)
    except ValueError:
        pass
    else:
        if newest is None:
            raise ValueError("the history is empty: a relative time needs at least one event")
        return newest - back
    try:
        t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a time or a duration: {text!r} (try 2026-03-10T09:00, or 30m for the last 30 minutes of the history)"
        ) from None
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC).replace(tzinfo=None)
    return t


def format_offset(d: dt.timedelta | None) -> str:
    """``+6m40s``, ``+0.2s``, ``+2h03m``, ``-1.0s`` (before the container started)."""
    if d is None:
        return "?"
    s = d.total_seconds()
    sign = "-" if s < 0 else "+"
    s = abs(s)
    if s < 60:
        return f"{sign}{s:.1f}s" if s % 1 else f"{sign}{int(s)}s"
    if s < 3600:
        return f"{sign}{int(s // 60)}m{int(s % 60):02d}s"
    if s < 86400:
        return f"{sign}{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return f"{sign}{int(s // 86400)}d{int(s % 86400 // 3600):02d}h"
