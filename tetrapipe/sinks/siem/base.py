"""What every SIEM sink shares: batching, retry with backoff, the disk spool, the counts.

A concrete sink implements one method, :meth:`DeliveringSink._deliver`, which
ships one batch or raises:

* :class:`TransientError` -- the peer is down, slow, busy or refused us for a
  reason an operator can fix (connection refused, timeout, HTTP 5xx / 429, a
  revoked token). The batch is retried with exponential backoff; when the
  attempts are used up it goes to the disk spool and the sink is *down*.
* :class:`RejectedError` -- the peer says these records can never be accepted
  (malformed for it, too large). Retrying would loop forever, so they are
  written to the dead-letter file ``rejected.jsonl`` in the spool directory,
  counted as ``rejected`` and logged. They are kept, not dropped.

While the sink is down, new records go straight to the spool (the processor
is not held up by a SIEM outage) and a probe is sent only when the backoff
delay has passed. While the spool holds records, new records are appended
behind them, so the SIEM receives everything in the order it was produced.

The counts (:class:`SinkStats`) are per record: ``delivered`` (the peer
accepted it, replays from the spool included; with acknowledgements, once the
peer confirmed it), ``retried`` (re-sent after a failure or an overdue
acknowledgement), ``spooled`` (written to disk), ``dropped`` (lost: only when
the spool is full, always logged at ERROR), ``rejected`` (refused by the peer,
kept in the dead-letter file). ``delivered`` counts a record once however
often it was sent: the summary compares it with what was routed, and more
delivered than alerts would say nothing true; the extra copies a SIEM may
hold are the ``retried``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from tetrapipe.fsutil import cut_partial_line, open_private, private_dirs
from tetrapipe.sinks.spool import DiskSpool, SpoolChunk

log = logging.getLogger("tetrapipe.sinks")


class TransientError(Exception):
    """Delivery failed for now; try again later.

    ``retry_after``: the peer's own hint, in seconds. ``accepted``: how many
    records at the head of the batch did get through before the failure (a
    sink that ships a batch in several requests), so only the rest is retried.
    """

    def __init__(self, message: str, retry_after: float | None = None, accepted: int = 0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.accepted = accepted


class RejectedError(Exception):
    """The peer refused some records for good.

    ``accepted``: how many records at the head of the batch the peer took
    before the bad one (HEC says so); ``rejected``: how many after those it
    refused. Records after ``accepted + rejected`` are retried.
    """

    def __init__(self, message: str, accepted: int = 0, rejected: int = 1) -> None:
        super().__init__(message)
        self.accepted = accepted
        self.rejected = rejected


@dataclass
class SinkStats:
    """A sink's counters, per record, for this run (see the module docstring).

    ``delivered``: records the peer took -- with acknowledgements (HEC
    ``ack: true``), confirmed -- each counted once in a run: a batch sent
    again because its acknowledgement was overdue counts under ``retried``,
    not a second time here, when HEC confirms the copy. (A record a killed
    run had sent and the next run sends again is counted by each run.)
    """

    delivered: int = 0
    retried: int = 0
    spooled: int = 0
    dropped: int = 0
    rejected: int = 0
    replayed: int = 0
    failures: int = 0
    spool_records: int = 0
    up: bool = True
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Sink(Protocol):
    """What the router needs from a sink."""

    name: str
    stats: SinkStats

    def send(self, records: list[dict[str, Any]]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class Delivery:
    """How a sink batches, retries and spools (the ``delivery:`` section of a sink's config)."""

    batch_size: int = 500
    linger_seconds: float = 1.0
    max_attempts: int = 3
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 60.0
    spool_dir: str | None = None
    spool_max_bytes: int = 1 << 30
    spool_fsync: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


class DeliveringSink:
    """Base class: subclasses implement :meth:`_deliver` (and optionally :meth:`_close_peer`)."""

    #: whether a record delivered to this peer can be lost later without an error (UDP syslog)
    fire_and_forget = False

    def __init__(
        self,
        name: str,
        delivery: Delivery | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.delivery = delivery or Delivery()
        self.stats = SinkStats()
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.RLock()
        self._buffer: list[dict[str, Any]] = []
        self._buffer_since: float | None = None
        self._down_since: float | None = None
        self._next_try = 0.0
        self._streak = 0  # consecutive failed probes, drives the backoff
        self._closed = False
        self._spool: DiskSpool | None = None
        self._dead_letter: Path | None = None
        self._dead_letter_checked = False
        #: a spool chunk sent and still waiting for the peer's confirmation (``confirms_later``), with how many of
        #: its records the sending took: read again only once settled, else its records went twice (and counted so)
        self._in_flight: tuple[SpoolChunk, int] | None = None
        if self.delivery.spool_dir:
            root = Path(self.delivery.spool_dir) / name
            self._spool = DiskSpool(root, max_bytes=self.delivery.spool_max_bytes, fsync=self.delivery.spool_fsync)
            self._dead_letter = root / "rejected.jsonl"
            self.stats.spool_records = self._spool.pending_records
            if self._spool.pending_records:
                log.warning(
                    "sink %s: %d record(s) waiting in the spool from an earlier run; they go first",
                    name,
                    self._spool.pending_records,
                )

    # --- the Sink protocol ------------------------------------------------------------

    def send(self, records: list[dict[str, Any]]) -> None:
        """Queue records; a full batch (or a batch older than ``linger_seconds``) is shipped now."""
        if not records:
            return
        with self._lock:
            self._check_open()
            size = self.delivery.batch_size
            for i in range(0, len(records), size):
                if self._buffer_since is None:
                    self._buffer_since = self._clock()  # the linger clock starts with the oldest buffered record
                self._buffer.extend(records[i : i + size])
                if len(self._buffer) >= size:
                    self._drain()
            if self._buffer and self._clock() - (self._buffer_since or 0) >= self.delivery.linger_seconds:
                self._drain()

    def flush(self) -> None:
        """Ship everything buffered; replay the spool if the peer is (probably) back."""
        with self._lock:
            self._check_open()
            self._drain()
            self._replay()
            self._after_flush()

    def poll(self) -> None:
        """Housekeeping for a background thread: ship a lingering batch, probe and replay when due."""
        with self._lock:
            if self._closed:
                return
            if self._buffer and self._clock() - (self._buffer_since or 0) >= self.delivery.linger_seconds:
                self._drain()
            self._replay()

    def close(self) -> None:
        """Flush, then release the peer. Whatever could not be delivered stays in the spool for next time."""
        with self._lock:
            if self._closed:
                return
            try:
                self._drain()
                self._replay()
                self._after_flush()
                self._before_close()
            finally:
                self._closed = True
                self._close_peer()

    @property
    def backlog(self) -> int:
        """Records not yet delivered: buffered in memory plus waiting in the spool."""
        return len(self._buffer) + (self._spool.pending_records if self._spool is not None else 0)

    # --- subclass hooks ---------------------------------------------------------------

    def _deliver(self, records: list[dict[str, Any]]) -> None:  # pragma: no cover - abstract
        """Ship one batch or raise :class:`TransientError` / :class:`RejectedError`."""
        raise NotImplementedError

    @property
    def confirms_later(self) -> bool:
        """True when a shipped batch is only delivered once the peer confirms it (HEC indexer
        acknowledgement): the sink then counts it itself, via :meth:`_confirm`."""
        return False

    def _after_flush(self) -> None:
        """Called at the end of flush(): e.g. wait for outstanding acknowledgements."""

    @property
    def unconfirmed(self) -> int:
        """Records shipped and still waiting for the peer's confirmation (see :attr:`confirms_later`): held
        only in memory, so nothing that would let them go (an offset commit, the spool cursor) may pass them."""
        return 0

    def _awaiting_confirmation(self) -> bool:
        """Whether the spool chunk in flight (see :attr:`confirms_later`) still waits on the peer."""
        return self.unconfirmed > 0

    def _in_flight_ids(self) -> set[int]:
        """The records (by identity) of the spool chunk in flight: on disk at the cursor, never to spool again."""
        return {id(r) for r in self._in_flight[0].records} if self._in_flight is not None else set()

    def _before_close(self) -> None:
        """Called by close() before the peer is released: e.g. spool records still unacknowledged."""

    def _close_peer(self) -> None:
        """Release connections."""

    # --- the engine ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"sink {self.name} is closed")

    def _drain(self) -> None:
        batch, self._buffer, self._buffer_since = self._buffer, [], None
        if not batch:
            return
        spool = self._spool
        if spool is not None:
            if spool.pending_records:
                self._replay()  # order: what waits on disk goes first
            if spool.pending_records or not self._due():
                # behind a backlog, or the peer is known to be down and not due for a probe: to disk, at once
                self._to_spool(batch)
                return
        size = self.delivery.batch_size
        for i in range(0, len(batch), size):
            left = self._attempt(batch[i : i + size], self.delivery.max_attempts)
            if left:
                self._to_spool(left + batch[i + size :])
                return

    def _replay(self) -> None:
        spool = self._spool
        if spool is None or not spool.pending_records or not self._due():
            return
        while spool.pending_records:
            if self._in_flight is not None:
                chunk, done = self._in_flight  # sent by an earlier replay: its acknowledgements are awaited
            else:
                chunk = spool.read(self.delivery.batch_size)
                if chunk.end is None:
                    break
                left = self._attempt(chunk.records, 1, from_spool=True) if chunk.records else []
                done = len(chunk.records) - len(left)
            if self.confirms_later:
                # the cursor passes only what the peer confirmed (HEC: indexed, not just received): a kill
                # after a move past unconfirmed records would leave them nowhere but in a peer that may lose them.
                # Until then the chunk is in flight: the sink sends again what is overdue (the same records,
                # counted once when confirmed), and the next replay waits on it instead of reading it anew
                self._in_flight = (chunk, done)
                self._after_flush()
                if self._awaiting_confirmation():
                    self.stats.spool_records = spool.pending_records
                    return
                self._in_flight = None
            if done < len(chunk.records):
                if done:
                    spool.commit(chunk.positions[done - 1])
                self.stats.spool_records = spool.pending_records
                return
            spool.commit(chunk.end)
            self.stats.spool_records = spool.pending_records
        log.info("sink %s: spool replayed, peer is up", self.name)

    def _due(self) -> bool:
        return self._clock() >= self._next_try

    def _attempt(self, records: list[dict[str, Any]], attempts: int, from_spool: bool = False) -> list[dict[str, Any]]:
        """Deliver one batch, retrying transient failures; return what is still undelivered ([] = all done)."""
        pending = records
        tries = 0
        while pending:
            tries += 1
            try:
                self._deliver(pending)
            except RejectedError as exc:
                accepted = min(max(exc.accepted, 0), len(pending))
                bad = pending[accepted : accepted + max(exc.rejected, 1)]
                self._count_delivered(accepted, from_spool)
                self._reject(bad, str(exc))
                pending = pending[accepted + len(bad) :]
                self._mark_up()
                continue
            except TransientError as exc:
                accepted = min(max(exc.accepted, 0), len(pending))
                if accepted:
                    self._count_delivered(accepted, from_spool)
                    pending = pending[accepted:]
                self.stats.failures += 1
                self.stats.last_error = str(exc)
                if tries >= attempts:
                    self._mark_down(exc)
                    return pending
                self.stats.retried += len(pending)
                delay = self._backoff(tries, exc.retry_after)
                log.warning("sink %s: %s; retrying %d record(s) in %.1fs", self.name, exc, len(pending), delay)
                self._sleep(delay)
                continue
            self._count_delivered(len(pending), from_spool)
            self._mark_up()
            pending = []
        return []

    def _confirm(self, n: int) -> None:
        """Records acknowledged after the fact (see :meth:`_deliver`)."""
        self.stats.delivered += n

    def _count_delivered(self, n: int, from_spool: bool) -> None:
        if from_spool:
            self.stats.replayed += n  # shipped from the spool (with acks: not yet confirmed)
        if not self.confirms_later:
            self.stats.delivered += n

    def _backoff(self, attempt: int, hint: float | None = None) -> float:
        d = self.delivery
        delay = min(d.backoff_initial_seconds * (2 ** max(attempt - 1, 0)), d.backoff_max_seconds)
        delay *= 1 + random.uniform(-0.1, 0.1)  # de-synchronise replicas retrying the same SIEM
        if hint is not None:
            delay = max(delay, min(hint, d.backoff_max_seconds))
        return max(delay, 0.0)

    def _mark_down(self, exc: TransientError) -> None:
        self._streak += 1
        self._next_try = self._clock() + self._backoff(self._streak, exc.retry_after)
        if self.stats.up:
            self._down_since = self._clock()
            log.error(
                "sink %s: peer unreachable (%s); spooling to disk, next try in %.1fs",
                self.name,
                exc,
                self._next_try - self._clock(),
            )
        self.stats.up = False

    def _mark_up(self) -> None:
        if not self.stats.up:
            down = self._clock() - (self._down_since or self._clock())
            log.warning("sink %s: peer is back after %.1fs", self.name, down)
        self.stats.up = True
        self._streak = 0
        self._next_try = 0.0
        self._down_since = None

    def _to_spool(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if self._spool is None:
            # no spool configured: the caller chose memory-only delivery; losing records is still loud
            self.stats.dropped += len(records)
            log.error(
                "sink %s: peer down and no spool directory configured: DROPPED %d record(s)", self.name, len(records)
            )
            return
        written = self._spool.append(records)
        self.stats.spooled += written
        self.stats.spool_records = self._spool.pending_records
        if written < len(records):
            lost = len(records) - written
            self.stats.dropped += lost
            log.error(
                "sink %s: spool full (%d bytes limit): DROPPED %d record(s); raise spool_max_bytes or fix the peer",
                self.name,
                self._spool.max_bytes,
                lost,
            )

    def _reject(self, records: list[dict[str, Any]], reason: str) -> None:
        if not records:
            return
        self.stats.rejected += len(records)
        log.error(
            "sink %s: peer rejected %d record(s) for good: %s%s",
            self.name,
            len(records),
            reason,
            f"; kept in {self._dead_letter}" if self._dead_letter else "",
        )
        if self._dead_letter is None:
            return
        private_dirs(self._dead_letter.parent)
        if not self._dead_letter_checked:  # a run killed mid-write left a fragment: the next line not glued to it
            self._dead_letter_checked = True
            if cut := cut_partial_line(self._dead_letter):
                log.error(
                    "sink %s: cutting a partial line at the end of %s (%d bytes)", self.name, self._dead_letter, cut
                )
        with open_private(self._dead_letter) as f:  # owner-only, like the spool it sits in
            for r in records:
                f.write(orjson.dumps({"reason": reason, "record": r}) + b"\n")
