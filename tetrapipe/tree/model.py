"""A process tree read from the history, ready to draw: processes, their events and alerts, folded.

The shape follows what the Hubble UI Processes page shows for a pod, and what
an analyst needs on top of it:

* one group per container, processes placed by start time relative to the
  container's start (``+6m40s``), with arguments, pid, exit status, children;
* the roots of a container hang under the process outside it that started
  them (``containerd-shim`` for the entrypoint, ``runc`` for a ``kubectl
  exec``), with that parent's own ancestry from the enriched events;
* under each process: its connections, file events and other hook events, and
  the alerts whose ``exec_id`` is this process;
* late shells (a shell started more than ``late_after`` after its container)
  are marked even when no rule fired;
* identical sibling subtrees (same binary, arguments, exit, events and
  children) fold into one entry with a count, so a cron job that ran 500 times
  is one line, ``×500``. Processes with alerts and the focused process never
  fold; late shells fold only with identical late shells (the line keeps the
  mark and says how many).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

from tetrapipe.tree import sql
from tetrapipe.units import SEVERITY_RANK, parse_duration

if TYPE_CHECKING:
    import duckdb

    from tetrapipe.lake.store import Lake

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ash", "ksh", "mksh", "busybox", "csh", "tcsh", "fish"})
DEFAULT_LATE_AFTER = dt.timedelta(minutes=5)


class TreeError(Exception):
    """A selection that matches nothing, said the way a person can fix it."""


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


@dataclass
class TreeView:
    selection: Selection
    groups: list[Group]
    processes: int
    late_after: dt.timedelta
    truncated: bool = False
    nodes: dict[str, Node] = field(default_factory=dict)

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
        """The tree for programs (``--format json``) and for the HTML page."""

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


# --- durations ------------------------------------------------------------------------------

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


# --- building ------------------------------------------------------------------------------


def _event(row: dict) -> Event:
    kind, fn = row["kind"], row["function_name"]
    dest = f"{row['daddr']}:{row['dport']}" if row["daddr"] else None
    proto = (row["protocol"] or "").replace("IPPROTO_", "").lower()
    if dest and (kind == "process_connect" or (fn and "connect" in fn)):
        label = f"connect {dest}" + (f" ({proto})" if proto and proto != "tcp" else "")
        if row.get("tls_sni"):
            label += f" sni {row['tls_sni']}"
        return Event(row["time"], kind, fn, "connect", label, detail=row)
    if kind in ("process_listen", "process_accept") or (fn and ("listen" in fn or "accept" in fn)):
        where = f"{row['saddr'] or '*'}:{row['sport']}" if row["sport"] else (dest or "")
        verb = "accept" if (kind == "process_accept" or (fn and "accept" in fn)) else "listen"
        return Event(row["time"], kind, fn, "listen", f"{verb} {where}".strip(), detail=row)
    if row["file_path"]:
        access = row["file_access"] or "access"
        write = access in ("write", "truncate", "unlink", "rename", "chmod", "chown")
        return Event(row["time"], kind, fn, "file", f"{access} {row['file_path']}", write=write, detail=row)
    if kind == "process_close" and dest:
        return Event(row["time"], kind, fn, "other", f"close {dest}", detail=row)
    what = fn or kind.removeprefix("process_")
    return Event(row["time"], kind, fn, "other", what + (f" {dest}" if dest else ""), detail=row)


def _node(row: dict) -> Node:
    return Node(
        exec_id=row["exec_id"],
        parent_exec_id=row["parent_exec_id"],
        node_name=row["node_name"],
        pid=row["pid"],
        binary=row["process_binary"],
        arguments=row["arguments"],
        cwd=row["cwd"],
        uid=row["uid"],
        flags=row["flags"],
        start_time=row["start_time"],
        exit_time=row["exit_time"],
        exit_status=row["exit_status"],
        exit_signal=row["exit_signal"],
        namespace=row["namespace"],
        pod=row["pod"],
        container_name=row["container_name"],
        container_id=row["container_id"],
        image=row["image"],
        container_start_time=row["container_start_time"],
        in_init_tree=row["in_init_tree"],
        seen_exec=bool(row["seen_exec"]),
        parent_binary=row["parent_binary"],
        ancestor_binaries=list(row["ancestor_binaries"] or []),
    )


def is_late_shell(n: Node, late_after: dt.timedelta) -> bool:
    since = n.since_container_start
    return n.name in SHELLS and since is not None and since > late_after


def newest_event_time(con: duckdb.DuckDBPyConnection) -> dt.datetime | None:
    return con.sql("SELECT max(time) FROM events").fetchall()[0][0]


def list_pods(
    con: duckdb.DuckDBPyConnection, namespace: str | None = None, late_after: dt.timedelta = DEFAULT_LATE_AFTER
) -> list[dict]:
    """Pods in the history, with process and late-shell counts (what ``tetrapipe tree`` lists)."""
    return (
        con.sql(sql.PODS_SQL, params={"namespace": namespace, "shells": sorted(SHELLS), "late": late_after})
        .to_arrow_table()
        .to_pylist()
    )


def _resolve_pod(con: duckdb.DuckDBPyConnection, sel: Selection) -> None:
    """Accept a unique pod-name prefix (``crawler`` for ``crawler-7d9f8b6c5-x2x4z``); explain misses."""
    if sel.pod is None:
        return
    rows = con.sql(
        "SELECT DISTINCT namespace, pod FROM processes WHERE pod = $pod AND ($ns IS NULL OR namespace = $ns)",
        params={"pod": sel.pod, "ns": sel.namespace},
    ).fetchall()
    if rows:
        if len(rows) > 1 and sel.namespace is None:
            raise TreeError(
                f"pod {sel.pod!r} exists in several namespaces "
                f"({', '.join(sorted(r[0] or '?' for r in rows))}): add --namespace"
            )
        return
    like = con.sql(
        "SELECT DISTINCT namespace, pod FROM processes WHERE starts_with(pod, $pod) "
        "AND ($ns IS NULL OR namespace = $ns) ORDER BY 1, 2",
        params={"pod": sel.pod, "ns": sel.namespace},
    ).fetchall()
    if len(like) == 1:
        sel.namespace, sel.pod = like[0]
        return
    if like:
        names = ", ".join(f"{ns}/{p}" for ns, p in like[:10])
        raise TreeError(f"pod {sel.pod!r} is ambiguous: {names}{' ...' if len(like) > 10 else ''}")
    known = con.sql(
        "SELECT DISTINCT namespace, pod FROM processes WHERE pod IS NOT NULL "
        "AND ($ns IS NULL OR namespace = $ns) ORDER BY 1, 2 LIMIT 12",
        params={"ns": sel.namespace},
    ).fetchall()
    hint = (
        ("; pods in the history: " + ", ".join(f"{ns}/{p}" for ns, p in known))
        if known
        else "; the history has no pod processes (run tetrapipe ingest first)"
    )
    raise TreeError(f"no processes of pod {sel.pod!r}{' in namespace ' + sel.namespace if sel.namespace else ''}{hint}")


def build_tree(
    source: Lake | str | duckdb.DuckDBPyConnection,
    selection: Selection,
    *,
    late_after: dt.timedelta = DEFAULT_LATE_AFTER,
    fold: bool = True,
    max_children: int = 60,
    max_processes: int = 20_000,
    events_per_process: int = 200,
) -> TreeView:
    """Read the selection's processes, events and alerts from the history and arrange them."""
    import duckdb

    from tetrapipe.lake import views as history

    own = not isinstance(source, duckdb.DuckDBPyConnection)
    con = history.connect(source) if own else source
    try:
        sql.install(con)
        return _build(con, selection, late_after, fold, max_children, max_processes, events_per_process)
    finally:
        if own:
            con.close()


