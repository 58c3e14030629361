"""Syslog sink: RFC 5424 messages over UDP (RFC 5426), TCP (RFC 6587) or TLS (RFC 5425).

Each record is one message whose MSG is the record's JSON, or its CEF line
with ``format: cef``::

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] {"...": ...}
    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] CEF:0|tetrapipe|tetrapipe|...

* PRI = facility * 8 + severity. Alerts map their severity (critical -> 2
  crit, high -> 3 err, medium -> 4 warning, low -> 5 notice, info -> 6 info);
  events are 6 (info).
* TIMESTAMP is the event's own time (not the time of sending), so a replay
  after an outage lands at the right place in the SIEM's timeline.
* HOSTNAME is the Kubernetes node that saw the event (``hostname`` overrides).
* MSGID is ``alert`` or the Tetragon event kind (``process_exec`` ...).
* SD (``structured_data: true``) repeats the fields a syslog router filters
  on -- kind, severity, rule, namespace, pod -- under the SD-ID ``sd_id``
  (default ``tetrapipe@32473``: 32473 is the private enterprise number RFC
  5612 reserves for examples; set your own if you have one).

TCP and TLS use octet-counting framing (``LEN SP MSG``, RFC 6587 3.4.1) so a
JSON body may hold anything; ``framing: lf`` sends newline-terminated
messages for receivers that only know that. Plain TCP syslog has no
acknowledgement: before each batch the sink checks that the receiver has not
closed the connection (a stopped rsyslog closes it), and reconnects or spools,
which is what keeps a restart of the receiver from losing the next batch. A
receiver that vanishes without closing (a network partition) can still lose
what the kernel had buffered; use HEC with ``ack: true`` where that matters.

What that means for a forwarder killed with SIGKILL (tests/
test_forward_kill_syslog.py): ``delivered`` means the local kernel took the
batch, and the kernel of a killed process still sends what was written, then
closes the connection cleanly; what the dead run had not committed (Kafka
offsets, the spool cursor) the next run sends again. So at least once, with
a poll batch plus a spool chunk sent again per kill, provided the receiver
stays up and reachable until it has read what was buffered (a socket
buffer: some hundreds of kB over a network). A kill in the middle of a write
cuts the last message: with octet counting rsyslog drops the incomplete frame
("Incomplete frame at end of stream") and the next run sends it whole; with
``framing: lf`` the receiver keeps the cut part as a message of its own, a
torn line beside the whole one, so prefer octet counting.

UDP is fire-and-forget: ``delivered`` means sent. A message larger than
``max_message_bytes`` is never truncated (half a JSON document is of no use
to a SIEM): it is rejected to the dead-letter file and counted.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
from typing import Any

from tetrapipe.sinks.siem.base import DeliveringSink, Delivery, RejectedError, TransientError
from tetrapipe.sinks.siem.records import (
    is_alert_record,
    record_body,
    record_host,
    record_kind,
    record_severity,
    record_time,
)
from tetrapipe.units import SEVERITIES

log = logging.getLogger("tetrapipe.sinks.syslog")

FACILITIES = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    "ntp": 12,
    "security": 13,
    "console": 14,
    "solaris-cron": 15,
    **{f"local{i}": 16 + i for i in range(8)},
}
#: alert severity rank (info .. critical) -> syslog severity
SYSLOG_SEVERITY = (6, 5, 4, 3, 2)
DEFAULT_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}


def _printable(value: str | None, limit: int) -> str:
    """RFC 5424 header fields: PRINTUSASCII (33..126) only, ``-`` when empty."""
    if not value:
        return "-"
    out = "".join(ch if 33 <= ord(ch) <= 126 else "_" for ch in value)[:limit]
    return out or "-"


def _sd_value(value: Any) -> str:
    """SD-PARAM values escape ``"``, ``\\`` and ``]``."""
    text = str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


