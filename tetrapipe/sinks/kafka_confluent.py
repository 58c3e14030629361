"""The Kafka sink's confluent-kafka (librdkafka) backend, shaped like the kafka-python producer the sink drives.

:class:`~tetrapipe.sinks.kafka.ChunkProducer` and the processor's outputs were
written against kafka-python's ``KafkaProducer``: ``send`` returns a future
(``is_done``, ``exception``, ``get``), ``flush(timeout)`` raises
``KafkaTimeoutError`` when the broker is late, the constructor raises
``KafkaConnectionError`` when no broker answers, and a record the broker can
never take fails with ``MessageSizeTooLargeError`` and kin. This adapter
keeps those promises over librdkafka so the sink's acknowledgement tracking,
reject reporting and restart-and-resend logic stay as they are.

Partitioning is librdkafka's ``murmur2_random``: the Java client's (and
kafka-python's) murmur2 of the key, so a node's events land in the same
partition whichever backend each collector runs (tested). Delivery reports
arrive only inside librdkafka's ``poll``/``flush``; :meth:`ConfluentProducer.poll`
serves them without blocking, and the sink calls it before reading futures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from kafka import errors as kerrors

from tetrapipe.kafka_client import LIBRDKAFKA_LOG, librdkafka_config

#: settings the adapter implements itself rather than librdkafka
_OWN = ("max_block_ms", "bootstrap_timeout_ms", "errors_only")

# librdkafka error codes -> the kafka-python classes the sink tells apart (the first four: rejects, no retry helps)
_MAPPED: dict[int, type[BaseException]] = {
    KafkaError.MSG_SIZE_TOO_LARGE: kerrors.MessageSizeTooLargeError,
    KafkaError.INVALID_RECORD: getattr(kerrors, "InvalidRecordError", kerrors.KafkaError),
    KafkaError.INVALID_MSG: getattr(kerrors, "CorruptRecordError", kerrors.KafkaError),
    KafkaError.RECORD_LIST_TOO_LARGE: getattr(kerrors, "RecordListTooLargeError", kerrors.KafkaError),
    KafkaError._MSG_TIMED_OUT: kerrors.KafkaTimeoutError,
}


def _error(err: KafkaError) -> BaseException:
    """A librdkafka error as the kafka-python exception the callers already handle."""
    cls = _MAPPED.get(err.code())
    if cls is not None:
        return cls(err.str())
    return kerrors.KafkaError(f"{err.name()}: {err.str()}")


def _wait(
    producer: ConfluentProducer, settled: Callable[[], bool], timeout: float | None, late: Callable[[], str]
) -> None:
    """Serve delivery reports until ``settled()``; ``KafkaTimeoutError(late())`` after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not settled():
        left = 1.0 if deadline is None else deadline - time.monotonic()
        if left <= 0:
            raise kerrors.KafkaTimeoutError(late())
        producer.poll(min(left, 0.1))


