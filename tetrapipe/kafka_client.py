"""Which Kafka client library a command uses, and kafka-python settings in librdkafka's words.

Two backends stand behind the one Kafka source (:mod:`tetrapipe.sources.kafka`)
and the one Kafka sink (:mod:`tetrapipe.sinks.kafka`): kafka-python, which the
package always installs, and confluent-kafka (librdkafka, C), which the
``tetrapipe[fast]`` extra adds. Measured on one core, librdkafka decodes and
encodes records several times cheaper than kafka-python, which was a quarter
of the processor's time and most of the collector's.

Operators keep writing kafka-python setting names (``--kafka-option
session_timeout_ms=6000``, ``kafka.options`` in the config file) whichever
backend runs: this module translates them, and refuses a setting it has no
translation for by name rather than letting librdkafka guess or ignore it.
Both the source and the sink use it (they may not import each other), so it
sits here, a leaf beside ``units`` and ``errors``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

CLIENTS = ("auto", "kafka-python", "confluent")
CLIENT_ENV = "TETRAPIPE_KAFKA_CLIENT"


class RepeatFilter(logging.Filter):
    """One line per kind of message a ``window``, then, with the next one, how many more came meanwhile.

    Why: with its broker away, librdkafka logs every refused connection of
    every client thread, and hands them over in a burst at the next poll: a
    processor started before its broker printed ~370 such lines in the 10 s
    before it said, in one line, what was wrong (measured). Messages that
    differ only in their numbers (timings, ports, counts) are one kind.
    """

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self._clock = clock
        self._seen: dict[str, tuple[float, int]] = {}  # kind -> (when it was last let through, held back since)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        kind = re.sub(r"\d+", "#", text)
        now = self._clock()
        shown, held = self._seen.get(kind, (None, 0))
        if shown is not None and now - shown < self.window:
            self._seen[kind] = (shown, held + 1)
            return False
        if len(self._seen) >= 1024:  # bounded: a flood of distinct messages starts the count afresh
            self._seen.clear()
        self._seen[kind] = (now, 0)
        if held:
            record.msg, record.args = f"{text} ({held} more like this in the last {now - shown:.0f} s)", None
        return True


#: librdkafka's own log lines (a broker going away ...), under the "kafka" loggers the commands already tame;
#: both librdkafka adapters log through it, so one filter holds back their repeats
LIBRDKAFKA_LOG = logging.getLogger("kafka.librdkafka")
LIBRDKAFKA_LOG.addFilter(RepeatFilter())


class KafkaClientError(ValueError):
    """A client choice or a setting the chosen client cannot honour (a usage error, raised before connecting)."""


def confluent_available() -> bool:
    """Whether confluent-kafka imports (the ``fast`` extra is installed and its librdkafka loads)."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_client(name: str | None) -> str:
    """``auto`` (or nothing) -> ``confluent`` when importable, else ``kafka-python``; a named client is checked.

    Raises :class:`KafkaClientError` for an unknown name, or for ``confluent``
    when the package is missing (asking for speed and silently not getting
    it would hide a broken image).
    """
    name = (name or "auto").strip()
    if name not in CLIENTS:
        raise KafkaClientError(f"unknown Kafka client {name!r}: expected one of {', '.join(CLIENTS)}")
    if name == "auto":
        return "confluent" if confluent_available() else "kafka-python"
    if name == "confluent" and not confluent_available():
        raise KafkaClientError(
            "--kafka-client confluent: the confluent-kafka package is not installed "
            "(pip install 'tetrapipe[fast]', or use --kafka-client kafka-python)"
        )
    return name


