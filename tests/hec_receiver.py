"""A real HTTP server speaking the Splunk HTTP Event Collector contract, for tests.

It is not a mock of our client: it is a peer with HEC's documented behaviour,
driven over real sockets, with the failures a production HEC shows:

* ``POST /services/collector/event`` (and ``/services/collector``): events as
  concatenated JSON objects, optionally gzip'd (``Content-Encoding: gzip``);
  ``Authorization: Splunk <token>`` (401 code 2 without it, 401 code 3 when
  malformed, 403 code 4 for a wrong token); 400 code 5 for no data, 6 for
  invalid JSON, 12 / 13 when an event has no / a blank ``event`` field, with
  ``invalid-event-number`` (the events before it are indexed, as HEC does);
  with acknowledgement on, 400 code 10 without ``X-Splunk-Request-Channel``
  and ``{"text": "Success", "code": 0, "ackId": N}`` on success.
* ``POST /services/collector/ack?channel=...``: ``{"acks": [ids]}`` ->
  ``{"acks": {"id": true|false}}``; acks can be delayed or withheld.
* ``GET /services/collector/health``: 200 when up.

Failures to inject: ``fail_next(n, status, code)`` (503 busy, 500, 429 with
``Retry-After`` ...), ``delay`` (slow responses), ``stop()`` / ``start()``
(the SIEM going down and coming back on the same port, open keep-alive
connections cut).
"""

from __future__ import annotations

import gzip
import json
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

from http_peer import HttpPeerServer


class HecReceiver(HttpPeerServer):
    def __init__(self, token: str = "test-token", port: int = 0, ack: bool = False) -> None:
        super().__init__(port)
        self.token = token
        self.ack = ack
        self.delay = 0.0
        self.ack_delay = 0.0
        self.withhold_acks = False
        self.events: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self._failures: deque[tuple[int, dict[str, Any], dict[str, str]]] = deque()
        self._acks: dict[str, dict[int, float]] = {}  # channel -> ackId -> time it may be acknowledged
        self._next_ack: dict[str, int] = {}

    # --- control --------------------------------------------------------------------------

    def fail_next(
        self, n: int, status: int = 503, code: int = 9, text: str = "Server is busy", retry_after: float | None = None
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        with self._lock:
            for _ in range(n):
                self._failures.append((status, {"text": text, "code": code}, headers))

    def recover(self) -> None:
        """Forget the failures still queued by :meth:`fail_next`: the indexer is healthy again."""
        with self._lock:
            self._failures.clear()

    def _received(self) -> int:
        return len(self.events)

    def payloads(self) -> list[dict[str, Any]]:
        """The ``event`` of every indexed envelope, in arrival order."""
        with self._lock:
            return [e["event"] for e in self.events]

    # --- the contract --------------------------------------------------------------------------

    def _handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], dict]:
        parts = urlsplit(raw_path)
        if method == "GET":
            if parts.path == "/services/collector/health":
                return 200, {"text": "HEC is healthy", "code": 17}, {}
            return 404, {"text": "The requested URL was not found on this server.", "code": 404}, {}
        h = {k.lower(): v for k, v in headers.items()}
        if self.delay:
            time.sleep(self.delay)
        auth = h.get("authorization")
        if auth is None:
            return 401, {"text": "Token is required", "code": 2}, {}
        scheme, _, token = auth.partition(" ")
        if scheme != "Splunk" or not token:
            return 401, {"text": "Invalid authorization", "code": 3}, {}
        if token != self.token:
            return 403, {"text": "Invalid token", "code": 4}, {}
        channel = h.get("x-splunk-request-channel") or parse_qs(parts.query).get("channel", [None])[0]
        if parts.path == "/services/collector/ack":
            return self._ack_query(channel, body)
        if parts.path not in ("/services/collector/event", "/services/collector", "/services/collector/event/1.0"):
            return 404, {"text": "The requested URL was not found on this server.", "code": 404}, {}
        with self._lock:
            if self._failures:
                status, payload, extra = self._failures.popleft()
                self.requests.append({"status": status, "events": 0})
                return status, payload, extra
        if self.ack and not channel:
            return 400, {"text": "Data channel is missing", "code": 10}, {}
        gz = h.get("content-encoding", "").lower() == "gzip"
        if gz:
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError):
                return 400, {"text": "Invalid data format", "code": 6}, {}
        events, bad = _split_events(body)
        with self._lock:
            self.requests.append({"status": 200 if bad is None else 400, "events": len(events), "gzip": gz})
            if bad is not None:
                index, code, text = bad
                self.events.extend(events[:index])
                return 400, {"text": text, "code": code, "invalid-event-number": index}, {}
            if not events:
                return 400, {"text": "No data", "code": 5}, {}
            self.events.extend(events)
            if not self.ack:
                return 200, {"text": "Success", "code": 0}, {}
            ack_id = self._next_ack.get(channel, 0)
            self._next_ack[channel] = ack_id + 1
            self._acks.setdefault(channel, {})[ack_id] = time.monotonic() + self.ack_delay
            return 200, {"text": "Success", "code": 0, "ackId": ack_id}, {}

    def _ack_query(self, channel: str | None, body: bytes) -> tuple[int, dict[str, Any], dict]:
        if not self.ack:
            return 400, {"text": "ACK is disabled", "code": 14}, {}
        if not channel:
            return 400, {"text": "Data channel is missing", "code": 10}, {}
        try:
            ids = json.loads(body)["acks"]
        except (ValueError, KeyError, TypeError):
            return 400, {"text": "Invalid data format", "code": 6}, {}
        now = time.monotonic()
        with self._lock:
            pending = self._acks.get(channel, {})
            out = {}
            for i in ids:
                ready = i in pending and now >= pending[i] and not self.withhold_acks
                out[str(i)] = ready
                if ready:
                    del pending[i]  # HEC forgets an ackId once it has reported it true
        return 200, {"acks": out}, {}


def _split_events(body: bytes) -> tuple[list[dict[str, Any]], tuple[int, int, str] | None]:
    """Concatenated JSON objects -> envelopes, stopping at the first bad one (its index, code, text)."""
    text = body.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    pos, out = 0, []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return out, None
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return out, (len(out), 6, "Invalid data format")
        if not isinstance(obj, dict) or "event" not in obj:
            return out, (len(out), 12, "Event field is required")
        if obj["event"] in ("", None, {}):
            return out, (len(out), 13, "Event field cannot be blank")
        out.append(obj)
