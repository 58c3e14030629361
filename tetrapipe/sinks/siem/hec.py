"""Splunk HTTP Event Collector sink.

One POST to ``/services/collector/event`` per batch, the body being the
events' JSON envelopes one after another (HEC's batch format), gzip'd when
``gzip`` is on, with ``Authorization: Splunk <token>``.

How each answer is handled (HEC's status codes and its JSON ``code``):

==========================  ====================================================
200                         delivered (with ``ack``: once the ackId is acknowledged)
400, code 5/6/12/13/...     the batch holds a record HEC will never take: the
                            records before ``invalid-event-number`` count as
                            delivered, that record goes to the dead-letter file
                            (``rejected``), the rest is sent again
400, code 10/11             the channel is missing or invalid: a configuration
                            error, the data is fine -> retried / spooled
401, 403                    token missing, wrong or disabled: an operator must
                            fix it; the data is fine -> retried / spooled, never
                            dropped (logged at ERROR each time the sink goes down)
404                         wrong URL or HEC disabled -> retried / spooled
413                         too large: the batch is split; one record alone too
                            large is rejected to the dead-letter file
429, 5xx, timeouts,         transient -> exponential backoff (honouring
connection errors           ``Retry-After``), then the disk spool
==========================  ====================================================

Indexer acknowledgement (``ack: true``): each request carries the
``X-Splunk-Request-Channel`` header; the ackIds HEC returns are polled on
``/services/collector/ack``. Records count as delivered only once acknowledged;
those not acknowledged within ``ack_timeout_seconds`` are sent again (so a
SIEM that indexes them late may see them twice: at least once, never lost),
and those still unacknowledged at shutdown go to the spool. A spool replay
moves its cursor past a batch only once HEC acknowledged it, so a kill while
HEC is still indexing leaves it in the spool for the next run; until then the
batch is in flight, its overdue records sent again like any others, and is
not read from the spool a second time (nor spooled again at shutdown: it is
there already).

``delivered`` counts a record once, when HEC acknowledges the copy the sink is
waiting on: a copy sent again replaces the overdue one (whose ackId is no
longer asked about), and counts under ``retried``. So routed = delivered +
rejected + what is left in the spool, even when HEC holds some records twice.
"""

from __future__ import annotations

import gzip as gzip_lib
import logging
import time
import uuid
from typing import Any

import orjson

from tetrapipe.sinks.siem.base import DeliveringSink, Delivery, RejectedError, TransientError
from tetrapipe.sinks.siem.http_post import HttpPeer, retry_after
from tetrapipe.sinks.siem.records import record_host, record_kind, record_payload, record_time

log = logging.getLogger("tetrapipe.sinks.hec")

EVENT_PATH = "/services/collector/event"
ACK_PATH = "/services/collector/ack"
#: HEC codes that say the channel header is the problem, not the data
CHANNEL_CODES = {10, 11}


