"""The gRPC source's reader thread: one channel and one ``GetEvents`` call per attempt, reconnecting with backoff.

Agents restart (upgrades, OOM, node reboots). The reader reconnects on
``UNAVAILABLE`` and friends and on a clean end of stream, with exponential
backoff and full jitter, and ends the source with an error for the statuses
retrying cannot fix. :class:`StreamReader` is the half of
:class:`~tetrapipe.sources.grpc.stream.GrpcSource` that runs on that thread;
the consumer's half (buffer, decoding, chunks) is in
:mod:`tetrapipe.sources.grpc.stream`. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import grpc

log = logging.getLogger("tetrapipe.sources.grpc")

GET_EVENTS_METHOD = "/tetragon.FineGuidanceSensors/GetEvents"
_CHANNEL_CLOSE_DELAY_S = 1.0

#: Status codes after which another attempt can succeed.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,  # server-side cancel, e.g. the agent shutting down
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


class GrpcSourceError(RuntimeError):
    """The event stream failed for good (reconnect off, or a non-retryable status)."""


class Attempt:
    """One channel + one GetEvents call (counted as a connect at most once)."""

    __slots__ = ("channel", "call", "connected", "delivered_any", "closed")

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.call: Any = None
        self.connected = False
        self.delivered_any = False
        self.closed = False


class StreamReader:
    """The reader thread's side of :class:`~tetrapipe.sources.grpc.stream.GrpcSource` (a mixin: the
    source's constructor sets the state used here, and ``_put`` hands each message to its buffer)."""

    # set by GrpcSource.__init__
    target: str
    reconnect: bool
    exit_at_eof: bool
    backoff_initial: float
    backoff_max: float
    _rng: Any
    _options: list[tuple[str, Any]]
    _request_bytes: bytes
    _stop: threading.Event
    _finished: threading.Event
    _wakeup: threading.Event
    _lock: threading.Lock
    _attempt: Attempt | None
    _error: BaseException | None

    def _put(self, item: bytes) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        failures = 0  # consecutive attempts that delivered nothing
        try:
            while not self._stop.is_set():
                outcome, error = self._one_attempt()
                if self._stop.is_set():
                    break
                if outcome == "eof":
                    self._clean_ends += 1
                    if not self.reconnect or self.exit_at_eof:
                        log.info("Tetragon at %s ended the event stream; source finished", self.target)
                        self._state = "finished"
                        break
                    why = "the server ended the stream"
                else:
                    assert error is not None
                    self._stream_errors += 1
                    code = error.code() if isinstance(error, grpc.RpcError) else None
                    detail = _describe(error)
                    self._last_error = detail
                    if not self.reconnect or (code is not None and code not in RETRYABLE):
                        hint = "" if self.reconnect else " (reconnect is off)"
                        self._error = GrpcSourceError(f"event stream from {self.target} failed: {detail}{hint}")
                        log.error("%s", self._error)
                        self._state = "failed"
                        break
                    why = detail
                if self._attempt is not None and self._attempt.delivered_any:
                    failures = 0
                delay = self._backoff_delay(failures)
                failures += 1
                log.warning(
                    "Tetragon event stream from %s: %s; reconnecting in %.2fs (attempt %d)",
                    self.target,
                    why,
                    delay,
                    failures,
                )
                self._state = "backoff"
                self._backoffs += 1
                self._last_backoff = delay
                self._backoff_total += delay
                if self._stop.wait(delay):
                    break
        except BaseException as exc:  # pragma: no cover - a bug; never leave the consumer hanging
            self._error = exc
            self._state = "failed"
            log.exception("gRPC reader thread for %s crashed", self.target)
        finally:
            self._close_attempt()
            if self._state not in ("finished", "failed"):
                self._state = "stopped"
            self._finished.set()
            self._wakeup.set()

    def _backoff_delay(self, failures: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_initial * (2 ** min(failures, 62)))
        return self._rng.uniform(0.0, ceiling)

    def _one_attempt(self) -> tuple[str, BaseException | None]:
        """Open a channel and drain one GetEvents stream: ("eof"|"error", error)."""
        self._close_attempt()
        self._connect_attempts += 1
        self._state = "connecting"
        channel = grpc.insecure_channel(self.target, options=self._options)
        attempt = Attempt(channel)
        self._attempt = attempt

        def on_state(state: grpc.ChannelConnectivity) -> None:
            if state == grpc.ChannelConnectivity.READY:
                self._mark_connected(attempt)

        attempt_cb = on_state
        channel.subscribe(attempt_cb, try_to_connect=True)
        try:
            stream = channel.unary_stream(GET_EVENTS_METHOD, request_serializer=None, response_deserializer=None)
            call = stream(self._request_bytes)
            attempt.call = call
            if self._stop.is_set():  # stop() may have run before .call was visible
                call.cancel()
            put = self._put
            for payload in call:
                if not attempt.connected:
                    self._mark_connected(attempt)
                attempt.delivered_any = True
                self._received += 1
                put(payload)
                if self._stop.is_set():
                    call.cancel()
                    return "eof", None
            self._mark_connected(attempt)  # a clean end proves we were connected
            return "eof", None
        except grpc.RpcError as exc:
            return "error", exc
        finally:
            try:
                channel.unsubscribe(attempt_cb)
            except Exception:  # noqa: BLE001  # pragma: no cover - unsubscribe of a closing channel
                pass
            self._close_attempt()

    def _mark_connected(self, attempt: Attempt) -> None:
        # Called from the reader thread and from gRPC's connectivity callback
        # thread: the lock makes "once per attempt" and the counter exact.
        with self._lock:
            if attempt.connected or attempt.closed or attempt is not self._attempt:
                return
            attempt.connected = True
            self._connects += 1
            self._state = "connected"
        if self._connects == 1:
            log.info("connected to Tetragon at %s", self.target)
        else:
            log.info("reconnected to Tetragon at %s (connection #%d)", self.target, self._connects)

    def _close_attempt(self) -> None:
        """End the current attempt's call now; close its channel a little later.

        Why later: ``channel.subscribe`` runs a gRPC-internal polling thread
        that keeps watching the channel for up to 0.2 s after ``unsubscribe``;
        closing the channel under it makes that thread die with "Cannot
        monitor channel state: Channel closed!" on stderr. The call is
        cancelled at once, so nothing is read from a retired channel.
        """
        attempt = self._attempt
        if attempt is None or attempt.closed:
            return
        attempt.closed = True
        if attempt.call is not None:
            attempt.call.cancel()
        timer = threading.Timer(_CHANNEL_CLOSE_DELAY_S, attempt.channel.close)
        timer.daemon = True
        timer.start()


def _describe(error: BaseException) -> str:
    if isinstance(error, grpc.RpcError):
        code = error.code()
        details = error.details() if hasattr(error, "details") else ""
        name = code.name if code is not None else "UNKNOWN"
        return f"{name}: {details}" if details else name
    return f"{type(error).__name__}: {error}"