class SyslogSink(DeliveringSink):
    def __init__(
        self,
        name: str,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        protocol: str = "tcp",
        facility: str = "local0",
        app_name: str = "tetrapipe",
        hostname: str | None = None,
        framing: str = "octet-counting",
        structured_data: bool = True,
        sd_id: str = "tetrapipe@32473",
        max_message_bytes: int = 65_000,
        timeout_seconds: float = 10.0,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        verify_tls: bool = True,
        server_name: str | None = None,
        delivery: Delivery | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(name, delivery, **kw)
        if protocol not in DEFAULT_PORTS:
            raise ValueError(f"syslog protocol must be udp, tcp or tls, not {protocol!r}")
        if facility not in FACILITIES:
            raise ValueError(f"unknown syslog facility {facility!r}")
        if framing not in ("octet-counting", "lf"):
            raise ValueError(f"syslog framing must be octet-counting or lf, not {framing!r}")
        self.host = host
        self.port = port or DEFAULT_PORTS[protocol]
        self.protocol = protocol
        self.facility = FACILITIES[facility]
        self.app_name = _printable(app_name, 48)
        self.hostname = hostname
        self.framing = framing
        self.structured_data = structured_data
        self.sd_id = sd_id
        self.max_message_bytes = max_message_bytes
        self.timeout = timeout_seconds
        self.fire_and_forget = protocol == "udp"
        self._ssl: ssl.SSLContext | None = None
        self.server_name = server_name or host
        if protocol == "tls":
            self._ssl = ssl.create_default_context(cafile=ca_file)
            if cert_file:
                self._ssl.load_cert_chain(cert_file, key_file)
            if not verify_tls:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self._sock: socket.socket | None = None
        self._local_host = socket.gethostname()

    # --- formatting -------------------------------------------------------------------------

    def format(self, record: dict[str, Any]) -> bytes:
        """One RFC 5424 message (without transport framing)."""
        severity = SYSLOG_SEVERITY[record_severity(record)] if is_alert_record(record) else 6
        pri = self.facility * 8 + severity
        ts = record_time(record).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        host = _printable(self.hostname or record_host(record) or self._local_host, 255)
        kind = record_kind(record)
        msgid = _printable(kind, 32)
        sd = "-"
        if self.structured_data:
            params = {"kind": kind, "severity": SEVERITIES[record_severity(record)]}
            params.update(_sd_fields(record))
            sd = "[" + self.sd_id + "".join(f' {k}="{_sd_value(v)}"' for k, v in params.items() if v) + "]"
        header = f"<{pri}>1 {ts} {host} {self.app_name} - {msgid} {sd} "
        return header.encode() + record_body(record)

    def _frame(self, message: bytes) -> bytes:
        if self.protocol == "udp":
            return message
        if self.framing == "lf":
            return message.replace(b"\n", b" ") + b"\n"
        return str(len(message)).encode() + b" " + message

    # --- transport --------------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            if self.protocol == "udp" or not self._peer_closed(self._sock):
                return self._sock
            log.info(
                "sink %s: syslog receiver %s:%d closed the connection; reconnecting", self.name, self.host, self.port
            )
            self._drop()
        try:
            if self.protocol == "udp":
                family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_DGRAM)
                sock.connect((self.host, self.port))  # connected: ICMP "port unreachable" surfaces as an error
            else:
                sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                if self._ssl is not None:
                    sock = self._ssl.wrap_socket(sock, server_hostname=self.server_name)
            sock.settimeout(self.timeout)
        except (OSError, ssl.SSLError) as exc:
            raise TransientError(f"syslog {self.protocol}://{self.host}:{self.port}: {exc}") from exc
        self._sock = sock
        return sock

    @staticmethod
    def _peer_closed(sock: socket.socket) -> bool:
        """A syslog receiver never writes to us: readable means it closed (or reset) the connection."""
        try:
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                return False
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            sock.setblocking(False)
            try:
                data = sock.recv(1)
            finally:
                sock.setblocking(True)
            return data == b""
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except (OSError, ValueError):
            return True

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        messages = [self.format(r) for r in records]
        for i, m in enumerate(messages):
            if len(m) > self.max_message_bytes:
                # deliver what comes before it, then reject it alone
                if i:
                    self._send_messages(messages[:i])
                raise RejectedError(
                    f"syslog message of {len(m)} bytes exceeds max_message_bytes ({self.max_message_bytes})",
                    accepted=i,
                    rejected=1,
                )
        self._send_messages(messages)

    def _send_messages(self, messages: list[bytes]) -> None:
        sock = self._connect()
        try:
            if self.protocol == "udp":
                for i, m in enumerate(messages):
                    try:
                        sock.send(m)
                    except OSError as exc:
                        raise TransientError(f"syslog udp://{self.host}:{self.port}: {exc}", accepted=i) from exc
            else:
                sock.sendall(b"".join(self._frame(m) for m in messages))
        except TransientError:
            self._drop()
            raise
        except (OSError, ssl.SSLError) as exc:
            self._drop()
            raise TransientError(f"syslog {self.protocol}://{self.host}:{self.port}: {exc}") from exc

    def _close_peer(self) -> None:
        if self._sock is not None and self._ssl is not None:
            try:
                self._sock = self._sock.unwrap()  # close_notify, so the receiver keeps the last messages
            except (OSError, ssl.SSLError, ValueError):
                pass
        self._drop()


def _sd_fields(record: dict[str, Any]) -> dict[str, Any]:
    """rule, namespace, pod: wherever the record's format keeps them."""
    rule = (
        record.get("rule_id")
        or (record.get("rule") or {}).get("id")
        or ((record.get("finding_info") or {}).get("analytic") or {}).get("uid")
    )
    orch = record.get("orchestrator") or {}
    k8s = (record.get("unmapped") or {}).get("k8s") or {}
    namespace = record.get("namespace") or orch.get("namespace") or k8s.get("namespace")
    pod = record.get("pod") or (orch.get("resource") or {}).get("name") or k8s.get("pod")
    return {"rule": rule, "namespace": namespace, "pod": pod}