def _build(
    con: duckdb.DuckDBPyConnection,
    sel: Selection,
    late_after: dt.timedelta,
    fold: bool,
    max_children: int,
    max_processes: int,
    events_per_process: int,
) -> TreeView:
    _resolve_pod(con, sel)
    path_ids: list[str] = []
    if sel.exec_id:
        lineage = (
            con.sql("SELECT * FROM process_lineage($x) ORDER BY level", params={"x": sel.exec_id})
            .to_arrow_table()
            .to_pylist()
        )
        if not lineage:
            raise TreeError(f"no process with exec_id {sel.exec_id!r} in the history")
        focus = lineage[0]
        # climb while still in the same container (or, on the host, to the top we know)
        top = 0
        for i, row in enumerate(lineage[1:], start=1):
            if focus["container_id"] is not None and row["container_id"] != focus["container_id"]:
                break
            top = i
        path_ids = [r["exec_id"] for r in reversed(lineage[: top + 1])]
        params = {"root": sel.exec_id, "since": sel.since, "until": sel.until}
        rows = con.sql(
            "SELECT * FROM process_tree(root_exec_id := $root, since := $since, until := $until) "
            f"ORDER BY depth, start_time LIMIT {max_processes + 1}",
            params=params,
        ).to_arrow_table()
        rows = rows.to_pylist()
        path_rows = [r for r in reversed(lineage[1 : top + 1])]
    else:
        if not any((sel.pod, sel.namespace, sel.container, sel.since, sel.until)):
            raise TreeError("say what to draw: --pod NAME, --namespace NS, --container NAME, --exec-id ID or --since")
        params = {
            "pod": sel.pod,
            "ns": sel.namespace,
            "container": sel.container,
            "since": sel.since,
            "until": sel.until,
        }
        rows = con.sql(
            "SELECT * FROM process_tree(pod_name := $pod, pod_namespace := $ns, container := $container, "
            "since := $since, until := $until) "
            f"ORDER BY depth, start_time LIMIT {max_processes + 1}",
            params=params,
        ).to_arrow_table()
        rows = rows.to_pylist()
        path_rows = []
        if not rows:
            raise TreeError(f"no processes for {sel.describe()} in the history")
    truncated = len(rows) > max_processes
    rows = rows[:max_processes]
    nodes: dict[str, Node] = {}
    for r in [*path_rows, *rows]:
        if r["exec_id"] not in nodes:
            nodes[r["exec_id"]] = _node(r)
    for n in nodes.values():
        n.late_shell = is_late_shell(n, late_after)
    _attach_events(con, nodes, events_per_process)
    # links
    roots: list[Node] = []
    if path_ids:
        for a, b in zip(path_ids, path_ids[1:], strict=False):
            nodes[a].on_path = True
            nodes[a].children.append(nodes[b])
        nodes[sel.exec_id].focus = True
        path_set = set(path_ids)
        for r in rows:
            n = nodes[r["exec_id"]]
            if n.exec_id in path_set:
                continue
            parent = nodes.get(n.parent_exec_id or "")
            if parent is not None:
                parent.children.append(n)
        roots = [nodes[path_ids[0]]]
        counts = (
            dict(
                con.sql(
                    "SELECT parent_exec_id, count(*) FROM processes WHERE list_contains($ids, parent_exec_id) "
                    "GROUP BY 1",
                    params={"ids": path_ids[:-1]},
                ).fetchall()
            )
            if len(path_ids) > 1
            else {}
        )
        for pid_ in path_ids[:-1]:
            nodes[pid_].other_children = max(0, counts.get(pid_, 0) - 1)
    else:
        for r in rows:
            n = nodes[r["exec_id"]]
            parent = nodes.get(n.parent_exec_id or "") if r["depth"] > 0 else None
            if parent is not None:
                parent.children.append(n)
            else:
                roots.append(n)
    for n in nodes.values():
        n.children.sort(key=lambda c: (c.start_time or dt.datetime.min, c.exec_id))
        parent = nodes.get(n.parent_exec_id or "")
        n.injected = n.in_init_tree is False and (parent is None or parent.in_init_tree is not False)
    groups = _group(roots, fold, max_children)
    return TreeView(sel, groups, len(nodes), late_after, truncated, nodes)


