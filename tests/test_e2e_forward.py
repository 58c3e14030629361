"""End to end, every component a real process: sample log -> ``tetrapipe collect`` -> broker ->
``tetrapipe process`` -> alerts topic -> ``tetrapipe forward`` -> rsyslogd and a HEC server.

The bar: every alert the sample raises arrives exactly once at each SIEM, in the
format its sink chose (OCSF at HEC, ECS at syslog), also when both SIEMs are
down while the forwarder runs and come back later.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SAMPLES
from hec_receiver import HecReceiver
from syslog_server import Rsyslog, rsyslogd

SAMPLE = SAMPLES / "scenario" / "tenant-jobs.log"
TOKEN = "e2e-token"
FAST_GROUP = {"session_timeout_ms": 6000, "max_poll_interval_ms": 20000, "heartbeat_interval_ms": 1000}


def _env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("TETRAPIPE_")}, "PYTHONPATH": str(REPO)}


def _tp(*args: str) -> list[str]:
    return [sys.executable, "-m", "tetrapipe", *args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def expected_alerts(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The alert ids the sample raises, from a batch ingest of the same file with the same rules."""
    from tetrapipe.lake import connect

    lake = tmp_path_factory.mktemp("expected") / "lake"
    subprocess.run(
        _tp("ingest", str(SAMPLE), "--lake", str(lake), "-q"), check=True, capture_output=True, env=_env(), timeout=120
    )
    con = connect(str(lake))
    try:
        ids = {r[0] for r in con.execute("SELECT alert_id FROM alerts").fetchall()}
    finally:
        con.close()
    assert len(ids) >= 5
    return ids


@pytest.fixture(scope="module")
def alerts_topic(kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory, expected_alerts: set[str]) -> str:
    """Run collect and process once: the sample's alerts land on a fresh alerts topic."""
    if not kafka_broker.running:
        kafka_broker.start()
    work = tmp_path_factory.mktemp("pipeline")
    suffix = str(int(time.time() * 1000))
    events, alerts = f"e2e-events-{suffix}", f"e2e-alerts-{suffix}"
    collect = subprocess.run(
        _tp(
            "collect",
            f"file://{SAMPLE}",
            "--kafka",
            kafka_broker.bootstrap,
            "--topic",
            events,
            "--from",
            "beginning",
            "--state-dir",
            str(work / "state"),
            "--metrics-port",
            "0",
            "--exit-at-eof",
            "--stats-interval",
            "0",
        ),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert collect.returncode == 0, collect.stderr[-3000:]
    fast = [a for k, v in FAST_GROUP.items() for a in ("--kafka-option", f"{k}={v}")]
    process = subprocess.run(
        _tp(
            "process",
            "--kafka",
            kafka_broker.bootstrap,
            "--topic",
            events,
            "--group",
            f"p-{suffix}",
            "--alerts-topic",
            alerts,
            "--dead-letter-topic",
            "",
            "--lake",
            str(work / "lake"),
            "--exit-at-eof",
            *fast,
        ),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=180,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return alerts


def config_head(spool: Path, bootstrap: str, topic: str, options: dict) -> str:
    """A forward configuration's first lines: its spool, and the alerts topic it reads; its ``sinks:`` follow."""
    return f"""\
version: 1
spool_dir: {spool}
kafka:
  bootstrap: {bootstrap}
  alerts_topic: {topic}
  options: {json.dumps(options)}
sinks:
"""


def _config(path: Path, bootstrap: str, topic: str, hec_port: int, syslog_port: int, spool: Path) -> Path:
    path.write_text(
        config_head(spool, bootstrap, topic, FAST_GROUP)
        + f"""\
  - name: splunk
    type: hec
    format: ocsf
    forward: alerts
    options:
      url: http://127.0.0.1:{hec_port}
      token: ${{HEC_TOKEN}}
      ack: true
      ack_poll_seconds: 0.1
      timeout_seconds: 2
    delivery: {{batch_size: 7, linger_seconds: 0.2, backoff_initial_seconds: 0.2, backoff_max_seconds: 1}}
  - name: syslog
    type: syslog
    format: ecs
    forward: alerts
    options:
      port: {syslog_port}
      protocol: tcp
      facility: local3
    delivery: {{batch_size: 5, linger_seconds: 0.2, backoff_initial_seconds: 0.2, backoff_max_seconds: 1}}
"""
    )
    return path


def _forward(config: Path, group: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _tp("forward", "--config", str(config), "--from-kafka", "--group", group, "--exit-at-eof", *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**_env(), "HEC_TOKEN": TOKEN},
    )


def _ocsf_ids(hec: HecReceiver) -> list[str]:
    out = []
    for ev in hec.payloads():
        assert ev["class_uid"] == 2004 and ev["type_uid"] == 200401 and ev["metadata"]["version"]
        out.append(ev["finding_info"]["uid"])
    return out


def _ecs_ids(rs: Rsyslog) -> list[str]:
    out = []
    for m in rs.received():
        doc = json.loads(m.msg.strip())
        assert doc["event"]["kind"] == "alert" and doc["ecs"]["version"] and m.msgid == "alert"
        assert m.pri // 8 == 19  # local3
        out.append(doc["event"]["id"])
    return out


def _need_rsyslog() -> None:
    if rsyslogd() is None:
        pytest.fail("rsyslogd is not installed: apt-get install rsyslog rsyslog-openssl (.ci/run does)")


def test_sample_alerts_arrive_once_at_each_siem(
    alerts_topic: str, kafka_broker: Any, expected_alerts: set[str], tmp_path: Path
) -> None:
    _need_rsyslog()
    hec = HecReceiver(token=TOKEN, ack=True).start()
    rs = Rsyslog(tmp_path / "rsyslog").start()
    metrics_port = _free_port()
    try:
        cfg = _config(
            tmp_path / "tetrapipe.yaml", kafka_broker.bootstrap, alerts_topic, hec.port, rs.tcp_port, tmp_path / "spool"
        )
        proc = _forward(cfg, "fwd-once", "--metrics-port", str(metrics_port))
        scraped = _scrape_while_running(proc, metrics_port)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        got_hec = _ocsf_ids(hec)
        rs.wait_for(len(expected_alerts))
        got_syslog = _ecs_ids(rs)
    finally:
        hec.stop()
        rs.stop()
    assert sorted(got_hec) == sorted(expected_alerts)  # every alert, exactly once
    assert sorted(got_syslog) == sorted(expected_alerts)
    n = len(expected_alerts)
    assert f"splunk: routed {n} alert(s), 0 event(s); delivered {n}" in err
    assert "dropped 0, rejected 0; in spool 0" in err
    assert scraped["healthz"] == 200
    assert 'tetrapipe_sink_records_total{outcome="delivered",sink="splunk"}' in scraped["metrics"]


def _scrape_while_running(proc: subprocess.Popen[str], port: int) -> dict[str, Any]:
    """/healthz and /metrics of the running forwarder (the last good scrape before it exits)."""
    got: dict[str, Any] = {"healthz": None, "metrics": ""}
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                got["healthz"] = r.status
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                got["metrics"] = r.read().decode()
        except OSError:
            pass
        time.sleep(0.2)
    return got


def test_siems_down_then_back_nothing_lost(
    alerts_topic: str, kafka_broker: Any, expected_alerts: set[str], tmp_path: Path
) -> None:
    _need_rsyslog()
    hec_port = _free_port()
    hec = HecReceiver(token=TOKEN, ack=True, port=hec_port)  # not started: the SIEM is down
    rs = Rsyslog(tmp_path / "rsyslog")  # ports reserved, daemon not running
    cfg = _config(
        tmp_path / "tetrapipe.yaml", kafka_broker.bootstrap, alerts_topic, hec_port, rs.tcp_port, tmp_path / "spool"
    )
    proc = _forward(cfg, "fwd-outage", "--drain-timeout", "60")
    try:
        # the forwarder consumes everything and spools it while both SIEMs are unreachable
        spool = tmp_path / "spool"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            _spooled(spool / "splunk") >= len(expected_alerts) and _spooled(spool / "syslog") >= len(expected_alerts)
        ):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.2)
        assert _spooled(spool / "splunk") >= len(expected_alerts), "alerts were not spooled during the outage"
        time.sleep(1.0)  # down for a while: probes fail, backoff grows
        hec.start()
        rs.start()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        got_hec = _ocsf_ids(hec)
        rs.wait_for(len(expected_alerts))
        got_syslog = _ecs_ids(rs)
    finally:
        if proc.poll() is None:
            proc.kill()
        hec.stop()
        rs.stop()
    assert sorted(got_hec) == sorted(expected_alerts)
    assert sorted(got_syslog) == sorted(expected_alerts)
    assert "dropped 0, rejected 0; in spool 0" in err


