"""``tetrapipe collect``: one node's Tetragon events into Kafka, nothing lost, nothing doubled.

The loop, on one thread (kafka-python's sender is the only other busy one):

1. **Read** a chunk of complete lines from the source (the export file and its
   rotations, stdin, or Tetragon's gRPC stream).
2. **Produce** it (:class:`~tetrapipe.sinks.kafka.KafkaSink`, key = node_name).
3. **Checkpoint** once Kafka acknowledged it: the source position of the
   newest chunk such that it and every chunk before it are safe, written
   atomically (temp file, fsync, rename) about once a second and at exit. A
   crash (even ``kill -9``) therefore resumes at the last acknowledged line:
   nothing lost; what was sent but not yet acknowledged is sent again.
4. **Count possible duplicates.** Before each chunk goes to the producer, a
   tiny "sent up to" mark is overwritten in place (no fsync: it survives a
   killed process, not a power cut). After a restart, the events re-read
   between the checkpoint and that mark are exactly the ones that may now be
   in the topic twice; they are counted as ``redelivered``.

**Backpressure and outages.** Unacknowledged data in memory is bounded
(``buffer_bytes``). While Kafka keeps acknowledging, a full buffer just
pauses reading (the file is the buffer). When Kafka stops acknowledging (the
broker is gone), reading goes on into a **disk spool** (bounded by
``spool_bytes``; chunk files written atomically), because Tetragon keeps
rotating and deletes its old backups, and a gRPC stream drops what is not
read. Once the spool holds data, new chunks queue behind it, so order is
kept; when Kafka is back the spool drains first. A chunk's spooling makes it
as safe as an acknowledgement, so the checkpoint records both the source
position and how far the spool goes (spool files beyond it after a crash are
left-overs of an unfinished checkpoint and are deleted, the source re-reads
them).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from tetrapipe.lake.store import atomic_write_bytes, open_private_fd, private_dirs
from tetrapipe.metrics import Health
from tetrapipe.sinks.kafka import KafkaSettings, KafkaSink, Pending
from tetrapipe.sources.follow import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_MAX_LINE_BYTES,
    Chunk,
    FileFollower,
    Reject,
    StreamFollower,
)

log = logging.getLogger("tetrapipe.collect")

DEFAULT_STATE_DIR = "./tetrapipe-state"
_CHECKPOINT_VERSION = 1
_MARK_SIZE = 256


class Source(Protocol):
    label: str

    def read(self) -> Chunk | None: ...

    def lag_bytes(self) -> int: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------


def source_kind(spec: str) -> tuple[str, str]:
    """``file`` / ``stdin`` / ``grpc`` and the path or address, from a SOURCE argument."""
    if spec == "-":
        return "stdin", "-"
    low = spec.lower()
    if low.startswith("file://"):
        path = spec[len("file://") :]
        if not path.startswith("/"):
            raise ValueError(
                f"{spec!r}: a file URL needs an absolute path (file:///var/run/cilium/tetragon/tetragon.log)"
            )
        return "file", path
    if low.startswith(("grpc://", "unix://", "unix:", "tcp://")):
        return "grpc", spec
    if "://" in spec:
        raise ValueError(
            f"{spec!r}: unknown source scheme (use a path, file://, grpc://HOST:PORT, unix:///SOCKET or -)"
        )
    return "file", spec


class GrpcChunks:
    """Chunks from Tetragon's gRPC stream (:class:`~tetrapipe.sources.grpc_source.GrpcSource`).

    ``lines()`` blocks while the agent is quiet, so a pump thread moves lines
    into a deque and the collector takes what is there. The deque is bounded:
    when the collector cannot keep up, the pump stops pulling and the gRPC
    source's own buffer fills and counts the backpressure (Tetragon then
    drops: the stats say so).
    """

    def __init__(
        self,
        address: str,
        *,
        exit_at_eof: bool = False,
        chunk_events: int = 1000,
        max_buffered: int = 50_000,
        **grpc_options: Any,
    ) -> None:
        from tetrapipe.sources.grpc_source import GrpcSource

        self.label = address
        self.src = GrpcSource(address, exit_at_eof=exit_at_eof, **grpc_options)
        self.chunk_events = chunk_events
        self.max_buffered = max_buffered
        self._buf: deque[bytes] = deque()
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._pump, name="tetrapipe-grpc-pump", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            buf = self._buf
            for line in self.src.lines():
                while len(buf) >= self.max_buffered and not self._done.is_set():
                    time.sleep(0.005)
                buf.append(line)
        except BaseException as exc:  # noqa: BLE001 - handed to the collector thread
            self._error = exc
        finally:
            self._done.set()

    @property
    def exhausted(self) -> bool:
        return self._done.is_set() and not self._buf

    def read(self) -> Chunk | None:
        buf = self._buf
        n = min(len(buf), self.chunk_events)
        if not n:
            if self._done.is_set() and self._error is not None:
                err, self._error = self._error, None
                raise err
            if not self._done.is_set():
                time.sleep(0.005)
            return None
        pop = buf.popleft
        lines = [pop() for _ in range(n)]
        return Chunk(lines, sum(map(len, lines)) + n, None, self.label)

    def lag_bytes(self) -> int:
        return 0

    def close(self) -> None:
        self._done.set()
        self.src.stop()


# ---------------------------------------------------------------------------
# Spool
# ---------------------------------------------------------------------------


class Spool:
    """Chunks parked on disk while Kafka is away: one file per chunk, written atomically, oldest sent first."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.files: dict[int, int] = {}  # seq -> size
        self.next_seq = 0
        self._send_from = 0  # lowest seq not handed to the sink yet
        self._events = 0
        # scanned even when spooling is now off: what an earlier run parked must still be delivered
        if directory.exists():
            for p in directory.glob("*.spool"):
                try:
                    self.files[int(p.stem)] = p.stat().st_size
                    with open(p, "rb") as f:
                        self._events += int(json.loads(f.readline()).get("lines", 0))
                except (ValueError, OSError):
                    continue
            if self.files:
                self.next_seq = max(self.files) + 1
                self._send_from = min(self.files)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def bytes(self) -> int:
        return sum(self.files.values())

    @property
    def events(self) -> int:
        return self._events

    def has_room(self) -> bool:
        return self.enabled and self.bytes < self.max_bytes

    def has_unsent(self) -> bool:
        return any(s >= self._send_from for s in self.files)

    def drop_from(self, seq: int) -> int:
        """Delete chunks ``>= seq``: spooled after the last checkpoint, so the source reads them again."""
        gone = 0
        for s in sorted(self.files):
            if s >= seq:
                (self.dir / f"{s:012d}.spool").unlink(missing_ok=True)
                del self.files[s]
                gone += 1
        # never reuse a number the checkpoint already covers
        self.next_seq = max(seq, max(self.files, default=-1) + 1)
        return gone

    def put(self, chunk: Chunk, total_start: int) -> int:
        seq = self.next_seq
        header = json.dumps(
            {"source": chunk.source, "total": total_start, "nbytes": chunk.nbytes, "lines": len(chunk.lines)}
        ).encode()
        data = b"\n".join([header, *chunk.lines]) + b"\n"
        atomic_write_bytes(self.dir / f"{seq:012d}.spool", data)
        self.files[seq] = len(data)
        self.next_seq = seq + 1
        self._events += len(chunk.lines)
        return seq

    def take(self) -> tuple[Chunk, int] | None:
        """The oldest chunk not handed out yet, and its position in the source's byte stream."""
        ready = [s for s in self.files if s >= self._send_from]
        if not ready:
            return None
        seq = min(ready)
        self._send_from = seq + 1
        data = (self.dir / f"{seq:012d}.spool").read_bytes()
        parts = data.split(b"\n")
        parts.pop()  # after the final newline
        header = json.loads(parts[0])
        lines = parts[1:]
        chunk = Chunk(lines, int(header.get("nbytes", len(data))), None, header.get("source", ""), spool_seq=seq)
        return chunk, int(header.get("total", 0))

    def remove(self, seq: int, events: int) -> None:
        (self.dir / f"{seq:012d}.spool").unlink(missing_ok=True)
        self.files.pop(seq, None)
        self._events = max(0, self._events - events)


