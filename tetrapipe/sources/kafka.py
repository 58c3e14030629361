"""Reading from Kafka: the one place a consumer is built.

The processor (``tetrapipe process``), the forwarder (``forward
--from-kafka``) and ``tetrapipe status`` all consume; they differ in group,
offsets policy and tuning, not in how a kafka-python consumer is made from a
bootstrap list and the ``--kafka-option`` pass-through settings. Those
settings split in two: the security ones (TLS, SASL) go to every client of a
deployment, the rest are this consumer's tuning.

Two backends (``client``, see :mod:`tetrapipe.kafka_client`): kafka-python's
``KafkaConsumer`` itself, or confluent-kafka's librdkafka behind an adapter
(:mod:`tetrapipe.sources.kafka_confluent`) offering the same calls with the
same types, listed by :class:`Consumer`. Flows never ask which one they got.

The clients are imported inside the functions: commands that never touch
Kafka do not pay for the import. See docs/ARCHITECTURE.md for where sources
sit in the data flow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from tetrapipe.kafka_client import resolve_client

#: ``--kafka-option`` keys that concern the connection itself, wanted by every client of a deployment
SECURITY_PREFIXES = ("security_protocol", "ssl_", "sasl_")


def security_options(options: dict[str, Any]) -> dict[str, Any]:
    """The TLS / SASL settings among kafka-python client ``options`` (the rest is one client's tuning)."""
    return {k: v for k, v in options.items() if k.startswith(SECURITY_PREFIXES)}


def bootstrap_list(bootstrap: str | list[str]) -> list[str]:
    """``HOST:PORT[,HOST:PORT]`` as the list kafka-python takes."""
    return bootstrap.split(",") if isinstance(bootstrap, str) else list(bootstrap)


class Consumer(Protocol):
    """What the flows call on a consumer: kafka-python's ``KafkaConsumer`` subset, which both backends offer.

    Partitions are ``kafka.structs.TopicPartition``; ``poll`` returns
    ``{TopicPartition: [record]}`` with ``.offset .value .key .timestamp
    .headers``; ``commit`` takes ``{TopicPartition: OffsetAndMetadata}`` (or
    nothing: the consumed positions); ``poll`` raises
    ``kafka.errors.OffsetOutOfRangeError({tp: offset})`` when
    ``auto_offset_reset`` is ``none`` and a position is gone. A seek made in
    the rebalance listener's ``on_partitions_assigned`` is where the
    partition starts.
    """

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]: ...
    def subscribe(self, topics: list[str], listener: Any = None) -> None: ...
    def assign(self, partitions: list[Any]) -> None: ...
    def assignment(self) -> set[Any]: ...
    def seek(self, partition: Any, offset: int) -> None: ...
    def seek_to_beginning(self, *partitions: Any) -> None: ...
    def position(self, partition: Any) -> int: ...
    def committed(self, partition: Any) -> int | None: ...
    def commit(self, offsets: dict[Any, Any] | None = None) -> None: ...
    def beginning_offsets(self, partitions: list[Any]) -> dict[Any, int]: ...
    def end_offsets(self, partitions: list[Any]) -> dict[Any, int]: ...
    def highwater(self, partition: Any) -> int | None: ...
    def partitions_for_topic(self, topic: str) -> set[int] | None: ...
    def close(self) -> None: ...


def new_consumer(
    bootstrap: str | list[str],
    topics: Iterable[str] = (),
    *,
    group: str | None,
    options: dict[str, Any] | None = None,
    client: str | None = "auto",
    **settings: Any,
) -> Consumer:
    """A consumer of ``topics`` (none: the caller subscribes or assigns) in ``group``, on the ``client`` backend.

    Offsets are never committed behind the caller's back (``enable_auto_commit``
    off): each flow commits once its batch is safe (in the lake, delivered or
    spooled). ``settings`` are the flow's own defaults; ``options`` (the
    operator's ``--kafka-option`` / ``kafka.options``, kafka-python names for
    both backends) override them, except where a flow passes a setting its
    correctness depends on after them. ``client``: ``auto`` (confluent-kafka
    when installed), ``kafka-python`` or ``confluent``.
    """
    merged = {
        "bootstrap_servers": bootstrap_list(bootstrap),
        "group_id": group,
        "enable_auto_commit": False,
        **settings,
        **(options or {}),
    }
    if resolve_client(client) == "confluent":
        from tetrapipe.sources.kafka_confluent import new_confluent_consumer

        return new_confluent_consumer(topics, merged)
    from kafka import KafkaConsumer

    return KafkaConsumer(*topics, **merged)


def rebalance_listener(on_assigned: Callable[[set[int]], None], on_revoked: Callable[[set[int]], None]) -> Any:
    """A kafka-python ``ConsumerRebalanceListener`` that hands partition numbers to two callbacks."""
    from kafka.consumer.subscription_state import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked: Any) -> None:
            on_revoked({tp.partition for tp in revoked})

        def on_partitions_assigned(self, assigned: Any) -> None:
            on_assigned({tp.partition for tp in assigned})

    return Listener()


