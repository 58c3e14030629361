"""What the stream state is rebuilt from after a restart: reads of the history for stateful transforms.

The process table (ancestry) needs the recent processes and exits; the
detector needs the new-terms combinations already seen and the open alert
windows. The transforms never open the lake: a flow reads these here and hands
them over (see :mod:`tetrapipe.transforms.base`). All of it goes through the
lake's DuckDB views (:mod:`tetrapipe.lake.views`: one snapshot of each Delta
table), so a lake on an object store restores like a local one. See
``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from tetrapipe.lake import views
from tetrapipe.lake.store import Lake

#: one row per process seen since ``$since`` (its exec when there is one) plus the exits, in
#: time order, without ``raw``: enough for every link the process table had (the rows' own
#: ancestor columns give the links above)
RECENT_PROCESSES_SQL = """
WITH recent AS (
    SELECT time, kind, node_name, exec_id, parent_exec_id, pid, process_binary, parent_binary, parent_pid,
           ancestor_exec_ids, ancestor_binaries
    FROM events
    WHERE exec_id IS NOT NULL AND time >= $since
),
firsts AS (
    SELECT * FROM recent
    QUALIFY row_number() OVER (PARTITION BY exec_id ORDER BY kind = 'process_exec' DESC, time) = 1
)
SELECT * FROM firsts
UNION ALL
SELECT * FROM recent WHERE kind = 'process_exit'
ORDER BY time
"""

#: default look-back of :func:`recent_processes`: an hour of event time
PROCESS_LOOKBACK = dt.timedelta(hours=1)


def _open(lake: Lake | str | Path) -> Lake:
    return lake if isinstance(lake, Lake) else Lake(os.fspath(lake))


def lake_exists(lake: Lake | str | Path) -> bool:
    """Whether the lake holds any table (a first run has nothing to restore)."""
    return _open(lake).exists()


def recent_processes(
    lake: Lake | str | Path, since: dt.datetime | dt.timedelta | None = None, chunk_rows: int = 200_000
) -> Iterator[pa.Table]:
    """The rows a process table learns from, in chunks of ``chunk_rows``.

    ``since``: a time, or a duration back from the newest event in the lake
    (event time, so a lake of replayed old logs works too); default
    :data:`PROCESS_LOOKBACK`. Nothing when the lake has no events.
    """
    con = views.connect(_open(lake))
    try:
        if not isinstance(since, dt.datetime):
            back = since if isinstance(since, dt.timedelta) else PROCESS_LOOKBACK
            newest = con.sql("SELECT max(time) FROM events").fetchall()[0][0]
            if newest is None:
                return
            since = newest - back
        reader = con.sql(RECENT_PROCESSES_SQL, params={"since": since}).to_arrow_reader(chunk_rows)
        for batch in reader:
            yield pa.Table.from_batches([batch])
    finally:
        con.close()


def seen_terms(lake: Lake | str | Path, term_sql: str) -> list[tuple[int, str]]:
    """Distinct ``(_r, _term)`` rows of a new-terms query over the ``events`` view."""
    con = views.connect(_open(lake))
    try:
        return con.sql(f"SELECT DISTINCT _r, _term FROM ({term_sql}) WHERE _term IS NOT NULL").fetchall()
    finally:
        con.close()


def key_first_seen(lake: Lake | str | Path, term_sql: str) -> list[tuple[int, int, int]]:
    """``(_r, _kterm, first match in microseconds)`` of a first-seen query: when each key's learning began."""
    con = views.connect(_open(lake))
    try:
        return con.sql(
            f"SELECT _r, _kterm, min(epoch_us(time)) FROM ({term_sql}) WHERE _kterm IS NOT NULL GROUP BY ALL"
        ).fetchall()
    finally:
        con.close()


def distinct_before(lake: Lake | str | Path, sql: str, lookback: dt.timedelta | None) -> list[tuple]:
    """Rows of ``sql`` (with ``$since``: ``lookback`` before the newest event), e.g. values seen before it."""
    table = chain_rows(lake, sql, lookback)
    if table is None:
        return []
    return list(zip(*(table.column(i).to_pylist() for i in range(table.num_columns)), strict=True))


def chain_rows(lake: Lake | str | Path, sql: str, lookback: dt.timedelta | None) -> pa.Table | None:
    """The step rows of sequence rules in the last ``lookback`` of event time (``sql`` has ``$since``).

    Why event time back from the newest event: a partial chain can only
    complete within its span of the step that started it, so the span (plus
    the reorder tolerance) before the newest stored event holds every chain
    that a later event can still complete. None when the lake has no events.
    """
    con = views.connect(_open(lake))
    try:
        newest = con.sql("SELECT max(time) FROM events").fetchall()[0][0]
        if newest is None:
            return None
        since = newest - (lookback or dt.timedelta(hours=1))
        return con.sql(sql, params={"since": since}).to_arrow_table()
    finally:
        con.close()


def newest_alert_ids(lake: Lake | str | Path, limit: int) -> list[str]:
    """The ``limit`` alert ids whose last event is newest, oldest first."""
    if limit <= 0:
        return []
    con = views.connect(_open(lake))
    try:
        rows = con.sql(
            "SELECT alert_id, max(last_time) FROM alerts GROUP BY alert_id ORDER BY 2 NULLS FIRST"
        ).fetchall()
    finally:
        con.close()
    return [aid for aid, _last in rows[-limit:]]


__all__ = [
    "PROCESS_LOOKBACK",
    "chain_rows",
    "distinct_before",
    "key_first_seen",
    "RECENT_PROCESSES_SQL",
    "lake_exists",
    "newest_alert_ids",
    "recent_processes",
    "seen_terms",
]
