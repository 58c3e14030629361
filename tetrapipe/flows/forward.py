"""``tetrapipe forward``: native alert / event rows -> the SIEM sinks of a configuration.

Three sources feed the same router (formats, spools, retries of
:mod:`tetrapipe.sinks.siem`):

* JSON lines (one native row a line, as ``tetrapipe query --format json`` or
  the native format prints them) from files or standard input;
* the history lake (a backfill of a new SIEM);
* Kafka: the processor's alerts topic and its enriched-events topic, as a
  long-running forwarder. Offsets are committed once every sink has
  delivered the records (the peer took them; with HEC acks, once indexed)
  or spooled them: at least once. A kill costs duplicates: the poll batch
  in hand is read again. (Syslog over TCP has no acks: "took" means the
  local kernel did, which still sends it after a kill; see its sink.)

The flow owns the loop, the stop signals and the drain at the end (a SIEM
that is down is retried for a while, what is left stays in the spool for the
next run). The command line around it (``tetrapipe.commands.forward``) builds
the router, serves the metrics and prints the summary. See
docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tetrapipe.errors import TetrapipeError
from tetrapipe.lake import Lake, read_rows
from tetrapipe.metrics import Health
from tetrapipe.sources.kafka import at_end, new_consumer, unread_elsewhere
from tetrapipe.sources.lines import numbered_lines

log = logging.getLogger("tetrapipe.forward")

#: told about every input line or record that is not a JSON object: where (``FILE:LINE``) and why
BadRow = Callable[[str, str], None]

#: a source: reads everything (or until ``stop``) into the router; (rows read, unreadable lines)
Source = Callable[[Any, threading.Event, Health], tuple[int, int]]


class InputError(TetrapipeError):
    """An input of JSON lines could not be read to its end (the records before it were routed)."""


def default_topics(kafka: dict[str, Any], routes: list[Any]) -> tuple[str, ...]:
    """The topics ``--from-kafka`` reads when ``--topic`` is not given.

    The alerts topic, and the enriched-events topic only when one of the
    selected sinks takes events: consuming (and parsing) every event just to
    discard it would cost the forwarder far more than the alerts it sends.
    """
    topics = [kafka.get("alerts_topic")]
    if any(r.forward in ("events", "all") for r in routes):
        topics.append(kafka.get("events_topic"))
    return tuple(t for t in topics if t)


def parse_row(line: bytes, where: str, on_bad: BadRow) -> dict[str, Any] | None:
    """One native row, or None (and ``on_bad`` told) when the line is not a JSON object."""
    try:
        row = orjson.loads(line)
        if not isinstance(row, dict):
            raise ValueError("not a JSON object")
        return row
    except ValueError as exc:
        on_bad(where, str(exc))
        return None


def from_lines(inputs: list[str], batch_size: int, on_bad: BadRow) -> Source:
    """JSON lines through a bounded queue, so a slow stdin producer still gets its rows sent promptly."""

    def read(router: Any, stop: threading.Event, health: Health) -> tuple[int, int]:
        q: queue.Queue[tuple[str, int, bytes] | None] = queue.Queue(maxsize=batch_size * 4)
        failed: list[OSError] = []  # what ended the reading early: told here, not in the thread's own traceback

        def reader() -> None:
            try:
                with contextlib.closing(numbered_lines(inputs)) as lines:
                    for item in lines:
                        if stop.is_set():
                            return
                        q.put(item)
            except OSError as exc:  # an input missing, unreadable or failing mid-way (EIO)
                failed.append(exc)
            finally:
                q.put(None)

        threading.Thread(target=reader, name="tetrapipe-forward-reader", daemon=True).start()
        rows: list[dict[str, Any]] = []
        n_read = bad = 0
        last = time.monotonic()
        done = False
        while not done and not stop.is_set():
            health.heartbeat()
            try:
                item = q.get(timeout=0.5)
            except queue.Empty:
                item = ()
            if item is None:
                done = True
            elif item:
                path, n, line = item
                if line.strip():
                    row = parse_row(line, f"{path}:{n}", on_bad)
                    if row is None:
                        bad += 1
                    else:
                        rows.append(row)
                        n_read += 1
            if rows and (done or len(rows) >= batch_size or time.monotonic() - last >= 1.0):
                router.handle_rows(rows)
                rows, last = [], time.monotonic()
        if rows:
            router.handle_rows(rows)
        if failed:
            exc = failed[0]
            where = exc.filename if exc.filename is not None else "the input"
            raise InputError(f"cannot read {where}: {exc.strerror or exc} (after {n_read:,} record(s))") from exc
        return n_read, bad

    return read


def from_kafka(
    bootstrap: str,
    topics: list[str],
    group: str,
    batch_size: int,
    *,
    exit_at_eof: bool,
    options: dict[str, Any],
    on_bad: BadRow,
    client: str = "auto",
) -> Source:
    """Consume, route, flush (each sink delivered or spooled the records), then commit: at least once."""

    def read(router: Any, stop: threading.Event, health: Health) -> tuple[int, int]:
        # the events topic may be created after the forwarder starts (by the processor's first batch, or an
        # operator): refresh metadata every 30 s instead of kafka-python's 5 min so it is joined soon after
        consumer = new_consumer(
            bootstrap,
            topics,
            group=group,
            auto_offset_reset="earliest",
            max_poll_records=batch_size,
            metadata_max_age_ms=30_000,
            options=options,
            client=client,
        )
        n_read = bad = idle = 0
        uncommitted = told = False
        try:
            while not stop.is_set():
                health.heartbeat()
                polled = consumer.poll(timeout_ms=500, max_records=batch_size)
                rows: list[dict[str, Any]] = []
                for tp, records in polled.items():
                    for rec in records:
                        row = parse_row(rec.value, f"{tp.topic}/{tp.partition}@{rec.offset}", on_bad)
                        if row is None:
                            bad += 1
                        else:
                            rows.append(row)
                if rows:
                    router.handle_rows(rows)
                    n_read += len(rows)
                if polled:
                    router.flush()
                    uncommitted, idle = True, 0
                else:
                    idle += 1
                if uncommitted:
                    # records a peer has not confirmed yet (HEC acks overdue: sent again) are only in memory, so
                    # the offsets wait; a later commit covers them once confirmed (the pump polls the acks)
                    held = router.unconfirmed()
                    if not held:
                        consumer.commit()
                        uncommitted = False
                    elif polled:
                        log.warning("offsets not committed: %d record(s) not acknowledged yet", held)
                if not polled and exit_at_eof and idle >= 3 and at_end(consumer):
                    behind = unread_elsewhere(consumer, topics)
                    if not behind:
                        break
                    if not told:  # a killed member holds its partitions until its session times out
                        log.info("my partitions are read; waiting for the rest of the group (%d partition(s))", behind)
                        told = True
        finally:
            consumer.close()
        return n_read, bad

    return read


def from_lake(lake: Lake | str, tables: list[str], since: str | None, until: str | None, batch_size: int) -> Source:
    """The rows of ``tables`` (``alerts``, ``events``) between ``since`` and ``until``, oldest first."""

    def read(router: Any, stop: threading.Event, health: Health) -> tuple[int, int]:
        n_read = 0
        for name in tables:
            with contextlib.closing(read_rows(lake, name, since, until, batch_size)) as batches:
                for tbl in batches:
                    health.heartbeat()
                    if stop.is_set():
                        return n_read, 0
                    n_read += tbl.num_rows
                    router.handle(**{name: tbl})
        return n_read, 0

    return read


def drain(router: Any, timeout: float, stop: threading.Event, health: Health) -> None:
    """Flush, then keep probing a SIEM that is down until the spools are empty or the time is up."""
    deadline = time.monotonic() + timeout
    router.flush()
    while router.backlog() and time.monotonic() < deadline and not stop.is_set():
        health.heartbeat()
        time.sleep(0.2)
        router.poll()
    router.flush()


@dataclass
class ForwardResult:
    """What one forward did: rows read, unreadable lines, each sink's counters, whether a signal stopped it."""

    read: int = 0
    bad: int = 0
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    stopped: bool = False

    @property
    def ok(self) -> bool:
        """Everything delivered: no drop, no reject, no unreadable line, nothing left in a spool.

        After SIGTERM/SIGINT the spool is the hand-over to the next run (a pod
        being replaced), not a failure; at the end of an input (files,
        ``exit_at_eof``) records still waiting mean the delivery is incomplete.
        """
        waiting = not self.stopped and any(s["spool_records"] for s in self.stats.values())
        trouble = waiting or any(s["dropped"] or s["rejected"] for s in self.stats.values())
        return not trouble and not self.bad


def forward(router: Any, source: Source, *, drain_timeout: float, health: Health) -> ForwardResult:
    """Run ``source`` into ``router`` until it ends or SIGTERM/SIGINT, drain, close the router.

    ``health`` gets an ``input`` readiness check (reading or not) and the
    loop's heartbeats.
    """
    reading = threading.Event()
    health.add_check("input", lambda: (reading.is_set(), "reading" if reading.is_set() else "not reading"))
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    router.start(interval=0.5)
    result = ForwardResult()
    failed: InputError | None = None
    try:
        reading.set()
        try:
            result.read, result.bad = source(router, stop, health)
        except InputError as exc:  # what was read before it is still delivered (or spooled) below
            failed = exc
        reading.clear()
        drain(router, drain_timeout, stop, health)
    finally:
        reading.clear()
        router.close()
    if failed is not None:
        raise failed
    result.stats = router.stats()
    result.stopped = stop.is_set()
    return result


__all__ = [
    "BadRow",
    "ForwardResult",
    "InputError",
    "Source",
    "default_topics",
    "drain",
    "forward",
    "from_kafka",
    "from_lake",
    "from_lines",
    "parse_row",
]
