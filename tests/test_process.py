"""The stream processor against a real Kafka-protocol broker: exactly once, whatever happens.

Every test uses the session's tansu broker (tests/conftest_kafka.py) and its
own topic. The process-tree stream (:func:`tree_events`) comes with its own
ground truth, so "ancestry intact" is checked against what the generator
knows, not against another run of the same code.
"""

from __future__ import annotations

import base64
import json
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conftest import REAL_LOGS
from kafka_broker import TansuBroker

from tetrapipe.flows.process import Processor, ProcessorConfig
from tetrapipe.lake import Lake, connect
from tetrapipe.transforms.normalize import normalize_lines

# tansu makes a new group member wait ~23 s with kafka-python's default session timeout, ~3 s with this
FAST_GROUP = {"session_timeout_ms": 6000, "max_poll_interval_ms": 20000, "heartbeat_interval_ms": 1000}
FAST_GROUP_ARGS = [a for k, v in FAST_GROUP.items() for a in ("--kafka-option", f"{k}={v}")]


def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


def _produce(bootstrap: str, topic: str, lines: list[bytes], partitions: int | None = None) -> None:
    """Keyed by node as the collector does; with ``partitions``, node k goes to partition k % partitions.

    Spreading nodes by hand keeps every partition busy whatever murmur2 makes
    of eight short node names (a rebalance test needs each partition used).
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=512 * 1024)
    for line in lines:
        try:
            node = json.loads(line).get("node_name") or ""
        except ValueError:
            node = "poison"
        part = None
        if partitions and node.startswith("node-"):
            part = int(node.rsplit("-", 1)[1]) % partitions
        producer.send(topic, key=node.encode(), value=line, partition=part)
    producer.flush()
    producer.close()


def _synthetic(n: int, nodes: int = 6) -> list[bytes]:
    """n distinct events shaped like the real exec/kprobe samples, spread over nodes."""
    templates = [
        json.loads(line)
        for line in REAL_LOGS[0].read_text().splitlines()
        if '"process_exec"' in line or '"process_kprobe"' in line
    ][:6]
    out = []
    for i in range(n):
        ev = json.loads(json.dumps(templates[i % len(templates)]))
        ev["node_name"] = f"node-{i % nodes}"
        ev["time"] = f"2026-03-10T09:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}{i:06d}Z"[:30]
        ev["time"] = ev["time"][:29] + "Z" if len(ev["time"]) > 29 else ev["time"]
        out.append(json.dumps(ev, separators=(",", ":")).encode())
    return out


# --- a process-tree stream with its ground truth ----------------------------------------------


@dataclass
class _Proc:
    exec_id: str
    pid: int
    binary: str
    start: str
    parent: _Proc | None
    depth: int
    children: int = 0

    def json(self) -> dict:
        d = {
            "exec_id": self.exec_id,
            "pid": self.pid,
            "uid": 0,
            "cwd": "/",
            "binary": self.binary,
            "arguments": f"--worker {self.pid}",
            "flags": "execve clone",
            "start_time": self.start,
            "auid": 4294967295,
        }
        if self.parent is not None:
            d["parent_exec_id"] = self.parent.exec_id
        return d


@dataclass
class TreeStream:
    """Tetragon lines of several nodes' process trees and, per exec_id, the ancestor chain Tetragon would send.

    ``ancestors[exec_id]`` is every exec_id above the process's parent, nearest
    first, up to and including the node's init (pid 1): what the processor must
    put in ``ancestor_exec_ids`` on each of that process's events. Only exec,
    kprobe and exit events, no ``ancestors`` field, so every chain beyond the
    parent has to come from the process table, including across batches,
    restarts and partition hand-overs.
    """

    lines: list[bytes]
    ancestors: dict[str, list[str]]


def tree_events(n: int, nodes: int = 8, seed: int = 1) -> TreeStream:
    """n events: per node a shim and entrypoints that spawn children up to 6 deep, which act and exit.

    Event time advances 5 ms an event, so 100,000 events span ~8 minutes: the
    lake's last hour (what a processor rebuilds from) covers the whole stream.
    Children exit before their parents; exited processes are never seen again.
    """
    rng = random.Random(seed)
    t0 = 1_773_133_200  # 2026-03-10T09:00:00Z
    lines: list[bytes] = []
    ancestors: dict[str, list[str]] = {}
    live: dict[str, list[_Proc]] = {}
    next_pid: dict[str, int] = {}

    def stamp(i: int) -> str:
        ns = i * 5_000_000
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + ns // 1_000_000_000)) + f".{ns % 10**9:09d}Z"

    def emit(kind: str, node: str, proc: _Proc, extra: dict | None = None) -> None:
        body = {"process": proc.json(), **(extra or {})}
        if proc.parent is not None:
            body["parent"] = proc.parent.json()
        lines.append(
            json.dumps({kind: body, "node_name": node, "time": stamp(len(lines))}, separators=(",", ":")).encode()
        )

    def spawn(node: str, parent: _Proc | None, binary: str, pid: int | None = None) -> _Proc:
        if pid is None:
            pid = next_pid[node] = next_pid[node] + 1
        ktime = 1_000_000 * pid + len(lines)
        proc = _Proc(
            base64.b64encode(f"{node}:{ktime}:{pid}".encode()).decode(),
            pid,
            binary,
            stamp(len(lines)),
            parent,
            parent.depth + 1 if parent else 0,
        )
        chain, up = [], parent.parent if parent else None
        while up is not None:
            chain.append(up.exec_id)
            up = up.parent
        ancestors[proc.exec_id] = chain
        if parent is not None:
            parent.children += 1
        return proc

    binaries = ["/bin/sh", "/usr/bin/python3", "/usr/bin/curl", "/bin/cat", "/usr/bin/find", "/usr/local/bin/app"]
    names = [f"node-{k}" for k in range(nodes)]
    for node in names:
        next_pid[node] = 1000
        init = spawn(node, None, "/sbin/init", pid=1)  # started before the stream: no event of its own
        shim = spawn(node, init, "/usr/bin/containerd-shim-runc-v2")
        emit("process_exec", node, shim)
        live[node] = [shim]
        for k in range(3):
            entry = spawn(node, shim, f"/app/entrypoint-{k}")
            emit("process_exec", node, entry)
            live[node].append(entry)
    while len(lines) < n:
        node = rng.choice(names)
        procs = live[node]
        r = rng.random()
        if r < 0.4:
            parent = rng.choice(procs)
            if parent.depth < 6:
                child = spawn(node, parent, rng.choice(binaries))
                emit("process_exec", node, child)
                procs.append(child)
        elif r < 0.7:
            proc = rng.choice(procs)
            emit(
                "process_kprobe",
                node,
                proc,
                {
                    "function_name": "security_file_permission",
                    "action": "KPROBE_ACTION_POST",
                    "policy_name": "file-monitoring",
                    "args": [{"file_arg": {"path": f"/var/lib/app/{proc.pid}.dat"}}, {"int_arg": 2}],
                },
            )
        else:
            for _ in range(5):
                i = rng.randrange(len(procs))
                proc = procs[i]
                if proc.children == 0 and proc.depth >= 3:
                    emit("process_exit", node, proc, {"status": 0, "time": stamp(len(lines))})
                    proc.parent.children -= 1  # type: ignore[union-attr]
                    procs[i] = procs[-1]
                    procs.pop()
                    break
    return TreeStream(lines[:n], ancestors)


def _ancestry_mismatches(lake_dir: Path, truth: dict[str, list[str]]) -> list[tuple]:
    """Rows whose ancestor chain is not what Tetragon's tree says (empty: ancestry intact)."""
    con = connect(Lake(lake_dir))
    try:
        rows = con.execute("SELECT exec_id, ancestor_exec_ids FROM events").fetchall()
    finally:
        con.close()
    return [(e, got, truth.get(e)) for e, got in rows if got != truth.get(e)]


