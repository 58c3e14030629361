"""One-shot load of export logs into the lake (``tetrapipe ingest``).

The data flow is the same as the stream processor's, minus Kafka:
lines -> normalize -> transforms (ancestry, TLS, rules) -> lake. Each input is
identified by the fingerprint of its first line and the lake remembers how
many of its lines are in; ingesting it again (or its rotated or gzip'd copy,
or a longer version of it) only adds lines not seen before.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc

from tetrapipe.schema import REJECT_SCHEMA
from tetrapipe.sinks.lake import AsyncWriter, Lake
from tetrapipe.sources.files import InputFile, PeekableInput, fingerprint, open_input
from tetrapipe.sources.lines import prefetch, read_line_batches
from tetrapipe.transforms.normalize import Normalizer, make_rejects
from tetrapipe.worker import OrderedWorker

#: A transform over one normalized batch: gets the events, returns the events
#: (possibly enriched) and extra tables for the lake (e.g. ``alerts``).
BatchTransform = Callable[[pa.Table], tuple[pa.Table, dict[str, pa.Table]]]

INGEST_CHUNK_BYTES = 24 * 1024 * 1024

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


def _input_size(inp: InputFile) -> int | None:
    import os

    if inp.is_stdin:
        return None
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
) -> IngestStats:
    """Ingest ``inputs`` into ``lake``; returns what happened, rejects included.

    ``follow``: the inputs may still be growing (``tetrapipe run``): a last line
    without its newline is left for the next call instead of being ingested
    half-written, and a plain file is resumed by seeking to the byte offset
    already ingested rather than re-reading it.
    """
    transforms = transforms or []
    progress = progress or ProgressSink()
    stats = IngestStats()
    started = time.perf_counter()
    normalizer = Normalizer()
    writer = AsyncWriter(lake)
    # transforms run on their own thread, in order, while the next chunk is normalized:
    # the detector's and the normalizer's DuckDB work then overlap on two cores
    stage = OrderedWorker("transforms")
    stages = _Stages(stage, writer)
    try:
        for inp in inputs:
            stats.files += 1
            _ingest_one(inp, lake, normalizer, stages, transforms, progress, stats, force, chunk_bytes, keep_rejects,
                        follow)
    finally:
        try:
            try:
                stage.close()
            finally:
                writer.close()
        finally:
            normalizer.close()
    stats.seconds = time.perf_counter() - started
    return stats


@dataclass
class _Stages:
    """Where a normalized chunk goes: the transforms' thread, then the lake writer's."""

    transforms: OrderedWorker
    writer: AsyncWriter
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


def _ingest_one(inp: InputFile, lake: Lake, normalizer: Normalizer, stages: _Stages,
                transforms: list[BatchTransform], progress: ProgressSink, stats: IngestStats,
                force: bool, chunk_bytes: int, keep_rejects: int, follow: bool = False) -> None:
    try:
        stream = open_input(inp)
    except FileNotFoundError:
        if not follow:
            raise
        # listed a moment ago, gone now: a backup being compressed (its .gz, same first line,
        # is picked up from the same position at the next poll) or deleted by rotation
        log.info("%s disappeared before it could be read (rotated); the next poll looks again", inp.label)
        return
    raw_file = getattr(stream, "fileobj", None) or stream
    peek = PeekableInput(stream)
    try:
        if peek.empty:
            return
        if follow and not peek.first_line_complete:
            return  # the first line is still being written: fingerprint it once it is whole
        fp = fingerprint(peek.first_line)
        stages.settle(fp)
        already, done_bytes = (0, 0) if force else lake.ingested_position(fp)
        compressed = stream is not raw_file
        if follow and not force and not inp.is_stdin:
            size = _input_size(inp)
            if (compressed and lake.ingested_complete(fp)) or (not compressed and size == done_bytes):
                stats.skipped_lines += already
                return  # nothing new: a finished backup, or a live file that has not grown
        size_now = _input_size(inp)
        stages.transforms.submit(lambda: progress.start_input(inp, size_now))
        last_lines = already
        reader_kw: dict = {"skip_lines": already}
        plain = not inp.is_stdin and stream is raw_file and hasattr(stream, "seek")
        if plain and already and done_bytes > 0:
            stream.seek(done_bytes)  # resume: no need to read what is in the lake
            peek = stream  # type: ignore[assignment]
            reader_kw = {"start_line": already, "start_byte": done_bytes}
        for lb in prefetch(read_line_batches(peek, chunk_bytes=chunk_bytes, final_partial_line=not follow,
                                             **reader_kw)):
            norm = normalizer.normalize(lb.raw, lb.line_nos, inp.label)
            events = norm.events
            rejects = norm.rejects
            if lb.bad:
                extra_rejects = make_rejects(inp.label, [b.line_no for b in lb.bad], [b.reason for b in lb.bad],
                                             [b.raw for b in lb.bad])
                rejects = pa.concat_tables([rejects, extra_rejects]) if rejects.num_rows else extra_rejects
            lines_done = lb.lines_total
            stats.lines += lines_done - max(last_lines, already)
            last_lines = lines_done
            try:
                position = raw_file.tell()
            except (OSError, ValueError, AttributeError):
                position = None
            meta = {"source": inp.label, "fingerprint": fp,
                    "lines": f"{lb.line_nos[0].as_py() if len(lb.line_nos) else ''}-{lines_done}"}
            commit = partial(lake.record_ingested, fp, inp.label, lines_done, lb.bytes_total)
            stages.transforms.submit(partial(_transform_and_write, events, rejects, meta, commit, transforms,
                                             stages.writer, progress, stats, keep_rejects, position))
        if last_lines == already and already:
            stats.skipped_files += 1
        stats.skipped_lines += already
        # after this input's last chunk is committed: a gzip'd backup never changes again
        complete = (lambda: lake.mark_complete(fp)) if compressed and not inp.is_stdin else None
        stages.transforms.submit(lambda: (stages.writer.submit({}, on_commit=complete), progress.end_input()))
    finally:
        if not inp.is_stdin:
            peek.close()


def _transform_and_write(events: pa.Table, rejects: pa.Table, meta: dict[str, str], commit: Callable[[], None],
                         transforms: list[BatchTransform], writer: AsyncWriter, progress: ProgressSink,
                         stats: IngestStats, keep_rejects: int, position: int | None) -> None:
    """One chunk's second half, on the transforms' thread: enrich, detect, hand to the writer, report."""
    extra: dict[str, pa.Table] = {}
    for transform in transforms:
        events, produced = transform(events)
        for name, table in produced.items():
            extra[name] = pa.concat_tables([extra[name], table]) if name in extra else table
    writer.submit({"events": events, "rejects": rejects, **extra}, metadata=meta, on_commit=commit)
    _count(stats, events, rejects, extra, keep_rejects)
    progress.batch(events, extra)
    if position is not None:
        progress.advance(position)


def _count(stats: IngestStats, events: pa.Table, rejects: pa.Table, extra: dict[str, pa.Table],
           keep_rejects: int) -> None:
    stats.events += events.num_rows
    stats.rejects += rejects.num_rows
    if events.num_rows:
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


__all__ = ["BatchTransform", "IngestStats", "ProgressSink", "RunAlert", "ingest", "REJECT_SCHEMA"]
