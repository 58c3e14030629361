"""The enriched-events stream: ``process --events-topic`` -> Kafka -> ``forward --from-kafka`` -> sinks.

Against the session's tansu broker: the processor streams every event it
commits to the lake (normalized, with ancestry) to the events topic exactly
as the lake holds it, and the forwarder sends those events to the sinks that
asked for events -- and none to a sink that forwards alerts only.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from conftest import REAL_LOGS, REPO, SAMPLES
from kafka_broker import TansuBroker

from tetrapipe.flows.forward import default_topics
from tetrapipe.flows.process import Processor, ProcessorConfig
from tetrapipe.flows.process_outputs import event_json_lines
from tetrapipe.formats import to_native
from tetrapipe.lake import Lake, connect
from tetrapipe.sinks.siem import Route, Router
from tetrapipe.sinks.siem.base import DeliveringSink, Delivery

SCENARIO = SAMPLES / "scenario" / "tenant-jobs.log"
FAST_GROUP = {"session_timeout_ms": 6000, "max_poll_interval_ms": 20000, "heartbeat_interval_ms": 1000}
ANCESTRY = (
    "parent_exec_id",
    "parent_binary",
    "parent_arguments",
    "parent_pid",
    "ancestor_exec_ids",
    "ancestor_binaries",
)


@pytest.fixture(scope="module")
def streamed(kafka_broker: TansuBroker, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The scenario (and the real samples) through one processor with an events topic, in small batches."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    from tetrapipe.transforms.chain import build_transforms

    if not kafka_broker.running:
        kafka_broker.start()
    work = tmp_path_factory.mktemp("enriched")
    name = f"enriched-{os.getpid()}-{id(work) & 0xFFFF:x}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    try:
        admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
    finally:
        admin.close()
    lines = [line.encode() for p in [SCENARIO, *REAL_LOGS] for line in p.read_text().splitlines() if line.strip()]
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all", linger_ms=5)
    for line in lines:
        producer.send(name, key=(json.loads(line).get("node_name") or "").encode(), value=line)
    producer.flush()
    producer.close()
    cfg = ProcessorConfig(
        kafka_broker.bootstrap,
        topic=name,
        group=name,
        exit_at_eof=True,
        batch_max_records=40,
        batch_max_seconds=0.3,
        alerts_topic=f"{name}.alerts",
        events_topic=f"{name}.enriched",
        dead_letter_topic=None,
        kafka_options=FAST_GROUP,
    )
    lake = work / "lake"
    transforms, _ = build_transforms(None)
    stats = Processor(cfg, Lake(lake), transforms).run()
    con = connect(Lake(lake))
    try:
        events = con.sql("SELECT * EXCLUDE (date) FROM events").to_arrow_table()
        alerts = con.sql("SELECT alert_id FROM alerts").to_arrow_table()
    finally:
        con.close()
    assert stats.batches > 2 and stats.events == events.num_rows == len(lines) and stats.streamed == len(lines)
    return {
        "topic": name,
        "events_topic": cfg.events_topic,
        "alerts_topic": cfg.alerts_topic,
        "lake": lake,
        "events": events,
        "alert_ids": set(alerts.column("alert_id").to_pylist()),
        # one row per alert, plus a row per later batch that added to it (a follow-up keeps the id)
        "alert_rows": sorted(alerts.column("alert_id").to_pylist()),
    }


def _read_all(bootstrap: str, topic: str, expect: int, timeout: float = 20.0, settle: float = 1.0) -> list:
    """Every record of ``topic``: until ``expect`` arrived and then ``settle`` seconds brought no more.

    Not bounded by the end offsets (as ``kafka_broker.read_topic`` is): tansu
    reports a partition's end before its last record batch, and a duplicate
    arriving after the expected count must be seen too.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        assert tps, f"no topic {topic}"
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list = []
        deadline, last = time.monotonic() + timeout, time.monotonic()
        while time.monotonic() < deadline and (len(records) < expect or time.monotonic() - last < settle):
            for recs in consumer.poll(timeout_ms=200).values():
                records.extend(recs)
                last = time.monotonic()
        return records
    finally:
        consumer.close()


