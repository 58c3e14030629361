"""SIEM outputs: HEC, syslog, Kafka, webhooks, a rotating JSON file, stdout; routed, formatted, spooled.

``build_router(config)`` turns the ``sinks:`` section of a deployment's
configuration (:mod:`tetrapipe.config`) into a :class:`Router`; hand its
``on_alerts`` to the processor, or feed it with ``handle(alerts=, events=)``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tetrapipe.sinks.siem.base import DeliveringSink, Delivery, RejectedError, Sink, SinkStats, TransientError
from tetrapipe.sinks.siem.router import Route, RouteFilter, Router
from tetrapipe.sinks.spool import default_spool_dir

if TYPE_CHECKING:
    from tetrapipe.config import Config, SinkConfig

#: sink type (the ``type:`` of a sink in the config) -> module:class
SINK_TYPES = {
    "hec": "tetrapipe.sinks.siem.hec:HecSink",
    "syslog": "tetrapipe.sinks.siem.syslog:SyslogSink",
    "file": "tetrapipe.sinks.siem.jsonfile:JsonFileSink",
    "stdout": "tetrapipe.sinks.siem.stdout:StdoutSink",
    "kafka": "tetrapipe.sinks.siem.kafka_out:KafkaTopicSink",
    "webhook": "tetrapipe.sinks.siem.webhook:WebhookSink",
}


def sink_class(type_name: str) -> type[DeliveringSink]:
    module, _, cls = SINK_TYPES[type_name].partition(":")
    return getattr(importlib.import_module(module), cls)


def build_sink(sc: SinkConfig, spool_dir: str | None) -> DeliveringSink:
    delivery = Delivery(spool_dir=spool_dir, **{k: v for k, v in (sc.delivery or {}).items() if v is not None})
    options: dict[str, Any] = {k: v for k, v in sc.options.items() if v is not None}
    if sc.type == "hec" and sc.format == "cef":
        # CEF lines are not JSON: the HEC sink's default _json sourcetype would try, and fail, to parse every one
        options.setdefault("sourcetype", "tetrapipe:cef")
    try:
        return sink_class(sc.type)(sc.name, delivery=delivery, **options)
    except ValueError as exc:  # an option only the sink can judge (a URL, a mode): say which sink
        raise ValueError(f"sink {sc.name}: {exc}") from exc


def build_router(config: Config, only: list[str] | None = None) -> Router:
    """Sinks and routes for every enabled sink of the configuration (or the named ones)."""
    routes = []
    for sc in config.sinks:
        if not sc.enabled or (only and sc.name not in only):
            continue
        routes.append(
            Route(
                sc.name,
                build_sink(sc, config.spool_dir or str(default_spool_dir())),
                format=sc.format,
                forward=sc.forward,
                filter=RouteFilter.from_config(sc.filters),
                include_raw=sc.include_raw,
            )
        )
    return Router(routes)


__all__ = [
    "Delivery",
    "DeliveringSink",
    "RejectedError",
    "Route",
    "RouteFilter",
    "Router",
    "SINK_TYPES",
    "Sink",
    "SinkStats",
    "TransientError",
    "build_router",
    "build_sink",
    "sink_class",
]
