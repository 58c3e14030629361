"""Read Tetragon events from the agent's gRPC API (``FineGuidanceSensors/GetEvents``).

Why it is shaped this way:

* **Tetragon never waits for a slow client; it drops.** So a background
  thread does nothing but pull raw messages off the stream and append them to
  a bounded in-memory buffer (``buffer_events``, 100k by default: roughly
  150 MB of typical ~1.2 KB protobuf events). Parsing and JSON encoding happen
  in the consumer's thread, when it iterates. Only when the buffer is full
  does the reader stop pulling,
  which is real backpressure: gRPC flow control then pushes back on the agent,
  which starts dropping. That moment is counted (``backpressure_events``) and
  logged, because it means events are being lost upstream.
* **Agents restart** (upgrades, OOM, node reboots). The reader reconnects on
  ``UNAVAILABLE`` and friends and on a clean end of stream, with exponential
  backoff and full jitter (sleep a uniform random time in
  ``[0, min(backoff_max, backoff_initial * 2**attempt)]``), so a fleet of
  collectors does not hammer an agent that is coming back. The attempt
  counter resets once a stream delivers an event. Errors that retrying cannot
  fix (``INVALID_ARGUMENT`` for a bad regex in a filter, ``UNIMPLEMENTED``
  for something that is not Tetragon, ``PERMISSION_DENIED`` ...) end the
  source with an error instead of looping forever.
* **Output is the export's JSON.** ``lines()`` yields exactly the compact
  JSON line Tetragon's exporter writes for the same event
  (:mod:`tetrapipe.sources.grpc.codec`), so everything downstream of a source
  is shared with the file path.
* **Filters are Tetragon's own syntax.** ``allow_list`` / ``deny_list`` take
  the JSON objects of the agent's ``--export-allowlist`` /
  ``--export-denylist`` (a dict, a list of dicts, or the flag's
  line-separated text); ``field_filters`` the objects of ``--field-filters``
  (``"fields"`` as a comma-separated string of snake_case paths, or a list).
  They are sent in the ``GetEventsRequest`` and applied by the agent, so
  filtered events never cross the wire.

Iteration ends when ``stop()`` is called; when the server ends the stream
and either ``reconnect=False`` or ``exit_at_eof=True`` (for tests and batch
jobs); or, after every queued event was delivered, with
``GrpcSourceError`` when the stream failed and reconnecting is off or
pointless.

Throughput, measured on this 2-core machine (shared, so noisy) with the
Python test server in another process streaming the real sample events: a
bare gRPC read loop gets 11-17k messages/s (the Python server is part of that
limit; a Go agent can push more); ``payloads()`` keeps pace with it, and
``lines()`` (decode + export JSON in the consumer thread) delivers 10-12k
events/s end to end; the codec alone does ~45k/s. The same hand-off through
``queue.Queue`` gave 9k and 7k. When the consumer is the limit, the
``backpressure_*`` counters say so.

Connection details: one fresh channel per attempt (so gRPC's own reconnect
backoff never stacks on ours), insecure transport (the agent's default; TLS
is not supported yet), 10 MiB maximum message size (as ``tetra``), and HTTP/2
keepalive pings every 5.5 minutes so a silently dead node is noticed: Go
gRPC servers punish pings more frequent than every 5 minutes with GOAWAY.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from google.protobuf.message import DecodeError

from tetrapipe.proto import tetragon_pb2
from tetrapipe.sources.chunks import Chunk
from tetrapipe.sources.grpc.codec import response_to_json
from tetrapipe.sources.grpc.reconnect import Attempt, GrpcSourceError, StreamReader
from tetrapipe.sources.grpc.request import build_request, parse_address

log = logging.getLogger("tetrapipe.sources.grpc")

DEFAULT_ADDRESS = "localhost:54321"
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
KEEPALIVE_MS = 330_000
KEEPALIVE_TIMEOUT_MS = 20_000
_POLL_S = 0.1  # longest a blocked wait goes without re-checking for stop()
_SPIN_MIN_S = 0.0005  # consumer / backpressure polling: first nap ...
_SPIN_MAX_S = 0.005  # ... doubling up to this, then the consumer sleeps on an Event
_UNKNOWN_CHECK_FIRST = 1000
_UNKNOWN_CHECK_EVERY = 100
_parse_response = tetragon_pb2.GetEventsResponse.FromString
_BACKPRESSURE_REMINDER_S = 30.0


class GrpcSource(StreamReader):
    """Stream Tetragon events from an agent; iterate ``lines()`` for export-format JSON.

    Use as a context manager (``with GrpcSource(addr) as src: for line in
    src.lines(): ...``) or call ``stop()``. One consumer iterates at a time.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        allow_list: Any = None,
        deny_list: Any = None,
        field_filters: Any = None,
        buffer_events: int = 100_000,
        reconnect: bool = True,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        exit_at_eof: bool = False,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        rng: random.Random | None = None,
    ) -> None:
        if buffer_events < 1:
            raise ValueError(f"buffer_events must be >= 1, got {buffer_events}")
        if backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError(f"need 0 < backoff_initial <= backoff_max, got {backoff_initial} and {backoff_max}")
        self.address = address
        self.target = parse_address(address)
        self.request = build_request(allow_list, deny_list, field_filters)
        self._request_bytes = self.request.SerializeToString()
        self.buffer_events = buffer_events
        self.reconnect = reconnect
        self.exit_at_eof = exit_at_eof
        self.backoff_initial = float(backoff_initial)
        self.backoff_max = float(backoff_max)
        self._rng = rng or random.Random()
        self._options = [
            ("grpc.max_receive_message_length", int(max_message_bytes)),
            ("grpc.keepalive_time_ms", KEEPALIVE_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ]

        # The hand-off buffer. Not a queue.Queue: waking the consumer for every
        # event (a Condition notify per put) costs more than a Python gRPC
        # stream does per message, and halved throughput in measurements.
        # Instead the reader appends to a deque (atomic under the GIL) and the
        # consumer takes everything there is, napping 0.5-5 ms when it finds
        # the deque empty, so under load events cross threads in batches.
        # When idle for longer, the consumer sleeps on ``_wakeup``, which the
        # reader sets only while ``_consumer_idle`` is true.
        self._buf: deque[bytes] = deque()
        self._wakeup = threading.Event()
        self._consumer_idle = False
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._attempt: Attempt | None = None
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._consuming = False

        # counters (written by the reader thread unless noted)
        self._state = "idle"
        self._connect_attempts = 0
        self._connects = 0
        self._received = 0
        self._delivered = 0  # consumer thread
        self._decode_errors = 0  # consumer thread
        self._unknown_checks = 0  # consumer thread
        self._unknown_events = 0  # consumer thread
        self._stream_errors = 0
        self._clean_ends = 0
        self._last_error: str | None = None
        self._backoffs = 0
        self._backoff_total = 0.0
        self._last_backoff = 0.0
        self._backpressure_events = 0
        self._backpressure_episodes = 0
        self._backpressure_wait = 0.0
        self._in_backpressure = False
        self._backpressure_logged_at = 0.0

    # -- public API ---------------------------------------------------------

    def start(self) -> GrpcSource:
        """Start the reader thread (idempotent; iterating starts it too)."""
        with self._lock:
            if self._thread is None:
                if self._stop.is_set():
                    raise GrpcSourceError("this GrpcSource was stopped; create a new one")
                self._thread = threading.Thread(target=self._run, name=f"tetrapipe-grpc-{self.target}", daemon=True)
                self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading: cancel the stream, end any iteration, join the thread."""
        self._stop.set()
        attempt = self._attempt
        if attempt is not None and attempt.call is not None:
            attempt.call.cancel()
        self._wakeup.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():  # pragma: no cover - grpc did not return in time
                log.warning("gRPC reader thread for %s did not stop within %.1fs", self.target, timeout)
        if self._state not in ("finished", "failed"):
            self._state = "stopped"

    def __enter__(self) -> GrpcSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def payloads(self) -> Iterator[bytes]:
        """Raw serialized ``GetEventsResponse`` messages, in arrival order."""
        self.start()
        if self._consuming:
            raise GrpcSourceError("GrpcSource supports one consumer at a time")
        self._consuming = True
        buf = self._buf
        popleft = buf.popleft
        stop = self._stop
        nap = _SPIN_MIN_S
        try:
            while not stop.is_set():
                try:
                    item = popleft()
                except IndexError:
                    # The reader sets _finished only after its last append, so
                    # "finished, then still empty" means everything was delivered.
                    if self._finished.is_set() and not buf:
                        if self._error is not None and not stop.is_set():
                            raise GrpcSourceError(str(self._error)) from self._error
                        return
                    if nap < _SPIN_MAX_S:
                        time.sleep(nap)
                        nap *= 2
                    else:
                        self._consumer_idle = True
                        if not buf:  # re-check after raising the flag: no lost wake-up
                            self._wakeup.wait(_POLL_S)
                        self._wakeup.clear()
                        self._consumer_idle = False
                    continue
                nap = _SPIN_MIN_S
                self._delivered += 1
                yield item
        finally:
            self._consuming = False

    def messages(self) -> Iterator[tetragon_pb2.GetEventsResponse]:
        """Decoded ``GetEventsResponse`` messages (undecodable ones are counted and skipped)."""
        decode = self._decode
        for payload in self.payloads():
            msg = decode(payload)
            if msg is not None:
                yield msg

    def lines(self) -> Iterator[bytes]:
        """Each event as the compact JSON line Tetragon's exporter writes (no newline)."""
        decode = self._decode
        encode = response_to_json
        for payload in self.payloads():
            msg = decode(payload)
            if msg is not None:
                yield encode(msg)

    def __iter__(self) -> Iterator[bytes]:
        return self.lines()

    # -- as the collector's source: chunks taken without blocking ------------

    @property
    def label(self) -> str:
        return self.address

    @property
    def exhausted(self) -> bool:
        """The stream ended and every event in the buffer was handed out."""
        return self._finished.is_set() and not self._buf

    def read(self, max_events: int = 1000) -> Chunk | None:
        """Up to ``max_events`` events waiting now, as export JSON lines; None when none are.

        The collector's loop polls this between acknowledgements, so it never
        blocks: the reader thread's buffer is the only one between the agent
        and Kafka (a full buffer is backpressure, counted as for ``lines()``).
        Raises :class:`GrpcSourceError` once the stream failed for good and
        the buffer is empty.
        """
        self.start()
        buf = self._buf
        n = min(len(buf), max_events)
        if not n:
            if self._finished.is_set():
                err, self._error = self._error, None
                if err is not None and not self._stop.is_set():
                    raise GrpcSourceError(str(err)) from err
            else:
                time.sleep(_SPIN_MAX_S)
            return None
        popleft, decode, encode = buf.popleft, self._decode, response_to_json
        lines = []
        for _ in range(n):
            self._delivered += 1
            msg = decode(popleft())
            if msg is not None:
                lines.append(encode(msg))
        return Chunk(lines, sum(map(len, lines)) + len(lines), None, self.label)

    def lag_bytes(self) -> int:
        return 0

    def close(self) -> None:
        self.stop()

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (cheap; safe to call from any thread)."""
        return {
            "address": self.address,
            "target": self.target,
            "state": self._state,
            "connect_attempts": self._connect_attempts,
            "connects": self._connects,
            "reconnects": max(0, self._connects - 1),
            "received": self._received,
            "delivered": self._delivered,
            "queued": len(self._buf),
            "buffer_events": self.buffer_events,
            "backpressure_events": self._backpressure_events,
            "backpressure_episodes": self._backpressure_episodes,
            "backpressure_wait_s": round(self._backpressure_wait, 6),
            "stream_errors": self._stream_errors,
            "clean_stream_ends": self._clean_ends,
            "last_error": self._last_error,
            "backoffs": self._backoffs,
            "backoff_total_s": round(self._backoff_total, 6),
            "last_backoff_s": round(self._last_backoff, 6),
            "decode_errors": self._decode_errors,
            "unknown_field_checks": self._unknown_checks,
            "unknown_field_events": self._unknown_events,
        }

    # -- reader thread ------------------------------------------------------

    def _put(self, item: bytes) -> None:
        """Append to the buffer, waiting (backpressure) while it is full; gives up on stop()."""
        buf = self._buf
        if len(buf) < self.buffer_events:
            buf.append(item)
            if self._consumer_idle:
                self._wakeup.set()
            if self._in_backpressure and len(buf) <= self.buffer_events // 2:
                self._in_backpressure = False
                log.info(
                    "Tetragon event buffer drained below half; reading from %s at full speed again "
                    "(%d events waited so far, %.2fs in total)",
                    self.target,
                    self._backpressure_events,
                    self._backpressure_wait,
                )
            return
        self._backpressure_events += 1
        now = time.monotonic()
        if not self._in_backpressure:
            self._in_backpressure = True
            self._backpressure_episodes += 1
            self._backpressure_logged_at = now
            log.warning(
                "Tetragon event buffer full (%d events): pausing reads from %s until the consumer "
                "catches up; the agent drops events for this client if this lasts",
                self.buffer_events,
                self.target,
            )
        elif now - self._backpressure_logged_at >= _BACKPRESSURE_REMINDER_S:
            self._backpressure_logged_at = now
            log.warning(
                "still applying backpressure to %s: %d events have waited for buffer space",
                self.target,
                self._backpressure_events,
            )
        nap = _SPIN_MIN_S
        try:
            while len(buf) >= self.buffer_events:
                if self._stop.wait(nap):
                    return
                nap = min(nap * 2, _SPIN_MAX_S)
            buf.append(item)
            if self._consumer_idle:
                self._wakeup.set()
        finally:
            self._backpressure_wait += time.monotonic() - now

    # -- consumer helpers ---------------------------------------------------

    def _decode(self, payload: bytes) -> tetragon_pb2.GetEventsResponse | None:
        try:
            msg = _parse_response(payload)
        except DecodeError as exc:
            self._note_decode_error(exc, payload)
            return None
        # An agent newer than our .proto sends fields we cannot name; they would
        # vanish from the JSON without a trace. Checking costs ~4 us an event,
        # so check the first events and then a sample: a schema gap shows up
        # in many events, so a sample finds it fast.
        n = self._delivered
        if n <= _UNKNOWN_CHECK_FIRST or n % _UNKNOWN_CHECK_EVERY == 0:
            self._unknown_checks += 1
            msg.DiscardUnknownFields()
            if msg.ByteSize() != len(payload):
                self._unknown_events += 1
                if self._unknown_events == 1:
                    log.warning(
                        "Tetragon at %s sends fields unknown to tetrapipe's tetragon.proto (a newer agent?); "
                        "they are left out of the JSON. Update tetrapipe/proto/tetragon.proto and regenerate.",
                        self.target,
                    )
        return msg

    def _note_decode_error(self, exc: Exception, payload: bytes) -> None:
        self._decode_errors += 1
        if self._decode_errors == 1 or self._decode_errors % 1000 == 0:
            log.error(
                "undecodable GetEventsResponse from %s (%d bytes, %d so far): %s",
                self.target,
                len(payload),
                self._decode_errors,
                exc,
            )
