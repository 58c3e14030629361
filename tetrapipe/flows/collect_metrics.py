"""The collector's Prometheus series and its run totals (the one-line report and the exit summary).

See :mod:`tetrapipe.flows.collect` and docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


class CollectMetrics:
    """The collector's Prometheus series (fed in deltas once per loop turn, never per event)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p = "tetrapipe_collect_"
        self.read = Counter(p + "events_read", "Events read from the source", registry=registry)
        self.bytes_read = Counter(p + "bytes_read", "Source bytes consumed", registry=registry)
        self.sent = Counter(p + "events_sent", "Events handed to the Kafka producer (first time)", registry=registry)
        self.acked = Counter(p + "events_acked", "Events acknowledged by Kafka", registry=registry)
        self.retried = Counter(p + "events_retried", "Events sent again after a producer failure", registry=registry)
        self.rejected = Counter(p + "events_rejected", "Events not delivered, by reason", ["reason"], registry=registry)
        self.redelivered = Counter(
            p + "events_redelivered",
            "Events sent again after a restart that may already be in the topic",
            registry=registry,
        )
        self.spooled = Counter(p + "events_spooled", "Events parked in the disk spool", registry=registry)
        self.buffered = Gauge(
            p + "events_buffered", "Events read but not acknowledged yet", ["where"], registry=registry
        )
        self.buffered_bytes = Gauge(
            p + "bytes_buffered", "Bytes read but not acknowledged yet", ["where"], registry=registry
        )
        self.lag = Gauge(p + "lag_bytes", "Bytes behind the end of the source (unread file data)", registry=registry)
        self.kafka_up = Gauge(p + "kafka_up", "1 while the Kafka producer is up and acknowledging", registry=registry)
        self.checkpoint_time = Gauge(
            p + "checkpoint_timestamp_seconds", "When the last checkpoint was written", registry=registry
        )
        self.rotations = Counter(p + "file_rotations", "Rotations of the followed file", registry=registry)
        self.truncations = Counter(p + "file_truncations", "Truncations of the followed file", registry=registry)
        self.files_lost = Counter(
            p + "files_lost",
            "Rotated files deleted (past Tetragon's max backups) before they were read",
            registry=registry,
        )


@dataclass
class CollectTotals:
    read: int = 0
    bytes_read: int = 0
    sent: int = 0
    acked: int = 0
    retried: int = 0
    rejected: int = 0
    redelivered: int = 0
    spooled: int = 0
    seconds: float = 0.0
    peak_buffered_bytes: int = 0
    lost_warnings: list[str] = field(default_factory=list)
