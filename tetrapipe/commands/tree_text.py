"""The process tree in a terminal (rich): one line per process, its events and alerts beneath it.

Colours carry meaning, and the words carry it too (for ``NO_COLOR``, pipes
and screen readers): a late shell is red and says ``LATE SHELL``; an alert is
coloured by severity and says its severity and rule; a write to a file says
``write``; folded siblings say ``×N``.

Every string from the events (binaries, arguments, paths, pod and image
names, alert messages) goes through :func:`tetrapipe.textsafe.visible`: a
terminal escape or a bidi override in an argument is drawn as ``\\x1b`` or
``\\u202e``, never obeyed. Data is added as plain :class:`~rich.text.Text`,
never as markup.
"""

from __future__ import annotations

import datetime as dt

from rich.console import Console, Group
from rich.markup import escape
from rich.text import Text
from rich.tree import Tree

from tetrapipe.textsafe import visible
from tetrapipe.tree.model import DEPTH_CUT_NOTE, Node, Shown, TreeView, format_offset, plural
from tetrapipe.tree.model import Group as TreeGroup

SEVERITY_STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "bold yellow",
    "low": "cyan",
    "info": "dim",
}
MAX_EVENT_LINES = 6


def _args(n: Node, width: int = 80) -> str:
    a = visible((n.arguments or "").strip())  # escaped first: the cut is made on what is shown
    return a if len(a) <= width else a[: width - 1] + "…"


def process_label(s: Shown, late_after: dt.timedelta) -> Text:
    n = s.node
    t = Text()
    t.append(f"{format_offset(n.since_container_start):>8} ", style="dim" if not n.late_shell else "bold red")
    if s.count > 1:
        t.append(f"×{s.count} ", style="bold magenta")
    style = "bold red" if n.late_shell else ("bold" if n.focus else "")
    if n.worst_severity in ("critical", "high") and not n.late_shell:
        style = "bold red"
    t.append(visible(n.binary or "?"), style=style)
    if n.arguments:
        t.append(" " + _args(n), style="red" if n.late_shell else "")
    meta = []
    if n.pid is not None:
        meta.append(f"pid {n.pid}" if s.count == 1 else f"pids {n.pid}…")
    status = visible(n.status())  # a signal name comes from the event
    meta.append(status)
    if n.children or n.other_children:
        kids = len(n.children) + n.other_children
        meta.append(f"{kids} child{'ren' if kids != 1 else ''}")
    if s.count > 1:
        last = s.members[-1]
        meta.append(f"until {format_offset(last.since_container_start)}")
    if not n.seen_exec:
        meta.append("exec not seen")
    t.append("  " + " · ".join(meta), style="dim")
    if status.startswith("killed") or (status.startswith("exit ") and status != "exit 0"):
        t.stylize("yellow", len(t) - len(" · ".join(meta)), len(t))
    if n.late_shell:
        t.append(
            f"  LATE SHELL {format_offset(n.since_container_start)} after container start", style="bold white on red"
        )
    if n.injected and n.pod is not None:
        t.append("  exec'd into container (not in the init tree)", style="bold yellow")
    if n.focus:
        t.append("  ◀ focus", style="bold cyan")
    for a in n.alerts:
        t.append(visible(f"  ALERT {a.severity} {a.rule_id}"), style=SEVERITY_STYLE.get(a.severity, "bold"))
    return t


def _events(n: Node) -> list[Text]:
    out: list[Text] = []
    counts: dict[tuple[str, str, bool], int] = {}
    for e in n.events:
        counts[(e.category, e.label, e.write)] = counts.get((e.category, e.label, e.write), 0) + 1
    order = {"connect": 0, "listen": 1, "file": 2, "other": 3}
    items = sorted(counts.items(), key=lambda kv: (order.get(kv[0][0], 9), -kv[1]))
    for (cat, label, write), k in items[:MAX_EVENT_LINES]:
        style = {"connect": "cyan", "listen": "blue", "file": "bold red" if write else "yellow"}.get(cat, "dim")
        arrow = {"connect": "→ ", "listen": "← ", "file": "▪ "}.get(cat, "· ")
        out.append(Text(arrow + visible(label) + (f" ×{k}" if k > 1 else ""), style=style))
    rest = len(items) - MAX_EVENT_LINES
    more = n.event_count - len(n.events)
    if rest > 0 or more > 0:
        bits = []
        if rest > 0:
            bits.append(f"{rest} more kinds of event")
        if more > 0:
            bits.append(f"{more} more events in the history")
        out.append(Text("… " + ", ".join(bits), style="dim"))
    for a in n.alerts:
        msg = a.message or a.title or ""
        out.append(
            Text(
                visible(f"! {a.severity.upper()} {a.rule_id}: {msg}") + (f" (×{a.count})" if a.count > 1 else ""),
                style=SEVERITY_STYLE.get(a.severity, "bold"),
            )
        )
    return out


