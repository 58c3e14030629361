"""A real gRPC server that speaks Tetragon's ``FineGuidanceSensors`` API, for tests.

Why not mock the client: the gRPC source's hard parts (flow control,
reconnects, cancellation, status codes, the wire encoding) live in grpc
itself, so tests run the real thing over loopback TCP. The server binds to
127.0.0.1 only, on a free port that survives ``restart()``.

The server hands out a fixed list of events through one shared cursor, so a
stream that breaks and a client that reconnects continue where they were:
the test can then demand "every event exactly once, in order". Knobs
(settable before or between streams):

* ``close_after=N``: each stream ends cleanly (status OK) after N events;
* ``abort_after=N`` + ``abort_code``: each stream fails after N events;
* ``pause_at=i``: when the cursor reaches event i, the stream stops sending
  and waits for ``resume()`` (or for the server to stop), which lets a test
  restart the server at a known point;
* ``at_end="close"`` (default) or ``"hold"``: what a stream does once every
  event is sent: finish, or stay open like an idle agent.

``requests`` records every ``GetEventsRequest`` received (to check filters),
``streams`` counts opened streams.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc

from tetrapipe.proto import tetragon_pb2

SERVICE = "tetragon.FineGuidanceSensors"


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until true or ``timeout``; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class FakeTetragon:
    """``FineGuidanceSensors`` on 127.0.0.1, serving a list of ``GetEventsResponse``."""

    def __init__(
        self,
        events: Sequence[tetragon_pb2.GetEventsResponse | bytes],
        *,
        close_after: int | None = None,
        abort_after: int | None = None,
        abort_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        pause_at: int | None = None,
        at_end: str = "close",
        port: int = 0,
    ) -> None:
        if at_end not in ("close", "hold"):
            raise ValueError(f"at_end must be 'close' or 'hold', got {at_end!r}")
        self._payloads = [e if isinstance(e, bytes) else e.SerializeToString() for e in events]
        self.close_after = close_after
        self.abort_after = abort_after
        self.abort_code = abort_code
        self.pause_at = pause_at
        self.at_end = at_end
        self.port = port
        self.requests: list[tetragon_pb2.GetEventsRequest] = []
        self.streams = 0
        self.cursor = 0  # index of the next event to send, shared by all streams
        self._lock = threading.Lock()
        self._resume = threading.Event()
        self._server: grpc.Server | None = None
        self._running = threading.Event()

    # -- lifecycle ----------------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeTetragon:
        """Bind (to the same port as before, on a restart) and serve."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="fake-tetragon"))
        handlers = {
            "GetEvents": grpc.unary_stream_rpc_method_handler(
                self._get_events,
                request_deserializer=tetragon_pb2.GetEventsRequest.FromString,
                response_serializer=None,  # payloads are serialized once, up front
            ),
            "GetVersion": grpc.unary_unary_rpc_method_handler(
                lambda req, ctx: tetragon_pb2.GetVersionResponse(version="tetrapipe-fake"),
                request_deserializer=tetragon_pb2.GetVersionRequest.FromString,
                response_serializer=tetragon_pb2.GetVersionResponse.SerializeToString,
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        bound = 0
        for _ in range(50):  # a just-closed port can take a moment to be reusable
            try:
                bound = server.add_insecure_port(f"127.0.0.1:{self.port}")
            except RuntimeError:
                bound = 0
            if bound:
                break
            time.sleep(0.05)
        if not bound:
            raise RuntimeError(f"could not bind 127.0.0.1:{self.port}")
        self.port = bound
        server.start()
        self._server = server
        self._running.set()
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop serving; open streams are cancelled (a crashed or restarting agent).

        The server is stopped *before* the handlers are released, so a
        stream never ends with a clean OK status here: clients see the
        connection drop, as with a real agent that dies.
        """
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait()
        self._running.clear()
        self._resume.set()  # release a paused handler so its thread ends
        time.sleep(0.03)  # handlers poll every 20 ms
        self._resume.clear()

    def restart(self, down_for: float = 0.0) -> None:
        """Stop, stay down for ``down_for`` seconds, start again on the same port."""
        self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    def resume(self) -> None:
        """Let a stream paused at ``pause_at`` continue (and disable the pause)."""
        self.pause_at = None
        self._resume.set()

    def __enter__(self) -> FakeTetragon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the RPC ------------------------------------------------------------

    def _get_events(self, request: tetragon_pb2.GetEventsRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        with self._lock:
            self.requests.append(request)
            self.streams += 1
        sent = 0
        while context.is_active() and self._running.is_set():
            if self.close_after is not None and sent >= self.close_after:
                return
            if self.abort_after is not None and sent >= self.abort_after:
                context.abort(self.abort_code, f"fake agent aborts after {sent} events")
            if self.pause_at is not None and self.cursor >= self.pause_at:
                while not self._resume.wait(0.02):
                    if not context.is_active() or not self._running.is_set():
                        return
                continue
            with self._lock:
                if self.cursor >= len(self._payloads):
                    payload = None
                else:
                    payload = self._payloads[self.cursor]
                    self.cursor += 1
            if payload is None:
                if self.at_end == "close":
                    return
                while context.is_active() and self._running.is_set():
                    time.sleep(0.02)
                return
            sent += 1
            yield payload


@contextlib.contextmanager
def serve(events: Sequence[Any], **options: Any) -> Iterator[FakeTetragon]:
    """``with serve(events, close_after=10) as agent: ... agent.address ...``"""
    agent = FakeTetragon(events, **options)
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()
