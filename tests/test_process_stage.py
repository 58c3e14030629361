"""The processor's lake commits wait for ``commit_max_seconds`` while its alerts and enriched events do not.

What is promised (tetrapipe/flows/process_stage.py): a quiet topic writes one
lake commit per ``--commit-seconds``, not one per micro-batch, so the tables'
logs stay small; alerts and streamed events leave as each micro-batch ends;
a kill -9 while micro-batches wait loses nothing and stores nothing twice; a
replica whose staged partitions another replica committed meanwhile drops
them instead of storing them twice. Real tansu broker, real lake.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path

from kafka_broker import TansuBroker, read_topic
from test_process import (  # the processor tests' own helpers, shared rather than copied
    FAST_GROUP,
    _alerts,
    _create_topic,
    _expected_ids,
    _has_events,
    _lake_summary,
    _process_cmd,
    _produce,
    _scenario_lines,
    _synthetic,
    _txn_versions,
    _wait,
)

from tetrapipe.flows.process import Processor, ProcessorConfig
from tetrapipe.lake import Lake, connect
from tetrapipe.lake.positions import kafka_position
from tetrapipe.schema import SCHEMAS
from tetrapipe.transforms.chain import build_transforms


def _good(lines: list[bytes]) -> list[bytes]:
    return [line for line in lines if line.startswith(b'{"process')]


def _lake_offsets(lake: Path) -> list[int]:
    con = connect(Lake(lake))
    try:
        return sorted(r[0] for r in con.execute("SELECT source_offset FROM events").fetchall())
    finally:
        con.close()


def test_a_quiet_topic_commits_once_while_alerts_and_events_leave_each_batch(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    _create_topic(kafka.bootstrap, topic, 1)
    lake = tmp_path / "lake"
    cfg = ProcessorConfig(
        kafka.bootstrap,
        topic=topic,
        group=topic,
        batch_max_seconds=0.2,
        commit_max_seconds=3600,
        alerts_topic=f"{topic}.alerts",
        events_topic=f"{topic}.enriched",
        dead_letter_topic=None,
        kafka_options=FAST_GROUP,
    )
    transforms, _ = build_transforms(None)
    shown: list[int] = []
    processor = Processor(cfg, Lake(lake), transforms, on_alerts=lambda a: shown.append(a.num_rows))
    runner = threading.Thread(target=processor.run)
    runner.start()
    try:
        lines = _scenario_lines()
        rounds = [lines[k::3] for k in range(3)]
        sent: list[bytes] = []
        for part in rounds:  # three quiet moments: each its own micro-batch
            _produce(kafka.bootstrap, topic, part)
            sent += part
            streamed = read_topic(kafka.bootstrap, f"{topic}.enriched", expect=len(_good(sent)), timeout=60)
            assert len({m.value for m in streamed}) >= len(_good(sent))
            assert not _has_events(lake)  # transformed and streamed, not committed yet
        alerts = read_topic(kafka.bootstrap, f"{topic}.alerts", expect=3, timeout=30)
        assert len(alerts) >= 3 and sum(shown) >= 3  # left for Kafka and the terminal before any lake commit
    finally:
        processor.stop()
        runner.join(timeout=60)
    assert not runner.is_alive()
    good = _good(lines)
    assert _lake_summary(lake) == (len(good), len(good))
    assert len(_txn_versions(lake, "events", f"kafka:{topic}:0")) == 1  # one commit for the three micro-batches
    assert set(_alerts(lake)) == {json.loads(m.value)["alert_id"] for m in alerts}
    assert processor.stats.batches == 1 and processor.stats.events == len(good)


def test_kill_9_while_batches_wait_for_their_commit_loses_nothing(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    _create_topic(kafka.bootstrap, topic, 2)
    lake = tmp_path / "lake"
    lines = _scenario_lines() + _synthetic(2000)
    _produce(kafka.bootstrap, topic, lines)
    alerts_topic = f"{topic}.alerts"
    waiting = _process_cmd(
        kafka.bootstrap,
        topic,
        lake,
        topic,
        "--batch-size",
        "100000",  # everything fits one stage: only the clock would commit it
        "--batch-seconds",
        "0.2",
        "--commit-seconds",
        "3600",
        "--alerts-topic",
        alerts_topic,
        rules=True,
    )
    with open(tmp_path / "killed.log", "wb") as out:
        proc = subprocess.Popen(waiting, stdout=out, stderr=subprocess.STDOUT)
    try:
        first = read_topic(kafka.bootstrap, alerts_topic, expect=3, timeout=60)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert not _has_events(lake)  # the alerts left; the stage died with the process
    done = subprocess.run([*waiting, "--exit-at-eof"], capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    good = _good(lines)
    assert _lake_summary(lake) == (len(good), len(good))
    assert Lake(lake).table("events").to_pyarrow_table(columns=["event_id"]).num_rows == len(_expected_ids(good))
    stored = _alerts(lake)
    again = read_topic(kafka.bootstrap, alerts_topic, expect=len(stored), timeout=30)
    # Kafka got the first run's alerts again under the same ids (at least once); the lake holds each once
    assert {json.loads(m.value)["alert_id"] for m in first} <= set(stored)
    assert {json.loads(m.value)["alert_id"] for m in again} == set(stored)


def test_staged_partitions_another_replica_committed_are_dropped_not_stored_twice(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """A replica that stalled past its session: another one committed its partition while batches waited."""
    _create_topic(kafka.bootstrap, topic, 1)
    lake = tmp_path / "lake"
    lines = _synthetic(600)
    _produce(kafka.bootstrap, topic, lines[:300])
    cfg = ProcessorConfig(
        kafka.bootstrap,
        topic=topic,
        group=topic,
        batch_max_records=400,  # the stage commits once 400 records wait: not after the first 300, after 600
        batch_max_seconds=0.2,
        commit_max_seconds=3600,
        alerts_topic=None,
        events_topic=f"{topic}.enriched",
        dead_letter_topic=None,
        kafka_options=FAST_GROUP,
    )
    processor = Processor(cfg, Lake(lake), [])
    runner = threading.Thread(target=processor.run)
    runner.start()
    try:
        read_topic(kafka.bootstrap, f"{topic}.enriched", expect=len(_good(lines[:300])), timeout=60)
        # the other replica: it stored the first 200 records' events itself (here: it says so in the log)
        Lake(lake).commit("events", SCHEMAS["events"].empty_table(), kafka_position(topic, 0, 199))
        _produce(kafka.bootstrap, topic, lines[300:])
        # the stage (0..599) finds partition 0 moved at its commit and is dropped; 200..599 are read again
        _wait(lambda: _has_events(lake), 60, "the re-read records committed")
    finally:
        processor.stop()
        runner.join(timeout=120)
    assert not runner.is_alive()
    offsets = _lake_offsets(lake)
    assert offsets == sorted(set(offsets))  # nothing twice
    assert offsets and min(offsets) >= 200  # what the other replica holds was dropped here, not stored again
    good_after = [i for i, line in enumerate(lines) if i >= 200 and line.startswith(b'{"process')]
    assert offsets == good_after