def _attach_events(con: duckdb.DuckDBPyConnection, nodes: dict[str, Node], per_process: int) -> None:
    ids = pa.table({"exec_id": pa.array(list(nodes), pa.string())})
    con.register("_tree_ids", ids)
    try:
        for row in con.sql(sql.EVENTS_SQL, params={"per_process": per_process}).to_arrow_table().to_pylist():
            nodes[row["exec_id"]].events.append(_event(row))
        for exec_id, n in con.sql(sql.EVENT_COUNTS_SQL).fetchall():
            nodes[exec_id].event_count = n
        for row in con.sql(sql.ALERTS_SQL).to_arrow_table().to_pylist():
            nodes[row["exec_id"]].alerts.append(
                Alert(
                    row["rule_id"],
                    row["title"],
                    row["severity"] or "info",
                    row["message"],
                    row["time"],
                    row["count"] or 1,
                )
            )
    finally:
        con.unregister("_tree_ids")


def _group(roots: list[Node], fold: bool, max_children: int) -> list[Group]:
    by_container: dict[tuple, list[Node]] = {}
    for r in sorted(roots, key=lambda n: (n.container_start_time or dt.datetime.min, n.start_time or dt.datetime.min)):
        key = (r.namespace, r.pod, r.container_id, r.node_name if r.container_id is None else None)
        by_container.setdefault(key, []).append(r)
    groups = []
    for (_ns, _pod, _cid, _node), members in by_container.items():
        first = members[0]
        entries: dict[str | None, list[Node]] = {}
        for r in members:
            entries.setdefault(r.parent_exec_id, []).append(r)
        out_entries = []
        for parent_id, rs in entries.items():
            p0 = rs[0]
            out_entries.append(
                Entry(parent_id, p0.parent_binary, list(p0.ancestor_binaries), fold_children(rs, fold, max_children))
            )
        groups.append(
            Group(
                first.namespace,
                first.pod,
                first.container_name,
                first.container_id,
                first.image,
                first.container_start_time,
                first.node_name,
                out_entries,
            )
        )
    return groups


