"""One-shot load of export logs into the lake (``tetrapipe ingest``).

The data flow is the same as the stream processor's, minus Kafka:
lines -> normalize -> transforms (ancestry, TLS, rules) -> lake. Each input is
identified by the fingerprint of its first line and the lake remembers how
many of its lines are in; ingesting it again (or its rotated or gzip'd copy,
or a longer version of it) only adds lines not seen before.

Any input, any fault: never a crash
-----------------------------------

One bad thing costs that thing, not the run. A line that is not an event is a
reject (the normalizer bisects a batch DuckDB chokes on down to the line). An
input that cannot be opened, or breaks while it is read (a gzip cut short, a
read error), keeps every complete line before the break and ends with one
reject saying where and why; the next input is read as usual. A transform that
raises on a batch is run again on halves of it until the event it cannot take
stands alone; that event becomes a reject ("transform … failed on this
event") and the others go on. A transform that fails on more than
:data:`MAX_TRANSFORM_REJECTS` events of one batch is broken rather than fed a
bad event, and rejecting everything would hide that: the ingest stops with a
:class:`TransformError`, and nothing after the failed batch is committed.

Under ``follow`` (``tetrapipe run``), a gzip whose end is missing and that was
written to in the last :data:`GZIP_WRITING_SECONDS` is a backup still being
compressed: its complete lines go in, it is not marked done, and a later poll
reads on from there. Only an older one is truncated for good: one reject, and
it is done.

The same event from two files is stored once
--------------------------------------------

The per-input manifest recognizes a log read before by its first line, but an
event can reach the lake under another first line too: a copy that starts
elsewhere, the same events exported twice, a copy of a log taken before it
was truncated. So every event is also checked by its ``event_id`` (a hash of
what the event says, its time included) before the transforms see it: see
:class:`EventDedup`. ``force`` skips both checks.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tetrapipe.lake.store import AsyncWriter, Lake, atomic_write_bytes
from tetrapipe.schema import REJECT_SCHEMA
from tetrapipe.sources.files import GzipStream, InputFault, InputFile, PeekableInput, fingerprint, open_input
from tetrapipe.sources.lines import prefetch, read_line_batches
from tetrapipe.transforms.base import BatchTransform
from tetrapipe.transforms.normalize import Normalizer, make_rejects
from tetrapipe.worker import OrderedWorker

INGEST_CHUNK_BYTES = 24 * 1024 * 1024
#: a transform that fails on more events than this in one batch is broken: the ingest stops
MAX_TRANSFORM_REJECTS = 16
#: a gzip whose end is missing and that was written to this recently is still being compressed (``run``)
GZIP_WRITING_SECONDS = 300.0

log = logging.getLogger("tetrapipe.ingest")


class TransformError(RuntimeError):
    """A transform fails on so many events of one batch that it is broken, not fed a bad event."""


@dataclass
class RejectNote:
    source: str
    line_no: int | None
    reason: str


@dataclass
class RunAlert:
    """One alert as this run wrote it: its first row, with the counts of all its rows added up.

    The detector writes a follow-up row with the same ``alert_id`` when a later
    batch adds events to an open alert; folding them here gives one line per
    alert. ``rows`` tells the report whether the lake held the alert before.
    """

    alert_id: str
    rule_id: str
    severity: str
    time: object
    namespace: str | None
    pod: str | None
    node_name: str | None
    message: str | None
    count: int = 0
    rows: int = 0


_RUN_ALERT_COLUMNS = ["alert_id", "rule_id", "severity", "time", "namespace", "pod", "node_name", "message", "count"]


@dataclass
class IngestStats:
    files: int = 0
    lines: int = 0
    bytes: int = 0
    events: int = 0
    rejects: int = 0
    skipped_lines: int = 0
    skipped_files: int = 0
    #: events not stored because the lake (or this run) already held their event_id; counted in skipped_lines too
    duplicates: int = 0
    seconds: float = 0.0
    by_kind: Counter[str] = field(default_factory=Counter)
    extra_rows: Counter[str] = field(default_factory=Counter)
    first_rejects: list[RejectNote] = field(default_factory=list)
    #: the alerts this run wrote to the lake, by alert_id (what ``ingest`` prints, not the whole lake's)
    alerts: dict[str, RunAlert] = field(default_factory=dict)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


class ProgressSink:
    """What the CLI shows while ingesting; the default shows nothing."""

    def start_input(self, inp: InputFile, size: int | None) -> None: ...
    def advance(self, position: int) -> None: ...
    def batch(self, events: pa.Table, extra: dict[str, pa.Table]) -> None: ...
    def end_input(self) -> None: ...


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


def _input_size(inp: InputFile, stream: bool) -> int | None:
    if stream:
        return None  # a pipe's size says nothing about what will come through it
    try:
        return os.path.getsize(inp.path)
    except OSError:
        return None


def ingest(
    inputs: Iterable[InputFile],
    lake: Lake,
    *,
    transforms: list[BatchTransform] | None = None,
    progress: ProgressSink | None = None,
    force: bool = False,
    chunk_bytes: int = INGEST_CHUNK_BYTES,
    keep_rejects: int = 20,
    follow: bool = False,
    dedup: EventDedup | None = None,
) -> IngestStats:
    """Ingest ``inputs`` into ``lake``; returns what happened, rejects included.

    ``follow``: the inputs may still be growing (``tetrapipe run``): a last line
    without its newline is left for the next call instead of being ingested
    half-written, a plain file is resumed by seeking to the byte offset
    already ingested rather than re-reading it, and a gzip still being
    written is read on at a later call. ``dedup``: the event-id check to use
    (a caller that ingests again and again passes one, so what it learnt about
    the lake's segments is kept); by default one for this call, none with
    ``force``.
    """
    transforms = transforms or []
    progress = progress or ProgressSink()
    stats = IngestStats()
    started = time.perf_counter()
    own_dedup = dedup is None and not force
    if own_dedup:
        dedup = EventDedup(lake)
    normalizer = Normalizer()
    writer = AsyncWriter(lake)
    # transforms run on their own thread, in order, while the next chunk is normalized:
    # the detector's and the normalizer's DuckDB work then overlap on two cores
    stage = OrderedWorker("transforms")
    stages = _Stages(stage, writer, None if force else dedup)
    try:
        for inp in inputs:
            stats.files += 1
            _ingest_one(
                inp, lake, normalizer, stages, transforms, progress, stats, force, chunk_bytes, keep_rejects, follow
            )
    finally:
        try:
            try:
                stage.close()
            finally:
                writer.close()
        finally:
            normalizer.close()
            if own_dedup and dedup is not None:
                dedup.close()
    stats.skipped_lines += stats.duplicates
    stats.seconds = time.perf_counter() - started
    return stats


@dataclass
class _Stages:
    """Where a normalized chunk goes: the transforms' thread, then the lake writer's."""

    transforms: OrderedWorker
    writer: AsyncWriter
    dedup: EventDedup | None = None
    fingerprints: set[str] = field(default_factory=set)

    def settle(self, fp: str) -> None:
        """Before reading the lake's position for ``fp``: commit what this run already sent of it.

        Only needed when one run meets the same log twice (a rotated copy next
        to its gzip'd backup); otherwise the pipeline keeps flowing.
        """
        if fp in self.fingerprints:
            self.transforms.flush()
            self.writer.flush()
        self.fingerprints.add(fp)


@dataclass
class _Job:
    """One input's context for the chunks it sends down the pipeline."""

    label: str
    transforms: list[BatchTransform]
    writer: AsyncWriter
    dedup: EventDedup | None
    progress: ProgressSink
    stats: IngestStats
    keep_rejects: int


def _ingest_one(
    inp: InputFile,
    lake: Lake,
    normalizer: Normalizer,
    stages: _Stages,
    transforms: list[BatchTransform],
    progress: ProgressSink,
    stats: IngestStats,
    force: bool,
    chunk_bytes: int,
    keep_rejects: int,
    follow: bool = False,
) -> None:
    job = _Job(inp.label, transforms, stages.writer, stages.dedup, progress, stats, keep_rejects)
    stream_input = inp.is_stream
    try:
        stream = open_input(inp)
    except FileNotFoundError:
        if follow:
            # listed a moment ago, gone now: a backup being compressed (its .gz, same first line,
            # is picked up from the same position at the next poll) or deleted by rotation
            log.info("%s disappeared before it could be read (rotated); the next poll looks again", inp.label)
        else:
            _send_rejects(stages, job, "disappeared before it could be read")
        return
    except OSError as exc:
        if follow:
            log.warning("%s cannot be read (%s); the next poll tries again", inp.label, exc.strerror or exc)
        else:
            _send_rejects(stages, job, f"cannot be read: {exc.strerror or exc}")
        return
    compressed = isinstance(stream, GzipStream)
    raw_file = stream.fileobj if isinstance(stream, GzipStream) else stream
    peek = PeekableInput(stream)
    try:
        if peek.empty:
            if peek.fault is not None:
                if not follow:
                    _send_rejects(stages, job, str(peek.fault), line_no=1)
                elif not _still_written(inp, peek.fault, stream_input):
                    log.warning("%s: %s", inp.label, peek.fault)
            return
        if follow and not peek.first_line_complete and peek.fault is None:
            return  # the first line is still being written: fingerprint it once it is whole
        fp = fingerprint(peek.first_line)
        stages.settle(fp)
        already, done_bytes = (0, 0) if force else lake.ingested_position(fp)
        if follow and not force and not stream_input:
            size = _input_size(inp, stream_input)
            if (compressed and lake.ingested_complete(fp)) or (not compressed and size == done_bytes):
                stats.skipped_lines += already
                return  # nothing new: a finished backup, or a live file that has not grown
        size_now = _input_size(inp, stream_input)
        stages.transforms.submit(lambda: progress.start_input(inp, size_now))
        last_lines = already
        reader_kw: dict = {"skip_lines": already}
        if not stream_input and not compressed and already and done_bytes > 0 and stream.seekable():
            stream.seek(done_bytes)  # resume: no need to read what is in the lake
            peek = stream  # type: ignore[assignment]
            reader_kw = {"start_line": already, "start_byte": done_bytes}
        # a gzip read to its end is never read again by ``run``; one that broke is, only when it is still
        # being written (one-shot ``ingest`` leaves a broken one unmarked: a later, whole copy is read then)
        done = True
        for lb in prefetch(
            read_line_batches(peek, chunk_bytes=chunk_bytes, final_partial_line=not follow, **reader_kw)
        ):
            if lb.fault is not None:
                if follow and _still_written(inp, lb.fault, stream_input):
                    # Tetragon is compressing this backup right now: what is complete went in, the rest later
                    log.info("%s is still being written (%s); a later poll reads on", inp.label, lb.fault)
                    done = False
                    continue  # (the batch holds nothing but the fault)
                done = follow
            norm = normalizer.normalize(lb.raw, lb.line_nos, inp.label)
            events = norm.events
            rejects = norm.rejects
            if lb.bad:
                extra_rejects = make_rejects(
                    inp.label, [b.line_no for b in lb.bad], [b.reason for b in lb.bad], [b.raw for b in lb.bad]
                )
                rejects = pa.concat_tables([rejects, extra_rejects]) if rejects.num_rows else extra_rejects
            lines_done = lb.lines_total
            stats.lines += lines_done - max(last_lines, already)
            last_lines = lines_done
            try:
                position = raw_file.tell()
            except (OSError, ValueError, AttributeError):
                position = None
            meta = {
                "source": inp.label,
                "fingerprint": fp,
                "lines": f"{lb.line_nos[0].as_py() if len(lb.line_nos) else ''}-{lines_done}",
            }
            commit = partial(lake.record_ingested, fp, inp.label, lines_done, lb.bytes_total)
            stages.transforms.submit(partial(_transform_and_write, job, events, rejects, meta, commit, position))
        if last_lines == already and already:
            stats.skipped_files += 1
        stats.skipped_lines += already
        # after this input's last chunk is committed: a gzip'd backup never changes again
        complete = (lambda: lake.mark_complete(fp)) if compressed and done and not stream_input else None
        stages.transforms.submit(lambda: (stages.writer.submit({}, on_commit=complete), progress.end_input()))
    finally:
        if not inp.is_stdin:
            peek.close()


def _still_written(inp: InputFile, fault: InputFault, stream_input: bool) -> bool:
    """A gzip cut short that was written to lately: a backup Tetragon (lumberjack) is compressing now."""
    if not fault.truncated or stream_input:
        return False
    try:
        return time.time() - os.stat(inp.path).st_mtime < GZIP_WRITING_SECONDS
    except OSError:
        return False  # gone: whatever it held is read from where it went (its plain copy is complete)


def _send_rejects(stages: _Stages, job: _Job, reason: str, line_no: int | None = None) -> None:
    """A reject for a whole input (it vanished, cannot be opened, broke before its first line)."""
    rejects = make_rejects(job.label, [line_no], [reason], [""])
    empty = pa.table({})  # no events: the transforms are not called
    stages.transforms.submit(partial(_transform_and_write, job, empty, rejects, {"source": job.label}, None, None))


def _transform_and_write(
    job: _Job,
    events: pa.Table,
    rejects: pa.Table,
    meta: dict[str, str],
    commit: Callable[[], None] | None,
    position: int | None,
) -> None:
    """One chunk's second half, on the transforms' thread: drop copies, enrich, detect, hand to the writer."""
    extra: dict[str, pa.Table] = {}
    token: int | None = None
    if events.num_rows:
        if job.dedup is not None:
            events, dropped = job.dedup.drop_seen(events)
            job.stats.duplicates += dropped
        for transform in job.transforms:
            events, produced, failed = _guarded(transform, events)
            for name, table in produced.items():
                extra[name] = pa.concat_tables([extra[name], table]) if name in extra else table
            if failed is not None:
                rejects = pa.concat_tables([rejects, failed]) if rejects.num_rows else failed
        if job.dedup is not None and events.num_rows:
            token = job.dedup.hold(events.column("event_id"))
    tables = {"events": events, "rejects": rejects, **extra} if events.num_columns else {"rejects": rejects, **extra}
    job.writer.submit(tables, metadata=meta, on_commit=_after_commit(commit, job.dedup, token))
    _count(job.stats, events if events.num_columns else None, rejects, extra, job.keep_rejects)
    if events.num_columns:
        job.progress.batch(events, extra)
    if position is not None:
        job.progress.advance(position)


def _after_commit(
    commit: Callable[[], None] | None, dedup: EventDedup | None, token: int | None
) -> Callable[[], None] | None:
    """Once the segment is in place: record the input's position, stop holding the ids (they are in the lake)."""
    if token is None or dedup is None:
        return commit

    def done() -> None:
        if commit is not None:
            commit()
        dedup.release(token)

    return done


def _transform_name(transform: BatchTransform) -> str:
    return getattr(transform, "__qualname__", None) or type(transform).__name__


def _guarded(transform: BatchTransform, events: pa.Table) -> tuple[pa.Table, dict[str, pa.Table], pa.Table | None]:
    """Run ``transform``; if it raises, on halves until the events it cannot take stand alone.

    Returns the events, the extra tables, and the rejects for the events it
    failed on (None when it failed on none). Raises :class:`TransformError`
    when it fails on more than :data:`MAX_TRANSFORM_REJECTS` events.

    A stateful transform may have taken in part of the batch before it
    raised; it then sees those events again in the halves. The process
    table's entries are keyed, so that is harmless there; the detector may
    count such an event twice in an open alert. A rare, degraded case, and
    better than losing the whole batch, or the run.
    """
    try:
        out, produced = transform(events)
        return out, produced, None
    except Exception as exc:  # noqa: BLE001 - a bad event must not stop the ingest; a broken transform does below
        first = exc
    name = _transform_name(transform)
    log.warning(
        "transform %s failed on a batch of %d events (%s: %s); isolating the event(s) it cannot take",
        name,
        events.num_rows,
        type(first).__name__,
        first,
    )
    log.debug("transform %s failed", name, exc_info=first)  # the traceback, for whoever debugs the transform
    failed: list[tuple[pa.Table, BaseException]] = []
    parts: list[pa.Table] = []
    extra: dict[str, list[pa.Table]] = {}

    def bisect(batch: pa.Table, known: BaseException | None) -> None:
        if known is None:
            try:
                out, produced = transform(batch)
            except Exception as exc:  # noqa: BLE001 - narrowed down below
                known = exc
            else:
                parts.append(out)
                for k, v in produced.items():
                    extra.setdefault(k, []).append(v)
                return
        if batch.num_rows <= 1:
            failed.append((batch, known))
            if len(failed) > MAX_TRANSFORM_REJECTS or batch.num_rows == 0:
                raise TransformError(
                    f"transform {name} fails on more than {MAX_TRANSFORM_REJECTS} events of one "
                    f"batch ({type(known).__name__}: {known}): it is broken, not fed a bad event; "
                    f"the ingest stops here, nothing after this batch is stored"
                ) from known
            return
        mid = batch.num_rows // 2
        bisect(batch.slice(0, mid), None)
        bisect(batch.slice(mid), None)

    bisect(events, first)
    out = pa.concat_tables(parts, promote_options="default") if parts else events.slice(0, 0)
    produced = {k: pa.concat_tables(v, promote_options="default") for k, v in extra.items()}
    if not failed:
        return out, produced, None  # it failed once, not on any one event (its halves went through)
    bad = pa.concat_tables([b for b, _ in failed])
    reasons = [f"transform {name} failed on this event: {type(e).__name__}: {e}" for _, e in failed]
    source = bad.column("source")[0].as_py() or ""  # a batch comes from one input
    return (
        out,
        produced,
        make_rejects(source, bad.column("source_offset").to_pylist(), reasons, bad.column("raw").to_pylist()),
    )


def _count(
    stats: IngestStats, events: pa.Table | None, rejects: pa.Table, extra: dict[str, pa.Table], keep_rejects: int
) -> None:
    stats.rejects += rejects.num_rows
    if events is not None and events.num_rows:
        stats.events += events.num_rows
        vc = pc.value_counts(events.column("kind")).to_pylist()
        for item in vc:
            stats.by_kind[item["values"]] += item["counts"]
    for name, table in extra.items():
        stats.extra_rows[name] += table.num_rows
    alerts = extra.get("alerts")
    if alerts is not None and alerts.num_rows:
        for row in alerts.select(_RUN_ALERT_COLUMNS).to_pylist():
            seen = stats.alerts.get(row["alert_id"])
            if seen is None:
                seen = stats.alerts[row["alert_id"]] = RunAlert(**{**row, "count": 0})
            seen.count += row["count"] or 1
            seen.rows += 1
    if rejects.num_rows and len(stats.first_rejects) < keep_rejects:
        room = keep_rejects - len(stats.first_rejects)
        for row in rejects.slice(0, room).select(["source", "source_offset", "reason"]).to_pylist():
            stats.first_rejects.append(RejectNote(row["source"], row["source_offset"], row["reason"]))


__all__ = [
    "BatchTransform",
    "EventDedup",
    "IngestStats",
    "ProgressSink",
    "RunAlert",
    "TransformError",
    "ingest",
    "REJECT_SCHEMA",
]
