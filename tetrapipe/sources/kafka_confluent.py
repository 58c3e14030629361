"""The Kafka source's confluent-kafka (librdkafka) backend, shaped like the kafka-python consumer the flows use.

The processor, the forwarder and ``status`` were written against
kafka-python's consumer; rather than teach each flow two clients, this
adapter offers the few calls they make (see :class:`tetrapipe.sources.kafka.Consumer`)
with kafka-python's types: ``poll`` returns ``{TopicPartition: [records]}``
(records with ``.offset .value .key .timestamp .headers``), offsets are
committed with ``OffsetAndMetadata``, and an out-of-range position under
``auto_offset_reset='none'`` raises ``OffsetOutOfRangeError({tp: offset})``.

Two differences of librdkafka are absorbed here:

* **Seeks inside the rebalance callback.** librdkafka hands the assignment
  to ``on_assign`` (run inside ``consume``, as kafka-python runs its listener
  inside ``poll``); a seek there is recorded and the partitions are then
  assigned at those offsets, so the processor's seek-after-assign (the
  exactly-once resume point) behaves as with kafka-python.
* **Errors arrive as messages.** An out-of-range error of one partition may
  come with records of others: those are kept and handed out by the next
  ``poll`` (dropped for a partition sought meanwhile), never lost.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as CTopicPartition
from kafka.errors import CommitFailedError, KafkaTimeoutError, OffsetOutOfRangeError
from kafka.structs import TopicPartition

from tetrapipe.kafka_client import LIBRDKAFKA_LOG, librdkafka_config

_OUT_OF_RANGE = (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE)
#: settings the adapter implements itself rather than librdkafka
_OWN = ("max_poll_records",)


class Record:
    """One consumed record, kafka-python's ``ConsumerRecord`` fields (key, timestamp, headers read on demand)."""

    __slots__ = ("_msg", "offset", "partition", "topic", "value")

    def __init__(self, msg: Any) -> None:
        self._msg = msg
        self.topic = msg.topic()
        self.partition = msg.partition()
        self.offset = msg.offset()
        self.value = msg.value()

    @property
    def key(self) -> bytes | None:
        return self._msg.key()

    @property
    def timestamp(self) -> int:
        return self._msg.timestamp()[1]

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return self._msg.headers() or []


