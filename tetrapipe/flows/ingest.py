"""One-shot load of export logs into the lake (``tetrapipe ingest``).

The data flow is the same as the stream processor's, minus Kafka:
lines -> normalize -> transforms (ancestry, TLS, rules) -> lake. Each input is
identified by the fingerprint of its first line, and every commit of its rows
carries how many of its lines are in (``file:<fingerprint>``, a Delta app
transaction, see :mod:`tetrapipe.lake.positions`); ingesting it again (or its
rotated or gzip'd copy, or a longer version of it, or after a ``kill -9``)
only adds lines not in the lake, and two ingests of one file at once store
each line once.

Exactly once, chunk by chunk
----------------------------

A chunk is committed table by table (rejects, alerts, tls_stats, then events),
each commit with the chunk's position; a table already holding it skips it.
A restart resumes after the ``events`` table's position; when a crash came
between the commits of a chunk, another table holds a later position, and the
input is read again in the same chunk up to exactly that line
(``cut_at_line``), so the table that holds it skips it whole: the alerts of a
chunk are never stored twice. Chunk boundaries depend on the content alone
(:func:`tetrapipe.sources.lines.read_line_batches`), so two ingests of one file
cut it alike; ``events`` and ``rejects`` rows at or before a table's position
are dropped at commit besides (a chunk that overlaps another writer's).

Any input, any fault: never a crash
-----------------------------------

One bad thing costs that thing, not the run. A line that is not an event is a
reject (the normalizer bisects a batch DuckDB chokes on down to the line). An
input that cannot be opened, or breaks while it is read (a gzip cut short, a
read error), keeps every complete line before the break and ends with one
reject saying where and why; the next input is read as usual. A damaged gzip
(found out at its CRC, often after its lines went in) leaves the log's lines
it delivered unaccounted for: a later whole copy reads them again, and the
event-id check stores only what the lake lacks (:mod:`tetrapipe.lake.positions`).
A transform that raises on a batch is run again on halves of it until the event
it cannot take stands alone; that event becomes a reject ("transform … failed
on this event") and the others go on. A transform that fails on more than
:data:`tetrapipe.flows.batch.MAX_TRANSFORM_REJECTS` events of one batch is broken rather than fed a
bad event, and rejecting everything would hide that: the ingest stops with a
:class:`tetrapipe.flows.batch.TransformError`, and nothing after the failed batch is committed.

Under ``follow`` (``tetrapipe run``), a gzip whose end is missing and that was
written to in the last :data:`GZIP_WRITING_SECONDS` is a backup still being
compressed: its complete lines go in, it is not marked done, and a later poll
reads on from there. Only an older one is truncated for good: one reject, and
it is done.

The same event from two files is stored once
--------------------------------------------

The lake's positions recognize a log read before by its first line, but an
event can reach the lake under another first line too: a copy that starts
elsewhere, the same events exported twice, a copy of a log taken before it
was truncated. So every event is also checked by its ``event_id`` (a hash of
what the event says, its time included) before the transforms see it: see
:class:`tetrapipe.flows.dedup.EventDedup`. ``force`` skips both checks.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc

from tetrapipe.flows.batch import BatchTransform, LakeWriter, ProgressSink, apply_transforms, concat_rows
from tetrapipe.flows.dedup import EventDedup
from tetrapipe.lake import Lake, Position
from tetrapipe.lake.positions import (
    FILE_BYTES_PREFIX,
    FILE_DONE_PREFIX,
    FILE_PREFIX,
    FileDamage,
    file_bytes_position,
    file_damage,
    file_damage_count,
    file_damaged_position,
    file_done_position,
    file_fault_position,
    file_position,
    file_repaired_position,
)
from tetrapipe.lake.store import COMMIT_ORDER
from tetrapipe.memtune import release_free_heap, use_returning_arrow_pool
from tetrapipe.sources.files import FaultWatch, InputFile, fingerprint, open_input
from tetrapipe.sources.lines import LineBatch, prefetch, read_line_batches
from tetrapipe.sources.streams import GzipStream, InputFault, PeekableInput
from tetrapipe.transforms.normalize import Normalizer, make_rejects
from tetrapipe.worker import OrderedWorker

INGEST_CHUNK_BYTES = 24 * 1024 * 1024
#: chunks between the start of their normalization and their commit, at most: one a stage (normalize,
#: transforms, lake writer). Why a count and not the stages' queues alone: each queue holds one chunk
#: besides the one its stage runs and the one waiting to be put in, so up to six normalized chunks
#: (~36 MB each at 24 MB of lines: DuckDB's result buffers and the lines) could be held at once
INGEST_IN_FLIGHT = 3
#: the normalizer's DuckDB threads in an ingest (see :func:`ingest`)
INGEST_NORMALIZER_THREADS = 1
#: a gzip whose end is missing and that was written to this recently is still being compressed (``run``)
GZIP_WRITING_SECONDS = 300.0

log = logging.getLogger("tetrapipe.ingest")


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
    transforms: list[BatchTransform] | Future[list[BatchTransform]] | None = None,
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
    ``force``. ``transforms`` may still be being built (a future, see
    :func:`tetrapipe.worker.in_thread`): the first chunk is read and
    normalized meanwhile, and nothing is committed before they are ready; if
    building them fails, that error is raised here and nothing was committed.
    """
    if not isinstance(transforms, Future):
        transforms = _ready(transforms or [])
    progress = progress or ProgressSink()
    stats = IngestStats()
    started = time.perf_counter()
    own_dedup = dedup is None and not force
    if own_dedup:
        dedup = EventDedup(lake)
    use_returning_arrow_pool()  # Arrow's freed pages go back to the system (see tetrapipe.memtune)
    # One DuckDB thread: the pipeline's stages (this thread, the transforms', the lake writer's) already
    # keep both cores busy, and a normalizer on every core only holds more chunks' worth of its buffers
    # at once: ~80 MB less peak memory at 300k events, the same or less CPU (docs/performance.md)
    normalizer = Normalizer(threads=INGEST_NORMALIZER_THREADS)
    writer = LakeWriter(lake)
    # transforms run on their own thread, in order, while the next chunk is normalized:
    # the detector's and the normalizer's DuckDB work then overlap on two cores
    stage = OrderedWorker("transforms")
    stages = _Stages(stage, writer, None if force else dedup, threading.Semaphore(INGEST_IN_FLIGHT))
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
    writer: LakeWriter
    dedup: EventDedup | None = None
    #: one slot a chunk, from before its normalization until it is committed (:data:`INGEST_IN_FLIGHT`)
    in_flight: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(INGEST_IN_FLIGHT))
    fingerprints: set[str] = field(default_factory=set)

    def admit(self) -> Callable[[], None]:
        """Wait for a chunk's slot; returns what frees it (called once the chunk is committed).

        A failed stage never commits what it holds, so its slots are never freed:
        waiting stops then, and the caller's next submit raises the failure.
        """
        while not self.in_flight.acquire(timeout=0.1):
            if self.transforms.failed or self.writer.failed:
                return _nothing
        return self._committed

    def _committed(self) -> None:
        # the chunk before this one is freed by now: its line buffers leave holes in glibc's heap
        release_free_heap()
        self.in_flight.release()

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
    transforms: Future[list[BatchTransform]]
    writer: LakeWriter
    dedup: EventDedup | None
    progress: ProgressSink
    stats: IngestStats
    keep_rejects: int