def _lake_summary(lake_dir: Path) -> tuple[int, int]:
    con = connect(Lake(lake_dir))
    try:
        return con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
    finally:
        con.close()


def _lake_ids(lake_dir: Path) -> set[str]:
    con = connect(Lake(lake_dir))
    try:
        return {r[0] for r in con.execute("SELECT event_id FROM events").fetchall()}
    finally:
        con.close()


def _events_version(lake_dir: Path) -> int:
    """The events table's Delta version (-1: no table yet): grows with every batch a processor commits."""
    table = Lake(lake_dir).table("events")
    return -1 if table is None else table.version()


def _alerts(lake_dir: Path) -> dict[str, int]:
    """alert_id -> how many events it stands for: the detector folds follow-ups into later rows of the same id,
    so an alert stored twice shows as a larger sum, and one lost as a missing id or a smaller sum."""
    con = connect(Lake(lake_dir))
    try:
        return dict(con.execute("SELECT alert_id, sum(count) FROM alerts GROUP BY alert_id").fetchall())
    finally:
        con.close()


def _txn_versions(lake_dir: Path, table: str, app_id: str) -> list[int]:
    """The versions of ``app_id`` the table's commits carried, in commit order (read from its _delta_log)."""
    out = []
    for entry in sorted((lake_dir / table / "_delta_log").glob("*.json")):
        for line in entry.read_text().splitlines():
            txn = json.loads(line).get("txn") if line.strip() else None
            if txn and txn["appId"] == app_id:
                out.append(txn["version"])
    return out


def _scenario_lines() -> list[bytes]:
    scenario = Path(__file__).resolve().parents[1] / "samples" / "scenario" / "tenant-jobs.log"
    return [line.encode() for line in scenario.read_text().splitlines() if line.strip()]


def _expected_ids(lines: list[bytes]) -> set[str]:
    return set(normalize_lines(lines).events.column("event_id").to_pylist())


def _has_events(lake: Path) -> bool:
    """The processor has committed rows to the events table (its first commit creates it empty)."""
    table = Lake(lake).table("events")
    return table is not None and len(table.get_add_actions(flatten=True)) > 0