# --- folding ---------------------------------------------------------------------------------


def _signature(n: Node, memo: dict[str, int]) -> int:
    """What makes two subtrees "the same" to a reader (a hash); unique for anything worth seeing alone."""
    if n.exec_id in memo:
        return memo[n.exec_id]
    if n.alerts or n.focus or n.on_path:
        sig = hash(("unique", n.exec_id))
    else:
        # late shells fold only with late shells: a cron job's 500 late "sh -c" stay one marked line
        kids = tuple(sorted(_signature(c, memo) for c in n.children))
        evs = tuple(sorted({e.label for e in n.events}))
        sig = hash((n.binary, n.arguments, n.status(), n.in_init_tree, n.late_shell, n.injected, evs, kids))
    memo[n.exec_id] = sig
    return sig


def fold_children(
    children: Iterable[Node], fold: bool = True, max_children: int = 60, memo: dict[str, int] | None = None
) -> list[Shown]:
    """Siblings as drawn: identical subtrees folded (first one shown, with the count), in start order."""
    memo = {} if memo is None else memo
    groups: dict[object, list[Node]] = {}
    for c in children:
        key = _signature(c, memo) if fold else c.exec_id
        groups.setdefault(key, []).append(c)
    shown = []
    for members in groups.values():
        rep = members[0]
        kids = fold_children(rep.children, fold, max_children, memo)
        hidden = max(0, len(kids) - max_children)
        shown.append(Shown(rep, members, kids[:max_children] if hidden else kids, hidden))
    return shown


__all__ = [
    "Alert",
    "DEFAULT_LATE_AFTER",
    "Entry",
    "Event",
    "Group",
    "Node",
    "SHELLS",
    "Selection",
    "Shown",
    "TreeError",
    "TreeView",
    "build_tree",
    "fold_children",
    "format_offset",
    "is_late_shell",
    "list_pods",
    "newest_event_time",
    "parse_duration",
    "parse_time",
]
