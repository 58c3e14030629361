"""``tetrapipe rules backtest``: what the rules would have said about the history.

The same two statements as live detection (:mod:`tetrapipe.ruleset.plan`),
run once over the ``events`` view instead of per micro-batch: one row per
alert (rule, dedup key, window), with the total count. New-terms rules keep
each combination's earliest event over the whole range, as the detector's
seen-set does over a stream. Live alert rows folded by ``alert_id`` (their
counts summed) equal these rows, which is what makes a backtest a faithful
preview of a rule change.

Sequence rules (``sequence:``) go through the live chain engine
(:func:`sequence_backtest`) fed the step rows of the history in time order:
one row per completed chain, with the alert id live detection gave it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from tetrapipe.ruleset.model import Rule
from tetrapipe.ruleset.plan import DEFAULT_MAX_EVENT_IDS, first_terms_sql, group_sql, match_sql, rules_table_sql
from tetrapipe.schema import ALERT_SCHEMA
from tetrapipe.sqltext import sql_string

if TYPE_CHECKING:
    from tetrapipe.lake import Lake


def _ts(value: dt.datetime | str) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        value = value.isoformat(sep=" ")
    return "TIMESTAMP " + sql_string(str(value))


def _span(since: dt.datetime | str | None, until: dt.datetime | str | None) -> str | None:
    where = []
    if since is not None:
        where.append(f"time >= {_ts(since)}")
    if until is not None:
        where.append(f"time < {_ts(until)}")
    return " AND ".join(where) or None


def backtest_sql(
    rules: list[Rule],
    since: dt.datetime | str | None = None,
    until: dt.datetime | str | None = None,
    max_event_ids: int | None = DEFAULT_MAX_EVENT_IDS,
) -> str:
    matches = f"({match_sql(rules, 'events', _span(since, until))})"
    if any(r.compiled.term for r in rules):
        matches = f"({first_terms_sql(matches + ' AS _all')})"
    return group_sql(matches, rules_table_sql(rules), max_event_ids)


def backtest(
    lake: Lake | str | Path,
    rules: list[Rule],
    since: dt.datetime | str | None = None,
    until: dt.datetime | str | None = None,
    max_event_ids: int | None = DEFAULT_MAX_EVENT_IDS,
) -> pa.Table:
    """One row per alert the rules raise over the lake's events in [since, until) (ALERT_SCHEMA)."""
    from tetrapipe.lake.views import run

    rules = [r for r in rules if r.compiled is not None]
    single = [r for r in rules if r.sequence is None]
    chained = [r for r in rules if r.sequence is not None]
    tables = []
    if single:
        sql = backtest_sql(single, since, until, max_event_ids)
        table = run(lake, lambda con: con.sql(sql).to_arrow_table())  # an unreadable data file is stepped over
        tables.append(table.drop_columns(["_r", "_bucket_end_us", "_distinct"]).cast(ALERT_SCHEMA))
    if chained:
        tables.append(sequence_backtest(lake, chained, since, until))
    if not tables:
        return ALERT_SCHEMA.empty_table()
    return pa.concat_tables(tables).sort_by([("time", "ascending"), ("rule_id", "ascending")])


def sequence_backtest(
    lake: Lake | str | Path,
    rules: list[Rule],
    since: dt.datetime | str | None = None,
    until: dt.datetime | str | None = None,
) -> pa.Table:
    """The chains of sequence rules over the history: the step rows, in time order, through the live engine.

    Why the engine and not one query: which partial chain an event continues
    depends on what came before it (one per step and key, the newest), which a
    join cannot say; fed the same rows in the same order, the engine that runs
    live gives the same chains, with the same alert ids.
    """
    from tetrapipe.lake.views import run
    from tetrapipe.transforms.chains import ChainEngine

    engine = ChainEngine(rules, max_partials=10**9)
    sql = engine.history_sql(_span(since, until))
    out = []
    for batch in run(lake, lambda con: list(con.sql(sql).to_arrow_reader(100_000))):
        out.append(engine.feed(pa.Table.from_batches([batch])))
    return pa.concat_tables(out) if out else ALERT_SCHEMA.empty_table()