def test_tree_stream_ground_truth_matches_one_table() -> None:
    """The generator's truth is what one process table computes over the stream in one go (no Kafka)."""
    from tetrapipe.transforms.ancestry import AncestryTransform

    stream = tree_events(5000)
    events, _ = AncestryTransform()(normalize_lines(stream.lines).events)
    got = dict(zip(events.column("exec_id").to_pylist(), events.column("ancestor_exec_ids").to_pylist(), strict=True))
    assert len(events) == 5000 and len(got) > 500
    assert {e: stream.ancestors[e] for e in got} == got
    assert max(len(c) for c in got.values()) >= 5  # deep chains, not only the shim's children


# --- metrics ----------------------------------------------------------------------------------


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def _metric(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def _status(port: int, path: str) -> int:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


# --- the tests --------------------------------------------------------------------------------


def test_replay_sample_exactly_once_with_poison_alerts_and_metrics(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """Real samples + the scenario + synthetic load, two poison lines, all rules: lake, DLQ, alerts topic, metrics."""
    from kafka_broker import read_topic

    from tetrapipe.transforms.chain import build_transforms

    _create_topic(kafka.bootstrap, topic, 2)
    scenario = Path(__file__).resolve().parents[1] / "samples" / "scenario" / "tenant-jobs.log"
    lines = [line.encode() for p in [*REAL_LOGS, scenario] for line in p.read_text().splitlines() if line.strip()]
    lines += _synthetic(3000)
    lines.insert(10, b"this is not json")
    lines.insert(500, b'{"hello": "not tetragon"}')
    _produce(kafka.bootstrap, topic, lines)
    cfg = ProcessorConfig(
        kafka.bootstrap,
        topic=topic,
        group=topic,
        exit_at_eof=True,
        batch_max_records=1000,
        batch_max_seconds=0.3,
        dead_letter_topic=f"{topic}.dlq",
        alerts_topic=f"{topic}.alerts",
        kafka_options=FAST_GROUP,
    )
    lake = tmp_path / "lake"
    transforms, _ = build_transforms(None)
    processor = Processor(cfg, Lake(lake), transforms)
    stats = processor.run()
    good = [line for line in lines if line.startswith(b'{"process')]
    assert stats.records == len(lines) and stats.rejects == 2
    count, distinct = _lake_summary(lake)
    assert count == distinct == len(good)
    con = connect(Lake(lake))
    assert set(con.execute("SELECT event_id FROM events").fetchnumpy()["event_id"]) == _expected_ids(good)
    rejects = con.execute("SELECT source, source_offset, reason FROM rejects ORDER BY reason").fetchall()
    assert {r[0].rsplit("/", 1)[0] for r in rejects} == {f"kafka:{topic}"}
    assert all(isinstance(r[1], int) for r in rejects)
    dead = read_topic(kafka.bootstrap, f"{topic}.dlq", expect=2)
    assert sorted(m.value for m in dead) == sorted([b"this is not json", b'{"hello": "not tetragon"}'])
    assert all(dict(m.headers).keys() >= {"partition", "offset", "reason"} for m in dead)
    # alerts: in the lake, on the alerts topic (keyed rule|dedup), and counted by rule and severity
    lake_alerts = con.execute("SELECT alert_id, rule_id, severity, dedup_key FROM alerts").fetchall()
    assert stats.alerts == len(lake_alerts) >= 3
    sent = read_topic(kafka.bootstrap, f"{topic}.alerts", expect=len(lake_alerts))
    assert sorted(json.loads(m.value)["alert_id"] for m in sent) == sorted(a[0] for a in lake_alerts)
    assert {m.key for m in sent} == {f"{a[1]}|{a[3] or ''}".encode() for a in lake_alerts}
    reg = processor.registry
    by_rule: dict[tuple[str, str], int] = {}
    for _, rule, severity, _ in lake_alerts:
        by_rule[(rule, severity)] = by_rule.get((rule, severity), 0) + 1
    for (rule, severity), n in by_rule.items():
        assert reg.get_sample_value("tetrapipe_process_alerts_total", {"rule_id": rule, "severity": severity}) == n
    assert reg.get_sample_value("tetrapipe_process_events_total") == len(good)
    assert reg.get_sample_value("tetrapipe_process_rejects_total") == 2
    assert reg.get_sample_value("tetrapipe_process_records_total") == len(lines)
    assert reg.get_sample_value("tetrapipe_process_batch_seconds_count") == stats.batches
    assert reg.get_sample_value("tetrapipe_process_table_processes") > 0
    con.close()
    # a second run finds everything already in the lake: nothing is written twice
    stats = Processor(cfg, Lake(lake), []).run()
    assert stats.records == 0
    assert _lake_summary(lake) == (len(good), len(good))


def _process_cmd(bootstrap: str, topic: str, lake: Path, group: str, *extra: str, rules: bool = False) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tetrapipe",
        "process",
        "--kafka",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--lake",
        str(lake),
        *([] if rules else ["--rules", "none"]),
        "--alerts-topic",
        "",
        "--dead-letter-topic",
        "",
        *FAST_GROUP_ARGS,
        *extra,
    ]


def test_kill_9_at_random_points_is_exactly_once(kafka: TansuBroker, topic: str, tmp_path: Path) -> None:
    """100,000 events and the scenario's attacks, SIGKILL mid-run 5 times, restart: every event and alert once.

    The shipped rules run, so each batch commits alerts and events (and
    rejects: poison lines are mixed in) as separate Delta commits: a kill
    lands before, between or after them. Ancestor chains must be intact too.
    """
    from tetrapipe.transforms.chain import build_transforms

    n = 100_000
    _create_topic(kafka.bootstrap, topic, 3)
    stream = tree_events(n)
    attacks = _scenario_lines()
    lines = list(stream.lines)
    for k in range(5):  # the attacks spread over the run, so alerts are committed all along
        at = (k + 1) * n // 6
        # the story in order, in 5 pieces: a chain rule matches steps that arrive out of order only within its
        # tolerance, so interleaving the pieces would make the alerts depend on where batches happen to end
        lines[at:at] = [*attacks[k * len(attacks) // 5 : (k + 1) * len(attacks) // 5], b"poison %d" % k]
    _produce(kafka.bootstrap, topic, lines, partitions=3)
    lake = tmp_path / "lake"
    # a restart waits for the killed member's session to expire before it gets partitions: keep it short
    short = ["--kafka-option", "session_timeout_ms=3000", "--kafka-option", "heartbeat_interval_ms=500"]
    cmd = _process_cmd(
        kafka.bootstrap,
        topic,
        lake,
        topic,
        "--exit-at-eof",
        "--batch-size",
        "4000",
        "--batch-seconds",
        "0.5",
        *short,
        rules=True,
    )
    rng = random.Random(7)
    seen: list[int] = []
    for k in range(5):
        before = _events_version(lake)
        with open(tmp_path / f"run-{k}.log", "wb") as log:  # (kept: says where each restart resumed)
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        # a restart first waits for the killed member's session to expire; kill only once this one commits
        _wait(
            lambda: _events_version(lake) > before or proc.poll() is not None,  # noqa: B023
            60,
            "the restarted processor to commit",
            every=0.05,
        )
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            seen.append(_lake_summary(lake)[0])
        proc.wait(timeout=30)
    mid_run = [c for c in seen if 0 < c < n]
    assert len(mid_run) >= 3, f"the processor must have been killed mid-run at least three times (lake sizes {seen})"
    assert mid_run == sorted(set(mid_run)), f"each restart must make progress (lake sizes {seen})"
    done = subprocess.run(cmd, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    good = n + sum(1 for line in attacks if line.startswith(b'{"process'))
    assert _lake_summary(lake) == (good, good)
    assert _lake_ids(lake) == _expected_ids(lines)
    assert [m for m in _ancestry_mismatches(lake, stream.ancestors) if m[0] in stream.ancestors] == []
    alerts = _alerts(lake)
    assert alerts
    con = connect(Lake(lake))
    try:
        rejects = con.execute("SELECT raw FROM rejects").fetchall()
    finally:
        con.close()
    assert sorted(r[0] for r in rejects) == [f"poison {k}" for k in range(5)]
    # the same alerts as one uninterrupted run over the same topic
    reference = tmp_path / "reference"
    cfg = ProcessorConfig(
        kafka.bootstrap,
        topic=topic,
        group=f"{topic}-ref",
        exit_at_eof=True,
        alerts_topic=None,
        dead_letter_topic=None,
        kafka_options=FAST_GROUP,
    )
    Processor(cfg, Lake(reference), build_transforms(None)[0]).run()
    assert alerts == _alerts(reference), "every alert once, each event counted once"


def test_sigterm_finishes_the_batch_and_exits_0(kafka: TansuBroker, topic: str, tmp_path: Path) -> None:
    _create_topic(kafka.bootstrap, topic, 1)
    lines = _synthetic(30_000, nodes=1)
    _produce(kafka.bootstrap, topic, lines)
    lake = tmp_path / "lake"
    cmd = _process_cmd(kafka.bootstrap, topic, lake, topic, "--exit-at-eof", "--batch-size", "2000")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait(lambda: _has_events(lake), 60, "a first commit of events")
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    assert proc.wait(timeout=30) == 0, proc.stderr.read().decode()[-2000:]
    assert time.monotonic() - t0 < 15
    partial, _ = _lake_summary(lake)
    assert 0 < partial <= len(lines)
    assert subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0
    assert _lake_summary(lake) == (len(lines), len(lines))


def test_two_replicas_with_a_rebalance_in_the_middle(kafka: TansuBroker, topic: str, tmp_path: Path) -> None:
    """A owns all 4 partitions and writes the first half; B joins (rebalance); the second half is split.

    The partitions handed to B carry processes A saw start: their second-half
    events only get full ancestor chains if B rebuilt the process table from
    the lake. Both replicas' /metrics, /healthz and /readyz are checked on the way.
    """
    n = 60_000
    _create_topic(kafka.bootstrap, topic, 4)
    stream = tree_events(n)
    half = n // 2
    _produce(kafka.bootstrap, topic, stream.lines[:half], partitions=4)
    lake = tmp_path / "lake"
    ports = {"a": _free_port(), "b": _free_port()}
    procs: dict[str, subprocess.Popen] = {}
    logs = {name: tmp_path / f"{name}.log" for name in ports}

    def start(name: str) -> None:
        cmd = _process_cmd(
            kafka.bootstrap,
            topic,
            lake,
            topic,
            "--batch-size",
            "2000",
            "--batch-seconds",
            "0.2",
            "--metrics-port",
            str(ports[name]),
        )
        with open(logs[name], "wb") as out:
            procs[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)

    def value(name: str, metric: str, **labels: str) -> float:
        try:
            return _metric(_scrape(ports[name]), metric, **labels) or 0.0
        except OSError:
            return 0.0

    try:
        start("a")
        _wait(lambda: value("a", "tetrapipe_process_events_total") == half, 60, "A to write the first half")
        assert value("a", "tetrapipe_process_assigned_partitions") == 4
        assert _status(ports["a"], "/readyz") == 200 and _status(ports["a"], "/healthz") == 200
        start("b")
        _wait(lambda: _status(ports["b"], "/readyz") == 200, 60, "B to join the group")
        _wait(lambda: value("a", "tetrapipe_process_assigned_partitions") < 4, 30, "A to give partitions up")
        _produce(kafka.bootstrap, topic, stream.lines[half:], partitions=4)
        _wait(
            lambda: value("a", "tetrapipe_process_events_total") + value("b", "tetrapipe_process_events_total") >= n,
            60,
            "both halves in the lake",
        )

        def lags() -> dict[str, float]:
            return {
                k[1][0][1] + "/" + name: v
                for name in ports
                for k, v in _scrape(ports[name]).items()
                if k[0] == "tetrapipe_process_consumer_lag"
            }

        _wait(lambda: (lag := lags()) and len(lag) == 4 and not any(lag.values()), 20, "consumer lag 0 everywhere")
        scraped = {name: _scrape(ports[name]) for name in ports}
        owned = {
            name: {dict(k[1])["partition"] for k in s if k[0] == "tetrapipe_process_lake_offset"}
            for name, s in scraped.items()
        }
        assert owned["a"] and owned["b"] and not owned["a"] & owned["b"] and len(owned["a"] | owned["b"]) == 4
        assert all(_metric(s, "tetrapipe_process_table_processes") > 0 for s in scraped.values())
        assert sum(_metric(s, "tetrapipe_process_events_total") for s in scraped.values()) == n
        # B wrote second-half events of partitions that A had started (A wrote all of the first half)
        assert _metric(scraped["b"], "tetrapipe_process_events_total") > 0
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            assert proc.wait(timeout=20) == 0, logs[name].read_text()[-2000:]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert _lake_summary(lake) == (n, n)
    assert _ancestry_mismatches(lake, stream.ancestors) == []


def test_a_second_replica_joining_while_the_first_writes_stores_each_event_once(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """The whole topic is there from the start; B joins the group while A is committing batches to the lake.

    The rebalance lands mid-batch: A writes what it holds in the revoke
    callback, B resumes each partition from the events table's position.
    Both exit once the whole topic is in the lake.
    """

    n = 40_000
    _create_topic(kafka.bootstrap, topic, 4)
    stream = tree_events(n)
    _produce(kafka.bootstrap, topic, stream.lines, partitions=4)
    lake = tmp_path / "lake"
    cmd = _process_cmd(
        kafka.bootstrap, topic, lake, topic, "--exit-at-eof", "--batch-size", "500", "--batch-seconds", "0.2"
    )
    two_replicas_one_joining_late(cmd, tmp_path, lambda: _events_version(lake), lambda: _lake_summary(lake)[0], n)
    assert _lake_summary(lake) == (n, n)
    assert _ancestry_mismatches(lake, stream.ancestors) == []


def test_broker_unreachable_for_a_while_then_back_is_exactly_once(tmp_path: Path) -> None:
    """Every connection to the broker is cut mid-stream for longer than the session timeout, then restored.

    The broker keeps its data (it sits behind a proxy that is cut, see
    tests/tcp_proxy.py): the processor must stay up, say it is not ready,
    rejoin its group when the broker is back and write every event once.
    """
    from kafka_broker import tansu_binary
    from tcp_proxy import TcpProxy

    proxy_port = _free_port()
    broker = TansuBroker(tansu_binary(), advertised_port=proxy_port, log_path=tmp_path / "tansu.log").start()
    proxy = TcpProxy(proxy_port, broker.port).up()
    proc = None
    try:
        topic, lake, port = "outage", tmp_path / "lake", _free_port()
        _create_topic(broker.bootstrap, topic, 2)
        lines = _synthetic(20_000)
        _produce(broker.bootstrap, topic, lines[:10_000], partitions=2)
        cmd = _process_cmd(broker.bootstrap, topic, lake, "outage", "--metrics-port", str(port), "--batch-size", "2000")
        err = tmp_path / "process.log"  # (a file, not a pipe: a full pipe would block the processor)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err.open("wb"))

        def in_lake() -> int:
            return _lake_summary(lake)[0] if _has_events(lake) else 0

        _wait(lambda: in_lake() == 10_000, 90, "the first half in the lake")
        _wait(lambda: _status(port, "/readyz") == 200, 10, "ready")
        proxy.down()
        _wait(lambda: _status(port, "/readyz") == 503, 30, "not ready while the broker is unreachable")
        time.sleep(8)  # past the 6 s session timeout: the group drops the member, a rejoin must follow
        assert proc.poll() is None, f"the processor must not exit while the broker is away: {err.read_text()[-3000:]}"
        assert _status(port, "/healthz") == 200  # alive, waiting: not a restart case
        proxy.up()
        _produce(broker.bootstrap, topic, lines[10_000:], partitions=2)
        _wait(lambda: in_lake() >= 20_000, 120, "the second half in the lake")
        _wait(lambda: _status(port, "/readyz") == 200, 30, "ready again")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, err.read_text()[-3000:]
        assert _lake_summary(lake) == (20_000, 20_000)
        assert _lake_ids(lake) == _expected_ids(lines)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        proxy.down()
        broker.stop()


def test_a_recreated_topic_is_detected_and_handled_by_policy(tmp_path: Path) -> None:
    """The lake holds offsets up to 299; the topic comes back empty and gets 120 new records.

    Default: stop with a message naming the partition and both offsets, count it in the metric, write nothing.
    ``earliest``: the new records land once, in a new epoch; a rerun finds nothing to do; status says it all.
    """
    import pytest
    from kafka_broker import tansu_binary

    from tetrapipe.flows.process import OffsetsMovedError
    from tetrapipe.lake.positions import kafka_committed_offsets, kafka_lake_positions
    from tetrapipe.sources.kafka import partition_status

    broker = TansuBroker(tansu_binary(), log_path=tmp_path / "tansu.log").start()
    try:
        topic, lake_dir = "recreated", tmp_path / "lake"
        lines = _synthetic(420)
        _create_topic(broker.bootstrap, topic, 1)
        _produce(broker.bootstrap, topic, lines[:300])

        def config(policy: str) -> ProcessorConfig:
            return ProcessorConfig(
                broker.bootstrap,
                topic=topic,
                group=f"g-{policy}-{time.monotonic_ns()}",
                exit_at_eof=True,
                alerts_topic=None,
                dead_letter_topic=None,
                kafka_options=FAST_GROUP,
                on_offset_reset=policy,
            )

        assert Processor(config("fail"), Lake(lake_dir), []).run().events == 300
        assert kafka_lake_positions(Lake(lake_dir), topic, [0]) == {0: (0, 299)}

        broker.stop()  # in-memory storage: the topic is gone, as after a delete and create
        broker.start()
        _create_topic(broker.bootstrap, topic, 1)
        _produce(broker.bootstrap, topic, lines[300:])
        assert (
            partition_status(
                broker.bootstrap, topic, "any", lambda parts: kafka_committed_offsets(Lake(lake_dir), topic, parts)
            )[0]["state"]
            == "lake ahead"
        )

        stopped = Processor(config("fail"), Lake(lake_dir), [])
        with pytest.raises(
            OffsetsMovedError,
            match=r"partition 0 of recreated: the lake holds offsets up to 299 "
            r"but the broker's end is \d+ \(topic deleted and created again\?",
        ):
            stopped.run()
        assert (
            stopped.registry.get_sample_value(
                "tetrapipe_process_offset_resets_total", {"topic": topic, "partition": "0", "reason": "lake_ahead"}
            )
            == 1
        )
        assert _lake_summary(lake_dir) == (300, 300), "nothing written when the policy is fail"

        assert Processor(config("earliest"), Lake(lake_dir), []).run().events == 120
        assert _lake_summary(lake_dir) == (420, 420)
        assert kafka_lake_positions(Lake(lake_dir), topic, [0]) == {0: (1, 119)}
        again = Processor(config("earliest"), Lake(lake_dir), [])
        assert again.run().records == 0, "the new epoch's position is where the next run resumes"
        assert (
            again.registry.get_sample_value(
                "tetrapipe_process_offset_resets_total", {"topic": topic, "partition": "0", "reason": "lake_ahead"}
            )
            is None
        )
        status = partition_status(
            broker.bootstrap, topic, "any", lambda parts: kafka_committed_offsets(Lake(lake_dir), topic, parts)
        )[0]
        assert (status["state"], status["lake_offset"], status["lag"]) == ("caught up", 119, 0)
        assert _lake_ids(lake_dir) == _expected_ids(lines)
    finally:
        broker.stop()


def test_one_poison_record_in_the_middle_of_a_partition_costs_only_itself(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """2,000 good events, a value of the wrong type and a record that is no event in the middle of one partition.

    Every good event lands once; the wrong-typed one is kept with the field NULL (its data is real); the
    record that is not an event goes to the rejects table and the dead-letter topic with its offset and reason;
    nothing stops the partition.
    """
    from kafka_broker import read_topic

    _create_topic(kafka.bootstrap, topic, 1)
    lines = _synthetic(2000, nodes=1)
    kprobe = next(json.loads(line) for line in lines if b'"process_kprobe"' in line)
    kprobe["process_kprobe"]["args"] = "notalist"
    kprobe["time"] = "2026-03-10T10:00:00.000000001Z"
    wrong_type = json.dumps(kprobe).encode()
    not_an_event = json.dumps(
        {"process_kprobe": "notanobject", "node_name": "node-0", "time": "2026-03-10T10:00:00Z"}
    ).encode()
    records = lines[:1000] + [wrong_type, not_an_event] + lines[1000:]
    _produce(kafka.bootstrap, topic, records)
    cfg = ProcessorConfig(
        kafka.bootstrap,
        topic=topic,
        group=topic,
        exit_at_eof=True,
        batch_max_records=5000,
        dead_letter_topic=f"{topic}.dlq",
        alerts_topic=None,
        kafka_options=FAST_GROUP,
    )
    stats = Processor(cfg, Lake(tmp_path / "lake"), []).run()
    assert (stats.records, stats.events, stats.rejects) == (2002, 2001, 1)
    con = connect(Lake(tmp_path / "lake"))
    try:
        ids = [r[0] for r in con.execute("SELECT event_id FROM events").fetchall()]
        kept = con.execute(
            "SELECT args, process_binary FROM events WHERE kind = 'process_kprobe' AND args IS NULL"
        ).fetchall()
        rejects = con.execute("SELECT source_offset, reason FROM rejects").fetchall()
    finally:
        con.close()
    assert len(ids) == len(set(ids)) == 2001 and set(ids) >= _expected_ids(lines)
    assert kept == [(None, kprobe["process_kprobe"]["process"]["binary"])]
    assert rejects == [(1001, "not a Tetragon event: process_kprobe is not an object")]
    dead = read_topic(kafka.bootstrap, f"{topic}.dlq", expect=1)
    assert [m.value for m in dead] == [not_an_event]
    assert dict(dead[0].headers)["offset"] == b"1001"


def test_a_record_without_a_value_in_a_partition_costs_only_itself(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """A tombstone (a record whose value is null: any producer can write one) crashed the micro-batch, every retry.

    Now it is a reject with its offset, and the events around it land once.
    """
    from kafka import KafkaProducer

    _create_topic(kafka.bootstrap, topic, 1)
    lines = _synthetic(300, nodes=1)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    for i, line in enumerate(lines):
        producer.send(topic, key=b"node-0", value=line)
        if i == 150:
            producer.send(topic, key=b"node-0", value=None)
    producer.flush()
    producer.close()
    cfg = ProcessorConfig(
        kafka.bootstrap, topic=topic, group=topic, exit_at_eof=True, alerts_topic=None, kafka_options=FAST_GROUP
    )
    stats = Processor(cfg, Lake(tmp_path / "lake"), []).run()
    assert (stats.records, stats.events, stats.rejects) == (301, 300, 1)
    con = connect(Lake(tmp_path / "lake"))
    try:
        ids = [r[0] for r in con.execute("SELECT event_id FROM events").fetchall()]
        rejects = con.execute("SELECT source_offset, reason FROM rejects").fetchall()
    finally:
        con.close()
    assert len(ids) == len(set(ids)) == 300 and set(ids) == _expected_ids(lines)
    assert rejects == [(151, "not a Tetragon event: a Kafka record without a value (a tombstone)")]


def test_events_a_restarted_collector_sends_again_are_stored_once(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """The collector delivers at least once: after its crash the topic holds a stretch of events twice."""
    _create_topic(kafka.bootstrap, topic, 2)
    lines = _synthetic(3000)
    _produce(kafka.bootstrap, topic, lines[:2000], partitions=2)
    _produce(kafka.bootstrap, topic, lines[1500:], partitions=2)  # 500 sent again, then the rest
    cfg = ProcessorConfig(
        kafka.bootstrap,
        topic=topic,
        group=topic,
        exit_at_eof=True,
        batch_max_records=700,
        alerts_topic=None,
        dead_letter_topic=None,
        kafka_options=FAST_GROUP,
    )
    stats = Processor(cfg, Lake(tmp_path / "lake"), []).run()
    assert (stats.records, stats.events, stats.duplicates) == (3500, 3000, 500)
    assert _lake_summary(tmp_path / "lake") == (3000, 3000)
    assert _lake_ids(tmp_path / "lake") == _expected_ids(lines)


class _Crash(BaseException):
    """What the process dies of in :class:`_CrashingLake` (not an Exception: nothing on the way catches it)."""


class _CrashingLake(Lake):
    """A real lake whose writer dies right after the Nth ``alerts`` commit it makes, before that batch's events.

    The Delta tables are left exactly as a kill at that instant leaves them:
    rejects and alerts hold the batch, tls_stats and events do not.
    """

    def __init__(self, root: Path, die_after: int) -> None:
        super().__init__(root)
        self.die_after = die_after

    def commit(self, name, rows, position=None, **kw):
        if self.die_after <= 0:  # dead: whatever the process would still do on its way out writes nothing
            raise _Crash("already dead")
        done = super().commit(name, rows, position, **kw)
        if name == "alerts" and done:
            self.die_after -= 1
            if self.die_after == 0:
                raise _Crash(f"killed after committing alerts up to {position}")
        return done


def test_a_batch_reconsumed_after_a_crash_between_commits_ends_where_the_committed_one_did(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """Rejects and alerts hold a batch that events does not: the restart re-forms it, never a batch across it.

    The restart reads with batches 20 times larger. Without the cap its first
    batch would reach past what rejects and alerts hold, they would commit it
    whole, and the re-read part would be in them twice.
    """
    import pytest

    from tetrapipe.lake.positions import kafka_app_id, kafka_lake_positions
    from tetrapipe.transforms.chain import build_transforms

    _create_topic(kafka.bootstrap, topic, 1)
    attacks = _scenario_lines()
    filler = _synthetic(10 * len(attacks), nodes=1)
    lines = []
    for k, chunk in enumerate(range(0, len(attacks), 8)):
        lines += [*attacks[chunk : chunk + 8], b"poison %d" % k, *filler[10 * k : 10 * k + 10]]
    _produce(kafka.bootstrap, topic, lines)

    def config(batch: int) -> ProcessorConfig:
        return ProcessorConfig(
            kafka.bootstrap,
            topic=topic,
            group=topic,
            exit_at_eof=True,
            batch_max_records=batch,
            batch_max_seconds=5,
            alerts_topic=None,
            dead_letter_topic=None,
            kafka_options=FAST_GROUP,
        )

    lake_dir = tmp_path / "lake"
    crashing = _CrashingLake(lake_dir, die_after=2)
    with pytest.raises(_Crash):
        Processor(config(15), crashing, build_transforms(None)[0]).run()
    app = kafka_app_id(topic, 0)
    held = {name: _txn_versions(lake_dir, name, app)[-1] for name in ("rejects", "alerts", "events")}
    assert held["rejects"] == held["alerts"] > held["events"], held  # the crash sits between alerts and events
    cap = held["alerts"]

    stats = Processor(config(300), Lake(lake_dir), build_transforms(None)[0]).run()
    assert stats.records == len(lines) - held["events"] - 1
    events_versions = _txn_versions(lake_dir, "events", app)
    assert cap in events_versions, f"the re-read batch must end where the committed one did ({events_versions})"
    assert kafka_lake_positions(Lake(lake_dir), topic, [0]) == {0: (0, len(lines) - 1)}
    good = _expected_ids([line for line in lines if not line.startswith(b"poison")])
    assert _lake_summary(lake_dir) == (len(good), len(good))
    assert _lake_ids(lake_dir) == good
    con = connect(Lake(lake_dir))
    try:
        rejects = sorted(r[0] for r in con.execute("SELECT raw FROM rejects").fetchall())
    finally:
        con.close()
    assert rejects == sorted(line.decode() for line in lines if line.startswith(b"poison"))
    alerts = _alerts(lake_dir)
    assert alerts
    # the same alerts as a run that never crashed
    clean = tmp_path / "clean"
    cfg = config(15)
    cfg.group = f"{topic}-clean"
    Processor(cfg, Lake(clean), build_transforms(None)[0]).run()
    assert alerts == _alerts(clean), "every alert once, each event counted once"


def two_replicas_one_joining_late(
    cmd: list[str], work: Path, events_version: Callable[[], int], stored: Callable[[], int], n: int
) -> dict[str, int]:
    """Replica A runs ``cmd``; once it has committed a few batches, B joins the group with the same ``cmd``.

    Both must exit 0 and both must have processed part of the topic; returns the records each processed.
    """
    procs: dict[str, subprocess.Popen] = {}
    logs = {name: work / f"{name}.log" for name in ("a", "b")}
    try:
        with open(logs["a"], "wb") as out:
            procs["a"] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _wait(lambda: events_version() >= 3, 60, "A to commit a few batches", every=0.05)
        assert stored() < n, "B must join mid-stream"
        with open(logs["b"], "wb") as out:
            procs["b"] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        for name, proc in procs.items():
            assert proc.wait(timeout=240) == 0, logs[name].read_text()[-3000:]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    done = {}
    for name, path in logs.items():
        m = re.search(r"processed ([\d,]+) records", path.read_text())
        assert m, path.read_text()[-2000:]
        done[name] = int(m[1].replace(",", ""))
    assert done["a"] > 0 and done["b"] > 0, f"both replicas wrote part of the topic ({done})"
    return done
