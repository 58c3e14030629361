"""Webhook sink: HTTP POST of records to any endpoint -- a SOAR, a ticketing system, an in-house
collector, or a chat channel (Slack, Mattermost) with ``format: slack``.

``mode`` says what one request carries:

* ``ndjson`` (default): the batch, one JSON document (or CEF line) per line,
  ``Content-Type: application/x-ndjson``;
* ``array``: the batch as one JSON array, ``application/json``;
* ``single``: one record per request, the record itself as the body (what chat
  webhooks and most ticketing APIs take).

How each answer is handled:

==========================  ====================================================
2xx                         delivered
400, 413, 422               the request holds something the endpoint refuses:
                            the batch is split in halves until the one record it
                            refuses is alone; that record goes to the dead-letter
                            file (``rejected``), every other one is delivered
401, 403, 404, 405          a configuration problem (token, URL): the data is
                            fine -> retried, then spooled, never dropped
408, 429, 5xx, timeouts,    transient -> exponential backoff (honouring
connection errors           ``Retry-After``), then the disk spool
==========================  ====================================================
"""

from __future__ import annotations

import gzip as gzip_lib
import logging
from typing import Any

import orjson

from tetrapipe.sinks.siem.base import DeliveringSink, Delivery, RejectedError, TransientError
from tetrapipe.sinks.siem.http_post import HttpPeer, retry_after
from tetrapipe.sinks.siem.records import record_body, record_payload

log = logging.getLogger("tetrapipe.sinks.webhook")

MODES = ("ndjson", "array", "single")
#: answers that mean "this payload, never": bisect to find the record, reject only it
REFUSED = {400, 413, 422}


class WebhookSink(DeliveringSink):
    def __init__(
        self,
        name: str,
        *,
        url: str,
        mode: str = "ndjson",
        headers: dict[str, str] | None = None,
        method: str = "POST",
        gzip: bool = False,
        timeout_seconds: float = 10.0,
        verify_tls: bool = True,
        ca_file: str | None = None,
        delivery: Delivery | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(name, delivery, **kw)
        if mode not in MODES:
            raise ValueError(f"webhook mode must be one of {', '.join(MODES)}, not {mode!r}")
        if method.upper() not in ("POST", "PUT"):
            raise ValueError(f"webhook method must be POST or PUT, not {method!r}")
        self.peer = HttpPeer(url, timeout=timeout_seconds, verify_tls=verify_tls, ca_file=ca_file, what="webhook")
        self.target = (self.peer.path or "/") + (f"?{self.peer.query}" if self.peer.query else "")
        self.mode = mode
        self.method = method.upper()
        self.headers = dict(headers or {})
        self.gzip = gzip

    def _body(self, records: list[dict[str, Any]]) -> tuple[bytes, str]:
        if self.mode == "array":
            return orjson.dumps([record_payload(r) for r in records]), "application/json"
        if self.mode == "single":
            payload = record_payload(records[0])
            if isinstance(payload, str):
                return payload.encode(), "text/plain; charset=utf-8"
            return orjson.dumps(payload), "application/json"
        return b"".join(record_body(r) + b"\n" for r in records), "application/x-ndjson"

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        if self.mode != "single":
            self._post(records, accepted_before=0)
            return
        for i, record in enumerate(records):
            self._post([record], accepted_before=i)

    def _post(self, records: list[dict[str, Any]], accepted_before: int) -> None:
        """Send ``records`` in one request; errors carry how many of the sink's batch are done."""
        body, content_type = self._body(records)
        headers = {"Content-Type": content_type, "User-Agent": "tetrapipe", **self.headers}
        if self.gzip:
            body = gzip_lib.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        try:
            status, raw, resp_headers = self.peer.request(self.method, self.target, body, headers)
        except TransientError as exc:
            exc.accepted += accepted_before
            raise
        if 200 <= status < 300:
            return
        text = raw[:200].decode("utf-8", "replace").strip()
        if status in REFUSED:
            if len(records) == 1:
                raise RejectedError(f"webhook {status}: {text}", accepted=accepted_before, rejected=1)
            half = len(records) // 2  # bisect: deliver what the endpoint takes, isolate what it refuses
            self._post(records[:half], accepted_before)
            self._post(records[half:], accepted_before + half)
            return
        hint = " -- check the URL and credentials; records are kept" if status in (401, 403, 404, 405) else ""
        raise TransientError(
            f"webhook {status}: {text}{hint}", retry_after(resp_headers.get("retry-after")), accepted=accepted_before
        )

    def _close_peer(self) -> None:
        self.peer.close()


__all__ = ["MODES", "WebhookSink"]