class DeliveryFuture:
    """kafka-python's ``FutureRecordMetadata`` subset: settled by librdkafka's delivery report."""

    __slots__ = ("_producer", "exception", "is_done", "offset")

    def __init__(self, producer: ConfluentProducer) -> None:
        self._producer = producer
        self.is_done = False
        self.exception: BaseException | None = None
        self.offset = -1

    def _settle(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.exception = _error(err)
        else:
            self.offset = msg.offset()
            self._producer._down_at = None  # a broker took it: the link is up (this module's own class)
        self.is_done = True

    def succeeded(self) -> bool:
        return self.is_done and self.exception is None

    def get(self, timeout: float | None = None) -> int:
        """Wait for the delivery report; raise what the broker said, or ``KafkaTimeoutError``."""
        _wait(self._producer, lambda: self.is_done, timeout, lambda: "no delivery report in time")
        if self.exception is not None:
            raise self.exception
        return self.offset


class BatchDelivery:
    """The delivery of many records through one callback: a count and the first error.

    Why not a :class:`DeliveryFuture` per record: a Python object and a bound
    method per record cost about as much as librdkafka's whole send (~118,000
    records/s with a future each against ~220,000 with one shared callback,
    measured on 2 KB records), and a caller that streams every event only
    needs to know that all of them arrived.
    """

    __slots__ = ("_producer", "delivered", "error", "expected")

    def __init__(self, producer: ConfluentProducer) -> None:
        self._producer = producer
        self.expected = 0
        self.delivered = 0
        self.error: BaseException | None = None

    def _settle(self, err: KafkaError | None, msg: Any) -> None:
        self.delivered += 1
        if err is not None and self.error is None:
            self.error = _error(err)

    def get(self, timeout: float | None = None) -> int:
        """Wait until every record has its delivery report; raise the first failure, or ``KafkaTimeoutError``."""
        _wait(
            self._producer,
            lambda: self.delivered >= self.expected,
            timeout,
            lambda: f"{self.expected - self.delivered} record(s) without a delivery report",
        )
        if self.error is not None:
            raise self.error
        return self.delivered


class FlushedDelivery(BatchDelivery):
    """A batch of a producer that reports failures only: every record is settled once librdkafka's queue is empty.

    Why: a success report per record is a Python call and a message object
    each, ~2.5 us of the processor's thread per 5 KB event (measured, 50 ms
    per 20,000-event batch), for a caller that only needs "all arrived". A
    failed record still reports, through :meth:`BatchDelivery._settle`. The
    wait is a flush of the whole producer, so such a producer serves one
    stream (the processor's events topic) and nothing that waits per record.
    """

    __slots__ = ()

    def get(self, timeout: float | None = None) -> int:
        """Wait until librdkafka holds no record; raise the first failure, or ``KafkaTimeoutError``."""
        self._producer.flush(timeout)
        if self.error is not None:
            raise self.error
        return self.expected


class ConfluentProducer:
    """A librdkafka producer answering the kafka-python calls the sink makes.

    ``errors_only=True``: librdkafka reports failed records only
    (``delivery.report.only.error``), :meth:`send_batch` hands back a
    :class:`FlushedDelivery`, and :meth:`send` is refused (its future would
    never settle).
    """

    def __init__(self, **settings: Any) -> None:
        self._max_block = (settings.get("max_block_ms") or 60_000) / 1000
        self._errors_only = bool(settings.get("errors_only"))
        conf = librdkafka_config(settings, role="producer", consumed=_OWN)
        if self._errors_only:
            conf["delivery.report.only.error"] = True
        conf["logger"] = LIBRDKAFKA_LOG
        conf["error_cb"] = self._on_error
        #: why this producer should be replaced (set from librdkafka's error callback, served by poll)
        self.failure: str | None = None
        self._down_at: float | None = None
        conf.setdefault("partitioner", "murmur2_random")  # kafka-python's and Java's choice for keyed records
        self._closed = False
        self._p = Producer(conf)
        # kafka-python's constructor fails when no broker answers; the sink's backoff relies on that
        try:
            self._p.list_topics(timeout=(settings.get("bootstrap_timeout_ms") or 10_000) / 1000)
        except KafkaException as exc:
            _destroy(self._p)
            raise kerrors.KafkaConnectionError(f"no broker answers: {exc}") from exc

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> DeliveryFuture:
        """Queue one record; block up to ``max_block_ms`` while librdkafka's queue is full."""
        if self._errors_only:
            raise RuntimeError("a producer that reports errors only has no per-record future: use send_batch")
        future = DeliveryFuture(self)
        self._produce(topic, value, key, future._settle, headers)
        return future

    def _produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        on_delivery: Any,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """librdkafka's ``produce``, waiting up to ``max_block_ms`` for room in its queue, errors as kafka-python's."""
        deadline = 0.0
        while True:
            try:
                if headers:
                    self._p.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
                else:
                    self._p.produce(topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:
                now = time.monotonic()
                deadline = deadline or now + self._max_block
                if now >= deadline:
                    raise kerrors.KafkaTimeoutError("librdkafka's queue stayed full") from None
                self._p.poll(0.05)
            except KafkaException as exc:
                raise _error(exc.args[0]) from exc

    def send_batch(
        self, topic: str, records: Iterable[tuple[bytes | None, bytes]]
    ) -> tuple[BatchDelivery, list[tuple[bytes, BaseException]]]:
        """Queue ``(key, value)`` records under one :class:`BatchDelivery`; also the records refused as too large.

        A record librdkafka refuses at once for its size can never be sent,
        so it is handed back rather than failing the rest; any other refusal
        raises, as :meth:`send` does.
        """
        delivery = FlushedDelivery(self) if self._errors_only else BatchDelivery(self)
        refused: list[tuple[bytes, BaseException]] = []
        settle = delivery._settle
        produce = self._p.produce
        queued = 0
        for key, value in records:
            # librdkafka's produce straight away: the wrapper's loop and handlers, once per record, were a third
            # of this loop's time on 5 KB events; a full queue or a refusal takes the wrapper's path for that record
            try:
                produce(topic, value, key, on_delivery=settle)
            except (BufferError, KafkaException):
                try:
                    self._produce(topic, value, key, settle)
                except kerrors.MessageSizeTooLargeError as exc:
                    refused.append((value, exc))
                    continue
            queued += 1
        delivery.expected += queued
        return delivery, refused

    def _on_error(self, err: KafkaError) -> None:
        """A fatal error, or every broker gone: librdkafka would retry quietly for minutes; the sink must know.

        kafka-python fails the pending sends in both cases, and the sink then
        replaces the producer and resends what is unacknowledged (a broker
        that restarted forgot this producer's id, which a fresh producer
        does not need). Other errors are librdkafka's to retry.
        """
        if err.fatal():
            self.failure = f"{err.name()}: {err.str()}"
        elif err.code() == KafkaError._ALL_BROKERS_DOWN and self._down_at is None:
            self._down_at = time.monotonic()  # confirmed by poll (a new client reports it in passing too)

    def poll(self, timeout: float = 0) -> None:
        """Serve delivery reports (settle futures); librdkafka calls them only from here and ``flush``.

        Every broker reported down for a second and still no metadata answer
        within half a second: :attr:`failure` says so.
        """
        if self._closed:
            return  # close() settled every future; librdkafka refuses a closed handle
        self._p.poll(timeout)
        down = self._down_at
        if down is not None and self.failure is None and time.monotonic() - down >= 1.0:
            try:
                self._p.list_topics(timeout=0.5)
                self._down_at = None
            except KafkaException:
                self.failure = "every broker is down"

    def flush(self, timeout: float | None = None) -> None:
        if self._closed:
            return  # nothing is queued: close() purged it
        left = self._p.flush(-1 if timeout is None else timeout)
        if left:
            raise kerrors.KafkaTimeoutError(f"{left} record(s) not acknowledged in time")

    def close(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` for what is queued, then drop the rest (``timeout=0``: drop at once)."""
        if self._closed:
            return
        if timeout:
            self._p.flush(timeout)
        self._p.purge()
        self._p.poll(0)  # settles the purged records' futures (as failed)
        self._closed = True
        _destroy(self._p)


def _destroy(producer: Producer) -> None:
    """Stop a librdkafka producer's threads now, not when the garbage collector gets to it.

    Why: a producer replaced after a failure (or one whose broker never
    answered) otherwise keeps reconnecting, and logging each refused
    connection, until its last reference is collected, which callbacks bound
    to it can delay indefinitely. Older confluent-kafka releases have no
    ``Producer.close``; there, collection is the only way. Its flush finds
    nothing: the caller purged the queue first.
    """
    close = getattr(producer, "close", None)
    if close is not None:
        close()


__all__ = ["BatchDelivery", "ConfluentProducer", "DeliveryFuture", "FlushedDelivery"]
