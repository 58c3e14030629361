"""The SQL behind process trees: two DuckDB table macros over the history's ``processes`` view.

``process_tree(...)`` walks down from the roots of a selection with a
recursive CTE; ``process_lineage(exec)`` walks up from one process. They are
macros, not Python, so a hunter gets the same trees in ``tetrapipe query``:

    SELECT depth, process_binary, arguments, since_container_start
    FROM process_tree(pod_name := 'crawler-7d9f8b6c5-x2x4z') ORDER BY path;
    SELECT level, process_binary FROM process_lineage('bm9kZS1hOjEwMDkwMDAwMjc6NzEwMQ==');

Why the recursion runs over ``scope`` and not over ``processes``: the view
folds every event of the history in a window (seconds over a million
events), and a tree needs a few processes. ``scope`` folds only ``scoped``,
the events, on the nodes where the selection has events (exec_ids are unique
per node, so a tree never crosses nodes), of the selected pod / namespace /
container or without any pod information: one scan of the history, the
filter below the window. The events without a pod keep a forked child
Tetragon sent without pod information (cilium/tetragon#2902) under its
parent; a process cannot change pods, so the events of other pods belong to
no process of the tree. With ``root_exec_id`` (whose descendants may be in
any pod: a container runtime's shim) every event of the node is scoped, as
every process of the node was before. They are materialized so that the
fold and the recursion read them once instead of once per use or level;
the selection's own events (``selected``) are read once and give both the
nodes (``hits``) and most of ``scoped``: reading a pod's process columns
is most of a tree's time (DuckDB's Parquet reader decompresses every page
of each column it is asked for, however few rows the filter keeps).
``scoped`` is two plain filters (the selection's, and ``pod IS NULL`` for
the rows it leaves out) rather than one ``OR``: a plain ``pod = 'x'`` is
handed to the scan (DuckDB's reader, or the Arrow dataset of a lake on an
object store), which drops the other rows before decoding the rest of
their columns, while an ``OR`` decodes every row of the history first
(0.2 s against 3 s over a million events, through Arrow).
"""

from __future__ import annotations

from collections.abc import Collection

import duckdb

from tetrapipe.lake.views import process_event_columns, processes_sql

#: a selection's predicates over a row with the events' (and processes') pod columns
_SELECTED = """(pod_name IS NULL OR pod = pod_name)
      AND (pod_namespace IS NULL OR namespace = pod_namespace)
      AND (container IS NULL OR container_name = container OR container_id = container
           OR container_id LIKE '%://' || container || '%')"""

#: the columns of a process the tree's own walk reads (the selection's, the links, the time window)
_WALK = ("exec_id", "node_name", "parent_exec_id", "pod", "namespace", "container_name", "container_id")
_WALK += ("start_time", "exit_time")
#: the columns of a process a drawn tree shows (:func:`tetrapipe.tree.build.build_tree`)
DRAWN_COLUMNS = (
    *_WALK,
    *("pid", "process_binary", "arguments", "cwd", "uid", "flags", "exit_status", "exit_signal", "image"),
    *("container_start_time", "in_init_tree", "seen_exec", "parent_binary", "ancestor_binaries"),
)


def process_tree_macro(name: str = "process_tree", columns: Collection[str] | None = None) -> str:
    """The CREATE statement of the tree macro ``name``, whose rows carry the processes' ``columns`` (None: all).

    ``process_tree`` (every column of ``processes``) is the one people call;
    :func:`tetrapipe.tree.build.build_tree` defines a narrower one for the
    columns it draws, so that the events' other columns (labels, workload,
    capabilities) are never read from the files.
    """
    if columns is not None:
        columns = {*columns, *_WALK}
    read = process_event_columns(columns)
    return f"""
CREATE OR REPLACE MACRO {name}(pod_name := NULL, pod_namespace := NULL, container := NULL,
                                     root_exec_id := NULL, since := NULL, until := NULL,
                                     max_depth := 256) AS TABLE
WITH RECURSIVE
selected AS MATERIALIZED (
    SELECT {read} FROM events WHERE exec_id IS NOT NULL AND {_SELECTED}
),
hits AS (
    SELECT DISTINCT node_name FROM selected WHERE root_exec_id IS NULL OR exec_id = root_exec_id
),
scoped AS MATERIALIZED (
    SELECT * FROM selected WHERE node_name IN (SELECT node_name FROM hits)
    UNION ALL
    SELECT {read} FROM events
    WHERE exec_id IS NOT NULL AND node_name IN (SELECT node_name FROM hits) AND pod IS NULL
      AND (pod_name IS NOT NULL OR pod_namespace IS NOT NULL OR container IS NOT NULL)
      AND NOT coalesce({_SELECTED}, false)
),
scope AS MATERIALIZED (
    {processes_sql("scoped", columns)}
),
sel AS (
    SELECT exec_id, node_name FROM scope
    WHERE {_SELECTED}
      AND (root_exec_id IS NULL OR exec_id = root_exec_id)
      AND (until IS NULL OR start_time <= CAST(until AS TIMESTAMP))
      AND (since IS NULL OR exit_time IS NULL OR exit_time >= CAST(since AS TIMESTAMP))
),
roots AS (
    SELECT s.exec_id FROM scope s SEMI JOIN sel ON s.exec_id = sel.exec_id AND s.node_name = sel.node_name
    WHERE root_exec_id IS NOT NULL OR s.parent_exec_id IS NULL
       OR s.parent_exec_id NOT IN (SELECT exec_id FROM sel)
),
tree AS (
    SELECT exec_id, 0 AS depth, [exec_id] AS path FROM roots
    UNION ALL
    SELECT c.exec_id, t.depth + 1, list_append(t.path, c.exec_id)
    FROM tree t JOIN scope c ON c.parent_exec_id = t.exec_id
    WHERE NOT list_contains(t.path, c.exec_id) AND t.depth < max_depth
      AND (until IS NULL OR c.start_time <= CAST(until AS TIMESTAMP))
      AND (since IS NULL OR c.exit_time IS NULL OR c.exit_time >= CAST(since AS TIMESTAMP))
)
SELECT t.depth, t.path, s.*
FROM tree t JOIN scope s USING (exec_id)
"""