def _ingest_one(
    inp: InputFile,
    lake: Lake,
    normalizer: Normalizer,
    stages: _Stages,
    transforms: Future[list[BatchTransform]],
    progress: ProgressSink,
    stats: IngestStats,
    force: bool,
    chunk_bytes: int,
    keep_rejects: int,
    follow: bool = False,
) -> None:
    """Send one input's chunks down the pipeline: open it, recognize it, resume after what the lake holds.

    Long because it is one input's whole life, and each step depends on the
    one before: an input that cannot be opened or is empty ends here (a reject,
    or under ``follow`` a later poll); its first line gives the fingerprint the
    lake's position is kept under; that position decides whether to skip it,
    seek or skip lines; and only then are its chunks read, normalized here and
    handed to the transforms' thread with the commit that records how far the
    input is in.
    """
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
    watch = FaultWatch(stream)  # a break within lines already in the lake yields no batch: seen here
    peek = PeekableInput(watch)  # type: ignore[arg-type]
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
        already, done_bytes, ahead, damage = (0, -1, 0, None) if force else _resume(lake, fp)
        # lines a damaged copy claimed: read again from the last trusted line, stored without a position
        # (the event-id check skips what is stored), their rejects left to that copy's (lake.positions)
        recheck = ahead if damage is not None else 0
        if damage is not None:
            already, done_bytes = damage.trusted, -1
        if follow and not force and not stream_input:
            size = _input_size(inp, stream_input)
            finished = compressed and lake.committed("events", FILE_DONE_PREFIX + fp) is not None
            if finished or (not compressed and size == done_bytes):
                stats.skipped_lines += already
                return  # nothing new: a finished backup, or a live file that has not grown
        size_now = _input_size(inp, stream_input)
        stages.transforms.submit(lambda: progress.start_input(inp, size_now))
        last_lines = already
        # a table ahead of ``events`` (a crash between a chunk's commits): that chunk again, cut where it was
        reader_kw: dict = {"skip_lines": already, "cut_at_line": ahead if ahead > already else None}
        if not stream_input and not compressed and already and done_bytes > 0 and stream.seekable():
            stream.seek(done_bytes)  # resume: no need to read what is in the lake
            peek = stream  # type: ignore[assignment]
            reader_kw = {"start_line": already, "start_byte": done_bytes, "cut_at_line": reader_kw["cut_at_line"]}
        # a gzip read to its end is never read again by ``run``; one that broke is, only when it is still
        # being written (one-shot ``ingest`` leaves a broken one unmarked: a later, whole copy is read then)
        done = True
        claimed = broke = False  # a position beyond ``already`` committed; a batch said where the input broke
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
            done_with_chunk = stages.admit()
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
            pos, also = _chunk_position(fp, lb, force, recheck, _held_back(lb, rejects))
            claimed = claimed or (pos is not None and lb.fault is None)
            broke = broke or lb.fault is not None
            if pos is None and not force and rejects.num_rows:
                rejects = rejects.slice(0, 0)  # (lines a damaged copy claimed: its rejects stand for them)
            del norm, lb  # the job holds what it needs: nothing of this chunk outlives its commit
            stages.transforms.submit(
                partial(_transform_and_write, job, events, rejects, pos, also, position, done_with_chunk)
            )
            del events, rejects
        if last_lines == already and already:
            stats.skipped_files += 1
        stats.skipped_lines += already
        fault = watch.fault
        if fault is not None and not broke and not fault.truncated and not force:
            # broken within the lines the lake holds (a whole copy came first): its damage is recorded still
            _send_rejects(stages, job, str(fault), position=file_fault_position(fp, str(fault)))
        # after this input's last chunk is committed: a gzip'd backup never changes again
        complete: tuple[Position, ...] = (
            (file_done_position(fp, last_lines),) if compressed and done and not stream_input and not force else ()
        )
        if fault is not None and not fault.truncated and claimed:
            # what this read claimed may be garbage: the next read of this log reads it again (lake.positions)
            trusted = already if damage is None else damage.trusted
            complete += (file_damaged_position(fp, file_damage_count(lake, fp) + 1, trusted),)
        elif damage is not None and fault is None and not force:
            complete += (file_repaired_position(fp, damage.count),)
        stages.transforms.submit(
            lambda: (transforms.result(), stages.writer.submit({}, also=complete), progress.end_input())
        )
    finally:
        if not inp.is_stdin:
            peek.close()


