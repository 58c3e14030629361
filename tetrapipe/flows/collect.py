"""``tetrapipe collect``: one node's Tetragon events into Kafka, nothing lost, nothing doubled.

The loop, on one thread (kafka-python's sender is the only other busy one):

1. **Read** a chunk of complete lines from the source (the export file and its
   rotations, stdin, or Tetragon's gRPC stream).
2. **Produce** it (:class:`~tetrapipe.sinks.kafka.ChunkProducer`, key = node_name).
3. **Checkpoint** once Kafka acknowledged it: the source position of the
   newest chunk such that it and every chunk before it are safe, written
   atomically (temp file, fsync, rename) about once a second and at exit. A
   crash (even ``kill -9``) therefore resumes at the last acknowledged line:
   nothing lost; what was sent but not yet acknowledged is sent again.
4. **Count possible duplicates.** Before each chunk goes to the producer, a
   tiny "sent up to" mark is overwritten in place (no fsync: it survives a
   killed process, not a power cut). After a restart, the events re-read
   between the checkpoint and that mark are exactly the ones that may now be
   in the topic twice; they are counted as ``redelivered``. A first run killed
   before its first checkpoint reached the disk leaves none: a file is then
   read from the beginning again, and the mark (which says it counted from
   there) still gives the count. A stream is never read again: what a run
   reads from it is new and never counts, whatever the byte mark says; what
   it sends again is only its spool (below).

**Backpressure and outages.** Unacknowledged data in memory is bounded
(``buffer_bytes``). While Kafka keeps acknowledging, a full buffer just
pauses reading (the file is the buffer). When Kafka stops acknowledging (the
broker is gone), reading goes on into a **disk spool** (bounded by
``spool_bytes``; chunk files written atomically), because Tetragon keeps
rotating and deletes its old backups, and a gRPC stream drops what is not
read. Once the spool holds data, new chunks queue behind it, so order is
kept; when Kafka is back the spool drains first. A chunk's spooling makes it
as safe as an acknowledgement, so the checkpoint records both the source
position and how far the spool goes (spool files of a file source beyond it
after a crash are left-overs of an unfinished checkpoint and are deleted, the
source re-reads them; a stream's are kept, since it cannot).

**The spool's bound is a promise about disk use:** its batch files, the one
being written included, never hold more than ``spool_bytes``. A batch that
does not fit is not written (:mod:`tetrapipe.flows.collect_park`): a
stream's goes in as many lines as fit, and the rest waits in memory while
reading stops (the stream waits in its pipe, or in Tetragon's buffer) until
the spool has room again, or Kafka acknowledges again and the spool has
nothing older to send; a file's chunk waits whole (the file is the buffer).

**A stream's unacknowledged chunks** (stdin, gRPC: only memory holds them)
are **parked** in the spool, in order, when Kafka stalls and at exit, and
taken from the producer (replaced, so it does not deliver its copies behind
the spool's back); a stalled stream then reads on into the spool. Neither
SIGTERM with the broker away nor a kill during an outage loses them, as far
as the bound allows: what does not fit waits in memory (a ``kill -9`` loses
that, at most the memory buffer and one chunk), and what still does not fit
at exit is lost and said so: an error in the log, the exit summary, and
``tetrapipe_collect_events_rejected_total{reason="lost_at_exit"}``.

**A stream's redelivered count is exact:** only its spool is sent again. A
parked batch records how many of its lines a producer had (``sent``): Kafka
may hold those already, so sending them again counts them as
``redelivered``; a batch an earlier run had sent from the spool (up to the
mark's batch number; a stream's batch numbers are never reused) counts all
its lines. Events never handed to a producer never count.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from tetrapipe.flows.collect_metrics import CollectMetrics, CollectTotals
from tetrapipe.flows.collect_options import CollectOptions, Source, source_kind
from tetrapipe.flows.collect_park import Held, Parking, is_stream_chunk
from tetrapipe.flows.collect_state import (
    CHECKPOINT_VERSION,
    CheckpointWriter,
    SentMark,
    Ticket,
    state_slug,
)
from tetrapipe.metrics import Health
from tetrapipe.sinks.kafka import ChunkProducer, KafkaSettings, Pending
from tetrapipe.sinks.spool import DiskSpool
from tetrapipe.sources.chunks import Chunk, Reject
from tetrapipe.sources.follow import FileFollower
from tetrapipe.sources.stdin import StreamFollower

log = logging.getLogger("tetrapipe.collect")


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
        slug = state_slug(f"{self.kind}:{ident}")
        self.checkpoint_path = state / f"collect-{slug}.json"
        self.mark_path = state / f"collect-{slug}.sent"
        self.spool = DiskSpool(state / f"spool-{slug}", opts.spool_bytes)
        sink_kwargs: dict[str, Any] = {
            "node_name": opts.node_name,
            "headers": opts.headers,
            "on_reject": self._on_sink_reject,
            "on_sent": self._on_sent,
        }
        if producer_factory is not None:
            sink_kwargs["producer_factory"] = producer_factory
        self.sink = ChunkProducer(kafka, **sink_kwargs)
        self.parking = Parking(self.spool, self.sink, split=self.kind != "file")  # what waits for spool room
        self.tickets: deque[Ticket] = deque()
        self.totals = CollectTotals()
        self._total = 0  # source bytes consumed since the first run (restored from the checkpoint)
        self._redeliver_until = 0
        self._redeliver_spool = -1  # spool chunks up to this seq were sent before a restart
        self._in_memory = 0  # chunks read from the source held by the sink unacknowledged (not from the spool)
        self._mark = SentMark(self.mark_path)
        self._ckpt_state: dict[str, Any] | None = None
        self._ckpt_dirty = False
        self._ckpt_writer = CheckpointWriter(self.checkpoint_path, opts.checkpoint_interval)
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
        if data.get("version") != CHECKPOINT_VERSION:
            raise RuntimeError(
                f"checkpoint {self.checkpoint_path} has version {data.get('version')}, expected {CHECKPOINT_VERSION}"
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
        from tetrapipe.sources.grpc import GrpcSource  # grpc loads only for a gRPC source

        return GrpcSource(self.target, exit_at_eof=o.exit_at_eof, **o.grpc_options)

    def _restore(self) -> None:
        ckpt = self._load_checkpoint() if self.opts.start == "checkpoint" else None
        if ckpt is not None:
            self._total = int(ckpt.get("total", 0))
            # spooled after the last checkpoint: a file reads them again from its position; a stream
            # (stdin, gRPC) cannot, and a spooled chunk is as safe as an acknowledged one, so they stay
            orphans = self.spool.drop_from(int(ckpt.get("spool_upto", 0))) if self.kind == "file" else 0
            if orphans:
                log.info(
                    "dropped %d spool chunk(s) written after the last checkpoint (read again from the source)", orphans
                )
            self._ckpt_state = ckpt
        elif self.opts.start != "checkpoint" or not self.checkpoint_path.exists():
            # a fresh start: what a previous run spooled belongs to an abandoned position (a file is
            # read again from where this run starts; a stream cannot be, so its spool is kept)
            if self.spool.batch_count and (self.opts.start != "checkpoint" or self.kind == "file"):
                log.warning(
                    "--from %s: discarding %d spooled chunk(s) of an earlier run%s",
                    self.opts.start,
                    self.spool.batch_count,
                    " that left no checkpoint (read again from the file)" if self.opts.start == "checkpoint" else "",
                )
                self.spool.drop_from(0)
        mark = self._mark.read()
        from_start = self.kind == "file" and self.opts.start in ("checkpoint", "beginning") and ckpt is None
        if self.kind != "file":
            # a stream is never read again: what this run reads is new, whatever the byte mark says (the
            # events past the checkpoint were acknowledged, parked, or died with the killed process). What
            # it sends again is only the spool, and batch numbers are never reused, so the mark's "sent
            # from the spool up to" names the same batches in this run as in the last
            self._redeliver_spool = mark["spool"]
            upto = int(ckpt.get("spool_upto", 0)) if ckpt is not None else 0
            self.spool.next_seq = max(self.spool.next_seq, mark["spool"] + 1, upto)
            sent_until, lineage = 0, 0
        elif ckpt is not None:
            self._redeliver_spool = mark["spool"]
            sent_until, lineage = mark["total"], mark["from_start"]
        else:
            # killed before its first checkpoint was on disk: the last run read from the beginning
            # too, so its mark says how much of what is read again it had sent
            resent = from_start and self.opts.start == "checkpoint" and mark["from_start"]
            sent_until, lineage = (mark["total"] if resent else 0), int(from_start)
        # what earlier runs sent stays marked until this one sends past it: killed again sooner, the
        # next run must still count all of it
        self._mark.state = {
            "total": max(self._total, sent_until),
            "spool": mark["spool"] if ckpt is not None or self.kind != "file" else -1,
            "from_start": lineage,
        }
        if sent_until > self._total:
            self._redeliver_until = sent_until
            log.info(
                "resuming %d bytes before where the last run had sent: those events may reach Kafka "
                "twice (counted as redelivered)",
                sent_until - self._total,
            )
        self.source = self._open_source(ckpt)

    # -- the sent mark -----------------------------------------------------------

    def _on_sent(self, entry: Pending) -> None:
        """Move the "sent up to" mark (see :class:`~tetrapipe.flows.collect_state.SentMark`)."""
        t = entry.ticket
        self._mark.advance(t.total_end if isinstance(t, Ticket) else None, entry.chunk.spool_seq)

    # -- checkpoints ------------------------------------------------------------

    def _advance(self, acked: list[Pending]) -> None:
        for entry in acked:
            if entry.chunk.spool_seq is not None:
                self.spool.remove_batch(entry.chunk.spool_seq)
            elif isinstance(entry.ticket, Ticket):
                entry.ticket.safe = True
                self._in_memory -= 1
        last = None
        while self.tickets and self.tickets[0].safe:
            last = self.tickets.popleft()
        if last is not None:
            self._ckpt_state = {
                "version": CHECKPOINT_VERSION,
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
        stalled = self._kafka_stalled(now)
        if self.parking.held:
            self._place_held(now)
            if self.parking.held:
                return "full"  # nothing more is read until what waits for the spool is in it (backpressure)
        # a stream's events wait out a stall on disk, not in memory: a kill then loses none of them
        park = self.kind != "file" and stalled and spool.enabled
        if park and self._in_memory:
            self._park_unacked("Kafka stalled")
            if self.parking.held:
                return "full"
        direct = not park and sink.pending_bytes < o.buffer_bytes and not spool.has_unsent()
        to_spool = not direct and spool.has_room() and (spool.has_unsent() or stalled)
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
            self._in_memory += 1
        else:
            # to the spool, as far as its bound allows; the rest waits in memory (and reading pauses)
            self.parking.held.append(Held(chunk.lines, chunk.nbytes, chunk.source, start, 0, ticket))
            self._place_held(now)
        return "read"

    def _feed_from_spool(self) -> None:
        sink, spool = self.sink, self.spool
        while spool.has_unsent() and sink.connected and sink.pending_bytes < self.opts.buffer_bytes:
            got = spool.take_batch()
            if got is None:
                return
            nbytes = int(got.meta.get("nbytes", sum(map(len, got.lines)) + len(got.lines)))
            chunk = Chunk(got.lines, nbytes, None, got.meta.get("source", ""), spool_seq=got.seq)
            if got.seq <= self._redeliver_spool:
                self.totals.redelivered += len(chunk.lines)  # sent from the spool before a restart
            else:
                # parked unacknowledged (_park_unacked): these had gone to a producer, Kafka may hold them
                self.totals.redelivered += int(got.meta.get("sent", 0))
            sink.submit(chunk, None)

    def _park_unacked(self, why: str) -> int:
        """Move a stream's chunks the producer holds unacknowledged to the spool, in order; the events moved.

        Why: a stream cannot be read again, so what only memory holds dies with
        the process. Parked, its tickets are safe (the checkpoint moves past
        it) and it is sent from the spool first. Order holds: a chunk goes to
        the sink directly only when every spool batch was handed out before it,
        and what is read from here on is spooled after these. A batch's
        ``sent`` counts its lines a producer had (see the module's docstring);
        the sink forgets the chunks (:meth:`ChunkProducer.release`). What does
        not fit within ``spool_bytes`` waits in memory (:mod:`.collect_park`).
        A write error is raised, as a spool write's is.
        """
        if self.kind == "file":
            return 0
        chunks = self.parking.take_from_sink() if self._in_memory else 0
        self._in_memory -= chunks
        events = self._place_held(None)
        if chunks:
            waiting = self.parking.events
            log.warning(
                "%s: %d unacknowledged chunk(s) (%d events) of the stream moved to the spool; they are sent from "
                "there%s",
                why,
                chunks,
                events,
                f"; {waiting} more do not fit in it now (--spool-bytes)" if waiting else "",
            )
        return events

    def _place_held(self, now: float | None) -> int:
        """Write what waits for the spool as far as it allows (or, ``now`` given, hand it to a producer that
        acknowledges and has nothing older to send); the events written. Tickets made safe move the checkpoint."""
        before = self.parking.spooled
        try:
            return self.parking.place(self._submit_held if now is not None else None)
        finally:
            self.totals.spooled += self.parking.spooled - before
            self._advance([])

    def _submit_held(self, held: Held) -> bool:
        """Hand held lines straight to the producer when that keeps the order and Kafka acknowledges again."""
        sink = self.sink
        if self.spool.has_unsent() or self._kafka_stalled(time.monotonic()):
            return False
        if sink.pending_bytes >= self.opts.buffer_bytes:
            return False
        held.ticket.spool_upto = self.spool.next_seq
        sink.submit(Chunk(held.lines, held.nbytes, None, held.source), held.ticket)
        self._in_memory += 1
        self.totals.redelivered += held.sent  # a producer had these before they were taken back
        return True

    def _drained(self) -> bool:
        """Nothing more will come: a pipe or stream that ended; a file at its end with ``exit_at_eof``."""
        if hasattr(self.source, "exhausted"):
            return bool(self.source.exhausted)  # type: ignore[union-attr]
        return self.opts.exit_at_eof

    def _all_safe(self) -> bool:
        return self.sink.pending == 0 and not self.spool.batch_count and not self.tickets and not self.parking.held

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
                if not self.sink.connected and (self.kind == "file" or self.spool.has_room()):
                    # the broker is away: the next run reads these again from the file, or sends a stream's
                    # from the spool (parked below), so a rollout need not wait for it (nor for a new
                    # producer's bootstrap)
                    break
                self.sink.flush(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
                self._advance(self.sink.poll())
                if self.sink.pending and not self.sink.connected:
                    time.sleep(0.1)
            if self.kind != "file" and self.spool.enabled:
                try:
                    # what a stream's producer still holds exists nowhere else: to the spool (as far as its
                    # bound allows), before the last checkpoint (which then covers it)
                    self._park_unacked("exit")
                except OSError as exc:
                    log.error("cannot park the stream's unacknowledged chunks in the spool: %s", exc)
            self._write_checkpoint(force=True)
        finally:
            lost = 0
            if self.kind != "file":
                lost = sum(len(u.lines) for u in self.sink.unacked(is_stream_chunk)) + self.parking.events
            if lost:
                # a stream cannot be read again: said in the log, the exit summary and the rejected counter
                self.totals.rejected += lost
                self.metrics.rejected.labels("lost_at_exit").inc(lost)
                log.error(
                    "%d event(s) of the stream not acknowledged at exit and not in the spool (%s): they are lost",
                    lost,
                    "--spool-bytes 0"
                    if not self.spool.enabled
                    else "full: --spool-bytes"
                    if self.parking.held
                    else "writing it failed",
                )
            elif self.sink.pending or self.parking.held:
                log.warning(
                    "%d chunk(s) (%d events) not acknowledged at exit; the next run sends them again",
                    self.sink.pending + len(self.parking.held),
                    self.sink.pending_events + self.parking.events,
                )
            # what the drain could not get acknowledged is not waited for again (the producer's close
            # used to wait up to 5 s more): the exit stays within drain_timeout
            self.sink.close(timeout=0)
            if self.source is not None:
                self.totals.lost_warnings = list(getattr(self.source, "lost_warnings", []))
                self.source.close()
            self._mark.close()
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
        m.buffered.labels("memory").set(s.pending_events + self.parking.events)
        m.buffered.labels("spool").set(self.spool.pending_records)
        m.buffered_bytes.labels("memory").set(s.pending_bytes + self.parking.nbytes)
        m.buffered_bytes.labels("spool").set(self.spool.pending_bytes)
        m.kafka_up.set(1 if s.connected and not self._kafka_stalled(time.monotonic()) else 0)
        t.peak_buffered_bytes = max(t.peak_buffered_bytes, s.pending_bytes + self.parking.nbytes)

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
            f"buffered {s.pending_events + self.parking.events + self.spool.pending_records:,} "
            f"(spool {self.spool.pending_records:,}) "
            f"retried {s.retried:,} rejected {t.rejected:,} redelivered {t.redelivered:,} "
            + (f"FILES LOST {lost:,} " if lost else "")
            + f"lag {lag / 1e6:.1f} MB, {rate:,.0f} events/s, "
            f"kafka {self._kafka_ready()[1] if not final else 'closed'}"
        )