def _add(tree: Tree, s: Shown, late_after: dt.timedelta) -> None:
    branch = tree.add(process_label(s, late_after))
    for line in _events(s.node):
        branch.add(line)
    for c in s.children:
        _add(branch, c, late_after)
    if s.hidden_children:
        branch.add(Text(f"… {s.hidden_children} more children not shown", style="dim"))
    if s.node.on_path and s.node.other_children:
        branch.add(Text(f"… {s.node.other_children} other children (not on the path to the focus)", style="dim"))


def _group_header(g: TreeGroup) -> Text:
    t = Text()
    t.append(visible(g.title), style="bold")
    if g.container_name:
        t.append(f"  container {visible(g.container_name)}", style="bold cyan")
    if g.image:
        t.append(f" ({visible(g.image)})", style="dim")
    if g.container_start_time:
        t.append(f"  started {g.container_start_time:%Y-%m-%d %H:%M:%S} UTC", style="dim")
    if g.node_name:
        t.append(f"  node {visible(g.node_name)}", style="dim")
    return t


def _lineage(parent_binary: str | None, lineage: list[str | None]) -> Text:
    chain = [visible(parent_binary or "?"), *[visible(b or "?") for b in lineage]]
    t = Text("↑ ", style="dim")
    t.append(" ← ".join(chain), style="dim italic")
    t.append("  (outside the container)" if chain[0] != "?" else "  (parent not in the history)", style="dim")
    return t


def render(view: TreeView) -> Group:
    """The whole view as a rich renderable (print it, or export it with a recording console)."""
    parts = []
    for g in view.groups:
        tree = Tree(_group_header(g), guide_style="dim")
        for e in g.entries:
            holder = tree.add(_lineage(e.parent_binary, e.lineage)) if g.pod is not None else tree
            for s in e.roots:
                _add(holder, s, view.late_after)
        parts.append(tree)
    c = view.counts()
    summary = Text(
        f"{plural(c['processes'], 'process', 'processes')} · {plural(c['connections'], 'connection')} · "
        f"{plural(c['file_events'], 'file event')} · {plural(c['alerts'], 'alert')} · ",
        style="dim",
    )
    summary.append(plural(c["late_shells"], "late shell"), style="bold red" if c["late_shells"] else "dim")
    summary.append(f" (shells started > {format_offset(view.late_after)[1:]} after their container)", style="dim")
    if view.truncated:
        summary.append("  [truncated: narrow the selection]", style="bold yellow")
    if view.depth_cut:
        summary.append(f"  [{DEPTH_CUT_NOTE}]", style="bold yellow")
    parts.append(summary)
    return Group(*parts)


def render_text(view: TreeView, width: int = 140, color: bool = False) -> str:
    """The tree as a string (tests, files): plain text, or with ANSI colours."""
    console = Console(
        width=width,
        record=True,
        color_system="truecolor" if color else None,
        force_terminal=color,
        highlight=False,
        soft_wrap=False,
        file=_Null(),
    )
    console.print(render(view))
    return console.export_text(styles=color)


def print_pods(console: Console, pods: list[dict], late_after: dt.timedelta) -> None:
    from rich.table import Table

    if not pods:
        console.print("[dim]no pod processes in the history (tetrapipe ingest LOGS first)[/]")
        return
    t = Table(box=None, header_style="bold cyan", pad_edge=False)
    for col in ("namespace", "pod", "containers", "processes", "late shells", "last seen"):
        t.add_column(col)
    for p in pods:
        late = p["late_shells"]
        t.add_row(
            escape(visible(p["namespace"] or "")),
            escape(visible(p["pod"])),
            str(p["containers"]),
            str(p["processes"]),
            f"[bold red]{late}[/]" if late else "0",
            f"{p['last_seen']:%Y-%m-%d %H:%M:%S}" if p["last_seen"] else "",
        )
    console.print(t)
    console.print(
        f"[dim]tetrapipe tree --pod NAME [--namespace NS] draws one (late shell: > "
        f"{format_offset(late_after)[1:]} after container start)[/]"
    )


class _Null:
    def write(self, _: str) -> int:
        return 0

    def flush(self) -> None:
        pass


__all__ = ["print_pods", "process_label", "render", "render_text"]
