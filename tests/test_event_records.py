"""The enriched-event records ``process --events-topic`` produces: their bytes, and the batch send behind them.

The record is a contract (``tetrapipe forward`` and users' consumers read it):
when its serialization was made cheaper (issue 19), the bytes had to stay
those of the previous writer, polars' ``write_ndjson`` split on newlines,
which is kept here as the reference. Checked on the real samples with their
ancestry filled, and on hostile values (quotes, backslashes, control
characters, line separators, NULLs inside lists and maps, a time zone).
The librdkafka batch send is checked against the real broker when its queue
is full: every record once, in order per key, a too-large one costing only itself.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from conftest import REAL_LOGS, SAMPLES
from kafka import errors as kerrors
from kafka_broker import TansuBroker, send_batch_and_check, tansu_binary
from test_process import _create_topic

from tetrapipe.flows.process_outputs import event_json_lines, native_frame
from tetrapipe.schema import EVENT_SCHEMA
from tetrapipe.transforms.chain import build_transforms
from tetrapipe.transforms.normalize import Normalizer, normalize_lines

SCENARIO = SAMPLES / "scenario" / "tenant-jobs.log"
HOSTILE = [
    'say "hi" \\ back\\slash \\"',
    "new\nline\ttab\rcr\x00nul\x01\x1f\x7f",
    "line\u2028sep\u2029para é 漢字 \U0001f600",
    "",
    '</script>{"a":[1]}',
]


def reference_lines(events: pa.Table) -> list[bytes]:
    """The records as the processor wrote them before 2026-12-07: ``write_ndjson`` into one buffer, split."""
    buf = io.BytesIO()
    native_frame(events).write_ndjson(buf)
    lines = buf.getvalue().split(b"\n")
    return lines[:-1] if lines and not lines[-1] else lines


def _enriched(paths: list) -> pa.Table:
    """The samples normalized and through the default transforms (ancestry filled), as the processor streams them."""
    lines = [line.encode() for p in paths for line in p.read_text().splitlines() if line.strip()]
    events = normalize_lines(lines, source="kafka:t/0", normalizer=Normalizer(), offsets=list(range(len(lines)))).events
    transforms, _ = build_transforms(None)
    for t in transforms:
        events, _ = t(events)
    return events


def test_records_of_the_real_samples_are_the_bytes_the_previous_writer_made() -> None:
    events = _enriched([SCENARIO, *REAL_LOGS])
    got = event_json_lines(events)
    assert len(got) == events.num_rows > 100
    assert got == reference_lines(events)
    rows = events.to_pylist()
    assert any(r["ancestor_exec_ids"] for r in rows) and any(r["pod_labels"] for r in rows)
    for record, row in zip(got, rows, strict=True):
        assert b"\n" not in record
        back = orjson.loads(record)
        assert list(back) == EVENT_SCHEMA.names and back["raw"] == row["raw"]
        if row["time"] is not None:
            assert back["time"] == row["time"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if row["pod_labels"]:
            assert back["pod_labels"] == dict(row["pod_labels"])


def test_hostile_values_keep_their_bytes_and_read_back_as_written() -> None:
    base = _enriched([SCENARIO]).slice(0, len(HOSTILE)).to_pylist()
    for i, row in enumerate(base):
        row["arguments"] = HOSTILE[i]
        row["raw"] = HOSTILE[-1 - i]
        row["cwd"] = None
        row["tags"] = [HOSTILE[i], None, ""] if i % 2 else []
        row["warnings"] = None
        row["pod_labels"] = [('k"ey', HOSTILE[i]), ("empty", None)] if i % 2 else ([] if i else None)
    events = pa.Table.from_pylist(base, schema=EVENT_SCHEMA)
    # a time zone the lake's schema does not carry: written as the same instant in UTC
    tz_time = pa.array([r["time"] for r in base], pa.timestamp("us")).cast(pa.timestamp("us", tz="Europe/Paris"))
    events = events.set_column(events.schema.get_field_index("time"), "time", tz_time)
    got = event_json_lines(events)
    assert got == reference_lines(events)
    for record, row in zip(got, base, strict=True):
        assert b"\n" not in record and b"\r" not in record
        back = orjson.loads(record)
        assert (back["arguments"], back["raw"], back["cwd"], back["warnings"]) == (
            row["arguments"],
            row["raw"],
            None,
            None,
        )
        assert back["tags"] == row["tags"]
        assert back["pod_labels"] == (None if row["pod_labels"] is None else dict(row["pod_labels"]))
        assert back["time"] == row["time"].replace(tzinfo=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert event_json_lines(events.slice(0, 0)) == []


@pytest.mark.slow  # the real broker
@pytest.mark.parametrize("errors_only", [False, True], ids=["every-report", "failures-only"])
def test_a_full_librdkafka_queue_slows_the_batch_send_and_loses_nothing(
    errors_only: bool, kafka: TansuBroker, topic: str
) -> None:
    """The batch send hands records to librdkafka directly; a full queue and a too-large record take the slow path."""
    from confluent_kafka import Producer

    from tetrapipe.kafka_client import librdkafka_config
    from tetrapipe.sinks.kafka_confluent import ConfluentProducer

    _create_topic(kafka.bootstrap, topic, 2)
    producer = ConfluentProducer(
        bootstrap_servers=[kafka.bootstrap], client_id="full-queue", acks="all", errors_only=errors_only
    )
    # the same adapter over a librdkafka producer whose queue holds 20 records: the batch below overflows it
    conf = librdkafka_config(
        {"bootstrap_servers": [kafka.bootstrap], "acks": "all", "max_request_size": 20_000, "linger_ms": 50},
        role="producer",
    )
    conf |= {"queue.buffering.max.messages": 20, "partitioner": "murmur2_random"}
    producer._p = Producer({**conf, "delivery.report.only.error": errors_only})
    keys = [f"node-{i % 3}".encode() for i in range(500)]
    values = [b"%d " % i + b"y" * (60_000 if i == 250 else 300) for i in range(500)]
    send_batch_and_check(producer, kafka.bootstrap, topic, keys, values)


@pytest.mark.slow  # a broker of its own, killed mid-test
def test_a_batch_whose_records_fail_raises_when_only_failures_are_reported(tmp_path: Path) -> None:
    """The events producer hears of failed records only: a batch the broker never took must not read as delivered."""
    from tetrapipe.sinks.kafka import new_producer, send_batch

    broker = TansuBroker(tansu_binary(), log_path=tmp_path / "tansu.log").start()
    try:
        _create_topic(broker.bootstrap, "gone", 1)
        producer = new_producer(
            [broker.bootstrap], "gone", keyed=True, client="confluent", batches_only=True, delivery_timeout_ms=2000
        )
        try:
            with pytest.raises(RuntimeError, match="send_batch"):
                producer.send("gone", value=b"x")  # a future that would never settle is refused outright
            first, _ = send_batch(producer, "gone", [(b"n", b"%d" % i) for i in range(50)])
            assert first.get(timeout=30) == 50
            broker.stop()
            delivery, refused = send_batch(producer, "gone", [(b"n", b"%d" % i) for i in range(50)])
            assert not refused
            with pytest.raises(kerrors.KafkaError):
                delivery.get(timeout=30)
        finally:
            producer.close(timeout=0)
    finally:
        broker.stop()
