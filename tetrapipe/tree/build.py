"""Build a process tree from the history: the selected processes, their events and alerts, folded.

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
from typing import TYPE_CHECKING

from tetrapipe.tree import sql
from tetrapipe.tree.fold import group_by_container
from tetrapipe.tree.model import (
    DEFAULT_LATE_AFTER,
    DRAW_DEPTH,
    SHELLS,
    Alert,
    Event,
    Node,
    Selection,
    TreeError,
    TreeView,
)

if TYPE_CHECKING:
    import duckdb

    from tetrapipe.lake import Lake


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
    return _records(
        con.sql(sql.PODS_SQL, params={"namespace": namespace, "shells": sorted(SHELLS), "late": late_after})
    )


def _resolve_pod(con: duckdb.DuckDBPyConnection, sel: Selection) -> None:
    """Accept a unique pod-name prefix (``crawler`` for ``crawler-7d9f8b6c5-x2x4z``); explain misses.

    The names come from the events of processes (``exec_id`` set), not from
    the ``processes`` view, whose fold reads the whole history.
    """
    if sel.pod is None:
        return
    rows = con.sql(
        "SELECT DISTINCT namespace, pod FROM events WHERE exec_id IS NOT NULL AND pod = $pod AND ($ns IS NULL OR namespace = $ns)",
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
        "SELECT DISTINCT namespace, pod FROM events WHERE exec_id IS NOT NULL AND starts_with(pod, $pod) "
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
        "SELECT DISTINCT namespace, pod FROM events WHERE exec_id IS NOT NULL AND pod IS NOT NULL "
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

    def build(con: duckdb.DuckDBPyConnection) -> TreeView:
        sql.install_drawn(con, lineage=bool(selection.exec_id))
        return _build(con, selection, late_after, fold, max_children, max_processes, events_per_process)

    if isinstance(source, duckdb.DuckDBPyConnection):
        return build(source)
    from tetrapipe.lake.views import run

    return run(source, build)  # an unreadable data file is left out (and named), not the end of the tree


def _build(
    con: duckdb.DuckDBPyConnection,
    sel: Selection,
    late_after: dt.timedelta,
    fold: bool,
    max_children: int,
    max_processes: int,
    events_per_process: int,
) -> TreeView:
    """The tree itself, in three steps kept in one place because they share the rows read.

    Read the rows (a focused process's lineage and descendants, or a pod's /
    namespace's / container's processes), make nodes and attach their events,
    then link children to parents (along the focused path, or by depth) before
    grouping. Splitting it would pass half a dozen half-built structures around.
    """
    _resolve_pod(con, sel)
    path_ids: list[str] = []
    depth_cut = False
    # levels drawn below the top; a focused process shares DRAW_DEPTH between its path up and its subtree
    down = DRAW_DEPTH // 2 if sel.exec_id else DRAW_DEPTH
    if sel.exec_id:
        lineage = _records(con.sql("SELECT * FROM process_lineage($x) ORDER BY level", params={"x": sel.exec_id}))
        if not lineage:
            raise TreeError(f"no process with exec_id {sel.exec_id!r} in the history")
        focus = lineage[0]
        # climb while still in the same container (or, on the host, to the top we know)
        top = 0
        for i, row in enumerate(lineage[1:], start=1):
            if focus["container_id"] is not None and row["container_id"] != focus["container_id"]:
                break
            if i > DRAW_DEPTH - down:  # a chain nested deeper than anyone reads (or made so to break the drawing)
                depth_cut = True
                break
            top = i
        path_ids = [r["exec_id"] for r in reversed(lineage[: top + 1])]
        params = {"root": sel.exec_id, "since": sel.since, "until": sel.until}
        rows = _records(
            con.sql(
                f"SELECT * EXCLUDE (path) FROM {sql.DRAWN_TREE}(root_exec_id := $root, since := $since, until := $until, "
                "max_depth := $depth) "
                f"ORDER BY depth, start_time LIMIT {max_processes + 1}",
                params={**params, "depth": down + 1},
            )
        )
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
        rows = _records(
            con.sql(
                f"SELECT * EXCLUDE (path) FROM {sql.DRAWN_TREE}(pod_name := $pod, pod_namespace := $ns, container := $container, "
                "since := $since, until := $until, max_depth := $depth) "
                f"ORDER BY depth, start_time LIMIT {max_processes + 1}",
                params={**params, "depth": down + 1},
            )
        )
        path_rows = []
        if not rows:
            raise TreeError(f"no processes for {sel.describe()} in the history")
    truncated = len(rows) > max_processes
    rows = rows[:max_processes]
    if rows and rows[-1]["depth"] > down:  # (ordered by depth) the walk went a level past what is drawn
        depth_cut = True
        rows = [r for r in rows if r["depth"] <= down]
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
    groups = group_by_container(roots, fold, max_children)
    return TreeView(sel, groups, len(nodes), late_after, truncated, nodes, depth_cut)


def _attach_events(con: duckdb.DuckDBPyConnection, nodes: dict[str, Node], per_process: int) -> None:
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _tree_ids AS SELECT unnest($ids::VARCHAR[]) AS exec_id", {"ids": list(nodes)}
    )
    try:
        for row in _records(con.sql(sql.EVENTS_SQL, params={"per_process": per_process})):
            node = nodes[row["exec_id"]]
            node.event_count = row.pop("n")
            node.events.append(_event(row))
        for row in _records(con.sql(sql.ALERTS_SQL)):
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
        con.execute("DROP TABLE IF EXISTS _tree_ids")


def _records(rel: duckdb.DuckDBPyRelation) -> list[dict]:
    """The rows of ``rel`` as dicts by column name (DuckDB's Python values: no Arrow, no numpy to import)."""
    names = rel.columns
    return [dict(zip(names, row, strict=True)) for row in rel.fetchall()]
