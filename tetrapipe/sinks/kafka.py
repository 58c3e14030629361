"""Ship raw Tetragon JSON lines to Kafka, knowing exactly which ones the broker acknowledged.

* **Value** = the export line, byte for byte (the processor parses it once,
  and the original JSON stays the forensic record). **Key** = the event's
  ``node_name``: Tetragon's ``exec_id`` is unique per node, so keying by node
  puts a node's whole process trees in one partition and one processor, and
  the ancestry state never has to be shared. The key is cut out of the line
  with ``rfind`` (the top-level ``node_name`` follows the event body in
  protojson's field order), ~0.3 µs instead of ~15 µs for a JSON parse; a line
  without one (some host events) gets the collector's own node name.
* **Producer**: kafka-python, or librdkafka through
  :mod:`tetrapipe.sinks.kafka_confluent` (``client``, see
  :mod:`tetrapipe.kafka_client`; same calls, same errors), with ``acks=all`` and idempotence (no duplicates
  from the producer's own retries), batching (``linger_ms``, large
  ``batch_size``) and compression (``auto`` = lz4 when the ``lz4`` package is
  there: nearly free on the CPU, measured 33k msgs/s vs 20k for gzip).
  Partitioning is kafka-python's (murmur2, as the Java client, so other
  producers agree) memoized per key: the pure-Python murmur2 was 14% of the
  per-message cost.
* **Acknowledgement tracking**: chunks are kept in send order with their
  per-message futures; :meth:`ChunkProducer.poll` hands back the chunks whose
  every message is acknowledged, oldest first, so the caller can checkpoint.
* **Failures**: a record the broker will never take (too large, invalid) is
  rejected and reported with its file and line, not retried forever. Any
  other failure (timeouts, a broker that restarted and forgot our producer
  id, a producer gone fatal) closes the producer, makes a new one (with
  backoff while the broker is unreachable) and resends every message of the
  pending chunks that was not acknowledged, in order; those resends are
  counted as ``retried``. A restarted broker that lost its state answers
  ``UnknownProducerId``; kafka-python then bumps the epoch, which tansu
  refuses, leaving the producer fatally failed: recreating it is the only
  way on, and it is also right for a real Kafka.
* **Taking back**: the collector can take unacknowledged chunks back
  (:meth:`ChunkProducer.unacked`, :meth:`ChunkProducer.release`) to park a
  stream's in its disk spool; the producer that held them is replaced, and
  each line that had reached a producer is reported as possibly delivered.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka import KafkaProducer
from kafka import errors as kerrors
from kafka.partitioner import DefaultPartitioner

from tetrapipe.kafka_client import resolve_client

log = logging.getLogger(__name__)

KAFKA_ENV = "TETRAPIPE_KAFKA"
DEFAULT_TOPIC = "tetragon.events"
COMPRESSIONS = ("auto", "none", "gzip", "snappy", "lz4", "zstd")


class OutgoingLines(Protocol):
    """What the producer sends: lines read together (a source's chunk; sinks do not import sources)."""

    lines: list[bytes]
    nbytes: int  # source bytes the lines took (for the memory bound)
    source: str  # where they were read (the ``source`` header)
    line_nos: list[int] | None  # their line numbers there (the ``line`` header), if known


# errors that no retry can fix for that record: report it and move on
_REJECT_ERRORS: tuple[type[BaseException], ...] = tuple(
    e
    for e in (
        getattr(kerrors, n, None)
        for n in (
            "MessageSizeTooLargeError",
            "RecordTooLargeError",
            "InvalidRecordError",
            "CorruptRecordError",
            "CorruptRecordException",
            "RecordListTooLargeError",
        )
    )
    if isinstance(e, type)
)


def resolve_compression(name: str) -> str | None:
    """``auto``: lz4 if importable, else zstd, else gzip (stdlib, but ~1.6x the CPU per message)."""
    if name == "none":
        return None
    if name != "auto":
        return name
    for codec, module in (("lz4", "lz4.frame"), ("zstd", "zstandard")):
        try:
            __import__(module)
            return codec
        except ImportError:
            continue
    return "gzip"


def parse_bootstrap(text: str) -> list[str]:
    servers = [s.strip() for s in text.split(",") if s.strip()]
    if not servers:
        raise ValueError("no Kafka bootstrap servers given (--kafka HOST:PORT[,HOST:PORT] or TETRAPIPE_KAFKA)")
    for s in servers:
        host, sep, port = s.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"Kafka server {s!r}: expected HOST:PORT")
    return servers


