"""Both Kafka clients behind the one source and the one sink: the same real-broker promises, each backend.

``--kafka-client kafka-python`` and ``--kafka-client confluent`` (librdkafka)
run the processor's exactly-once under kill -9, a rebalance between two
replicas, the poison record, the collector's file -> Kafka path and the
forwarder reading Kafka, on inputs small enough that the pair costs little
(the large runs in test_process.py / test_collect.py use the default,
``auto``, which is confluent wherever the ``fast`` or ``test`` extra is
installed). Plus what is only about the choice itself: the settings
translation, the same partition for a node from either producer, and a
clear error when confluent is asked for but not installed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import kafka.errors as kerrors
import orjson
import pytest
import test_collect
from conftest import REPO, SAMPLES
from kafka_broker import TansuBroker, free_port, read_topic, send_batch_and_check
from test_collect import (  # the autouse fixture kills a collector a failing test left running
    Collect,
    Lumberjack,
    _no_leftover_collectors,  # noqa: F401
    check_exactly_once,
    line,
)
from test_forward import _native_lines
from test_process import (
    FAST_GROUP,
    _ancestry_mismatches,
    _create_topic,
    _events_version,
    _expected_ids,
    _lake_ids,
    _lake_summary,
    _process_cmd,
    _produce,
    _synthetic,
    _wait,
    tree_events,
    two_replicas_one_joining_late,
)

from tetrapipe.flows.process import Processor, ProcessorConfig
from tetrapipe.kafka_client import CLIENT_ENV, KafkaClientError, librdkafka_config, resolve_client
from tetrapipe.lake import Lake, connect

BACKENDS = ["kafka-python", "confluent"]


@pytest.fixture(scope="module")
def sample_rows(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The samples' alerts and events as native JSON rows (what the processor streams and ``forward`` reads)."""
    path = tmp_path_factory.mktemp("rows") / "lake"
    subprocess.run(
        [sys.executable, "-m", "tetrapipe", "ingest", str(SAMPLES), "--lake", str(path), "-q"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    con = connect(str(path))
    try:
        tables = {t: con.sql(f"SELECT * FROM {t} ORDER BY time").to_arrow_table() for t in ("events", "alerts")}
    finally:
        con.close()
    return _native_lines(tables).splitlines()


# --- the choice and the settings ------------------------------------------------------------------


def test_kafka_python_settings_become_librdkafka_ones_and_unknown_ones_are_refused() -> None:
    conf = librdkafka_config(
        {
            "bootstrap_servers": ["a:9092", "b:9092"],
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "u",
            "sasl_plain_password": "p",
            "ssl_cafile": "/ca.pem",
            "ssl_check_hostname": False,
            "session_timeout_ms": 6000,
            "auto_offset_reset": "none",
            "max_poll_records": 500,
        },
        role="consumer",
        consumed=("max_poll_records",),
    )
    assert conf == {
        "bootstrap.servers": "a:9092,b:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "u",
        "sasl.password": "p",
        "ssl.ca.location": "/ca.pem",
        "ssl.endpoint.identification.algorithm": "none",
        "session.timeout.ms": 6000,
        "auto.offset.reset": "error",  # kafka-python's "none": raise, never jump silently
    }
    assert librdkafka_config({"compression_type": None, "acks": "all"}, role="producer") == {
        "compression.type": "none",
        "acks": "all",
    }
    with pytest.raises(KafkaClientError, match=r"sesion_timeout_ms.*--kafka-client kafka-python"):
        librdkafka_config({"sesion_timeout_ms": 1}, role="consumer")
    with pytest.raises(KafkaClientError, match="linger_ms"):  # a producer setting is no consumer's
        librdkafka_config({"linger_ms": 5}, role="consumer")
    with pytest.raises(KafkaClientError, match="unknown Kafka client 'rdkafka'"):
        resolve_client("rdkafka")
    assert resolve_client("auto") == "confluent"  # the test extra installs it
    assert resolve_client("kafka-python") == "kafka-python"


def test_a_misspelt_setting_with_confluent_is_a_usage_error_before_connecting(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "tetrapipe", "process", "--kafka", "127.0.0.1:1", "--lake", str(tmp_path / "l")]
        + ["--kafka-client", "confluent", "--kafka-option", "sesion_timeout_ms=6000"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert res.returncode == 2, res.stderr
    assert "sesion_timeout_ms" in res.stderr and "librdkafka" in res.stderr


#: run tetrapipe as if confluent-kafka were not installed (the default install: pip install tetrapipe)
_WITHOUT_CONFLUENT = textwrap.dedent("""\
    import sys
    class _Hide:
        def find_spec(self, name, path=None, target=None):
            if name == "confluent_kafka" or name.startswith("confluent_kafka."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, _Hide())
    from tetrapipe.cli import main
    sys.argv = ["tetrapipe", *sys.argv[1:]]
    main()
""")


@pytest.mark.slow
def test_without_confluent_kafka_auto_takes_kafka_python_and_confluent_is_a_clear_error(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TETRAPIPE_KAFKA_CLIENT", None)
    base = [sys.executable, "-c", _WITHOUT_CONFLUENT, "status", "--kafka", kafka.bootstrap, "--topic", topic]
    base += ["--lake", str(tmp_path / "lake"), "--format", "json"]
    _create_topic(kafka.bootstrap, topic, 2)
    refused = subprocess.run(
        [*base, "--kafka-client", "confluent"], capture_output=True, text=True, timeout=60, env=env
    )
    assert refused.returncode == 2, refused.stderr
    assert "confluent-kafka package is not installed" in refused.stderr
    assert "tetrapipe[fast]" in refused.stderr
    fallback = subprocess.run(base, capture_output=True, text=True, timeout=60, env=env)  # auto
    assert fallback.returncode == 0, fallback.stderr
    assert [r["partition"] for r in json.loads(fallback.stdout)] == [0, 1]


@pytest.mark.slow
def test_a_node_lands_in_the_same_partition_whichever_client_produced_it(kafka: TansuBroker, topic: str) -> None:
    """Collectors of one deployment may run different clients: both hash the key with murmur2, as Java does."""
    from tetrapipe.sinks.kafka import new_producer

    _create_topic(kafka.bootstrap, topic, 4)
    keys = [f"node-{i}.cluster.local".encode() for i in range(24)]
    for client in BACKENDS:
        producer = new_producer([kafka.bootstrap], f"p-{client}", keyed=True, client=client)
        futures = [producer.send(topic, key=k, value=client.encode() + b" " + k) for k in keys]
        producer.flush(timeout=30)
        for f in futures:
            f.get(timeout=30)
        producer.close()
    records = read_topic(kafka.bootstrap, topic, expect=2 * len(keys))
    where: dict[bytes, set[int]] = {}
    for r in records:
        where.setdefault(r.key, set()).add(r.partition)
    assert len(where) == len(keys) and all(len(p) == 1 for p in where.values()), where
    assert len({p for ps in where.values() for p in ps}) > 1  # the keys did spread


@pytest.mark.slow
@pytest.mark.parametrize("client", BACKENDS)
def test_a_batch_send_delivers_every_record_in_order_and_hands_back_only_the_too_large(
    client: str, kafka: TansuBroker, topic: str
) -> None:
    """The processor streams each micro-batch's events as one batch: none lost, in order per key, a giant costs itself."""
    from tetrapipe.sinks.kafka import new_producer

    _create_topic(kafka.bootstrap, topic, 3)
    producer = new_producer([kafka.bootstrap], f"b-{client}", keyed=True, client=client, max_request_size=20_000)
    keys = [f"node-{i % 5}".encode() for i in range(600)]
    values = [b"%d " % i + b"x" * (50_000 if i == 123 else 200) for i in range(600)]
    send_batch_and_check(producer, kafka.bootstrap, topic, keys, values)


# --- the same promises on both clients ------------------------------------------------------------


@pytest.mark.slow  # a broker and subprocesses: CI runs it, the edit loop (-m "not slow") does not
@pytest.mark.parametrize("client", BACKENDS)
def test_poison_record_costs_only_itself(client: str, kafka: TansuBroker, topic: str, tmp_path: Path) -> None:
    """A record that is no event, mid-partition: rejected with its offset, dead-lettered; the rest lands once."""
    _create_topic(kafka.bootstrap, topic, 1)
    lines = _synthetic(600, nodes=1)
    poison = b'{"process_kprobe": "notanobject", "node_name": "node-0", "time": "2026-03-10T10:00:00Z"}'
    _produce(kafka.bootstrap, topic, [*lines[:300], poison, *lines[300:]])
    cfg = ProcessorConfig(
        kafka.bootstrap,
        topic=topic,
        group=topic,
        exit_at_eof=True,
        batch_max_records=250,
        dead_letter_topic=f"{topic}.dlq",
        alerts_topic=None,
        kafka_options=FAST_GROUP,
        kafka_client=client,
    )
    stats = Processor(cfg, Lake(tmp_path / "lake"), []).run()
    assert (stats.records, stats.events, stats.rejects) == (601, 600, 1)
    assert _lake_ids(tmp_path / "lake") == _expected_ids(lines)
    con = connect(Lake(tmp_path / "lake"))
    try:
        assert con.execute("SELECT source_offset FROM rejects").fetchall() == [(300,)]
    finally:
        con.close()
    dead = read_topic(kafka.bootstrap, f"{topic}.dlq", expect=1)
    assert [m.value for m in dead] == [poison] and dict(dead[0].headers)["offset"] == b"300"
    # run again: everything is in the lake already, the group resumes from it, nothing is written twice
    again = Processor(cfg, Lake(tmp_path / "lake"), []).run()
    assert again.records == 0 and _lake_summary(tmp_path / "lake") == (600, 600)


@pytest.mark.slow  # a broker and subprocesses: CI runs it, the edit loop (-m "not slow") does not
@pytest.mark.parametrize("client", BACKENDS)
def test_processor_killed_with_sigkill_stores_every_event_once(
    client: str, kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """12,000 events over 3 partitions, SIGKILL twice mid-run, then a run to the end: each event once, chains whole."""
    n = 12_000
    _create_topic(kafka.bootstrap, topic, 3)
    stream = tree_events(n, seed=3)
    _produce(kafka.bootstrap, topic, stream.lines, partitions=3)
    lake = tmp_path / "lake"
    short = ["--kafka-option", "session_timeout_ms=3000", "--kafka-option", "heartbeat_interval_ms=500"]
    cmd = _process_cmd(
        kafka.bootstrap, topic, lake, topic, "--exit-at-eof", "--batch-size", "500", "--batch-seconds", "0.2"
    )
    cmd += [*short, "--kafka-client", client]
    rng = random.Random(5)
    killed = []
    for k in range(2):
        before = _events_version(lake)
        with open(tmp_path / f"run-{k}.log", "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        _wait(lambda: _events_version(lake) > before or proc.poll() is not None, 60, "a commit", every=0.05)  # noqa: B023
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed.append(_lake_summary(lake)[0])
        proc.wait(timeout=30)
    assert any(0 < c < n for c in killed), f"killed mid-run at least once (lake sizes {killed})"
    done = subprocess.run(cmd, capture_output=True, timeout=240)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert _lake_summary(lake) == (n, n)
    assert _lake_ids(lake) == _expected_ids(stream.lines)
    assert _ancestry_mismatches(lake, stream.ancestors) == []


@pytest.mark.slow  # a broker and subprocesses: CI runs it, the edit loop (-m "not slow") does not
@pytest.mark.parametrize("client", BACKENDS)
def test_two_replicas_rebalance_mid_stream_each_event_once(
    client: str, kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """B joins while A commits: A writes what it holds on revoke, B resumes from the lake (seek in the callback)."""
    n = 12_000
    _create_topic(kafka.bootstrap, topic, 4)
    stream = tree_events(n, seed=4)
    _produce(kafka.bootstrap, topic, stream.lines, partitions=4)
    lake = tmp_path / "lake"
    cmd = _process_cmd(
        kafka.bootstrap, topic, lake, topic, "--exit-at-eof", "--batch-size", "200", "--batch-seconds", "0.2"
    )
    cmd += ["--kafka-client", client]
    two_replicas_one_joining_late(cmd, tmp_path, lambda: _events_version(lake), lambda: _lake_summary(lake)[0], n)
    assert _lake_summary(lake) == (n, n)
    assert _ancestry_mismatches(lake, stream.ancestors) == []


@pytest.mark.slow  # a broker and subprocesses: CI runs it, the edit loop (-m "not slow") does not
@pytest.mark.parametrize("client", BACKENDS)
def test_collector_file_to_kafka_exactly_once_in_order(
    client: str, kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """A rotating file, read to its end: every line acknowledged once, in order per node, with its source header."""
    d = tmp_path / "tetragon"
    d.mkdir()
    lines = [line(i, random.Random(i)) for i in range(3_000)]
    w = Lumberjack(d, max_bytes=400_000, backups=20, compress=True)
    for ln in lines:
        w.write(ln)
    w.close()
    assert w.rotations >= 3
    c = Collect(
        str(d / "tetragon.log"),
        kafka,
        topic,
        tmp_path / "state",
        "--from",
        "beginning",
        "--exit-at-eof",
        "--headers",
        "--kafka-client",
        client,
    )
    assert c.wait(60) == 0, c.output()
    records = read_topic(kafka.bootstrap, topic, expect=len(lines))
    check_exactly_once(records, lines)
    assert all(dict(r.headers).keys() == {"source", "line"} for r in records)
    assert c.final_count("rejected") == 0


def test_librdkafkas_repeated_lines_are_held_back_and_counted() -> None:
    """A broker away: one line per kind of message a minute, then the next says how many were held back."""
    import logging

    from tetrapipe.kafka_client import RepeatFilter

    now = [0.0]
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    log = logging.getLogger("test.repeats")
    log.propagate = False
    log.addHandler(Keep())
    log.addFilter(RepeatFilter(window=60.0, clock=lambda: now[0]))
    refused = "FAIL [tetrapipe#consumer-1] 127.0.0.1:%d/bootstrap: Connect failed: refused (after %dms)"
    for i in range(370):
        log.error(refused, 9092, i % 7)
        now[0] += 0.01
    log.error("GROUPCOORD [tetrapipe#consumer-1] coordinator went away")
    assert records == [refused % (9092, 0), "GROUPCOORD [tetrapipe#consumer-1] coordinator went away"]
    now[0] += 60.0
    log.error(refused, 9093, 2)
    assert records[-1] == refused % (9093, 2) + " (369 more like this in the last 64 s)"
    log.error(refused, 9093, 3)  # a new minute: held back again
    assert len(records) == 3


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.slow  # the real broker
def test_a_closed_librdkafka_producer_stops_its_threads_at_once(kafka: TansuBroker, topic: str) -> None:
    """close() ends librdkafka's threads there and then, not when the garbage collector gets to the handle.

    A producer replaced after a failure kept reconnecting (and logging each refused connection) for as long
    as anything referenced it; a producer whose broker never answered, too.
    """
    from tetrapipe.sinks.kafka import new_producer, send_batch

    before = _threads()
    producer = new_producer([kafka.bootstrap], "closing", client="confluent", batches_only=True)
    delivery, _ = send_batch(producer, topic, [(b"n", b"%d" % i) for i in range(10)])
    assert delivery.get(timeout=30) == 10
    assert _threads() > before  # librdkafka's own threads
    producer.close(timeout=5)
    assert _threads() == before
    producer.close()  # twice: nothing to do
    producer.flush()  # after close: nothing queued, nothing to wait for
    producer.poll(0.1)  # nor any report to serve
    with pytest.raises(kerrors.KafkaConnectionError):
        new_producer([f"127.0.0.1:{free_port()}"], "nobody", client="confluent", bootstrap_timeout_ms=300)
    assert _threads() == before


@pytest.mark.slow  # a broker and subprocesses: CI runs it, the edit loop (-m "not slow") does not
@pytest.mark.parametrize("client", BACKENDS)
def test_forward_from_kafka_delivers_each_row_once_and_commits(
    client: str,
    kafka: TansuBroker,
    topic: str,
    sample_rows: list[bytes],
    tmp_path: Path,
) -> None:
    """Native rows on a topic -> a file sink; a second run from the committed offsets delivers nothing again."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    rows = sample_rows
    for row in rows:
        producer.send(topic, value=row)
    producer.flush()
    producer.close()
    out = tmp_path / "all.jsonl"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"spool_dir: {tmp_path / 'spool'}\nkafka: {{bootstrap: '{kafka.bootstrap}', options: {json.dumps(FAST_GROUP)}}}\n"
        f"sinks:\n  - {{name: file, type: file, format: native, forward: all, options: {{path: {out}}}}}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETRAPIPE_")} | {"PYTHONPATH": str(REPO)}
    group = f"fwd-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-m", "tetrapipe", "forward", "--config", str(cfg), "--from-kafka", "--topic", topic]
    cmd += ["--group", group, "--exit-at-eof", "--kafka-client", client]
    for _ in range(2):
        res = subprocess.run(cmd, capture_output=True, timeout=120, env=env)
        assert res.returncode == 0, res.stderr.decode()[-3000:]
    got = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    ids = [g.get("alert_id") or g.get("event_id") for g in got]
    want = [orjson.loads(r) for r in rows]
    assert sorted(ids) == sorted(w.get("alert_id") or w.get("event_id") for w in want)  # each once, over two runs


@pytest.mark.slow
def test_collector_broker_outage_on_kafka_python_too(
    kafka: TansuBroker, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """test_collect's outage test runs on the default client (confluent where installed); this, on kafka-python.

    The broker goes away (losing its topics) and comes back: the collector
    stays up, spools, says it is not ready, then delivers every line.
    """
    monkeypatch.setenv(CLIENT_ENV, "kafka-python")  # the collector subprocess inherits the environment
    test_collect.test_broker_outage_spools_stays_up_and_delivers_everything(kafka, topic, tmp_path)


def test_the_configuration_file_chooses_the_client_and_refuses_an_unknown_one() -> None:
    from tetrapipe.config import ConfigError, command_env, parse_config

    text = "version: 1\nkafka: {bootstrap: 'k:9092', client: %s}\n"
    cfg = parse_config(text % "kafka-python")
    assert command_env(cfg, "process")["TETRAPIPE_KAFKA_CLIENT"] == "kafka-python"
    assert command_env(cfg, "collect")["TETRAPIPE_KAFKA_CLIENT"] == "kafka-python"
    assert "TETRAPIPE_KAFKA_CLIENT" not in command_env(
        parse_config("version: 1\nkafka: {bootstrap: 'k:9092'}\n"), "process"
    )
    with pytest.raises(ConfigError, match=r"<config>:2.*client"):
        parse_config(text % "rdkafka")
