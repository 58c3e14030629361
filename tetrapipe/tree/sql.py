"""The SQL behind process trees: two DuckDB table macros over the history's ``processes`` view.

``process_tree(...)`` walks down from the roots of a selection with a
recursive CTE; ``process_lineage(exec)`` walks up from one process. They are
macros, not Python, so a hunter gets the same trees in ``tetrapipe query``:

    SELECT depth, process_binary, arguments, since_container_start
    FROM process_tree(pod_name := 'crawler-7d9f8b6c5-x2x4z') ORDER BY path;
    SELECT level, process_binary FROM process_lineage('bm9kZS1hOjEwMDkwMDAwMjc6NzEwMQ==');

Why the recursion runs over ``scope`` (the selection's nodes, materialized)
and not over ``processes`` directly: exec_ids are unique per node, so a tree
never crosses nodes, and the view (a grouping over every event) is computed
once instead of once per level. Children are followed whatever their pod
column says, so a forked child Tetragon sent without pod information (cilium/
tetragon#2902) still appears under its parent.
"""

from __future__ import annotations

import duckdb

PROCESS_TREE_MACRO = """
CREATE OR REPLACE MACRO process_tree(pod_name := NULL, pod_namespace := NULL, container := NULL,
                                     root_exec_id := NULL, since := NULL, until := NULL,
                                     max_depth := 256) AS TABLE
WITH RECURSIVE
sel AS (
    SELECT exec_id, node_name FROM processes
    WHERE (pod_name IS NULL OR pod = pod_name)
      AND (pod_namespace IS NULL OR namespace = pod_namespace)
      AND (container IS NULL OR container_name = container OR container_id = container
           OR container_id LIKE '%://' || container || '%')
      AND (root_exec_id IS NULL OR exec_id = root_exec_id)
      AND (until IS NULL OR start_time <= CAST(until AS TIMESTAMP))
      AND (since IS NULL OR exit_time IS NULL OR exit_time >= CAST(since AS TIMESTAMP))
),
scope AS MATERIALIZED (
    SELECT * FROM processes WHERE node_name IN (SELECT DISTINCT node_name FROM sel)
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

#: the hook events shown under each process (connections, files, the rest counted)
EVENTS_SQL = """
SELECT e.exec_id, e.time, e.kind, e.function_name, e.policy_name, e.action, e.file_path, e.file_access,
       e.saddr, e.sport, e.daddr, e.dport, e.protocol, e.sock_family, e.tls_sni, e.tls_version, e.event_id
FROM events e SEMI JOIN _tree_ids t ON e.exec_id = t.exec_id
WHERE e.kind NOT IN ('process_exec', 'process_exit')
QUALIFY row_number() OVER (PARTITION BY e.exec_id ORDER BY e.time) <= $per_process
ORDER BY e.exec_id, e.time
"""

EVENT_COUNTS_SQL = """
SELECT e.exec_id, count(*) AS n
FROM events e SEMI JOIN _tree_ids t ON e.exec_id = t.exec_id
WHERE e.kind NOT IN ('process_exec', 'process_exit')
GROUP BY ALL
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


__all__ = ["install", "PROCESS_TREE_MACRO", "PROCESS_LINEAGE_MACRO"]