def node_key(line: bytes, default: bytes) -> bytes:
    """The top-level ``node_name`` of an export line, cut out without parsing the JSON.

    Protojson writes the event body first and ``node_name`` (field 1000)
    after it, so the last ``"node_name":`` is the top-level one; Go's
    encoder may put a space after the colon.
    """
    i = line.rfind(b'"node_name":')
    if i < 0:
        return default
    j = i + 12
    if line[j : j + 1] != b'"':
        j = line.find(b'"', j)
        if j < 0:
            return default
    k = line.find(b'"', j + 1)
    if k < 0:
        return default
    return line[j + 1 : k] or default


class _KeyPartitioner(DefaultPartitioner):
    """kafka-python's default partitioner, memoized per (topic, key, partition count)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, bytes, int], int] = {}

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster) -> int:  # noqa: ANN001 - kafka-python's signature
        if serialized_key is None:
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        parts = cluster.partitions_for_topic(topic)
        if not parts:
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        ck = (topic, serialized_key, len(parts))
        p = self._cache.get(ck)
        if p is None or p not in parts:
            p = super().partition(topic, key, serialized_key, value, serialized_value, cluster)
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[ck] = p
        return p


@dataclass
class KafkaSettings:
    """Where and how to produce. ``options`` pass through to ``KafkaProducer`` (TLS, SASL, tuning)."""

    bootstrap: list[str]
    topic: str = DEFAULT_TOPIC
    client_id: str = "tetrapipe-collect"
    compression: str = "auto"
    idempotence: bool = True
    linger_ms: int = 20
    batch_size: int = 512 * 1024
    options: dict[str, Any] = field(default_factory=dict)
    client: str = "auto"  # kafka-python | confluent | auto (confluent when installed)

    def producer_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id,
            "acks": "all",
            "enable_idempotence": self.idempotence,
            "compression_type": resolve_compression(self.compression),
            "linger_ms": self.linger_ms,
            "batch_size": self.batch_size,
            # a send() must not block the loop for a minute when the broker is away
            "max_block_ms": 10_000,
            "retry_backoff_ms": 200,
            "reconnect_backoff_max_ms": 2_000,
            "bootstrap_timeout_ms": 3_000,  # the constructor blocks this long when no broker answers
            "partitioner": _KeyPartitioner(),
        }
        cfg.update(self.options)
        return cfg


class _Rejected:
    """Stands in for the future of a record the broker refused for good."""

    is_done = True
    exception: BaseException | None = None

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def succeeded(self) -> bool:
        return True  # settled: counts as done for the chunk (it is reported, not delivered)


@dataclass
class Pending:
    """A chunk handed to the sink and its messages' futures (None: not given to a producer yet)."""

    chunk: OutgoingLines
    ticket: Any
    futures: list[Any] | None = None
    resend_count: int = 0


@dataclass
class Unacked:
    """What is left to deliver of a pending chunk: its lines not acknowledged, and how many may be in the topic.

    ``maybe_sent`` counts the lines handed to a producer (this one or a
    failed one): Kafka may hold them although no acknowledgement came, so a
    copy sent again later may be a duplicate, and must be counted as one.
    """

    entry: Pending
    lines: list[bytes]
    nbytes: int
    maybe_sent: int


