"""Dropping the events the lake already holds, by ``event_id``, before the transforms see them.

A log read before is recognized by its first line (the lake's per-input
manifest), but the same event can reach a flow under another first line too:
a copy that starts elsewhere, the same events exported twice, a collector
restarted after a crash that sends again what Kafka already holds. The
ingest, run and process flows all check every batch here. See
docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tetrapipe.fsutil import atomic_write_bytes
from tetrapipe.lake.store import Lake

log = logging.getLogger("tetrapipe.ingest")

#: a segment's time range, in microseconds since the epoch (the unit of ``time``); None: unknown
TimeRange = tuple[int, int] | None


class EventDedup:
    """Drops the events whose ``event_id`` the lake already holds, or this process has sent to it.

    Why not a set of ids in Python: a lake holds hundreds of millions of events.
    Why this is enough: an event's id hashes its time, so a copy of an event has
    the same time and sits in the same ``date=`` partition. A batch is checked
    against the segments of its own dates only, and of those only the ones
    whose ``time`` range overlaps the batch's: new events, later than anything
    stored, cost a directory listing and no read at all. The overlapping
    segments are semi-joined in DuckDB, which also skips their row groups by
    time statistics. Batches handed to the writer and not committed yet are
    :meth:`hold`-ed here until their commit, so copies within one run are
    caught too; copies within one batch keep their first occurrence.

    A segment's time range comes from its Parquet footer (~2 ms each), once:
    segments never change and their names are unique, so the ranges are kept
    in memory and in ``_state/segment_times/<date>.json`` (a cache: a name no
    longer listed is dropped, a missing or unreadable file is rebuilt), so a
    one-shot ``ingest`` into a lake with thousands of segments a day does not
    read every footer again.

    One instance serves one writer at a time; :meth:`drop_seen` runs on one
    thread (the transforms'), :meth:`release` on the writer's.
    """

    #: dates whose segment time ranges are kept in memory (a run touches today; an ingest, its logs' days)
    MAX_DATES = 32
    #: footers read since the last save of a date's cache before it is saved again
    SAVE_EVERY = 64

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._con: duckdb.DuckDBPyConnection | None = None
        self._ranges: OrderedDict[str, dict[str, TimeRange]] = OrderedDict()
        self._unsaved: dict[str, int] = {}  # date -> footers read and not saved yet
        self._lock = threading.Lock()
        self._held: dict[int, pa.ChunkedArray] = {}
        self._next_token = 0

    def close(self) -> None:
        """Save the ranges learnt, those of the segments written since the last batch's check included."""
        for label in list(self._ranges):
            self._overlapping(label, None, None)  # (a listing: reads the footers of segments new since then)
        for label in list(self._unsaved):
            self._save(label)
        if self._con is not None:
            self._con.close()
            self._con = None

    def hold(self, ids: pa.ChunkedArray) -> int:
        """Remember ids sent to the writer until :meth:`release` (after their segment is committed)."""
        with self._lock:
            self._next_token += 1
            self._held[self._next_token] = ids
            return self._next_token

    def release(self, token: int) -> None:
        with self._lock:
            self._held.pop(token, None)

    def drop_seen(self, events: pa.Table) -> tuple[pa.Table, int]:
        """``events`` without those already stored or sent (and without repeats within it); how many went."""
        if events.num_rows == 0:
            return events, 0
        ids = events.column("event_id")
        drop = self._repeats(ids)
        with self._lock:  # before the lake is looked at: a batch released since is committed, so visible there
            held = [a for arr in self._held.values() for a in arr.chunks]
        if held:
            drop |= pc.fill_null(pc.is_in(ids, value_set=pa.concat_arrays(held)), False).to_numpy(zero_copy_only=False)
        stored = self._stored(events)
        if len(stored):
            drop |= pc.fill_null(pc.is_in(ids, value_set=stored), False).to_numpy(zero_copy_only=False)
        n = int(drop.sum())
        return (events.filter(pa.array(~drop)) if n else events), n

    @staticmethod
    def _repeats(ids: pa.ChunkedArray) -> np.ndarray:
        """True for each id seen earlier in the same batch."""
        drop = np.zeros(len(ids), dtype=bool)
        if pc.count_distinct(ids, mode="all").as_py() < len(ids):
            idx = pa.table({"id": ids, "i": np.arange(len(ids))})
            first = idx.group_by("id", use_threads=False).aggregate([("i", "min")]).column("i_min").to_numpy()
            drop[:] = True
            drop[first] = False
        return drop

    def _stored(self, events: pa.Table) -> pa.Array:
        """The batch's ids that the lake holds."""
        slim = events.select(["event_id", "time"])  # (filtering all ~80 columns would cost more than the rest)
        times = pc.cast(slim.column("time"), pa.timestamp("us"))
        days = pc.cast(times, pa.date32())  # the partition, as Lake.write computes it
        found: list[pa.Array] = []
        unique = pc.unique(days).to_pylist()
        for day in unique:
            if day is None:
                label, rows, lo, hi = "unknown", slim.filter(pc.is_null(times)), None, None
            else:
                mine = pc.fill_null(pc.equal(days, day), False)
                label, rows = day.isoformat(), slim if len(unique) == 1 else slim.filter(mine)
                span = pc.min_max(times if len(unique) == 1 else pc.filter(times, mine))
                lo, hi = span["min"].value, span["max"].value
            files = self._overlapping(label, lo, hi)
            if files:
                found.append(self._query(files, rows.column("event_id"), lo, hi))
        return pa.concat_arrays(found) if found else pa.array([], pa.string())

    def _overlapping(self, label: str, lo: int | None, hi: int | None) -> list[str]:
        """The segments of one date whose time range may hold an event between ``lo`` and ``hi``."""
        d = self.lake.table_dir("events") / f"date={label}"
        try:
            names = [n for n in os.listdir(d) if n.endswith(".parquet") and not n.startswith(".")]
        except FileNotFoundError:
            return []
        known = self._ranges.pop(label, None)
        if known is None:
            known = self._load(label)
        ranges: dict[str, TimeRange] = {}
        for name in names:  # (names no longer listed are forgotten: merged away by compaction)
            if name in known:
                ranges[name] = known[name]
            else:
                ranges[name] = _time_range(d / name)
                self._unsaved[label] = self._unsaved.get(label, 0) + 1
        self._ranges[label] = ranges
        if self._unsaved.get(label, 0) >= self.SAVE_EVERY:
            self._save(label)
        while len(self._ranges) > self.MAX_DATES:
            old, _ = next(iter(self._ranges.items()))
            if old in self._unsaved:
                self._save(old)
            self._ranges.pop(old)
        return [
            str(d / name)
            for name, rng in ranges.items()
            if rng is None or lo is None or hi is None or not (rng[1] < lo or rng[0] > hi)
        ]

    def _cache_path(self, label: str) -> os.PathLike[str]:
        return self.lake.root / "_state" / "segment_times" / f"{label}.json"

    def _load(self, label: str) -> dict[str, TimeRange]:
        try:
            body = json.loads(Path(self._cache_path(label)).read_bytes())
            return {str(k): (int(v[0]), int(v[1])) if v else None for k, v in body.items()}
        except (OSError, ValueError, TypeError, IndexError, AttributeError):
            return {}  # none yet, or damaged: rebuilt from the footers

    def _save(self, label: str) -> None:
        self._unsaved.pop(label, None)
        ranges = self._ranges.get(label)
        if ranges is None:
            return
        try:
            atomic_write_bytes(Path(self._cache_path(label)), json.dumps(ranges).encode())
        except OSError as exc:  # a cache: the next run reads the footers again
            log.debug("cannot save the segment time ranges of %s: %s", label, exc)

    def _query(self, files: list[str], ids: pa.ChunkedArray, lo: int | None, hi: int | None) -> pa.Array:
        if self._con is None:
            self._con = duckdb.connect()
            self._con.execute("SET threads = 2")
            self._con.execute("SET TimeZone = 'UTC'")
        where = "time IS NULL" if lo is None else "time BETWEEN make_timestamp($lo) AND make_timestamp($hi)"
        params = {"files": files} if lo is None else {"files": files, "lo": lo, "hi": hi}
        sql = (
            f"SELECT DISTINCT event_id FROM read_parquet($files) "
            f"WHERE {where} AND event_id IN (SELECT event_id FROM _batch_ids)"
        )
        self._con.register("_batch_ids", pa.table({"event_id": ids}))
        try:
            for attempt in range(3):
                try:
                    return self._con.sql(sql, params=params).to_arrow_table().column(0).combine_chunks()
                except duckdb.IOException:
                    # a segment merged away by compaction since the listing: look again
                    if attempt == 2:
                        raise
                    params["files"] = [f for f in params["files"] if os.path.exists(f)]
                    if not params["files"]:
                        break
            return pa.array([], pa.string())
        finally:
            self._con.unregister("_batch_ids")


def _time_range(path: os.PathLike[str]) -> TimeRange:
    """(min, max) of a segment's ``time`` in microseconds, from its footer; None when unknown (always read)."""
    try:
        md = pq.read_metadata(path)
    except (OSError, pa.ArrowException):
        return None  # being merged away, or unreadable: let the query decide
    lo = hi = None
    for g in range(md.num_row_groups):
        rg = md.row_group(g)
        col = next((rg.column(c) for c in range(rg.num_columns) if rg.column(c).path_in_schema == "time"), None)
        st = col.statistics if col is not None else None
        if st is None or not st.has_min_max:
            return None
        a = pa.scalar(st.min, pa.timestamp("us")).value
        b = pa.scalar(st.max, pa.timestamp("us")).value
        lo = a if lo is None else min(lo, a)
        hi = b if hi is None else max(hi, b)
    return None if lo is None or hi is None else (lo, hi)


__all__ = ["EventDedup", "TimeRange"]
