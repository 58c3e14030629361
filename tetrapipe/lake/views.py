"""The lake's read side: a DuckDB connection whose views are the history that hunters, rules and trees query.

``events``, ``rejects``, ``alerts`` and ``tls_stats`` read every committed
Parquet segment of their table in :mod:`tetrapipe.lake.store` (plus the
``date`` partition column); ``processes`` folds each process's exec and exit
into one row, and the tree macros of :mod:`tetrapipe.tree.sql` walk it. The
views are plain SQL over ``read_parquet`` globs, so a query always sees the
segments committed when it starts while a writer keeps adding new ones, and
opening a connection never blocks that writer.

Callers use :func:`tetrapipe.lake.connect`; the saved hunts run over these
views live in :mod:`tetrapipe.lake.hunts`.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pyarrow as pa

from tetrapipe.lake.store import Lake
from tetrapipe.schema import SCHEMAS, TABLES

PROCESSES_VIEW = """
CREATE OR REPLACE VIEW processes AS
WITH firsts AS (
    SELECT node_name, exec_id, parent_exec_id, pid, uid, auid, process_binary, process_name, arguments, cwd, flags,
           process_start_time, in_init_tree, cap_effective, namespace, pod, pod_labels, workload,
           workload_kind, container_id, container_name, image, container_start_time, container_pid,
           parent_binary, parent_arguments, ancestor_binaries, kind = 'process_exec' AS seen_exec, time
    FROM events
    WHERE exec_id IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY node_name, exec_id
                               ORDER BY kind = 'process_exec' DESC, time) = 1
),
exits AS (
    SELECT node_name, exec_id, min(time) AS exit_time, max(exit_status) AS exit_status,
           max(exit_signal) AS exit_signal
    FROM events WHERE kind = 'process_exit' GROUP BY ALL
),
counts AS (
    SELECT node_name, exec_id, count(*) FILTER (WHERE kind NOT IN ('process_exec', 'process_exit')) AS hook_events
    FROM events WHERE exec_id IS NOT NULL GROUP BY ALL
)
SELECT f.exec_id, f.node_name, f.parent_exec_id, f.pid, f.uid, f.auid, f.process_binary, f.process_name, f.arguments, f.cwd, f.flags,
       coalesce(f.process_start_time, f.time) AS start_time, x.exit_time, x.exit_status, x.exit_signal,
       x.exit_time - coalesce(f.process_start_time, f.time) AS duration,
       f.namespace, f.pod, f.pod_labels, f.workload, f.workload_kind, f.container_id, f.container_name, f.image,
       f.container_start_time, f.container_pid,
       f.process_start_time - f.container_start_time AS since_container_start,
       f.in_init_tree, f.cap_effective, f.parent_binary, f.parent_arguments, f.ancestor_binaries,
       f.seen_exec, c.hook_events
FROM firsts f
LEFT JOIN exits x USING (node_name, exec_id)
LEFT JOIN counts c USING (node_name, exec_id)
"""

VIEW_DOCS = {
    "processes": "one row per process (exec_id): its exec joined with its exit, with time since container start",
    "process_tree(...)": "table macro: a pod's / container's / process's tree (depth, path from the root), "
    "e.g. process_tree(pod_name := 'crawler-7d9f8b6c5-x2x4z')",
    "process_lineage(exec_id)": "table macro: a process and its ancestors in the history, level 0 = itself",
}


def connect(lake: Lake | str, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the lake's views; opening it never blocks a writer."""
    if not isinstance(lake, Lake):
        lake = Lake(lake)
    con = duckdb.connect(database)
    con.execute("SET TimeZone = 'UTC'")
    refresh_views(con, lake)
    return con


def refresh_views(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """(Re)create the views: a table with no segment yet gets an empty, typed view."""
    for name in TABLES:
        if lake.segments(name):
            glob = lake.glob(name).replace("'", "''")
            con.execute(
                f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet('{glob}', "
                "hive_partitioning = true, hive_types = {'date': VARCHAR}, union_by_name = true)"
            )
        else:
            empty = SCHEMAS[name].empty_table()
            con.register(f"_empty_{name}", empty)
            con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT *, NULL::VARCHAR AS date FROM _empty_{name}")
    con.execute(PROCESSES_VIEW)
    from tetrapipe.tree.sql import install as install_tree_macros

    install_tree_macros(con)


def read_rows(
    lake: Lake | str, table: str, since: str | None = None, until: str | None = None, batch_size: int = 1000
) -> Iterator[pa.Table]:
    """The rows of ``table`` with ``since <= time < until`` (UTC; None: open), oldest first, in batches.

    Every column of the table's schema, nothing the views add (``date``), so
    a batch looks like what the flows wrote.
    """
    cols = ", ".join(f'"{c.name}"' for c in TABLES[table])
    sql = (
        f"SELECT {cols} FROM {table} WHERE ($since IS NULL OR time >= $since::TIMESTAMP) "
        "AND ($until IS NULL OR time < $until::TIMESTAMP) ORDER BY time"
    )
    con = connect(lake)
    try:
        for batch in con.sql(sql, params={"since": since, "until": until}).to_arrow_reader(batch_size):
            yield pa.Table.from_batches([batch])
    finally:
        con.close()
