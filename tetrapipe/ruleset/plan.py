"""The SQL that evaluates a rule set: one scan for all rules, then one grouping.

A backtest runs two statements over the ``events`` view of the history, and
live detection evaluates the same predicates, keys and grouping over each
micro-batch (a registered Arrow table), which is why they agree:

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

Live detection splits the work differently, into two smaller statements: :func:`mask_sql` (the predicates alone, as a bit per rule) and
:func:`live_group_sql` over the matching rows only, with the keys and messages
of the rules that matched, and a message for each alert row's first event
only. Why: DuckDB plans a statement on every batch at a cost that grows with
its text, however few rows it scans, and a message costs microseconds per
row. The alerts are the same.
"""

from __future__ import annotations

from tetrapipe.ruleset.compiler import COLUMNS, sql_literal, sql_words
from tetrapipe.ruleset.model import Rule

#: event columns an alert copies from its first event
ALERT_EVENT_COLUMNS = [
    "node_name",
    "namespace",
    "pod",
    "container_name",
    "image",
    "exec_id",
    "process_binary",
    "arguments",
    "parent_binary",
    "ancestor_binaries",
]
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
        items.append(
            f"CASE WHEN {c.predicate()}\n  THEN struct_pack(_r := {i}, _message := {c.message}, "
            f"_dedup_key := {c.dedup_key}, _term := {term}, _distinct := {_distinct(rule)}, "
            f"_kterm := {_kterm(rule)}, _learn_us := {int(c.learn_us)}::BIGINT) END"
        )
    filters = [f"kind IN ({', '.join(sql_literal(k) for k in kinds)})"]
    if where:
        filters.append(f"({where})")
    cols = ", ".join(["event_id", "time", "source_offset", *ALERT_EVENT_COLUMNS])
    return f"""
WITH _m AS (
    SELECT {cols}, list_filter([
{(",".join(items))}
    ], lambda _s: _s IS NOT NULL) AS _rs
    FROM {source}
    WHERE {" AND ".join(filters)}
)
SELECT * EXCLUDE (_rs), unnest(_rs, recursive := true) FROM _m WHERE len(_rs) > 0
"""


def _kterm(rule: Rule) -> str:
    """A first-seen rule's key hash (its learning period runs from the key's first match); NULL for the others."""
    k = rule.compiled.learn_key
    return f"CAST({k} AS UBIGINT)" if k else "NULL::UBIGINT"


def _distinct(rule: Rule) -> str:
    """A distinct-count rule's counted value as text (NULL for the others)."""
    d = rule.compiled.distinct
    return f"CAST({d} AS VARCHAR)" if d else "NULL::VARCHAR"


#: rules per mask column of :func:`mask_sql` (bits 0..61 of a BIGINT: no sign bit, no overflow)
MASK_BITS = 62


def rule_columns(rules: list[Rule]) -> list[str]:
    """The event columns the rules' SQL reads, plus those every match row carries (schema order).

    Why: registering only these columns keeps DuckDB from converting the other
    ~30 (``raw`` above all) for every batch. Over-inclusion is harmless (a word
    that happens to be a column name); the detector falls back to every column
    if a rule still names one this missed.
    """
    words: set[str] = {"event_id", "time", "source_offset", "kind", *ALERT_EVENT_COLUMNS}
    for rule in rules:
        c = rule.compiled
        for text in (c.predicate(), c.message, c.dedup_key, c.term or ""):
            words |= sql_words(text)  # "quoted" identifiers too
    return [name for name in COLUMNS if name in words]


