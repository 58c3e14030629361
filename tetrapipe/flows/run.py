"""``tetrapipe run``: the whole pipeline in one process, no Kafka (one node, a laptop).

It follows export logs the way ``ingest`` reads them, again and again: each
poll ingests what is new, resuming each file at the byte offset the lake
already holds (recorded after the segment is committed, so a crash resumes
without loss or duplicates). A line still being written is left for the next
poll. Given the live file ``tetragon.log``, its rotated siblings in the same
directory are followed too, so lines written just before a rotation are read
from the renamed file. Transform state (process table, dedup windows, TLS
pairing) lives across polls, and so does the event-id check
(:class:`~tetrapipe.flows.ingest.EventDedup`) that keeps a copy of an event read
from another file out of the lake.

A backup that Tetragon is still compressing is left alone while its plain
copy is there (lumberjack deletes the plain file once the ``.gz`` is whole);
a ``.gz`` cut short without one is read as far as it goes and read on at a
later poll, while the live file is read as usual.

A stream (``-``, a FIFO, ``<(…)``) cannot be polled: it is read to its end
once, before the files are followed. It is read paced
(:func:`~tetrapipe.sources.streams.paced_streams`): a pipe that stays open
(``kubectl logs -f``) has its lines committed, and their alerts fired, at the
latest ``poll_seconds`` after they arrive, where a file's poll would (a fast
stream still fills whole chunks), and ``stop`` ends it, after what was read is
committed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from tetrapipe.flows.batch import BatchTransform, ProgressSink
from tetrapipe.flows.dedup import EventDedup
from tetrapipe.flows.ingest import INGEST_CHUNK_BYTES, IngestStats, ingest
from tetrapipe.lake import Lake
from tetrapipe.metrics import Health, PipelineMetrics
from tetrapipe.sources.files import InputFile, expand_inputs, rotation_key, scan_inputs
from tetrapipe.sources.streams import paced_streams


@dataclass
class RunTotals:
    polls: int = 0
    events: int = 0
    rejects: int = 0


def follow_inputs(paths: list[str]) -> list[InputFile]:
    """Expand paths; a live log also brings its rotated backups (oldest first, live last).

    A named path missing at this poll (a live log renamed by its rotation, not
    created again yet) is looked for again at the next one; :func:`run` checked
    at its start that each was there.
    """
    expanded: list[str] = []
    for raw in paths:
        p = Path(raw)
        if raw != "-" and not os.path.lexists(raw):
            continue
        if raw != "-" and p.is_file() and p.suffix == ".log":
            stem = p.name[: -len(".log")]
            siblings = [
                s
                for s in p.parent.iterdir()
                if s != p and s.is_file() and (s.name.startswith(stem + "-") or s.name.startswith(p.name + "."))
            ]
            expanded += [str(s) for s in siblings]
        expanded.append(raw)
    try:
        inputs = expand_inputs(expanded) if expanded else []
    except FileNotFoundError:
        return []  # (gone between the look above and the listing: the next poll)
    listed = {i.path for i in inputs}
    # lumberjack writes <backup>.gz beside the plain <backup>, then deletes the plain one: until then the
    # plain file is whole and the .gz is not
    inputs = [i for i in inputs if not (i.path.endswith(".gz") and i.path[: -len(".gz")] in listed)]
    files = [i for i in inputs if not i.is_stdin]
    by_dir: dict[Path, list[InputFile]] = {}
    for i in files:
        by_dir.setdefault(Path(i.path).parent, []).append(i)
    ordered = [i for d in by_dir for i in sorted(dict.fromkeys(by_dir[d]), key=lambda x: rotation_key(Path(x.path)))]
    return ordered + [i for i in inputs if i.is_stdin]


class RunMetrics(ProgressSink):
    """Feeds ``tetrapipe run``'s chunks into the processor's metric names (one dashboard for both).

    A chunk of ``ingest`` is run's micro-batch: its time is measured from the
    previous chunk (read + normalize + transforms; the Parquet write overlaps
    on the writer thread). Lines and rejects come per poll, from its stats.
    """

    def __init__(self, metrics: PipelineMetrics, health: Health, transforms: list[BatchTransform]) -> None:
        self.metrics = metrics
        self.health = health
        self.transforms = transforms
        self.polls = 0
        self.streaming = False  # a stream's read is waiting for data (see :meth:`waiting`)
        self._mark = time.perf_counter()

    def start_input(self, inp: InputFile, size: int | None) -> None:
        self._mark = time.perf_counter()
        self.health.heartbeat()

    def batch(self, events: pa.Table, extra: dict[str, pa.Table]) -> None:
        now = time.perf_counter()
        self.metrics.batch(
            records=0, events=events.num_rows, rejects=0, seconds=now - self._mark, alerts=extra.get("alerts")
        )
        self._mark = now
        self.health.heartbeat()

    def poll(self, st: IngestStats) -> None:
        """After each poll: the lines and rejects it read, the table size, a heartbeat."""
        self.polls += 1
        self.metrics.records.inc(st.lines)
        self.metrics.rejects.inc(st.rejects)
        if not st.events:
            self.metrics.idle()
        self.metrics.process_table(self.transforms)
        self.health.heartbeat()

    def waiting(self) -> None:
        """A stream's read waits for data (``kubectl logs -f`` of a quiet pod): alive, and reading what it should.

        A stream's poll ends only with the stream, so without this a quiet pipe
        left ``/healthz`` failing after its stall time (a liveness probe would
        restart a healthy run) and ``/readyz`` never ready.
        """
        self.streaming = True
        self.health.heartbeat()

    def ready(self) -> tuple[bool, str]:
        """Ready once a first poll went through (inputs readable, lake writable), or a stream is being read."""
        if self.streaming and not self.polls:
            return True, "reading a stream"
        return self.polls > 0, f"{self.polls} poll(s) done"


def run(
    paths: list[str],
    lake: Lake,
    transforms: list[BatchTransform],
    *,
    poll_seconds: float = 1.0,
    exit_at_eof: bool = False,
    stop: threading.Event | None = None,
    on_poll: Callable[[IngestStats], None] | None = None,
    metrics: RunMetrics | None = None,
    chunk_bytes: int = INGEST_CHUNK_BYTES,
) -> RunTotals:
    """Poll ``paths`` into ``lake`` until ``stop`` is set (or, with ``exit_at_eof``, a poll finds nothing new).

    Streams among ``paths`` (``-``, FIFOs, pipes) are read to their end (or the stop) first, once, paced
    by ``poll_seconds``. A path that is not there at the start raises FileNotFoundError (an OSError for
    one that cannot be read) before anything is read: a typo is not followed for ever.
    """
    scan_inputs([p for p in paths if p != "-"])
    stop = stop or threading.Event()
    totals = RunTotals()
    streams = [p for p in paths if InputFile(p).is_stream]
    files = [p for p in paths if p not in streams]
    dedup = EventDedup(lake)  # one for the run: what it learnt of the lake's segments serves every poll

    def account(st: IngestStats) -> None:
        totals.polls += 1
        totals.events += st.events
        totals.rejects += st.rejects
        if metrics:
            metrics.poll(st)
        if on_poll:
            on_poll(st)

    try:
        if streams:
            with paced_streams(stop, poll_seconds, on_wait=metrics.waiting if metrics else None):
                st = ingest(
                    [InputFile(p) for p in streams],
                    lake,
                    transforms=transforms,
                    progress=metrics,
                    chunk_bytes=chunk_bytes,
                    dedup=dedup,
                )
            account(st)
            if not files:
                return totals
        while True:
            inputs = [i for i in follow_inputs(files) if Path(i.path).exists()]
            st = ingest(
                inputs, lake, transforms=transforms, follow=True, progress=metrics, chunk_bytes=chunk_bytes, dedup=dedup
            )
            account(st)
            if stop.is_set() or (exit_at_eof and st.events == 0 and st.rejects == 0):
                return totals
            stop.wait(poll_seconds)
            # (once stopped: one last poll, so a SIGTERM after a write still commits what was read)
    finally:
        dedup.close()


def install_stop_on_signals(stop: threading.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