def resume_point(lake: Lake, fp: str) -> tuple[int, int, int]:
    """Where the input with fingerprint ``fp`` resumes: lines in ``events``, their byte end, the furthest line.

    The byte end is -1 when unknown. The furthest line is the highest
    position any table holds (ahead of ``events`` after a crash between a
    chunk's commits).
    """
    return _resume(lake, fp)[:3]


def _resume(lake: Lake, fp: str) -> tuple[int, int, int, FileDamage | None]:
    """:func:`resume_point`, and the damage a damaged copy of the input left (one ``events`` snapshot for all)."""
    events = lake.table("events")
    lines = (None if events is None else events.transaction_version(FILE_PREFIX + fp)) or 0
    nbytes = None if events is None else events.transaction_version(FILE_BYTES_PREFIX + fp)
    ahead = max([lines] + [lake.committed(t, FILE_PREFIX + fp) or 0 for t in COMMIT_ORDER if t != "events"])
    return lines, (-1 if nbytes is None else nbytes), ahead, file_damage(events, fp)


def _held_back(lb: LineBatch, rejects: pa.Table) -> int:
    """Bytes of the chunk's last line not to count as read: one the input ended without its newline that is no event.

    Half a line Tetragon was still writing is a reject now and a whole event once the file grew: counted as
    read, a later ingest would resume in its middle (a false reject, the event lost). Its reject is stored
    once: the tables hold the chunk's position, so reading the same half line again commits nothing.
    """
    if not lb.open_end or not rejects.num_rows:
        return 0
    last = pc.equal(rejects.column("source_offset"), lb.lines_total)
    return lb.open_end if pc.any(last).as_py() else 0


