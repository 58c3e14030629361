"""``tetrapipe tree``: the Process Ancestry Tree of a pod, a container or a process, from the history."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.text import Text

from tetrapipe.commands.options import lake_option, open_lake
from tetrapipe.textsafe import visible


@click.command("tree")
@click.option("--pod", "-p", help="Pod name (a unique prefix is enough: 'crawler' for crawler-7d9f8b6c5-x2x4z).")
@click.option("--namespace", "-n", help="Kubernetes namespace (alone: every pod of it).")
@click.option("--container", "-c", help="Container name or id.")
@click.option(
    "--exec-id",
    "exec_id",
    help="One process: the path from its container's first process down to it, and everything it started.",
)
@click.option(
    "--since",
    help="Only processes alive at or after this time: 2026-03-10T09:00 (UTC), or a duration "
    "back from the newest event in the history (30m, 2h, 1d).",
)
@click.option("--until", help="Only processes started at or before this time (same forms as --since).")
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the tree as one self-contained HTML file (collapsible, details on click).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: the drawn tree; json: the tree for programs.",
)
@click.option(
    "--late-after",
    default="5m",
    show_default=True,
    help="A shell started this long after its container started is marked as a late shell.",
)
@click.option("--no-fold", is_flag=True, help="Show identical sibling subtrees one by one instead of ×N.")
@click.option("--max-children", default=60, show_default=True, help="Children shown per process (after folding).")
@click.option("--max-processes", default=20_000, show_default=True, help="Most processes read for one tree.")
@click.option("--width", type=int, default=None, help="Line width (default: the terminal's, 220 in a pipe).")
@lake_option()
def tree_command(
    pod: str | None,
    namespace: str | None,
    container: str | None,
    exec_id: str | None,
    since: str | None,
    until: str | None,
    html_out: str | None,
    fmt: str,
    late_after: str,
    no_fold: bool,
    max_children: int,
    max_processes: int,
    width: int | None,
    lake_dir: str,
) -> None:
    """Draw the Process Ancestry Tree: every process of a pod, under its parent, with its start
    relative to the container start, exit status, connections, file events and alerts; shells
    started long after their container (late shells) in red.

    \b
    tetrapipe tree                                   (lists the pods in the history)
    tetrapipe tree --pod crawler -n tenant-jobs
    tetrapipe tree --pod crawler --html crawler.html (open it in any browser, no network needed)
    tetrapipe tree --exec-id <exec_id>               (one process: its path and its descendants)
    \f

    (Not in --help.) Long only because a click command receives each of its options
    as a parameter; the work is done by the modules it calls.
    """
    import duckdb

    from tetrapipe.commands.tree_text import print_pods, render
    from tetrapipe.lake.views import LakeViews
    from tetrapipe.tree import Selection, TreeError, TreeView, build_tree, list_pods, newest_event_time
    from tetrapipe.tree.model import parse_time, plural
    from tetrapipe.units import parse_duration

    err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
    out = Console(highlight=False, emoji=False, width=width or (None if sys.stdout.isatty() else 220), soft_wrap=False)
    try:
        late = parse_duration(late_after)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--late-after") from None
    lake = open_lake(lake_dir)
    listing = not any((pod, namespace, container, exec_id, since, until))

    def read(con: duckdb.DuckDBPyConnection) -> list[dict] | TreeView:
        """The pods (no selection) or the tree: all the reading, run again if a bad data file is left out."""
        newest = newest_event_time(con) if (since or until) else None
        try:
            t_since = parse_time(since, newest) if since else None
            t_until = parse_time(until, newest) if until else None
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since/--until") from None
        if listing:
            return list_pods(con, late_after=late)
        sel = Selection(
            pod=pod,
            namespace=namespace,
            container=container,
            exec_id=exec_id.strip() if exec_id else None,
            since=t_since,
            until=t_until,
        )
        return build_tree(
            con, sel, late_after=late, fold=not no_fold, max_children=max_children, max_processes=max_processes
        )

    try:
        # a tree reads events (processes fold them) and alerts; build_tree defines the macros it calls
        with LakeViews(lake, tables=("events", "alerts"), tree_macros=False) as views:
            found = views.run(read)
    except TreeError as exc:
        # the message may quote a pod name from the history: shown, never read as markup
        err.print(Text.assemble(("tetrapipe tree:", "bold red"), " ", visible(str(exc), newlines=True)))
        sys.exit(2)
    if not isinstance(found, TreeView):
        if fmt == "json":
            import orjson

            click.echo(orjson.dumps(found, option=orjson.OPT_NAIVE_UTC).decode())
        else:
            print_pods(out, found, late)
        return
    view = found
    if html_out:
        from tetrapipe.fsutil import open_private
        from tetrapipe.tree.html import render_html

        with open_private(html_out, append=False) as f:  # the page holds command lines: owner-only
            f.write(render_html(view).encode("utf-8"))
        c = view.counts()
        err.print(
            visible(
                f"wrote {html_out}: {plural(c['processes'], 'process', 'processes')}, "
                f"{plural(c['late_shells'], 'late shell')}, {plural(c['alerts'], 'alert')} "
                f"({view.selection.describe()})"
            ),
            markup=False,
        )
        if fmt == "text":
            return
    if fmt == "json":
        import orjson

        click.echo(orjson.dumps(view.to_dict(), option=orjson.OPT_NAIVE_UTC).decode())
        return
    out.print(render(view))  # every string from the events made visible in tetrapipe.commands.tree_text


COMMANDS = [tree_command]