# ---------------------------------------------------------------------------
# The collector
# ---------------------------------------------------------------------------


@dataclass
class CollectOptions:
    """Everything ``tetrapipe collect`` takes besides Kafka's settings."""

    source: str
    start: str = "checkpoint"
    state_dir: str = DEFAULT_STATE_DIR
    node_name: str = ""
    headers: bool = False
    buffer_bytes: int = 32 * 1024 * 1024
    spool_bytes: int = 1024 * 1024 * 1024
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    checkpoint_interval: float = 0.05  # least time between checkpoint writes (bounds fsyncs to 20/s)
    stats_interval: float = 30.0
    poll_interval: float = 0.1
    stall_seconds: float = 5.0  # no acknowledgement for this long with data pending: spool
    drain_timeout: float = 10.0
    exit_at_eof: bool = False
    grpc_options: dict[str, Any] = field(default_factory=dict)


class CheckpointWriter:
    """Writes the newest checkpoint on its own thread, atomically (temp file, fsync, rename).

    Why a thread: an fsync costs milliseconds, dozens of times a second at full
    speed; on the loop it would stall reading, while here it only bounds how
    stale the checkpoint is. Positions that arrive while a write is under way
    are coalesced: only the newest is written next. After a ``kill -9`` the
    collector resumes at most a few milliseconds of acknowledgements behind,
    which keeps the re-sent (possibly duplicated) window to about what was
    unacknowledged.
    """

    def __init__(self, path: Path, min_interval: float = 0.0) -> None:
        self.path = path
        self.min_interval = min_interval
        self.written_at = 0.0
        self.writes = 0
        self._pending: bytes | None = None
        self._cond = threading.Condition()
        self._busy = False
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="tetrapipe-checkpoint", daemon=True)
        self._thread.start()

    def submit(self, data: bytes) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise RuntimeError(f"cannot write checkpoint {self.path}: {err}") from err
        with self._cond:
            self._pending = data
            self._cond.notify()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything submitted is on disk."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._pending is not None or self._busy) and time.monotonic() < deadline:
                self._cond.wait(0.05)
        if self._error is not None:
            raise RuntimeError(f"cannot write checkpoint {self.path}: {self._error}") from self._error

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None and self._closed:
                    return
                data, self._pending = self._pending, None
                self._busy = True
            try:
                atomic_write_bytes(self.path, data)
                self.written_at = time.time()
                self.writes += 1
            except OSError as exc:
                self._error = exc
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if self.min_interval:
                time.sleep(self.min_interval)


