"""What ``tetrapipe process`` is told (:class:`ProcessorConfig`) and what it reports (:class:`ProcessStats`).

Kept apart from the loop (:mod:`tetrapipe.flows.process`) so that the
command line and the tests read the settings without the loop's machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class OffsetsMovedError(RuntimeError):
    """The broker's offsets for a partition are not where the lake left them, and the policy says stop."""


FETCH_PARTITION_BYTES = 16 * 1024 * 1024
FETCH_MAX_BYTES = 64 * 1024 * 1024


@dataclass
class ProcessStats:
    batches: int = 0
    records: int = 0
    events: int = 0
    rejects: int = 0
    duplicates: int = 0  # events the lake already held (sent again by a restarted collector), not stored again
    alerts: int = 0
    streamed: int = 0  # enriched events produced to the events topic
    oversized: int = 0  # enriched events too large for a Kafka record (logged, not streamed; in the lake)
    last_batch_seconds: float = 0.0
    by_partition: dict[int, int] = field(default_factory=dict)  # partition -> last committed offset
    first_record_at: float | None = None  # monotonic: when the first record arrived (startup excluded)
    last_commit_at: float | None = None  # monotonic: when the last batch was committed

    @property
    def records_per_second(self) -> float:
        """Throughput from the first record fetched to the last commit: the rate without startup and idling."""
        if self.first_record_at is None or self.last_commit_at is None or self.last_commit_at <= self.first_record_at:
            return 0.0
        return self.records / (self.last_commit_at - self.first_record_at)


@dataclass
class ProcessorConfig:
    bootstrap: str
    topic: str = "tetragon.events"
    group: str = "tetrapipe-processor"
    alerts_topic: str | None = "tetrapipe.alerts"
    events_topic: str | None = None  # enriched events of every committed batch (None: not streamed)
    dead_letter_topic: str | None = "tetragon.events.dlq"
    batch_max_records: int = 20_000
    batch_max_seconds: float = 1.0
    commit_max_seconds: float = 10.0  # micro-batches wait at most this long for their lake commit (process_stage)
    client_id: str = "tetrapipe-process"
    exit_at_eof: bool = False
    kafka_options: dict = field(default_factory=dict)  # passed to kafka-python (TLS/SASL ...)
    kafka_client: str = "auto"  # kafka-python | confluent (librdkafka) | auto (sources/kafka.py)
    compact_every_seconds: float = 600.0  # merge small segments this often (0: never)
    stall_seconds: float = 120.0  # /healthz fails when the loop has not come round for this long
    on_offset_reset: str = "fail"  # the lake is ahead of the broker or behind its retention: fail|earliest|latest


__all__ = ["FETCH_MAX_BYTES", "FETCH_PARTITION_BYTES", "OffsetsMovedError", "ProcessStats", "ProcessorConfig"]