PROCESS_TREE_MACRO = process_tree_macro()
#: the tree :func:`tetrapipe.tree.build.build_tree` draws: ``process_tree`` with only DRAWN_COLUMNS
DRAWN_TREE = "_drawn_tree"
DRAWN_TREE_MACRO = process_tree_macro(DRAWN_TREE, DRAWN_COLUMNS)

PROCESS_LINEAGE_MACRO = """
CREATE OR REPLACE MACRO process_lineage(exec, max_depth := 256) AS TABLE
WITH RECURSIVE up AS (
    SELECT exec_id, parent_exec_id, 0 AS level, [exec_id] AS seen FROM processes WHERE exec_id = exec
    UNION ALL
    SELECT p.exec_id, p.parent_exec_id, up.level + 1, list_append(up.seen, p.exec_id)
    FROM up JOIN processes p ON p.exec_id = up.parent_exec_id
    WHERE NOT list_contains(up.seen, p.exec_id) AND up.level < max_depth
)
SELECT up.level, p.* FROM up JOIN processes p USING (exec_id)
"""

#: the hook events shown under each process (connections, files, the rest counted), and each process's
#: number of hook events (``n``, counted before the cut): one scan of the history for both
EVENTS_SQL = """
SELECT e.exec_id, e.time, e.kind, e.function_name, e.policy_name, e.action, e.file_path, e.file_access,
       e.saddr, e.sport, e.daddr, e.dport, e.protocol, e.sock_family, e.tls_sni, e.tls_version, e.event_id,
       count(*) OVER (PARTITION BY e.exec_id) AS n
FROM events e SEMI JOIN _tree_ids t ON e.exec_id = t.exec_id
WHERE e.kind NOT IN ('process_exec', 'process_exit')
QUALIFY row_number() OVER (PARTITION BY e.exec_id ORDER BY e.time) <= $per_process
ORDER BY e.exec_id, e.time
"""

ALERTS_SQL = """
SELECT a.exec_id, a.rule_id, a.title, a.severity, a.message, a.time, a.count
FROM alerts a SEMI JOIN _tree_ids t ON a.exec_id = t.exec_id
ORDER BY a.time
"""

PODS_SQL = """
SELECT namespace, pod, count(*) AS processes, count(DISTINCT container_name) AS containers,
       min(start_time) AS first_start, max(coalesce(exit_time, start_time)) AS last_seen,
       count(*) FILTER (WHERE process_name IN $shells AND since_container_start > $late) AS late_shells
FROM processes
WHERE pod IS NOT NULL AND ($namespace IS NULL OR namespace = $namespace)
GROUP BY ALL
ORDER BY namespace, pod
"""


def install(con: duckdb.DuckDBPyConnection) -> None:
    """Define ``process_tree`` and ``process_lineage`` on a connection that has the history views."""
    con.execute(PROCESS_TREE_MACRO)
    con.execute(PROCESS_LINEAGE_MACRO)


def install_drawn(con: duckdb.DuckDBPyConnection, lineage: bool) -> None:
    """Define what a drawn tree calls: the narrow tree macro, and ``process_lineage`` when ``lineage``.

    A pod's tree does not walk up a lineage, and creating ``process_lineage``
    binds the ``processes`` view (tens of milliseconds).
    """
    con.execute(DRAWN_TREE_MACRO)
    if lineage:
        con.execute(PROCESS_LINEAGE_MACRO)


__all__ = ["install", "install_drawn", "process_tree_macro", "PROCESS_TREE_MACRO", "PROCESS_LINEAGE_MACRO"]