class ChunkProducer:
    """Produce chunks of lines; report the chunks Kafka fully acknowledged, in order (the collector's sink)."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        node_name: str = "",
        headers: bool = False,
        on_reject: Callable[[OutgoingLines, int, BaseException], None] | None = None,
        on_sent: Callable[[Pending], None] | None = None,
        producer_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.settings = settings
        self.topic = settings.topic
        self.default_key = node_name.encode() if node_name else b""
        self.headers = headers
        self.on_reject = on_reject
        self.on_sent = on_sent
        self._factory = producer_factory or producer_class(settings.client)
        self._producer: Any = None
        self._broken: str | None = "not connected yet"
        self._next_attempt = 0.0
        self._backoff = 0.5
        self._pending: deque[Pending] = deque()
        self.pending_bytes = 0
        self.pending_events = 0
        # counters (the collector turns them into metrics)
        self.sent = 0
        self.acked = 0
        self.retried = 0
        self.rejected = 0
        self.producers_created = 0
        self.last_ack = time.monotonic()
        self.last_error: str | None = None

    # -- state ----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._producer is not None and self._broken is None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def describe(self) -> str:
        if self.connected:
            return "up"
        if self._broken is None:
            return "closed"
        return f"down ({self._broken})"

    # -- sending --------------------------------------------------------------

    def submit(self, chunk: OutgoingLines, ticket: Any = None) -> None:
        """Queue a chunk; it is produced now if a producer is up, else when one is."""
        entry = Pending(chunk, ticket)
        self._pending.append(entry)
        self.pending_bytes += chunk.nbytes
        self.pending_events += len(chunk.lines)
        if self.connected:
            self._send(entry)

    def _send(self, entry: Pending) -> None:
        """Hand every message of ``entry`` not yet acknowledged to the producer."""
        chunk = entry.chunk
        lines = chunk.lines
        old = entry.futures
        futures: list[Any] = [None] * len(lines) if old is None else old
        send = self._producer.send
        topic = self.topic
        default = self.default_key
        nos = chunk.line_nos
        src = chunk.source.encode() if self.headers else b""
        n_sent = 0
        resend = old is not None
        for i, line in enumerate(lines):
            if resend:
                f = futures[i]
                if f is not None and f.is_done and f.exception is None:
                    continue  # acknowledged (or rejected) before: never twice
            key = node_key(line, default)
            try:
                if self.headers:
                    hdrs = [("source", src)]
                    if nos is not None:
                        hdrs.append(("line", b"%d" % nos[i]))
                    futures[i] = send(topic, line, key=key, headers=hdrs)
                else:
                    futures[i] = send(topic, line, key=key)
            except _REJECT_ERRORS as exc:
                futures[i] = _Rejected(exc)
                self._reject(chunk, i, exc)
                continue
            except Exception as exc:  # noqa: BLE001 - broker away, producer closed: retried as a whole
                futures[i] = None
                self._mark_broken(f"send failed: {exc!r}")
                break
            n_sent += 1
        entry.futures = futures
        if n_sent and self.on_sent is not None:
            self.on_sent(entry)
        if resend:
            self.retried += n_sent
            entry.resend_count += n_sent
        else:
            self.sent += n_sent

    def _reject(self, chunk: OutgoingLines, i: int, exc: BaseException) -> None:
        self.rejected += 1
        if self.on_reject is not None:
            self.on_reject(chunk, i, exc)

    # -- acknowledgements -----------------------------------------------------

    def poll(self) -> list[Pending]:
        """Chunks now fully acknowledged, oldest first (and keep the producer alive)."""
        if self._broken is not None and time.monotonic() >= self._next_attempt:
            self._restart()
        serve = getattr(self._producer, "poll", None)  # librdkafka settles futures only when served
        if serve is not None:
            serve(0)
            if self._broken is None and self._producer.failure is not None:  # all brokers down, or fatal
                self._mark_broken(self._producer.failure)
                self._next_attempt = time.monotonic() + self._backoff
        done: list[Pending] = []
        pending = self._pending
        while pending:
            entry = pending[0]
            fs = entry.futures
            if fs is None:
                break
            if fs and (fs[-1] is None or not fs[-1].is_done):
                # the last message is not settled; an earlier failure will show once it is
                break
            state = self._settle(entry)
            if state != "done":
                break
            pending.popleft()
            self.pending_bytes -= entry.chunk.nbytes
            n = len(entry.chunk.lines)
            self.pending_events -= n
            self.acked += n - sum(1 for f in fs if isinstance(f, _Rejected))
            self.last_ack = time.monotonic()
            done.append(entry)
        if done:
            self._backoff = 0.5
        return done

    def _settle(self, entry: Pending) -> str:
        """``done``, ``waiting`` or ``failed`` (the producer is then restarted)."""
        fs = entry.futures
        assert fs is not None
        for i, f in enumerate(fs):
            if f is None or not f.is_done:
                return "waiting"
            exc = f.exception
            if exc is None:
                continue
            if isinstance(exc, _REJECT_ERRORS):
                fs[i] = _Rejected(exc)
                self._reject(entry.chunk, i, exc)
                continue
            self._mark_broken(f"delivery failed: {exc!r}")
            return "failed"
        return "done"

    def _mark_broken(self, why: str) -> None:
        if self._broken is None:
            log.warning("Kafka producer failed (%s): reconnecting and resending what was not acknowledged", why)
        self._broken = why
        self.last_error = why

    def _restart(self) -> None:
        """Close the producer (if any), make a new one and resend everything unacknowledged."""
        old, self._producer = self._producer, None
        if old is not None:
            try:
                old.close(timeout=0)
            except Exception as exc:  # noqa: BLE001 - it failed already; closing is best effort
                log.debug("closing the failed producer: %r", exc)
        try:
            self._producer = self._factory(**self.settings.producer_config())
        except (kerrors.KafkaConnectionError, kerrors.KafkaTimeoutError, OSError) as exc:
            self._broken = f"broker unreachable: {exc!r}"
            self.last_error = self._broken
            self._next_attempt = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 5.0)
            return
        self.producers_created += 1
        if self.producers_created > 1:
            log.info("Kafka producer reconnected to %s", ",".join(self.settings.bootstrap))
        self._broken = None
        for entry in self._pending:
            if not self.connected:
                break
            self._send(entry)

    # -- taking chunks back ------------------------------------------------------

    def unacked(self, select: Callable[[Pending], bool]) -> list[Unacked]:
        """The selected pending chunks, oldest first, as what is left to deliver of each (nothing is removed).

        A line acknowledged (or refused for good) already is left out: it must
        never go twice. See :meth:`release` for handing them over.
        """
        out: list[Unacked] = []
        for entry in self._pending:
            if not select(entry):
                continue
            fs = entry.futures
            lines = entry.chunk.lines
            if fs is None:
                out.append(Unacked(entry, list(lines), entry.chunk.nbytes, 0))
                continue
            left = [
                (line, f is not None)
                for line, f in zip(lines, fs, strict=True)
                if not (f is not None and f.is_done and f.exception is None)
            ]
            nbytes = entry.chunk.nbytes if len(left) == len(lines) else sum(len(ln) + 1 for ln, _ in left)
            out.append(Unacked(entry, [ln for ln, _ in left], nbytes, sum(sent for _, sent in left)))
        return out

    def release(self, entries: list[Pending]) -> None:
        """Forget ``entries`` (taken from :meth:`unacked`): the caller keeps them now, this sink never resends them.

        Why: the collector moves a stream's unacknowledged chunks to its disk
        spool when Kafka stalls, and sends them again from there. The producer
        they went to still holds its copies and would deliver them when the
        broker is back, behind the spool's back: it is closed at once (its
        queue dropped) and a new one is made at the next :meth:`poll`, which
        resends the chunks still pending here, as after any failure.
        """
        if not entries:
            return
        gone = {id(e) for e in entries}
        handed = False
        for entry in entries:
            self.pending_bytes -= entry.chunk.nbytes
            self.pending_events -= len(entry.chunk.lines)
            fs = entry.futures
            if fs is not None:
                handed = handed or any(f is not None for f in fs)
                self.acked += sum(
                    1
                    for f in fs
                    if f is not None and f.is_done and f.exception is None and not isinstance(f, _Rejected)
                )
        self._pending = deque(e for e in self._pending if id(e) not in gone)
        if handed and self._producer is not None:
            old, self._producer = self._producer, None
            try:
                old.close(timeout=0)
            except Exception as exc:  # noqa: BLE001 - it is being replaced; closing is best effort
                log.debug("closing the producer of the released chunks: %r", exc)
            if self._broken is None:
                self._broken = "replaced: its unacknowledged chunks were taken back"
            self._next_attempt = time.monotonic()

    def flush(self, timeout: float | None = None) -> None:
        """Push out everything queued (linger skipped) and wait up to ``timeout`` for acknowledgements."""
        if self._producer is not None and self._broken is None:
            try:
                self._producer.flush(timeout=timeout)
            except kerrors.KafkaTimeoutError:
                pass
            except Exception as exc:  # noqa: BLE001
                self._mark_broken(f"flush failed: {exc!r}")

    def close(self, timeout: float = 5.0) -> None:
        producer, self._producer = self._producer, None
        self._broken = None
        if producer is not None:
            try:
                producer.close(timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - shutting down anyway
                log.debug("closing the producer: %r", exc)


def producer_class(client: str | None) -> Callable[..., Any]:
    """The producer type of a ``client`` choice: kafka-python's, or the librdkafka adapter with its calls."""
    if resolve_client(client) == "confluent":
        from tetrapipe.sinks.kafka_confluent import ConfluentProducer

        return ConfluentProducer
    return KafkaProducer


