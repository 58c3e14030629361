"""A real HTTP endpoint taking webhook POSTs, for tests: what a SOAR, a ticketing API or a chat webhook does.

Requests are atomic, as in most APIs: a body with one record the endpoint
refuses (``refuse(record)`` true) is answered 400 and nothing of it is kept.
``token`` requires ``Authorization: Bearer <token>`` (401 otherwise);
``fail_next`` queues failures (503, 429 with ``Retry-After`` ...).
"""

from __future__ import annotations

import gzip
import json
from collections import deque
from collections.abc import Callable
from typing import Any

from http_peer import HttpPeerServer


class WebhookReceiver(HttpPeerServer):
    def __init__(self, port: int = 0, token: str | None = None, refuse: Callable[[Any], bool] | None = None) -> None:
        super().__init__(port)
        self.token = token
        self.refuse = refuse
        self.records: list[Any] = []
        self.requests: list[dict[str, Any]] = []
        self._failures: deque[tuple[int, dict[str, str]]] = deque()

    def fail_next(self, n: int, status: int = 503, retry_after: float | None = None) -> None:
        with self._lock:
            for _ in range(n):
                self._failures.append((status, {"Retry-After": str(retry_after)} if retry_after is not None else {}))

    def _received(self) -> int:
        return len(self.records)

    def _handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        h = {k.lower(): v for k, v in headers.items()}
        if h.get("content-encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        request = {"method": method, "path": raw_path, "headers": h, "body": body}
        with self._lock:
            self.requests.append(request)
            if self._failures:
                status, extra = self._failures.popleft()
                request["status"] = status
                return status, {"error": "busy"}, extra
        if self.token is not None and h.get("authorization") != f"Bearer {self.token}":
            request["status"] = 401
            return 401, {"error": "unauthorized"}, {}
        ctype = h.get("content-type", "")
        try:
            if "ndjson" in ctype:
                records = [_parse(line) for line in body.decode().splitlines() if line]
            elif "json" in ctype:
                doc = json.loads(body)
                records = doc if isinstance(doc, list) else [doc]
            else:
                records = [body.decode()]
        except ValueError:
            request["status"] = 400
            return 400, {"error": "not JSON"}, {}
        if self.refuse is not None and any(self.refuse(r) for r in records):
            request["status"] = 422
            return 422, {"error": "a record is invalid"}, {}
        with self._lock:
            self.records.extend(records)
        request["status"] = 200
        return 200, {"ok": True}, {}


def _parse(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return line  # a CEF line