class HecSink(DeliveringSink):
    def __init__(
        self,
        name: str,
        *,
        url: str,
        token: str,
        index: str | None = None,
        source: str = "tetrapipe",
        sourcetype: str = "_json",
        host: str | None = None,
        gzip: bool = True,
        ack: bool = False,
        ack_timeout_seconds: float = 60.0,
        ack_poll_seconds: float = 0.5,
        max_pending_acks: int = 16,
        max_request_bytes: int = 1_000_000,
        timeout_seconds: float = 10.0,
        verify_tls: bool = True,
        ca_file: str | None = None,
        channel: str | None = None,
        delivery: Delivery | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(name, delivery, **kw)
        self.peer = HttpPeer(url, timeout=timeout_seconds, verify_tls=verify_tls, ca_file=ca_file, what="HEC")
        self.path = self.peer.path or EVENT_PATH
        if self.path in ("/services/collector", "/services/collector/raw"):
            self.path = EVENT_PATH
        self.token = token
        self.index = index
        self.source = source
        self.sourcetype = sourcetype
        self.host = host
        self.gzip = gzip
        self.ack = ack
        self.ack_timeout = ack_timeout_seconds
        self.ack_poll = ack_poll_seconds
        self.max_pending_acks = max_pending_acks
        self.max_request_bytes = max_request_bytes
        self.channel = channel or str(uuid.uuid4())
        self._unacked: dict[int, tuple[list[dict[str, Any]], float]] = {}
        #: records of the spool chunk in flight whose resend failed: they wait on disk at the cursor, so they
        #: are sent again from here when the peer is due, not spooled a second time
        self._unsent: list[dict[str, Any]] = []

    # --- HTTP -----------------------------------------------------------------------------

    def _request(self, path: str, body: bytes, gzipped: bool) -> tuple[int, dict[str, Any], dict[str, str]]:
        headers = {"Authorization": f"Splunk {self.token}", "Content-Type": "application/json"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        if self.ack:
            headers["X-Splunk-Request-Channel"] = self.channel
        status, raw, resp_headers = self.peer.request("POST", path, body, headers)
        try:
            payload = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            payload = {"text": raw[:200].decode("utf-8", "replace")}
        if not isinstance(payload, dict):
            payload = {"text": str(payload)}
        return status, payload, resp_headers

    # --- delivery ---------------------------------------------------------------------------

    def _envelope(self, record: dict[str, Any]) -> bytes:
        env: dict[str, Any] = {
            "time": round(record_time(record).timestamp(), 6),
            "host": self.host or record_host(record),
            "source": self.source,
            "sourcetype": self.sourcetype,
            "event": record_payload(record),
            "fields": {"tetrapipe_kind": record_kind(record)},
        }
        if self.index:
            env["index"] = self.index
        if env["host"] is None:
            del env["host"]
        return orjson.dumps(env)

    @property
    def confirms_later(self) -> bool:
        return self.ack

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        if self.ack and len(self._unacked) >= self.max_pending_acks:
            self._wait_acks(until_below=self.max_pending_acks)
        lines = [self._envelope(r) for r in records]
        sent = 0
        while sent < len(lines):
            # requests of at most max_request_bytes (uncompressed), at least one record each
            size, end = 0, sent
            while end < len(lines) and (end == sent or size + len(lines[end]) + 1 <= self.max_request_bytes):
                size += len(lines[end]) + 1
                end += 1
            try:
                self._post(lines[sent:end], records[sent:end])
            except TransientError as exc:
                exc.accepted += sent
                raise
            except RejectedError as exc:
                exc.accepted += sent
                raise
            sent = end

    def _post(self, lines: list[bytes], records: list[dict[str, Any]]) -> None:
        body = b"\n".join(lines)
        if self.gzip:
            body = gzip_lib.compress(body, compresslevel=5)
        status, payload, headers = self._request(self.path, body, self.gzip)
        code = payload.get("code")
        text = payload.get("text", "")
        if status == 200:
            if self.ack:
                ack_id = payload.get("ackId")
                if ack_id is None:
                    raise TransientError(
                        "HEC answered without an ackId: is indexer acknowledgement enabled on this token?"
                    )
                self._unacked[int(ack_id)] = (records, time.monotonic())
            return
        if status == 413:
            if len(lines) == 1:
                raise RejectedError(
                    f"HEC 413: one record of {len(lines[0])} bytes is larger than the server accepts ({text})",
                    accepted=0,
                    rejected=1,
                )
            half = len(lines) // 2
            self.max_request_bytes = max(sum(len(x) + 1 for x in lines[:half]), 1)
            log.warning(
                "sink %s: HEC says the request is too large; lowering max_request_bytes to %d",
                self.name,
                self.max_request_bytes,
            )
            self._post(lines[:half], records[:half])
            try:
                self._post(lines[half:], records[half:])
            except (TransientError, RejectedError) as exc:
                exc.accepted += half
                raise
            return
        if status == 400 and code not in CHANNEL_CODES:
            bad = payload.get("invalid-event-number")
            if isinstance(bad, int) and 0 <= bad < len(lines):
                raise RejectedError(f"HEC 400 code {code}: {text} (event {bad} of the batch)", accepted=bad, rejected=1)
            raise RejectedError(f"HEC 400 code {code}: {text}", accepted=0, rejected=len(lines))
        retry_after_s = retry_after(headers.get("retry-after"))
        if status in (401, 403):
            raise TransientError(
                f"HEC {status} code {code}: {text} -- check the token; records are kept", retry_after_s
            )
        raise TransientError(f"HEC {status} code {code}: {text}", retry_after_s)

    # --- acknowledgements -------------------------------------------------------------------

    def _query_acks(self) -> None:
        if not self._unacked:
            return
        body = orjson.dumps({"acks": sorted(self._unacked)})
        status, payload, _ = self._request(f"{ACK_PATH}?channel={self.channel}", body, False)
        if status != 200:
            raise TransientError(f"HEC ack query {status}: {payload.get('text', '')}")
        for key, done in (payload.get("acks") or {}).items():
            if done and int(key) in self._unacked:
                records, _ = self._unacked.pop(int(key))
                self._confirm(len(records))

    def _wait_acks(self, until_below: int = 1, deadline: float | None = None) -> None:
        """Poll acknowledgements until fewer than ``until_below`` batches are pending; resend the overdue."""
        deadline = deadline if deadline is not None else time.monotonic() + self.ack_timeout
        while self._unacked and len(self._unacked) >= until_below:
            try:
                self._query_acks()
            except TransientError as exc:
                log.warning("sink %s: %s", self.name, exc)
            now = time.monotonic()
            overdue = [k for k, (_, sent) in self._unacked.items() if now - sent >= self.ack_timeout]
            for k in overdue:
                records, _ = self._unacked.pop(k)
                log.warning(
                    "sink %s: ackId %d not acknowledged within %gs; sending its %d record(s) again",
                    self.name,
                    k,
                    self.ack_timeout,
                    len(records),
                )
                self.stats.retried += len(records)
                self._resend(records)
            if not self._unacked or len(self._unacked) < until_below or now >= deadline:
                break
            self._sleep(self.ack_poll)

    def _resend(self, records: list[dict[str, Any]]) -> None:
        left = self._attempt(records, 1)
        if left:
            on_disk = self._in_flight_ids()
            self._unsent.extend(r for r in left if id(r) in on_disk)
            self._to_spool([r for r in left if id(r) not in on_disk])

    def _after_flush(self) -> None:
        if self._unsent and self._due():
            unsent, self._unsent = self._unsent, []
            self._unsent = self._attempt(unsent, 1)
        if self.ack and self._unacked:
            self._wait_acks(until_below=1)

    def _awaiting_confirmation(self) -> bool:
        return bool(self._unacked or self._unsent)

    @property
    def unconfirmed(self) -> int:
        with self._lock:  # the pump thread confirms acks meanwhile
            return sum(len(records) for records, _ in self._unacked.values())

    def poll(self) -> None:
        with self._lock:
            if self.ack and self._unacked and not self._closed:
                try:
                    self._query_acks()
                except TransientError as exc:
                    log.warning("sink %s: %s", self.name, exc)
        super().poll()

    def _before_close(self) -> None:
        self._unsent = []  # the chunk in flight: still in the spool, at its cursor
        if self._unacked:
            on_disk = self._in_flight_ids()
            pending = [r for records, _ in self._unacked.values() for r in records if id(r) not in on_disk]
            self._unacked.clear()
            if not pending:
                return
            log.warning(
                "sink %s: %d record(s) sent but not acknowledged at shutdown; keeping them in the spool",
                self.name,
                len(pending),
            )
            self._to_spool(pending)

    def _close_peer(self) -> None:
        self.peer.close()