def _spooled(directory: Path) -> int:
    """Records written to a sink's spool so far (segments are JSON lines; replay deletes them later)."""
    if not directory.exists():
        return 0
    return sum(p.read_bytes().count(b"\n") for p in directory.glob("*.jsonl") if p.stem.isdigit())


def test_sigterm_mid_delivery_then_restart_delivers_everything_once(
    alerts_topic: str, kafka_broker: Any, expected_alerts: set[str], tmp_path: Path
) -> None:
    """SIGTERM while a slow SIEM is still taking batches: exit 0 without losing what was read.

    What was consumed is delivered, or spooled once the drain timeout is up,
    before the offsets are committed; the next run sends the spool first, then
    reads the topic from the committed offsets: each alert once.
    """
    hec = HecReceiver(token=TOKEN, ack=True).start()
    hec.delay = 0.4  # a busy indexer: each batch of 2 takes a while
    cfg = tmp_path / "tetrapipe.yaml"
    cfg.write_text(f"""\
version: 1
spool_dir: {tmp_path / "spool"}
kafka: {{bootstrap: "{kafka_broker.bootstrap}", alerts_topic: {alerts_topic}, options: {json.dumps(FAST_GROUP)}}}
sinks:
  - name: splunk
    type: hec
    format: ocsf
    options: {{url: "http://127.0.0.1:{hec.port}", token: "${{HEC_TOKEN}}", ack: true, ack_poll_seconds: 0.1}}
    delivery: {{batch_size: 2, linger_seconds: 0.05}}
""")
    try:
        proc = _forward(cfg, "fwd-sigterm", "--drain-timeout", "1")  # then what is left goes to the spool
        assert hec.wait_for(1, timeout=60), "no first delivery"
        hec.fail_next(10_000, 503)  # and now the indexer is busy: what is left cannot be delivered
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
        assert time.monotonic() - t0 < 30
        first = _ocsf_ids(hec)
        assert 0 < len(first) < len(expected_alerts), "SIGTERM should have landed mid-delivery"
        assert _spooled(tmp_path / "spool" / "splunk") == len(expected_alerts) - len(first)
        hec.delay = 0.0
        hec.recover()
        rest = _forward(cfg, "fwd-sigterm")
        _, err = rest.communicate(timeout=120)
        assert rest.returncode == 0, err[-3000:]
        got = _ocsf_ids(hec)
    finally:
        hec.stop()
    assert sorted(got) == sorted(expected_alerts)  # nothing lost, nothing twice
    assert "dropped 0, rejected 0; in spool 0" in err
