"""The SQL that evaluates a rule set: one scan for all rules, then one grouping.

Live detection and backtest run the same two statements, over a micro-batch
(a registered Arrow table) or over the ``events`` view of the history, which
is why they agree:

1. **match**: one scan of the events. Each row builds the list of rules it
   matches (``CASE WHEN <kind prefilter> AND <condition> AND NOT <exception>``
   per rule, evaluated only as far as the kind test lets it), with the
   message, dedup key and new-terms hash computed only for matching rows;
   rows matching nothing are dropped, the others unnested to (rule, event).
2. **group**: matches are folded per (rule, dedup key, tumbling window
   bucket) into alert rows: count, first and last time, the first event's
   fields, the first event ids. ``alert_id`` hashes rule, key and bucket, so
   the same alert gets the same id live, after a restart and in a backtest.

Windows are tumbling and aligned on the epoch (``bucket = floor(time /
window)``): deterministic, whatever the batch boundaries.
"""

from __future__ import annotations

from tetrapipe.ruleset.compiler import sql_literal
from tetrapipe.ruleset.model import Rule

#: event columns an alert copies from its first event
ALERT_EVENT_COLUMNS = ["node_name", "namespace", "pod", "container_name", "image", "exec_id", "process_binary",
                       "arguments", "parent_binary", "ancestor_binaries"]
#: how many event ids an alert row lists
DEFAULT_MAX_EVENT_IDS = 20
_FAR_FUTURE = "TIMESTAMP '9999-12-31 00:00:00'"


def match_sql(rules: list[Rule], source: str, where: str | None = None) -> str:
    """One scan of ``source``: a row per (rule index ``r``, matching event)."""
    kinds = sorted({k for r in rules for k in r.compiled.kinds})
    items = []
    for i, rule in enumerate(rules):
        c = rule.compiled
        term = f"CAST({c.term} AS UBIGINT)" if c.term else "NULL::UBIGINT"
        items.append(f"CASE WHEN {c.predicate()}\n  THEN struct_pack(_r := {i}, _message := {c.message}, "
                     f"_dedup_key := {c.dedup_key}, _term := {term}) END")
    filters = [f"kind IN ({', '.join(sql_literal(k) for k in kinds)})"]
    if where:
        filters.append(f"({where})")
    cols = ", ".join(["event_id", "time", "source_offset", *ALERT_EVENT_COLUMNS])
    return f"""
WITH _m AS (
    SELECT {cols}, list_filter([
{(','.join(items))}
    ], lambda _s: _s IS NOT NULL) AS _rs
    FROM {source}
    WHERE {' AND '.join(filters)}
)
SELECT * EXCLUDE (_rs), unnest(_rs, recursive := true) FROM _m WHERE len(_rs) > 0
"""


def first_terms_sql(source: str) -> str:
    """Keep, per (rule, term), only its earliest match (rows without a term pass through)."""
    return f"""
SELECT * FROM {source}
QUALIFY _term IS NULL
     OR row_number() OVER (PARTITION BY _r, _term ORDER BY time NULLS LAST, event_id) = 1
"""


def rules_table_sql(rules: list[Rule]) -> str:
    """A VALUES list of the rules' constant alert columns, indexed by ``_r``."""
    rows = []
    for i, r in enumerate(rules):
        rows.append(f"({i}, {sql_literal(r.id)}, {sql_literal(r.title)}, {sql_literal(r.severity)}, "
                    f"{sql_literal(list(r.mitre))}::VARCHAR[], {sql_literal(list(r.tags))}::VARCHAR[], "
                    f"{int(r.dedup.window_seconds) * 1_000_000}::BIGINT)")
    return ("SELECT * FROM (VALUES " + ", ".join(rows) +
            ") AS _v(_r, rule_id, title, severity, mitre, tags, _window_us)")


def group_sql(matches: str, rules_table: str, max_event_ids: int | None = DEFAULT_MAX_EVENT_IDS) -> str:
    """Fold matches into alert rows (ALERT_SCHEMA columns, plus ``_r`` and ``_bucket_end_us``)."""
    if rules_table.lstrip().upper().startswith("SELECT"):
        rules_table = f"({rules_table})"
    order = f"struct_pack(_t := coalesce(m.time, {_FAR_FUTURE}), _e := m.event_id)"
    first = "arg_min(struct_pack(" + ", ".join(f"{c} := m.{c}" for c in [*ALERT_EVENT_COLUMNS, "_message"]) + \
        f"), {order})"
    ids = "list(m.event_id ORDER BY m.time NULLS LAST, m.event_id)"
    if max_event_ids:
        ids += f"[1:{int(max_event_ids)}]"
    return f"""
WITH _b AS (
    SELECT m.*, r.rule_id, r.title, r.severity, r.mitre, r.tags, r._window_us,
           CASE WHEN m.time IS NULL THEN -1 ELSE epoch_us(m.time) // r._window_us END AS _bucket
    FROM {matches} m JOIN {rules_table} r USING (_r)
), _g AS (
    SELECT m._r, m.rule_id, any_value(m.title) AS title, any_value(m.severity) AS severity,
           any_value(m.mitre) AS mitre, any_value(m.tags) AS tags, m._dedup_key AS dedup_key, m._bucket,
           any_value(m._window_us) AS _window_us,
           min(m.time) AS time, max(m.time) AS last_time, count(*)::BIGINT AS count,
           {first} AS _first, {ids} AS event_ids
    FROM _b m
    GROUP BY m._r, m.rule_id, m._dedup_key, m._bucket
)
SELECT substr(md5(concat_ws('|', rule_id, dedup_key, CAST(_bucket AS VARCHAR))), 1, 20) AS alert_id,
       rule_id, title, severity, mitre, tags, time, last_time,
       {', '.join(f'_first.{c} AS {c}' for c in ALERT_EVENT_COLUMNS)},
       _first._message AS message, dedup_key, count, event_ids,
       _r, CASE WHEN _bucket < 0 THEN NULL ELSE (_bucket + 1) * _window_us END AS _bucket_end_us
FROM _g
ORDER BY time NULLS LAST, rule_id, dedup_key
"""