def new_producer(
    bootstrap: list[str],
    client_id: str,
    *,
    keyed: bool = False,
    client: str | None = "auto",
    batches_only: bool = False,
    **settings: Any,
) -> Any:
    """A producer that waits for every replica (``acks=all``), for outputs other than the collector's stream.

    ``keyed``: records are keyed (by node, say) and many share a key, so the
    partition is memoized per key as the collector's is (librdkafka hashes
    in C: nothing to memoize). ``batches_only``: the producer only ever
    serves :func:`send_batch`, so the librdkafka backend reports failed
    records only and a batch is settled by a flush
    (:class:`~tetrapipe.sinks.kafka_confluent.FlushedDelivery`); kafka-python
    keeps its future per record. ``settings`` are further kafka-python
    producer settings (batching, compression, TLS), translated for librdkafka.
    """
    factory = producer_class(client)
    if keyed and factory is KafkaProducer:
        settings.setdefault("partitioner", _KeyPartitioner())
    if batches_only and factory is not KafkaProducer:
        settings["errors_only"] = True
    return factory(bootstrap_servers=bootstrap, client_id=client_id, acks="all", **settings)


class FutureBatch:
    """kafka-python's per-record futures behind the ``get`` of the librdkafka backend's batch delivery."""

    def __init__(self, futures: list[Any]) -> None:
        self.futures = futures

    def get(self, timeout: float | None = None) -> int:
        """Wait for every record; raise the first failure (a record's ``get`` honours ``timeout`` on its own)."""
        for f in self.futures:
            f.get(timeout=timeout)
        return len(self.futures)


def send_batch(
    producer: Any, topic: str, records: Iterable[tuple[bytes | None, bytes]]
) -> tuple[Any, list[tuple[bytes, BaseException]]]:
    """Queue many ``(key, value)`` records: ``(delivery, refused)``, ``delivery.get(timeout)`` waits for them all.

    ``refused`` holds the records the producer turned down at once for their
    size: they can never be sent, so they cost only themselves. The
    librdkafka backend settles the whole batch through one callback
    (:meth:`~tetrapipe.sinks.kafka_confluent.ConfluentProducer.send_batch`);
    kafka-python keeps a future per record, as its API has no other way.
    """
    if hasattr(producer, "send_batch"):
        return producer.send_batch(topic, records)
    futures, refused = [], []
    send = producer.send
    for key, value in records:
        try:
            futures.append(send(topic, key=key, value=value))
        except kerrors.MessageSizeTooLargeError as exc:
            refused.append((value, exc))
    return FutureBatch(futures), refused