@dataclass(slots=True)
class Ticket:
    """A source chunk on its way to safety (acknowledged, or spooled)."""

    position: dict[str, Any] | None
    total_end: int  # source bytes consumed up to the end of this chunk (since the first run)
    spool_upto: int = 0
    safe: bool = False


class CollectMetrics:
    """The collector's Prometheus series (fed in deltas once per loop turn, never per event)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p = "tetrapipe_collect_"
        self.read = Counter(p + "events_read", "Events read from the source", registry=registry)
        self.bytes_read = Counter(p + "bytes_read", "Source bytes consumed", registry=registry)
        self.sent = Counter(p + "events_sent", "Events handed to the Kafka producer (first time)", registry=registry)
        self.acked = Counter(p + "events_acked", "Events acknowledged by Kafka", registry=registry)
        self.retried = Counter(p + "events_retried", "Events sent again after a producer failure", registry=registry)
        self.rejected = Counter(p + "events_rejected", "Events not delivered, by reason", ["reason"], registry=registry)
        self.redelivered = Counter(
            p + "events_redelivered",
            "Events sent again after a restart that may already be in the topic",
            registry=registry,
        )
        self.spooled = Counter(p + "events_spooled", "Events parked in the disk spool", registry=registry)
        self.buffered = Gauge(
            p + "events_buffered", "Events read but not acknowledged yet", ["where"], registry=registry
        )
        self.buffered_bytes = Gauge(
            p + "bytes_buffered", "Bytes read but not acknowledged yet", ["where"], registry=registry
        )
        self.lag = Gauge(p + "lag_bytes", "Bytes behind the end of the source (unread file data)", registry=registry)
        self.kafka_up = Gauge(p + "kafka_up", "1 while the Kafka producer is up and acknowledging", registry=registry)
        self.checkpoint_time = Gauge(
            p + "checkpoint_timestamp_seconds", "When the last checkpoint was written", registry=registry
        )
        self.rotations = Counter(p + "file_rotations", "Rotations of the followed file", registry=registry)
        self.truncations = Counter(p + "file_truncations", "Truncations of the followed file", registry=registry)
        self.files_lost = Counter(
            p + "files_lost",
            "Rotated files deleted (past Tetragon's max backups) before they were read",
            registry=registry,
        )


@dataclass
class CollectTotals:
    read: int = 0
    bytes_read: int = 0
    sent: int = 0
    acked: int = 0
    retried: int = 0
    rejected: int = 0
    redelivered: int = 0
    spooled: int = 0
    seconds: float = 0.0
    peak_buffered_bytes: int = 0
    lost_warnings: list[str] = field(default_factory=list)


def _slug(spec: str) -> str:
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", spec.strip("/"))[-48:].strip("_") or "stdin"
    return f"{tail}-{sha256(spec.encode()).hexdigest()[:8]}"


class Collector:
    """Source -> Kafka with checkpoints, spool, metrics and a periodic one-line report."""

    def __init__(
        self,
        opts: CollectOptions,
        kafka: KafkaSettings,
        *,
        registry: CollectorRegistry | None = None,
        health: Health | None = None,
        stop: threading.Event | None = None,
        report: Callable[[str], None] | None = None,
        producer_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.opts = opts
        self.kind, self.target = source_kind(opts.source)
        self.stop = stop or threading.Event()
        self.registry = registry or CollectorRegistry()
        self.metrics = CollectMetrics(self.registry)
        self.health = health or Health()
        self.report = report or log.info
        state = Path(opts.state_dir)
        ident = self.target if self.kind != "file" else os.path.abspath(self.target)
        slug = _slug(f"{self.kind}:{ident}")
        self.checkpoint_path = state / f"collect-{slug}.json"
        self.mark_path = state / f"collect-{slug}.sent"
        self.spool = Spool(state / f"spool-{slug}", opts.spool_bytes)
        sink_kwargs: dict[str, Any] = {
            "node_name": opts.node_name,
            "headers": opts.headers,
            "on_reject": self._on_sink_reject,
            "on_sent": self._on_sent,
        }
        if producer_factory is not None:
            sink_kwargs["producer_factory"] = producer_factory
        self.sink = KafkaSink(kafka, **sink_kwargs)
        self.tickets: deque[Ticket] = deque()
        self.totals = CollectTotals()
        self._total = 0  # source bytes consumed since the first run (restored from the checkpoint)
        self._redeliver_until = 0
        self._redeliver_spool = -1  # spool chunks up to this seq were sent before a restart
        self._mark = {"total": 0, "spool": -1}
        self._ckpt_state: dict[str, Any] | None = None
        self._ckpt_dirty = False
        self._ckpt_writer = CheckpointWriter(self.checkpoint_path, opts.checkpoint_interval)
        self._mark_fd: int | None = None
        self._reject_logged = 0
        self._synced: dict[str, int] = {}
        self.source: Source | None = None
        self.health.add_check("kafka", self._kafka_ready)

    # -- setup ----------------------------------------------------------------

    def _load_checkpoint(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.checkpoint_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise RuntimeError(
                f"checkpoint {self.checkpoint_path} is unreadable ({exc}); move it away to start "
                f"over (--from beginning|end)"
            ) from exc
        if data.get("version") != _CHECKPOINT_VERSION:
            raise RuntimeError(
                f"checkpoint {self.checkpoint_path} has version {data.get('version')}, expected {_CHECKPOINT_VERSION}"
            )
        return data

    def _open_source(self, ckpt: dict[str, Any] | None) -> Source:
        o = self.opts
        if self.kind == "file":
            position = (ckpt or {}).get("position") if o.start == "checkpoint" else None
            return FileFollower(
                self.target,
                start=o.start,
                checkpoint=position,
                chunk_bytes=o.chunk_bytes,
                max_line_bytes=o.max_line_bytes,
                line_nos=o.headers,
            )
        if self.kind == "stdin":
            import sys

            return StreamFollower(
                sys.stdin.buffer,
                chunk_bytes=o.chunk_bytes,
                max_line_bytes=o.max_line_bytes,
                line_nos=o.headers,
                wait_seconds=min(0.05, o.poll_interval),
            )
        return GrpcChunks(self.target, exit_at_eof=o.exit_at_eof, **o.grpc_options)

    def _restore(self) -> None:
        ckpt = self._load_checkpoint() if self.opts.start == "checkpoint" else None
        if ckpt is not None:
            self._total = int(ckpt.get("total", 0))
            orphans = self.spool.drop_from(int(ckpt.get("spool_upto", 0)))
            if orphans:
                log.info(
                    "dropped %d spool chunk(s) written after the last checkpoint (read again from the source)", orphans
                )
            self._ckpt_state = ckpt
        elif self.opts.start != "checkpoint" or not self.checkpoint_path.exists():
            # a fresh start: what a previous run spooled belongs to an abandoned position
            if self.spool.files and self.opts.start != "checkpoint":
                log.warning(
                    "--from %s: discarding %d spooled chunk(s) of an earlier run",
                    self.opts.start,
                    len(self.spool.files),
                )
                self.spool.drop_from(0)
        mark = self._read_mark()
        if ckpt is not None:
            self._redeliver_spool = mark["spool"]
            self._mark = {"total": self._total, "spool": mark["spool"]}
            if mark["total"] > self._total:
                self._redeliver_until = mark["total"]
                log.info(
                    "resuming %d bytes before where the last run had sent: those events may reach Kafka "
                    "twice (counted as redelivered)",
                    mark["total"] - self._total,
                )
        self.source = self._open_source(ckpt)

    # -- the sent mark -----------------------------------------------------------

    def _read_mark(self) -> dict[str, int]:
        try:
            raw = json.loads(self.mark_path.read_bytes().rstrip(b" \n\x00") or b"{}")
            return {"total": int(raw.get("total", 0)), "spool": int(raw.get("spool", -1))}
        except (OSError, ValueError):
            return {"total": 0, "spool": -1}

    def _on_sent(self, entry: Pending) -> None:
        """Overwrite the "sent up to" mark in place (a killed process keeps it; see the module doc)."""
        mark = self._mark
        t, seq = entry.ticket, entry.chunk.spool_seq
        if isinstance(t, Ticket) and t.total_end > mark["total"]:
            mark["total"] = t.total_end
        elif seq is not None and seq > mark["spool"]:
            mark["spool"] = seq
        else:
            return
        if self._mark_fd is None:
            # owner-only like the checkpoint and the spool (they say what was read from the node's log)
            private_dirs(self.mark_path.parent)
            self._mark_fd = open_private_fd(self.mark_path)
        data = json.dumps(mark).encode().ljust(_MARK_SIZE - 1) + b"\n"
        os.pwrite(self._mark_fd, data, 0)

    # -- checkpoints ------------------------------------------------------------

    def _advance(self, acked: list[Pending]) -> None:
        for entry in acked:
            if entry.chunk.spool_seq is not None:
                self.spool.remove(entry.chunk.spool_seq, len(entry.chunk.lines))
            elif isinstance(entry.ticket, Ticket):
                entry.ticket.safe = True
        last = None
        while self.tickets and self.tickets[0].safe:
            last = self.tickets.popleft()
        if last is not None:
            self._ckpt_state = {
                "version": _CHECKPOINT_VERSION,
                "source": self.opts.source,
                "position": last.position,
                "total": last.total_end,
                "spool_upto": last.spool_upto,
            }
            self._ckpt_dirty = True

    def _write_checkpoint(self, force: bool = False) -> None:
        """Hand the newest safe position to the checkpoint thread (``force``: write it now, and wait)."""
        if self._ckpt_dirty:
            state = dict(self._ckpt_state or {})
            state["written_at"] = time.time()
            self._ckpt_writer.submit(json.dumps(state, separators=(",", ":")).encode())
            self._ckpt_dirty = False
        if force:
            self._ckpt_writer.flush()
        if self._ckpt_writer.written_at:
            self.metrics.checkpoint_time.set(self._ckpt_writer.written_at)

    # -- rejects ----------------------------------------------------------------

    def _note_rejects(self, rejects: list[Reject]) -> None:
        for r in rejects:
            self.totals.rejected += 1
            self.metrics.rejected.labels("too_long").inc()
            if self._reject_logged < 20:
                self._reject_logged += 1
                log.warning("%s:%d: %s", r.source, r.line_no, r.reason)

    def _on_sink_reject(self, chunk: Chunk, i: int, exc: BaseException) -> None:
        self.totals.rejected += 1
        self.metrics.rejected.labels("broker").inc()
        if self._reject_logged < 20:
            self._reject_logged += 1
            where = f"{chunk.source}:{chunk.line_nos[i]}" if chunk.line_nos else f"{chunk.source} (chunk line {i + 1})"
            log.warning("%s: Kafka refused the event for good (%r); skipped", where, exc)

    # -- the loop ---------------------------------------------------------------

    def _kafka_ready(self) -> tuple[bool, str]:
        """Readiness: a producer is up and Kafka acknowledges (not just "connected once")."""
        if self._kafka_stalled(time.monotonic()):
            waited = time.monotonic() - self.sink.last_ack
            return False, f"{self.sink.describe()}; no acknowledgement for {waited:.0f}s"
        return True, self.sink.describe()

    def _kafka_stalled(self, now: float) -> bool:
        sink = self.sink
        if not sink.connected:
            return True
        return sink.pending > 0 and now - sink.last_ack > self.opts.stall_seconds

    def _take_chunk(self, now: float) -> str:
        """Read one chunk and route it. Returns 'read', 'idle' or 'full'."""
        o = self.opts
        sink, spool = self.sink, self.spool
        direct = sink.pending_bytes < o.buffer_bytes and not spool.has_unsent()
        to_spool = not direct and spool.has_room() and (spool.has_unsent() or self._kafka_stalled(now))
        if not (direct or to_spool):
            return "full"
        assert self.source is not None
        chunk = self.source.read()
        if chunk is None:
            return "idle"
        n = len(chunk.lines)
        start = self._total
        self._total += chunk.nbytes
        self.totals.read += n
        self.totals.bytes_read += chunk.nbytes
        if chunk.rejects:
            self._note_rejects(chunk.rejects)
        if self._redeliver_until > start:
            self.totals.redelivered += n
        ticket = Ticket(chunk.position, self._total)
        self.tickets.append(ticket)
        if direct:
            ticket.spool_upto = spool.next_seq
            sink.submit(chunk, ticket)
        else:
            spool.put(chunk, start)
            ticket.spool_upto = spool.next_seq
            ticket.safe = True
            self.totals.spooled += n
            self._advance([])
        return "read"

    def _feed_from_spool(self) -> None:
        sink, spool = self.sink, self.spool
        while spool.has_unsent() and sink.connected and sink.pending_bytes < self.opts.buffer_bytes:
            got = spool.take()
            if got is None:
                return
            chunk, _start = got
            if chunk.spool_seq is not None and chunk.spool_seq <= self._redeliver_spool:
                self.totals.redelivered += len(chunk.lines)
            sink.submit(chunk, None)

    def _drained(self) -> bool:
        """Nothing more will come: a pipe or stream that ended; a file at its end with ``exit_at_eof``."""
        if hasattr(self.source, "exhausted"):
            return bool(self.source.exhausted)  # type: ignore[union-attr]
        return self.opts.exit_at_eof

    def _all_safe(self) -> bool:
        return self.sink.pending == 0 and not self.spool.files and not self.tickets

    def run(self) -> CollectTotals:
        """Collect until stopped (or, with ``exit_at_eof``, until the source is drained and acknowledged)."""
        o = self.opts
        t0 = time.monotonic()
        self._restore()
        assert self.source is not None
        next_stats = t0 + o.stats_interval
        self.report(f"collecting {o.source} -> Kafka {','.join(self.sink.settings.bootstrap)} topic {self.sink.topic}")
        error: BaseException | None = None
        try:
            while True:
                now = time.monotonic()
                self.health.heartbeat()
                self._advance(self.sink.poll())
                self._feed_from_spool()
                state = "full" if self.stop.is_set() else "read"
                turns = 0
                while state == "read" and turns < 16:
                    state = self._take_chunk(now)
                    turns += 1
                    if state == "read" and turns % 4 == 0:
                        self._advance(self.sink.poll())
                self._write_checkpoint()
                self._sync_metrics()
                if now >= next_stats:
                    next_stats = now + o.stats_interval
                    self.report(self.stats_line(now - t0))
                if self.stop.is_set():
                    break
                drained = state == "idle" and self._drained()
                if drained and self._all_safe():
                    break
                if state == "read":
                    continue
                if drained:
                    self.sink.flush(timeout=0.2)  # nothing more to read: do not wait for linger
                self.stop.wait(0.005 if self.sink.pending else (o.poll_interval if state == "idle" else 0.02))
        except BaseException as exc:  # noqa: BLE001 - drained and checkpointed below, then re-raised
            error = exc
        finally:
            self._shutdown(t0)
        if error is not None:
            raise error
        return self.totals

    def _shutdown(self, t0: float) -> None:
        """Wait (bounded) for what is in flight, checkpoint what was acknowledged, close."""
        deadline = time.monotonic() + self.opts.drain_timeout
        try:
            while self.sink.pending and time.monotonic() < deadline:
                self.sink.flush(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
                self._advance(self.sink.poll())
                if self.sink.pending and not self.sink.connected:
                    time.sleep(0.1)
            self._write_checkpoint(force=True)
        finally:
            if self.sink.pending:
                log.warning(
                    "%d chunk(s) (%d events) not acknowledged at exit; the next run sends them again",
                    self.sink.pending,
                    self.sink.pending_events,
                )
            self.sink.close()
            if self.source is not None:
                self.totals.lost_warnings = list(getattr(self.source, "lost_warnings", []))
                self.source.close()
            if self._mark_fd is not None:
                os.close(self._mark_fd)
                self._mark_fd = None
            self._ckpt_writer.close()
            self._sync_metrics()
            self.totals.seconds = time.monotonic() - t0
            self.report(self.stats_line(self.totals.seconds, final=True))

    # -- reporting --------------------------------------------------------------

    def _sync_metrics(self) -> None:
        m, s, t = self.metrics, self.sink, self.totals
        t.sent, t.acked, t.retried = s.sent, s.acked, s.retried
        for name, value, counter in (
            ("read", t.read, m.read),
            ("bytes", t.bytes_read, m.bytes_read),
            ("sent", s.sent, m.sent),
            ("acked", s.acked, m.acked),
            ("retried", s.retried, m.retried),
            ("redelivered", t.redelivered, m.redelivered),
            ("spooled", t.spooled, m.spooled),
            ("rotations", getattr(self.source, "rotations", 0), m.rotations),
            ("truncations", getattr(self.source, "truncations", 0), m.truncations),
            ("files_lost", getattr(self.source, "files_lost", 0), m.files_lost),
        ):
            delta = value - self._synced.get(name, 0)
            if delta > 0:
                counter.inc(delta)
                self._synced[name] = value
        m.buffered.labels("memory").set(s.pending_events)
        m.buffered.labels("spool").set(self.spool.events)
        m.buffered_bytes.labels("memory").set(s.pending_bytes)
        m.buffered_bytes.labels("spool").set(self.spool.bytes)
        m.kafka_up.set(1 if s.connected and not self._kafka_stalled(time.monotonic()) else 0)
        t.peak_buffered_bytes = max(t.peak_buffered_bytes, s.pending_bytes)

    def lag_bytes(self) -> int:
        try:
            return self.source.lag_bytes() if self.source is not None else 0
        except OSError:
            return 0

    def stats_line(self, elapsed: float, final: bool = False) -> str:
        t, s = self.totals, self.sink
        lag = self.lag_bytes() if not final else 0
        self.metrics.lag.set(lag)
        rate = t.read / elapsed if elapsed > 0 else 0.0
        lost = getattr(self.source, "files_lost", 0)
        return (
            f"collect{' done' if final else ''}: read {t.read:,} sent {s.sent:,} acked {s.acked:,} "
            f"buffered {s.pending_events + self.spool.events:,} (spool {self.spool.events:,}) "
            f"retried {s.retried:,} rejected {t.rejected:,} redelivered {t.redelivered:,} "
            + (f"FILES LOST {lost:,} " if lost else "")
            + f"lag {lag / 1e6:.1f} MB, {rate:,.0f} events/s, "
            f"kafka {self._kafka_ready()[1] if not final else 'closed'}"
        )