def _chunk_position(
    fp: str, lb: LineBatch, force: bool, recheck: int, held: int = 0
) -> tuple[Position | None, tuple[Position, ...]]:
    """The position a chunk is committed with, and its companions.

    None for lines a damaged copy claimed (``recheck``): the tables hold a
    position at least as far, and would skip them. The reject saying where an
    input broke has a position of its own (``file-fault``): a table holding
    the lines before the break would skip it with theirs.
    """
    if force:
        return None, ()
    if lb.fault is not None:
        return file_fault_position(fp, str(lb.fault)), ()
    lines = lb.lines_total - (1 if held else 0)  # (``held``: the last line, see :func:`_held_back`)
    if lines <= recheck:
        return None, ()
    return file_position(fp, lines), (file_bytes_position(fp, lb.bytes_total - held),)


def _still_written(inp: InputFile, fault: InputFault, stream_input: bool) -> bool:
    """A gzip cut short that was written to lately: a backup Tetragon (lumberjack) is compressing now."""
    if not fault.truncated or stream_input:
        return False
    try:
        return time.time() - os.stat(inp.path).st_mtime < GZIP_WRITING_SECONDS
    except OSError:
        return False  # gone: whatever it held is read from where it went (its plain copy is complete)


def _send_rejects(
    stages: _Stages, job: _Job, reason: str, line_no: int | None = None, position: Position | None = None
) -> None:
    """A reject for a whole input (it vanished, cannot be opened, broke before its first line or within lines
    the lake holds)."""
    rejects = make_rejects(job.label, [line_no], [reason], [""])
    empty = pa.table({})  # no events: the transforms are not called
    stages.transforms.submit(partial(_transform_and_write, job, empty, rejects, position, (), None))


def _transform_and_write(
    job: _Job,
    events: pa.Table,
    rejects: pa.Table,
    lake_position: Position | None,
    also: tuple[Position, ...],
    position: int | None,
    committed: Callable[[], None] | None = None,
) -> None:
    """One chunk's second half, on the transforms' thread: drop copies, enrich, detect, hand to the writer.

    ``committed``: called once the writer has committed the chunk (frees its in-flight slot).
    """
    extra: dict[str, pa.Table] = {}
    token: int | None = None
    # waited for even when the chunk has no events: nothing is committed by a command whose rules did not load
    transforms = job.transforms.result()
    if events.num_rows:
        if job.dedup is not None:
            events, dropped = job.dedup.drop_seen(events)
            job.stats.duplicates += dropped
        events, extra, failed = apply_transforms(transforms, events, isolate=True)
        if failed is not None:
            rejects = concat_rows(rejects, failed)
        if job.dedup is not None and events.num_rows:
            token = job.dedup.hold(events.column("event_id"))
    tables = {"events": events, "rejects": rejects, **extra} if events.num_columns else {"rejects": rejects, **extra}
    job.writer.submit(tables, lake_position, also, on_commit=_after_commit(job.dedup, token, committed))
    _count(job.stats, events if events.num_columns else None, rejects, extra, job.keep_rejects)
    if events.num_columns:
        job.progress.batch(events, extra)
    if position is not None:
        job.progress.advance(position)


def _ready(transforms: list[BatchTransform]) -> Future[list[BatchTransform]]:
    """Transforms built already, as a future like those still being built."""
    future: Future[list[BatchTransform]] = Future()
    future.set_result(transforms)
    return future


def _after_commit(
    dedup: EventDedup | None, token: int | None, committed: Callable[[], None] | None
) -> Callable[[], None] | None:
    """Once the chunk is committed: stop holding its ids (the lake has them now), free its slot."""
    release = partial(dedup.release, token) if token is not None and dedup is not None else None
    if release is None or committed is None:
        return release or committed

    def both() -> None:
        release()
        committed()

    return both


def _nothing() -> None:
    """What frees a slot that was never taken (see :meth:`_Stages.admit`)."""


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


__all__ = ["INGEST_CHUNK_BYTES", "IngestStats", "RejectNote", "RunAlert", "ingest", "resume_point"]