def test_topic_holds_each_lake_event_once_with_its_ancestry(
    streamed: dict[str, Any], kafka_broker: TansuBroker
) -> None:
    lake_rows = {r["event_id"]: r for r in streamed["events"].to_pylist()}
    msgs = _read_all(kafka_broker.bootstrap, streamed["events_topic"], expect=len(lake_rows))
    counts = collections.Counter(orjson.loads(m.value)["event_id"] for m in msgs)
    assert set(counts) == set(lake_rows) and set(counts.values()) == {1}  # every lake event, once
    with_chain = 0
    for m in msgs:
        row = orjson.loads(m.value)
        want = lake_rows[row["event_id"]]
        assert list(row) == list(want)  # every native column, in the lake's order
        assert m.key == (want["node_name"].encode() if want["node_name"] else None)  # keyed by node when known
        for col in ANCESTRY:
            assert row[col] == want[col], (row["event_id"], col)
        with_chain += bool(row["ancestor_exec_ids"])
        if want["time"] is not None:  # the Star Wars demo samples carry no time
            assert row["time"].endswith("Z") and row["time"][:26] == want["time"].isoformat(timespec="microseconds")
        assert row["raw"] == want["raw"] and row["source_offset"] == want["source_offset"]
        if want["pod_labels"]:
            assert row["pod_labels"] == dict(want["pod_labels"])
        # what a SIEM receives is the same whichever way the event travelled
        assert to_native(row) == to_native(want)
    assert with_chain > len(msgs) // 3  # the scenario's shells and jobs sit in deep process trees


def test_forward_from_kafka_sends_events_only_to_sinks_that_want_them(
    streamed: dict[str, Any], kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    cfg = tmp_path / "tetrapipe.yaml"
    cfg.write_text(f"""\
version: 1
spool_dir: {tmp_path / "spool"}
kafka:
  bootstrap: {kafka_broker.bootstrap}
  alerts_topic: {streamed["alerts_topic"]}
  events_topic: {streamed["events_topic"]}
  options: {json.dumps(FAST_GROUP)}
sinks:
  - {{name: events-ecs, type: file, format: ecs, forward: events, options: {{path: {tmp_path / "events.jsonl"}}}}}
  - {{name: alerts-only, type: file, format: native, forward: alerts, options: {{path: {tmp_path / "alerts.jsonl"}}}}}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETRAPIPE_")} | {"PYTHONPATH": str(REPO)}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "tetrapipe",
            "forward",
            "--config",
            str(cfg),
            "--from-kafka",
            "--group",
            f"{streamed['topic']}-fwd",
            "--exit-at-eof",
        ],
        capture_output=True,
        env=env,
        timeout=90,
    )
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    docs = [orjson.loads(x) for x in (tmp_path / "events.jsonl").read_bytes().splitlines()]
    lake_ids = streamed["events"].column("event_id").to_pylist()
    assert sorted(d["event"]["id"] for d in docs) == sorted(lake_ids)
    assert all(d["event"]["kind"] == "event" and d["ecs"]["version"] for d in docs)
    alerts = [orjson.loads(x) for x in (tmp_path / "alerts.jsonl").read_bytes().splitlines()]
    assert {a["record_type"] for a in alerts} == {"alert"}  # not one event reached the alerts-only sink
    assert sorted(a["alert_id"] for a in alerts) == streamed["alert_rows"]  # each row of the lake once


class _Keep(DeliveringSink):
    def __init__(self, name: str) -> None:
        super().__init__(name, Delivery(batch_size=10_000, linger_seconds=0.0))
        self.got: list[dict[str, Any]] = []

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        self.got.extend(records)


def test_router_classifies_streamed_rows_as_events() -> None:
    """Rows read back from the events topic are events: an alerts-only route never sends them."""
    from tetrapipe.transforms.chain import build_transforms
    from tetrapipe.transforms.normalize import Normalizer, normalize_lines

    lines = [line.encode() for line in SCENARIO.read_text().splitlines() if line.strip()]
    events = normalize_lines(lines, source="t", normalizer=Normalizer()).events
    alerts: pa.Table | None = None
    transforms, _ = build_transforms(None)
    for t in transforms:
        events, produced = t(events)
        alerts = produced.get("alerts", alerts)
    assert alerts is not None and alerts.num_rows
    rows = [orjson.loads(x) for x in event_json_lines(events)]
    rows += [orjson.loads(orjson.dumps(a, option=orjson.OPT_NAIVE_UTC)) for a in alerts.to_pylist()]
    routes = [Route(mode, _Keep(mode), forward=mode) for mode in ("alerts", "events", "all")]
    router = Router(routes)
    router.handle_rows(rows)
    router.flush()
    got = {r.name: r.sink.got for r in routes}  # type: ignore[attr-defined]
    assert {g["record_type"] for g in got["alerts"]} == {"alert"} and len(got["alerts"]) == alerts.num_rows
    assert {g["record_type"] for g in got["events"]} == {"event"} and len(got["events"]) == events.num_rows
    assert len(got["all"]) == events.num_rows + alerts.num_rows
    router.close()


def test_default_topics_add_the_events_topic_only_when_a_sink_wants_events() -> None:
    kafka = {"alerts_topic": "a", "events_topic": "e"}
    alerts_only = [Route("x", _Keep("x"), forward="alerts")]
    with_events = [*alerts_only, Route("y", _Keep("y"), forward="all")]
    assert default_topics(kafka, alerts_only) == ("a",)
    assert default_topics(kafka, with_events) == ("a", "e")
    assert default_topics({"alerts_topic": "a", "events_topic": ""}, with_events) == ("a",)