def broker_has(
    bootstrap: str, options: dict[str, Any], tp: Any, offset: int, timeout: float = 3.0, *, client: str | None = "auto"
) -> bool:
    """Whether the broker still serves the record at ``offset`` of ``tp`` (the last one the lake holds).

    The end offset alone is not trusted to declare a topic recreated (some
    brokers report it short of the last batch): a group-less consumer
    fetches that one record.
    """
    from kafka.errors import OffsetOutOfRangeError

    probe = new_consumer(
        bootstrap,
        group=None,
        auto_offset_reset="none",
        client_id="tetrapipe-offset-probe",
        client=client,
        **security_options(options),
    )
    try:
        probe.assign([tp])
        probe.seek(tp, offset)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got = probe.poll(timeout_ms=200, max_records=1)
            except OffsetOutOfRangeError:
                return False
            if any(r.offset == offset for recs in got.values() for r in recs):
                return True
        return False
    finally:
        probe.close()


def at_end(consumer: Any) -> bool:
    """Every partition assigned to ``consumer`` is read up to its end offset (none assigned: not yet)."""
    parts = consumer.assignment()
    if not parts:
        return False
    ends = consumer.end_offsets(list(parts))
    return all(consumer.position(tp) >= ends[tp] for tp in parts)


def unread_elsewhere(consumer: Any, topics: Iterable[str]) -> int:
    """How many partitions of ``topics`` not assigned to ``consumer`` the group has not committed to their end.

    After a kill the dead member keeps its partitions until its session
    times out: a restarted consumer that looked only at its own assignment
    (:func:`at_end`) would call the topics done while those are unread.
    """
    from kafka.structs import TopicPartition  # the type both backends hand out

    mine = consumer.assignment()
    others = [
        tp
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or ())
        if (tp := TopicPartition(topic, p)) not in mine
    ]
    if not others:
        return 0
    ends = consumer.end_offsets(others)
    return sum(1 for tp in others if (consumer.committed(tp) or 0) < ends[tp])


def consumer_connected(consumer: Any) -> tuple[bool, str]:
    """Whether ``consumer`` has a live connection to a broker, for a readiness probe (reads state only)."""
    if consumer is None:
        return False, "not connected yet"
    link = getattr(consumer, "broker_link", None)  # the librdkafka backend asks a broker
    if link is not None:
        return link()
    client = getattr(consumer, "_client", None)  # kafka-python keeps its connections there
    try:
        brokers = list(client.cluster.brokers())  # type: ignore[union-attr]
        ids = [getattr(b, "node_id", None) if hasattr(b, "node_id") else b.nodeId for b in brokers]
        up = [i for i in ids if client.connected(i)]  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - another kafka-python version: fall back on the bootstrap link
        return bool(consumer.bootstrap_connected()), "bootstrap connection"
    return bool(up), f"connected to {len(up)} of {len(brokers)} broker(s)"


def partition_status(
    bootstrap: str,
    topic: str,
    group: str,
    in_lake: Callable[[list[int]], dict[int, int]],
    *,
    options: dict[str, Any] | None = None,
    client: str | None = "auto",
) -> list[dict[str, Any]]:
    """Per partition of ``topic``: the broker's offsets, what the lake holds, the lag, a state.

    ``in_lake`` maps the topic's partitions (the broker's list) to the last
    offset the lake holds of each (the lake records positions by partition
    and cannot list them itself).

    ``state`` is ``caught up``, ``behind``, ``lake ahead`` (the broker's
    offsets went backwards: the topic was recreated, and ``tetrapipe process``
    stops) or ``retention passed`` (records were removed before the lake had
    them).
    """
    from kafka import TopicPartition

    consumer = new_consumer(bootstrap, group=group, client=client, **security_options(options or {}))
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or [])
        tps = [TopicPartition(topic, p) for p in parts]
        ends = consumer.end_offsets(tps) if tps else {}
        begins = consumer.beginning_offsets(tps) if tps else {}
        lake_offsets = in_lake(parts)
        rows = []
        for tp in tps:
            held = lake_offsets.get(tp.partition, -1)
            group_offset = consumer.committed(tp)
            end, begin = ends[tp], begins[tp]
            if held + 1 > end and not broker_has(bootstrap, options or {}, tp, held, client=client):
                state = "lake ahead"
            elif held >= 0 and held + 1 < begin:
                state = "retention passed"
            else:
                state = "behind" if end > held + 1 else "caught up"
            rows.append(
                {
                    "partition": tp.partition,
                    "begin_offset": begin,
                    "end_offset": max(end, held + 1) if state != "lake ahead" else end,
                    "lake_offset": held,
                    "lag": max(0, end - max(held + 1, begin)),
                    "state": state,
                    "group_offset": group_offset,
                }
            )
        return rows
    finally:
        consumer.close()


__all__ = [
    "SECURITY_PREFIXES",
    "Consumer",
    "at_end",
    "bootstrap_list",
    "broker_has",
    "consumer_connected",
    "new_consumer",
    "partition_status",
    "unread_elsewhere",
    "rebalance_listener",
    "security_options",
]
