"""Kafka sink: one message per record on a topic a SIEM's Kafka connector reads.

The producer waits for every in-sync replica (``acks=all``, idempotent) and
each batch is flushed and every send confirmed before it counts as
delivered; a batch that is not confirmed within ``timeout_seconds`` is
transient (retried, then spooled). ``client`` picks the library as the
commands' ``--kafka-client`` does (the file's ``kafka.client`` by default). Keys: alerts by rule id, events by node,
so one node's events stay in order within a partition.
"""

from __future__ import annotations

from typing import Any

from tetrapipe.kafka_client import resolve_client
from tetrapipe.sinks.siem.base import DeliveringSink, Delivery, TransientError
from tetrapipe.sinks.siem.records import record_body, record_key


class KafkaTopicSink(DeliveringSink):
    """Records, one message each, on a Kafka topic (the ``kafka`` SIEM sink); not the collector's event producer."""

    def __init__(
        self,
        name: str,
        *,
        bootstrap: str,
        topic: str,
        compression: str | None = None,
        timeout_seconds: float = 30.0,
        client_id: str = "tetrapipe-siem",
        client: str | None = None,
        options: dict[str, Any] | None = None,
        delivery: Delivery | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(name, delivery, **kw)
        self.bootstrap = bootstrap
        self.topic = topic
        self.compression = compression
        self.timeout = timeout_seconds
        self.client_id = client_id
        self.client = resolve_client(client)  # a missing confluent-kafka is a usage error now, not at first delivery
        self.options = dict(options or {})
        self._producer = None

    def _connect(self):  # noqa: ANN202 - kafka-python has no type hints
        if self._producer is None:
            from kafka.errors import KafkaError

            from tetrapipe.sinks.kafka import new_producer

            ms = int(self.timeout * 1000)
            try:
                self._producer = new_producer(
                    self.bootstrap.split(","),
                    self.client_id,
                    client=self.client,
                    compression_type=self.compression,
                    linger_ms=20,
                    max_block_ms=ms,
                    request_timeout_ms=min(ms, 30_000),
                    **self.options,
                )
            except KafkaError as exc:
                raise TransientError(f"kafka {self.bootstrap}: {exc}") from exc
        return self._producer

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        from kafka.errors import KafkaError

        producer = self._connect()
        futures = []
        try:
            for r in records:
                futures.append(producer.send(self.topic, key=record_key(r), value=record_body(r)))
            producer.flush(timeout=self.timeout)
            for f in futures:
                f.get(timeout=self.timeout)
        except KafkaError as exc:
            # a broker that restarted may no longer know this idempotent producer: start a fresh one
            self._close_peer()
            raise TransientError(f"kafka {self.topic}@{self.bootstrap}: {type(exc).__name__}: {exc}") from exc

    def _close_peer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=min(self.timeout, 5.0))
            except Exception:  # noqa: BLE001 - closing a producer whose broker is gone
                pass
            finally:
                self._producer = None