# kafka-python name -> librdkafka name, for settings both clients of a deployment share
_COMMON = {
    "bootstrap_servers": "bootstrap.servers",
    "client_id": "client.id",
    "security_protocol": "security.protocol",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "ssl_crlfile": "ssl.crl.location",
    "ssl_ciphers": "ssl.cipher.suites",
    "sasl_mechanism": "sasl.mechanisms",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "sasl_kerberos_service_name": "sasl.kerberos.service.name",
    "sasl_kerberos_domain_name": "sasl.kerberos.principal",
    "request_timeout_ms": "socket.timeout.ms",
    "connections_max_idle_ms": "connections.max.idle.ms",
    "reconnect_backoff_ms": "reconnect.backoff.ms",
    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms",
    "retry_backoff_ms": "retry.backoff.ms",
    "receive_buffer_bytes": "socket.receive.buffer.bytes",
    "send_buffer_bytes": "socket.send.buffer.bytes",
    "metadata_max_age_ms": "topic.metadata.refresh.interval.ms",
    "socket_connection_setup_timeout_ms": "socket.connection.setup.timeout.ms",
}
_CONSUMER = {
    "group_id": "group.id",
    "enable_auto_commit": "enable.auto.commit",
    "auto_commit_interval_ms": "auto.commit.interval.ms",
    "auto_offset_reset": "auto.offset.reset",
    "session_timeout_ms": "session.timeout.ms",
    "heartbeat_interval_ms": "heartbeat.interval.ms",
    "max_poll_interval_ms": "max.poll.interval.ms",
    "fetch_min_bytes": "fetch.min.bytes",
    "fetch_max_wait_ms": "fetch.wait.max.ms",
    "fetch_max_bytes": "fetch.max.bytes",
    "max_partition_fetch_bytes": "max.partition.fetch.bytes",
    "isolation_level": "isolation.level",
    "check_crcs": "check.crcs",
}
_PRODUCER = {
    "acks": "acks",
    "enable_idempotence": "enable.idempotence",
    "compression_type": "compression.type",
    "linger_ms": "linger.ms",
    "batch_size": "batch.size",
    "max_request_size": "message.max.bytes",
    "max_in_flight_requests_per_connection": "max.in.flight.requests.per.connection",
    "delivery_timeout_ms": "delivery.timeout.ms",
    "retries": "message.send.max.retries",
}
#: kafka-python settings with no librdkafka counterpart that change nothing a flow relies on
_IGNORED = {"api_version", "api_version_auto_timeout_ms", "partitioner", "ssl_check_hostname"}


def _value(kp_name: str, value: Any) -> Any:
    """A kafka-python value in librdkafka's spelling (lists joined, ``none`` reset = ``error``, codec None = none)."""
    if kp_name == "bootstrap_servers" and not isinstance(value, str):
        return ",".join(value)
    if kp_name == "auto_offset_reset":
        return {"none": "error", "smallest": "earliest", "largest": "latest"}.get(value, value)
    if kp_name == "compression_type":
        return value or "none"
    if kp_name == "acks" and value == -1:
        return "all"
    return value


def librdkafka_config(settings: dict[str, Any], *, role: str, consumed: tuple[str, ...] = ()) -> dict[str, Any]:
    """kafka-python ``settings`` of a ``role`` (``consumer`` / ``producer``) as a librdkafka configuration.

    ``consumed`` names settings the caller's adapter implements itself
    (``max_poll_records``, ``max_block_ms`` ...). ``ssl_check_hostname=False``
    turns librdkafka's host name check off, as it does kafka-python's.
    Raises :class:`KafkaClientError` naming every setting without a translation.
    """
    table = {**_COMMON, **(_CONSUMER if role == "consumer" else _PRODUCER)}
    out: dict[str, Any] = {}
    unknown = []
    for key, value in settings.items():
        if key in consumed or value is None and key != "compression_type":
            continue
        if key == "ssl_check_hostname":
            out["ssl.endpoint.identification.algorithm"] = "https" if value else "none"
        elif key in _IGNORED:
            continue
        elif key in table:
            out[table[key]] = _value(key, value)
        else:
            unknown.append(key)
    if unknown:
        known = sorted(set(table) | _IGNORED | set(consumed))
        raise KafkaClientError(
            f"Kafka {role} setting(s) {', '.join(sorted(unknown))} have no confluent-kafka (librdkafka) "
            f"counterpart here; use --kafka-client kafka-python, or one of: {', '.join(known)}"
        )
    return out


__all__ = [
    "CLIENTS",
    "CLIENT_ENV",
    "KafkaClientError",
    "confluent_available",
    "librdkafka_config",
    "resolve_client",
]
