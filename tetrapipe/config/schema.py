"""The deployment file's schema: every key, its type, default, limits and meaning.

:mod:`tetrapipe.config.check` walks a file against these sections;
``config check`` cites each field's ``doc``. Sink options are declared per
sink type, their defaults are the sink classes' own keyword defaults (one home
for a default, read by :func:`sink_section`). See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from tetrapipe.formats import FORMATS
from tetrapipe.lake.store import DEFAULT_LAKE
from tetrapipe.units import SEVERITIES, parse_duration

MISSING = object()


@dataclass
class Field:
    """One key: its type, default, allowed values and meaning (the ``doc`` is what ``config check`` cites)."""

    type: Any
    default: Any = MISSING
    required: bool = False
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    secret: bool = False
    doc: str = ""
    #: a value's own rule: returns what is wrong with it, or None
    validate: Callable[[Any], str | None] | None = None


def positive_duration_problem(value: Any) -> str | None:
    """What is wrong with a duration setting (``tls_window``), or None."""
    try:
        ok = parse_duration(str(value)).total_seconds() > 0
    except ValueError:
        ok = False
    return None if ok else f"must be a positive duration (30s, 5m, 1h), not {value!r}"


@dataclass
class Section:
    fields: dict[str, Field]
    doc: str = ""


@dataclass
class ListOf:
    item: Any


@dataclass
class MapOf:
    """A free-form mapping of string keys to scalars (Kafka client settings, labels)."""

    value: Any = str


#: sink options, one section per sink type: the keys are the sink classes' keyword arguments, and a
#: default left out here is the sink's own (see :func:`sink_section`); an explicit default overrides it
SINK_OPTIONS: dict[str, Section] = {
    "hec": Section(
        {
            "url": Field(str, required=True, doc="HEC base URL, e.g. https://splunk:8088"),
            "token": Field(str, required=True, secret=True, doc="HEC token; use ${ENV}"),
            "index": Field(str),
            "source": Field(str),
            # no default here: the sink's _json is right for JSON formats only, build_sink picks one per format
            "sourcetype": Field(str, None, doc="default _json; tetrapipe:cef with format: cef"),
            "host": Field(str, doc="fixed host field (default: the event's node)"),
            "gzip": Field(bool),
            "ack": Field(bool, doc="indexer acknowledgement"),
            "ack_timeout_seconds": Field(float, minimum=0.1),
            "ack_poll_seconds": Field(float, minimum=0.01),
            "max_pending_acks": Field(int, minimum=1),
            "max_request_bytes": Field(int, minimum=1024),
            "timeout_seconds": Field(float, minimum=0.1),
            "verify_tls": Field(bool),
            "ca_file": Field(str),
            "channel": Field(str),
        },
        "Splunk HTTP Event Collector",
    ),
    "syslog": Section(
        {
            "host": Field(str),
            "port": Field(int, minimum=1),
            "protocol": Field(str, choices=("udp", "tcp", "tls")),
            "facility": Field(
                str,
                choices=(
                    "kern",
                    "user",
                    "mail",
                    "daemon",
                    "auth",
                    "syslog",
                    "lpr",
                    "news",
                    "uucp",
                    "cron",
                    "authpriv",
                    "ftp",
                    "ntp",
                    "security",
                    "console",
                    "solaris-cron",
                    *(f"local{i}" for i in range(8)),
                ),
            ),
            "app_name": Field(str),
            "hostname": Field(str),
            "framing": Field(str, choices=("octet-counting", "lf")),
            "structured_data": Field(bool),
            "sd_id": Field(str),
            "max_message_bytes": Field(int, minimum=480),
            "timeout_seconds": Field(float, minimum=0.1),
            "ca_file": Field(str),
            "cert_file": Field(str),
            "key_file": Field(str),
            "verify_tls": Field(bool),
            "server_name": Field(str),
        },
        "syslog RFC 5424",
    ),
    "file": Section(
        {
            "path": Field(str, required=True),
            "max_bytes": Field(int, minimum=1024),
            "backups": Field(int, minimum=0),
            "fsync": Field(bool),
        },
        "rotating JSON-lines file",
    ),
    "stdout": Section({}, "standard output"),
    "webhook": Section(
        {
            "url": Field(str, required=True, secret=True, doc="endpoint (a Slack URL is a secret: use ${ENV})"),
            "mode": Field(
                str,
                choices=("ndjson", "array", "single"),
                doc="a batch as JSON lines or one JSON array per request, or one record per request",
            ),
            "headers": Field(MapOf(str), secret=True, doc="extra request headers (Authorization: ...)"),
            "method": Field(str, choices=("POST", "PUT")),
            "gzip": Field(bool),
            "timeout_seconds": Field(float, minimum=0.1),
            "verify_tls": Field(bool),
            "ca_file": Field(str),
        },
        "HTTP webhook (SOAR, ticketing, Slack/Mattermost with format: slack)",
    ),
    "kafka": Section(
        {
            "bootstrap": Field(str, None, doc="default: kafka.bootstrap"),  # filled in from the file's kafka:
            "topic": Field(str, required=True),
            "compression": Field(str, choices=("gzip", "snappy", "lz4", "zstd")),
            "timeout_seconds": Field(float, minimum=0.1),
            "client_id": Field(str),
            "client": Field(
                str,
                None,
                choices=("auto", "kafka-python", "confluent"),
                doc="Kafka client library; default: kafka.client, else auto",
            ),
            "options": Field(MapOf(object), doc="kafka-python producer settings (TLS, SASL)"),
        },
        "Kafka topic",
    ),
}

SEVERITY_CHOICES = SEVERITIES

FILTERS = Section(
    {
        "kinds": Field(ListOf(str), None, doc="event kinds to forward (events only)"),
        "exclude_kinds": Field(ListOf(str), None),
        "namespaces": Field(ListOf(str), None, doc="glob patterns; (host) matches host processes"),
        "exclude_namespaces": Field(ListOf(str), None),
        "min_severity": Field(str, None, choices=SEVERITY_CHOICES, doc="alerts only"),
        "rules": Field(ListOf(str), None, doc="rule id glob patterns (alerts only)"),
        "exclude_rules": Field(ListOf(str), None),
    }
)

DELIVERY = Section(
    {
        "batch_size": Field(int, 500, minimum=1),
        "linger_seconds": Field(float, 1.0, minimum=0),
        "max_attempts": Field(int, 3, minimum=1),
        "backoff_initial_seconds": Field(float, 0.5, minimum=0),
        "backoff_max_seconds": Field(float, 60.0, minimum=0),
        "spool_max_bytes": Field(int, 1 << 30, minimum=0),
        "spool_fsync": Field(bool, True),
    }
)

SINK = Section(
    {
        "name": Field(str, required=True),
        "type": Field(str, required=True, choices=tuple(SINK_OPTIONS)),
        "format": Field(str, "native", choices=tuple(FORMATS)),
        "forward": Field(str, "alerts", choices=("alerts", "events", "all")),
        "include_raw": Field(bool, False),
        "enabled": Field(bool, True),
        "filters": Field(FILTERS, None),
        "delivery": Field(DELIVERY, None),
        "options": Field("sink-options", None),
    }
)

SOURCE = Section(
    {
        "type": Field(str, required=True, choices=("file", "grpc", "stdin")),
        "path": Field(str, None, doc="file: Tetragon's export file or directory"),
        "address": Field(str, None, doc="grpc: Tetragon's gRPC address (unix:///... or host:port)"),
        "from": Field(str, "end", choices=("beginning", "end")),
        "checkpoint_dir": Field(str, None),
    }
)

ROOT = Section(
    {
        "version": Field(int, 1, choices=(1,)),
        "lake": Field(str, DEFAULT_LAKE, doc="directory or object-store URI (az://CONTAINER/PATH, abfss://, s3://)"),
        "lake_options": Field(
            MapOf(object),
            None,
            doc="delta-rs storage options of an object-store lake (account_name, endpoint, ...); keep keys "
            "out of the file: ${AZURE_STORAGE_ACCOUNT_KEY}, or delta-rs reads AZURE_* variables itself",
        ),
        "rules": Field(str, None, doc="rules directory, or none"),
        "spool_dir": Field(
            str,
            None,
            doc="where sinks keep what the SIEM could not take yet (default: $XDG_STATE_HOME/tetrapipe/spool)",
        ),
        # no default host: a listener reaches beyond the machine only when the file says so (0.0.0.0 in a pod);
        # left out, every command binds 127.0.0.1 (metrics name nodes, pods and rules)
        "metrics": Field(
            Section(
                {
                    "host": Field(
                        str, None, doc="bind address (default 127.0.0.1; 0.0.0.0 for the kubelet and Prometheus)"
                    ),
                    "port": Field(int, None, minimum=1),
                }
            ),
            None,
        ),
        "sources": Field(ListOf(SOURCE), None),
        "kafka": Field(
            Section(
                {
                    "bootstrap": Field(str, required=True),
                    "client": Field(
                        str,
                        None,
                        choices=("auto", "kafka-python", "confluent"),
                        doc="Kafka client library (--kafka-client): auto = confluent-kafka when installed",
                    ),
                    "topic": Field(str, "tetragon.events"),
                    "alerts_topic": Field(str, "tetrapipe.alerts"),
                    "dead_letter_topic": Field(str, "tetragon.events.dlq"),
                    "events_topic": Field(
                        str,
                        "",
                        doc="enriched events from the processor, for sinks with forward: "
                        "events|all ('' = not streamed)",
                    ),
                    "options": Field(MapOf(object), None),
                }
            ),
            None,
        ),
        "processor": Field(
            Section(
                {
                    "group": Field(str, "tetrapipe-processor"),
                    "batch_size": Field(int, 20_000, minimum=1),
                    "batch_seconds": Field(float, 1.0, minimum=0),
                    "commit_seconds": Field(
                        float, 10.0, minimum=0, doc="longest wait of transformed micro-batches for their lake commit"
                    ),
                    "compact_every_seconds": Field(float, 600.0, minimum=0),
                    "tls_window": Field(
                        str, "1m", validate=positive_duration_problem, doc="tumbling window of tls_stats rows"
                    ),
                    "on_offset_reset": Field(
                        str,
                        "fail",
                        choices=("fail", "earliest", "latest"),
                        doc="the lake is ahead of the broker (topic recreated) or behind its retention",
                    ),
                }
            ),
            None,
        ),
        "sinks": Field(ListOf(SINK), None),
    }
)


@cache
def sink_section(type_name: str) -> Section:
    """The options of one sink type, each default taken from the sink class's keyword default.

    Only the types and limits live in :data:`SINK_OPTIONS`; a default written
    in two places drifts. The sink's module is imported when a file names that
    type, not before (HEC's HTTP client is not needed to check a syslog sink).
    """
    from tetrapipe.sinks.siem import sink_class

    spec = SINK_OPTIONS[type_name]
    params = inspect.signature(sink_class(type_name).__init__).parameters
    fields = {}
    for key, f in spec.fields.items():
        p = params[key]  # a KeyError here is an option the sink does not take: a schema bug
        if f.default is MISSING and not f.required and p.default is not inspect.Parameter.empty:
            f = replace(f, default=p.default)
        fields[key] = f
    return Section(fields, spec.doc)