def mask_sql(rules: list[Rule], source: str) -> str:
    """Step 1, live: which rules each row matches, as bits (``_m0`` = rules 0..61, ``_m1`` = 62..123, ...).

    Only the predicates, no message or key: cheap to plan. ``_i`` is the row's
    position in ``source``; rows of kinds no rule reads are not scanned. A
    new-terms rule ``i`` also gets its term hash, ``_t{i}``, where it matches, so
    that the seen-before check can run before the grouping statement.
    """
    kinds = sorted({k for r in rules for k in r.compiled.kinds})
    cols = []
    for start in range(0, len(rules), MASK_BITS):
        terms = [
            f"CASE WHEN {rule.compiled.predicate()}\n  THEN {1 << bit}::BIGINT ELSE 0::BIGINT END"
            for bit, rule in enumerate(rules[start : start + MASK_BITS])
        ]
        cols.append(" + ".join(terms) + f" AS _m{start // MASK_BITS}")
    for i, rule in enumerate(rules):
        c = rule.compiled
        if c.term:
            cols.append(f"CASE WHEN {c.predicate()}\n  THEN CAST({c.term} AS UBIGINT) END AS _t{i}")
        if c.learn_key:
            cols.append(f"CASE WHEN {c.predicate()}\n  THEN {_kterm(rule)} END AS _k{i}")
    return f"SELECT _i, {', '.join(cols)}\nFROM {source}\nWHERE kind IN ({', '.join(sql_literal(k) for k in kinds)})"


#: the order of :func:`group_sql`'s rows (ascending, NULLs last), unique per row: time, rule, dedup key
LIVE_GROUP_ORDER = ("time", "rule_id", "dedup_key")