class ConfluentConsumer:
    """A librdkafka consumer answering the kafka-python calls the flows make (:class:`~tetrapipe.sources.kafka.Consumer`)."""

    def __init__(self, topics: Iterable[str], settings: dict[str, Any]) -> None:
        self._max_records = int(settings.get("max_poll_records") or 500)
        if settings.get("group_id") is None:
            # librdkafka wants a group even for assign(); a private one is never joined nor committed to
            settings = {**settings, "group_id": f"tetrapipe-nogroup-{uuid.uuid4().hex[:8]}"}
        conf = librdkafka_config(settings, role="consumer", consumed=_OWN)
        conf.setdefault("enable.partition.eof", False)
        conf["logger"] = LIBRDKAFKA_LOG
        # the readiness probe reads broker states librdkafka reports each second (from inside consume):
        # a request of its own from the metrics thread would queue behind this thread's fetches
        conf.setdefault("statistics.interval.ms", 1000)
        conf["stats_cb"] = self._on_stats
        self._link: tuple[bool, str] = (False, "not connected yet")
        self._c = Consumer(conf)
        self._tps: dict[tuple[str, int], TopicPartition] = {}
        self._carry: dict[TopicPartition, list[Record]] = {}
        self._in_rebalance: dict[TopicPartition, int] | None = None
        self._manual: dict[TopicPartition, int] = {}  # assigned by assign(), not the group: their start offsets
        topics = list(topics)
        if topics:
            self.subscribe(topics)

    # -- partitions --------------------------------------------------------------

    def _tp(self, topic: str, partition: int) -> TopicPartition:
        tp = self._tps.get((topic, partition))
        if tp is None:
            tp = self._tps[(topic, partition)] = TopicPartition(topic, partition)
        return tp

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        """Join the group for ``topics``; ``listener`` is a kafka-python style rebalance listener (or None)."""

        def on_assign(consumer: Any, parts: list[Any]) -> None:
            self._in_rebalance = {}
            try:
                if listener is not None:
                    listener.on_partitions_assigned({self._tp(p.topic, p.partition) for p in parts})
                sought = self._in_rebalance
            finally:
                self._in_rebalance = None
            for p in parts:  # seeks made by the listener become the assignment's start offsets
                p.offset = sought.get(self._tp(p.topic, p.partition), OFFSET_INVALID)
            consumer.assign(parts)

        def on_revoke(consumer: Any, parts: list[Any]) -> None:
            if listener is not None:
                listener.on_partitions_revoked({self._tp(p.topic, p.partition) for p in parts})
            for p in parts:
                self._carry.pop(self._tp(p.topic, p.partition), None)
            consumer.unassign()

        self._c.subscribe(list(topics), on_assign=on_assign, on_revoke=on_revoke)

    def assign(self, tps: list[TopicPartition]) -> None:
        """Read ``tps`` without a group (a seek before the first fetch re-assigns: librdkafka cannot seek yet)."""
        self._manual = {self._tp(tp.topic, tp.partition): OFFSET_INVALID for tp in tps}
        self._c.assign([CTopicPartition(tp.topic, tp.partition) for tp in tps])

    def assignment(self) -> set[TopicPartition]:
        return {self._tp(p.topic, p.partition) for p in self._c.assignment()}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        try:
            meta = self._c.list_topics(topic, timeout=10).topics.get(topic)
        except KafkaException as exc:  # no broker answered: kafka-python's error, as from its own bootstrap
            raise KafkaTimeoutError(f"metadata of {topic}: {exc}") from exc
        if meta is None or meta.error is not None or not meta.partitions:
            return None
        return set(meta.partitions)

    # -- positions ---------------------------------------------------------------

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._carry.pop(tp, None)
        if self._in_rebalance is not None:
            self._in_rebalance[tp] = offset
            return
        if tp in self._manual:
            self._manual[tp] = offset
            self._c.assign([CTopicPartition(t.topic, t.partition, o) for t, o in self._manual.items()])
            return
        self._c.seek(CTopicPartition(tp.topic, tp.partition, offset))

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps or self.assignment():
            self.seek(tp, OFFSET_BEGINNING)

    def _watermarks(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        try:
            return self._c.get_watermark_offsets(CTopicPartition(tp.topic, tp.partition), timeout=10, cached=cached)
        except KafkaException as exc:
            raise KafkaTimeoutError(f"watermarks of {tp.topic}/{tp.partition}: {exc}") from exc

    def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._watermarks(tp)[0] for tp in tps}

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self._watermarks(tp)[1] for tp in tps}

    def highwater(self, tp: TopicPartition) -> int | None:
        """The end offset the last fetch of ``tp`` reported (no request), None before any."""
        high = self._watermarks(tp, cached=True)[1]
        return high if high >= 0 else None

    def committed(self, tp: TopicPartition) -> int | None:
        got = self._c.committed([CTopicPartition(tp.topic, tp.partition)], timeout=10)[0].offset
        return got if got >= 0 else None

    def position(self, tp: TopicPartition) -> int:
        """Next offset to read: the consumed position, else the committed one, else the beginning."""
        got = self._c.position([CTopicPartition(tp.topic, tp.partition)])[0].offset
        if got >= 0:
            return got
        committed = self.committed(tp)
        return committed if committed is not None else self._watermarks(tp)[0]

    def commit(self, offsets: dict[TopicPartition, Any] | None = None) -> None:
        """Commit ``offsets`` (``OffsetAndMetadata`` values), or the consumed positions; waits for the broker."""
        try:
            if offsets is None:
                self._c.commit(asynchronous=False)
            else:
                parts = [CTopicPartition(tp.topic, tp.partition, om.offset) for tp, om in offsets.items()]
                self._c.commit(offsets=parts, asynchronous=False)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError._NO_OFFSET:
                return  # nothing consumed since the last commit
            raise CommitFailedError(f"offset commit refused: {exc}") from exc

    # -- records -----------------------------------------------------------------

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Record]]:
        """Up to ``max_records`` records by partition, waiting up to ``timeout_ms`` for them.

        Raises ``OffsetOutOfRangeError({tp: offset})`` when a partition's
        position is gone and ``auto_offset_reset`` is ``none``.
        """
        if self._carry:
            out, self._carry = self._carry, {}
            return out
        msgs = self._c.consume(num_messages=max_records or self._max_records, timeout=timeout_ms / 1000)
        out: dict[TopicPartition, list[Record]] = {}
        out_of_range: dict[TopicPartition, int] = {}
        tp_of = self._tp
        for msg in msgs:
            err = msg.error()
            if err is None:
                tp = tp_of(msg.topic(), msg.partition())
                recs = out.get(tp)
                if recs is None:
                    recs = out[tp] = []
                recs.append(Record(msg))
            elif err.code() in _OUT_OF_RANGE and msg.topic() is not None:
                out_of_range[tp_of(msg.topic(), msg.partition())] = msg.offset()
            elif err.fatal():
                raise KafkaException(err)
            # other errors (a broker down, a topic not there yet) are retried by librdkafka itself
        if out_of_range:
            self._carry = {tp: recs for tp, recs in out.items() if tp not in out_of_range}
            raise OffsetOutOfRangeError(out_of_range)
        return out

    def close(self) -> None:
        self._c.close()

    def _on_stats(self, text: str) -> None:
        brokers = [b for b in json.loads(text).get("brokers", {}).values() if b.get("nodeid", -1) >= 0]
        up = sum(1 for b in brokers if b.get("state") == "UP")
        self._link = (up > 0, f"connected to {up} of {len(brokers)} broker(s)")

    def broker_link(self) -> tuple[bool, str]:
        """Whether a broker link was up at librdkafka's last report (read state only: any thread may ask)."""
        return self._link


def new_confluent_consumer(topics: Iterable[str], settings: dict[str, Any]) -> ConfluentConsumer:
    return ConfluentConsumer(topics, settings)


__all__ = ["ConfluentConsumer", "Record", "new_confluent_consumer"]
