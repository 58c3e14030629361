"""``tetrapipe rules backtest``: what the rules would have said about the history.

The same two statements as live detection (:mod:`tetrapipe.ruleset.plan`),
run once over the ``events`` view instead of per micro-batch: one row per
alert (rule, dedup key, window), with the total count. New-terms rules keep
each combination's earliest event over the whole range, as the detector's
seen-set does over a stream. Live alert rows folded by ``alert_id`` (their
counts summed) equal these rows, which is what makes a backtest a faithful
preview of a rule change.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from tetrapipe.ruleset.model import Rule
from tetrapipe.ruleset.plan import DEFAULT_MAX_EVENT_IDS, first_terms_sql, group_sql, match_sql, rules_table_sql
from tetrapipe.schema import ALERT_SCHEMA

if TYPE_CHECKING:
    from tetrapipe.lake import Lake


def _ts(value: dt.datetime | str) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        value = value.isoformat(sep=" ")
    return "TIMESTAMP '" + str(value).replace("'", "''") + "'"


def backtest_sql(
    rules: list[Rule],
    since: dt.datetime | str | None = None,
    until: dt.datetime | str | None = None,
    max_event_ids: int | None = DEFAULT_MAX_EVENT_IDS,
) -> str:
    where = []
    if since is not None:
        where.append(f"time >= {_ts(since)}")
    if until is not None:
        where.append(f"time < {_ts(until)}")
    matches = f"({match_sql(rules, 'events', ' AND '.join(where) or None)})"
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
    if not rules:
        return ALERT_SCHEMA.empty_table()
    sql = backtest_sql(rules, since, until, max_event_ids)
    table = run(lake, lambda con: con.sql(sql).to_arrow_table())  # an unreadable data file is stepped over
    return table.drop_columns(["_r", "_bucket_end_us"]).cast(ALERT_SCHEMA)