def live_group_sql(
    hits: str, rules_table: str, rules: list[Rule], which: list[int], max_event_ids: int | None = DEFAULT_MAX_EVENT_IDS
) -> str:
    """Steps 1b and 2, live: :func:`group_sql`'s rows from the rows :func:`mask_sql` kept.

    ``hits`` holds those rows with their ``_m*`` columns (bits of matches a
    new-terms rule had seen before already cleared); ``which`` are the indices
    (into ``rules``) of the rules with a bit set. A rule's test is its bit, so
    no predicate runs twice. Same groups, counts, first event (by time, then
    event id) and event ids as :func:`group_sql`. The first event of each group
    is named by its ``_i`` (``_first``), not joined back: the caller takes its
    columns from the batch in Arrow and builds the message of that event only
    (:func:`live_message_sql`), which is all an alert row shows (``group_sql``
    builds one per match and keeps the first). Joining the matching rows back
    here, every column of them, cost a fifth of the statement. The rows come in
    no particular order: the caller sorts them by :data:`LIVE_GROUP_ORDER` (in
    DuckDB the sort carried every column, messages and event id lists
    included: ~15 ms of a batch's ~1,500 alert rows). Each match carries its
    rule's window bucket from its own constant; the rules' other columns are
    joined to the groups, not to every match (whose lists they copied).
    """
    if rules_table.lstrip().upper().startswith("SELECT"):
        rules_table = f"({rules_table})"
    # one row per (match, rule): the hits crossed with the matched rules' constants, kept where the rule's bit
    # is set; each rule's key and counted value under a CASE on the rule (evaluated on that rule's rows only).
    # A list of structs per row, filtered by a lambda and unnested, gave the same rows at ~1.5x the cost.
    groups = max(i // MASK_BITS for i in which) + 1
    constants = ", ".join(
        f"({i}, {_window_us(rules[i])}::BIGINT"
        + "".join(f", {(1 << (i % MASK_BITS)) if i // MASK_BITS == g else 0}::BIGINT" for g in range(groups))
        + ")"
        for i in which
    )
    names = ", ".join(["_tp_r", "_tp_w", *(f"_tp_b{g}" for g in range(groups))])
    bit = " OR ".join(f"(_m{g} & _x._tp_b{g}) <> 0" for g in range(groups))
    key = "".join(f" WHEN {i} THEN {rules[i].compiled.dedup_key}" for i in which)
    counted = "".join(f" WHEN {i} THEN {_distinct(rules[i])}" for i in which)
    order = f"struct_pack(_t := coalesce(m.time, {_FAR_FUTURE}), _e := m.event_id)"
    ids = "list(m.event_id ORDER BY m.time NULLS LAST, m.event_id)"
    if max_event_ids:
        ids += f"[1:{int(max_event_ids)}]"
    return f"""
WITH _k AS (
    SELECT _i, time, event_id, _x._tp_r AS _r, CASE _x._tp_r{key} END AS _dedup_key,
           CASE _x._tp_r{counted} END AS _distinct, {_bucket("time", "_x._tp_w")} AS _bucket
    FROM {hits}, (VALUES {constants}) AS _x({names})
    WHERE {bit}
), _g AS (
    SELECT m._r AS _g_r, m._dedup_key AS _g_dedup_key, m._bucket AS _g_bucket,
           min(m.time) AS _g_time, max(m.time) AS _g_last_time, count(*)::BIGINT AS _g_count,
           arg_min(m._i, {order}) AS _g_first, {ids} AS _g_event_ids,
           list(DISTINCT m._distinct) FILTER (WHERE m._distinct IS NOT NULL) AS _g_distinct
    FROM _k m
    GROUP BY m._r, m._dedup_key, m._bucket
)
SELECT substr(md5(concat_ws('|', r.rule_id, _g_dedup_key, CAST(_g_bucket AS VARCHAR))), 1, 20) AS alert_id,
       r.rule_id AS rule_id, r.title AS title, r.severity AS severity, r.mitre AS mitre, r.tags AS tags,
       _g_time AS time, _g_last_time AS last_time, _g_first AS _first,
       _g_dedup_key AS dedup_key, _g_count AS count, _g_event_ids AS event_ids, _g_r AS _r,
       CASE WHEN _g_bucket < 0 THEN NULL ELSE (_g_bucket + 1) * r._window_us END AS _bucket_end_us,
       _g_distinct AS _distinct
FROM _g JOIN {rules_table} r ON r._r = _g._g_r
"""


def live_message_sql(first: str, rules: list[Rule], which: list[int]) -> str:
    """Each row's message: ``first`` holds the first events of :func:`live_group_sql`'s groups and their ``_r``."""
    whens = "\n".join(f"    WHEN {i} THEN {rules[i].compiled.message}" for i in which)
    return f"SELECT CASE _r\n{whens}\nEND AS message FROM {first}"


def threshold_hunt_sql(rule: Rule) -> str:
    """A threshold rule as one query over ``events``: its windows that reach the count, as the alerts do."""
    c = rule.compiled
    w = int(rule.dedup.window_seconds) * 1_000_000
    n = f"count(DISTINCT {c.distinct})" if c.distinct else "count(*)"
    return (
        f"SELECT {c.dedup_key} AS key, make_timestamp((epoch_us(time) // {w}) * {w}) AS window_start,\n"
        f"       count(*) AS events, {n} AS counted, min(time) AS first_time, max(time) AS last_time\n"
        f"FROM events\nWHERE {c.predicate()}\nGROUP BY 1, 2\nHAVING {n} >= {int(c.min_count)}\nORDER BY 2, 1;"
    )


def first_terms_sql(source: str) -> str:
    """Keep, per (rule, term), only its earliest match (rows without a term pass through).

    A first-seen rule's earliest match is dropped too while its key is still
    learning: within ``_learn_us`` of the key's first match (``_kfirst``).
    """
    return f"""
SELECT * FROM (SELECT *, min(time) OVER (PARTITION BY _r, _kterm) AS _kfirst FROM {source})
QUALIFY _term IS NULL
     OR (row_number() OVER (PARTITION BY _r, _term ORDER BY time NULLS LAST, event_id) = 1
         AND (_learn_us = 0 OR epoch_us(time) >= epoch_us(_kfirst) + _learn_us))
"""


def _window_us(rule: Rule) -> int:
    """A rule's dedup window in microseconds: the one width its alert buckets have, wherever they are cut."""
    return int(rule.dedup.window_seconds) * 1_000_000


def _bucket(time: str, window_us: str) -> str:
    """The dedup window a match falls in (-1 without a time), as the live and the backtest groupings number it."""
    return f"CASE WHEN {time} IS NULL THEN -1 ELSE epoch_us({time}) // {window_us} END"


def rules_table_sql(rules: list[Rule], which: list[int] | tuple[int, ...] | None = None) -> str:
    """A VALUES list of the rules' constant alert columns, indexed by ``_r``.

    ``which``: only those rules (indices into ``rules``), for a statement that groups their matches
    only: every constant of the list is an expression DuckDB sets up at each execution.
    """
    rows = []
    wanted = None if which is None else set(which)
    for i, r in enumerate(rules):
        if wanted is not None and i not in wanted:
            continue
        rows.append(
            f"({i}, {sql_literal(r.id)}, {sql_literal(r.title)}, {sql_literal(r.severity)}, "
            f"{sql_literal(list(r.mitre))}::VARCHAR[], {sql_literal(list(r.tags))}::VARCHAR[], "
            f"{_window_us(r)}::BIGINT, {int(r.compiled.min_count)}::BIGINT, "
            f"{'TRUE' if r.compiled.distinct else 'FALSE'})"
        )
    return (
        "SELECT * FROM (VALUES "
        + ", ".join(rows)
        + ") AS _v(_r, rule_id, title, severity, mitre, tags, _window_us, _min, _by_distinct)"
    )


def group_sql(
    matches: str, rules_table: str, max_event_ids: int | None = DEFAULT_MAX_EVENT_IDS, *, having: bool = True
) -> str:
    """Fold matches into alert rows (ALERT_SCHEMA columns, plus ``_r``, ``_bucket_end_us`` and ``_distinct``).

    ``having``: only the windows that reach a threshold rule's count (all windows of the other rules);
    without it, every window (what a restarted detector adds up, see ``Detector.restore``).
    """
    if rules_table.lstrip().upper().startswith("SELECT"):
        rules_table = f"({rules_table})"
    order = f"struct_pack(_t := coalesce(m.time, {_FAR_FUTURE}), _e := m.event_id)"
    first = (
        "arg_min(struct_pack(" + ", ".join(f"{c} := m.{c}" for c in [*ALERT_EVENT_COLUMNS, "_message"]) + f"), {order})"
    )
    ids = "list(m.event_id ORDER BY m.time NULLS LAST, m.event_id)"
    if max_event_ids:
        ids += f"[1:{int(max_event_ids)}]"
    return f"""
WITH _b AS (
    SELECT m.*, r.rule_id, r.title, r.severity, r.mitre, r.tags, r._window_us, r._min, r._by_distinct,
           {_bucket("m.time", "r._window_us")} AS _bucket
    FROM {matches} m JOIN {rules_table} r USING (_r)
), _g AS (
    SELECT m._r, m.rule_id, any_value(m.title) AS title, any_value(m.severity) AS severity,
           any_value(m.mitre) AS mitre, any_value(m.tags) AS tags, m._dedup_key AS dedup_key, m._bucket,
           any_value(m._window_us) AS _window_us,
           min(m.time) AS time, max(m.time) AS last_time, count(*)::BIGINT AS count,
           {first} AS _first, {ids} AS event_ids, any_value(m._min) AS _min,
           CASE WHEN any_value(m._by_distinct) THEN count(DISTINCT m._distinct) ELSE count(*) END AS _n,
           list(DISTINCT m._distinct) FILTER (WHERE m._distinct IS NOT NULL) AS _distinct
    FROM _b m
    GROUP BY m._r, m.rule_id, m._dedup_key, m._bucket
)
SELECT substr(md5(concat_ws('|', rule_id, dedup_key, CAST(_bucket AS VARCHAR))), 1, 20) AS alert_id,
       rule_id, title, severity, mitre, tags, time, last_time,
       {", ".join(f"_first.{c} AS {c}" for c in ALERT_EVENT_COLUMNS)},
       _first._message AS message, dedup_key, count, event_ids,
       _r, CASE WHEN _bucket < 0 THEN NULL ELSE (_bucket + 1) * _window_us END AS _bucket_end_us, _distinct
FROM _g
{"WHERE _n >= _min" if having else ""}
ORDER BY time NULLS LAST, rule_id, dedup_key
"""
