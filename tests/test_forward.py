"""What is forwarded where: route filters, the router, and ``tetrapipe forward`` from JSON lines and the lake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from conftest import REPO, SAMPLES
from hec_receiver import HecReceiver

from tetrapipe.formats import to_native
from tetrapipe.sinks.siem import Route, RouteFilter, Router
from tetrapipe.sinks.siem.base import DeliveringSink, Delivery


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fwd") / "lake"
    subprocess.run(
        [sys.executable, "-m", "tetrapipe", "ingest", str(SAMPLES), "--lake", str(path), "-q"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return path


@pytest.fixture(scope="module")
def tables(lake: Path) -> dict[str, pa.Table]:
    from tetrapipe.lake import connect

    con = connect(str(lake))
    try:
        return {t: con.sql(f"SELECT * FROM {t} ORDER BY time").to_arrow_table() for t in ("events", "alerts")}
    finally:
        con.close()


class Collect(DeliveringSink):
    """A sink that keeps what it is given (the router's contract, without a network peer)."""

    def __init__(self, name: str) -> None:
        super().__init__(name, Delivery(batch_size=10_000, linger_seconds=0.0))
        self.got: list[dict[str, Any]] = []

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        self.got.extend(records)


FILTERS = [
    {},
    {"kinds": ["process_exec", "process_connect"]},
    {"exclude_kinds": ["process_exec"], "namespaces": ["tenant-*"]},
    {"namespaces": ["(host)"]},
    {"exclude_namespaces": ["kube-system", "tenant-jobs"]},
    {"min_severity": "high"},
    {"rules": ["*shell*"], "exclude_rules": ["*reverse*"]},
]


@pytest.mark.parametrize("filters", FILTERS)
def test_arrow_filter_and_row_filter_agree(tables: dict[str, pa.Table], filters: dict[str, Any]) -> None:
    """The router filters Arrow batches column-wise and JSON rows one by one: same selection."""
    f = RouteFilter.from_config(filters)
    for name, key in (("events", "event_id"), ("alerts", "alert_id")):
        table = tables[name]
        by_arrow = set(f.apply(table, alerts=name == "alerts").column(key).to_pylist())
        rows = [orjson.loads(orjson.dumps(to_native(r))) for r in table.to_pylist()]
        by_rows = {r[key] for r in rows if f.match(r)}
        assert by_arrow == by_rows, (name, filters)
        if filters and name == ("alerts" if {"min_severity", "rules"} & filters.keys() else "events"):
            assert 0 < len(by_arrow) < table.num_rows, f"filter {filters} should select some {name}, not all"


def test_filter_semantics(tables: dict[str, pa.Table]) -> None:
    events, alerts = tables["events"], tables["alerts"]
    execs = RouteFilter(kinds=["process_exec"]).apply(events, alerts=False)
    assert set(execs.column("kind").to_pylist()) == {"process_exec"}
    host = RouteFilter(namespaces=["(host)"]).apply(events, alerts=False)
    assert host.num_rows and set(host.column("namespace").to_pylist()) == {None}
    high = RouteFilter(min_severity="high").apply(alerts, alerts=True)
    assert high.num_rows and set(high.column("severity").to_pylist()) <= {"high", "critical"}
    # kinds apply to events only: an alert filter on kinds keeps every alert
    assert RouteFilter(kinds=["process_exec"]).apply(alerts, alerts=True).num_rows == alerts.num_rows


def test_router_forward_modes_and_counts(tables: dict[str, pa.Table]) -> None:
    sinks = {m: Collect(m) for m in ("alerts", "events", "all")}
    router = Router([Route(m, sinks[m], format="ocsf", forward=m) for m in sinks])
    router.handle(alerts=tables["alerts"], events=tables["events"])
    router.close()
    n_alerts, n_events = tables["alerts"].num_rows, tables["events"].num_rows
    assert {r["class_uid"] for r in sinks["alerts"].got} == {2004} and len(sinks["alerts"].got) == n_alerts
    assert len(sinks["events"].got) == n_events and 2004 not in {r["class_uid"] for r in sinks["events"].got}
    assert len(sinks["all"].got) == n_alerts + n_events
    stats = router.stats()
    assert stats["all"]["routed_alerts"] == n_alerts and stats["all"]["routed_events"] == n_events
    assert stats["alerts"]["delivered"] == n_alerts


def test_a_broken_sink_does_not_starve_the_others(tables: dict[str, pa.Table]) -> None:
    class Broken(Collect):
        def send(self, records: list[dict[str, Any]]) -> None:
            raise RuntimeError("bug")

    good, bad = Collect("good"), Broken("bad")
    router = Router([Route("bad", bad), Route("good", good)])
    router.handle(alerts=tables["alerts"])
    assert len(good.got) == tables["alerts"].num_rows
    assert router.stats()["bad"]["dropped"] == tables["alerts"].num_rows  # counted, and logged


def test_route_rejects_unknown_forward_mode() -> None:
    with pytest.raises(ValueError, match="alerts, events or all"):
        Route("x", Collect("x"), forward="everything")


# --- the command ----------------------------------------------------------------------------------


def _run(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TETRAPIPE_")} | {"PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "tetrapipe", "forward", *args],
        capture_output=True,
        input=stdin,
        env=full | (env or {}),
        timeout=120,
    )


def _native_lines(tables: dict[str, pa.Table]) -> bytes:
    rows = tables["alerts"].to_pylist() + tables["events"].to_pylist()
    return b"".join(orjson.dumps(to_native(r)) + b"\n" for r in rows)


def test_forward_json_lines_to_files_with_filters(tables: dict[str, pa.Table], tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_bytes(_native_lines(tables))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""\
spool_dir: {tmp_path / "spool"}
sinks:
  - {{name: alerts, type: file, format: ecs, forward: alerts, options: {{path: {tmp_path / "alerts.jsonl"}}}}}
  - name: execs
    type: file
    format: ocsf
    forward: events
    filters: {{kinds: [process_exec], namespaces: [tenant-jobs]}}
    options: {{path: {tmp_path / "execs.jsonl"}}}
  - {{name: off, type: stdout, enabled: false}}
""")
    res = _run("--config", str(cfg), str(tmp_path / "in.jsonl"))
    assert res.returncode == 0, res.stderr.decode()
    alerts = [orjson.loads(x) for x in (tmp_path / "alerts.jsonl").read_bytes().splitlines()]
    assert len(alerts) == tables["alerts"].num_rows and all(a["event"]["kind"] == "alert" for a in alerts)
    execs = [orjson.loads(x) for x in (tmp_path / "execs.jsonl").read_bytes().splitlines()]
    want = [r for r in tables["events"].to_pylist() if r["kind"] == "process_exec" and r["namespace"] == "tenant-jobs"]
    assert sorted(e["metadata"]["uid"] for e in execs) == sorted(r["event_id"] for r in want) and want
    assert b"stdout" not in res.stdout  # the disabled sink printed nothing


def test_forward_from_stdin_reports_bad_lines(tmp_path: Path, tables: dict[str, pa.Table]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"spool_dir: {tmp_path / 'spool'}\nsinks:\n  - {{name: console, type: stdout, format: native}}\n")
    row = orjson.dumps(to_native(tables["alerts"].to_pylist()[0]))
    res = _run("--config", str(cfg), stdin=row + b"\nnot json\n[1]\n")
    assert res.returncode == 1
    assert [orjson.loads(x)["alert_id"] for x in res.stdout.splitlines()] == [
        tables["alerts"].to_pylist()[0]["alert_id"]
    ]
    assert b"-:2: skipped, not a JSON object" in res.stderr and b"2 unreadable line(s) skipped" in res.stderr


def test_forward_spools_when_the_siem_is_down_and_sends_next_run(tables: dict[str, pa.Table], tmp_path: Path) -> None:
    port_holder = HecReceiver(token="t").start()
    port = port_holder.port
    port_holder.stop()
    (tmp_path / "in.jsonl").write_bytes(_native_lines(tables))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""\
spool_dir: {tmp_path / "spool"}
sinks:
  - name: splunk
    type: hec
    options: {{url: "http://127.0.0.1:{port}", token: t, timeout_seconds: 1}}
    delivery: {{backoff_initial_seconds: 0.05, backoff_max_seconds: 0.2}}
""")
    n = tables["alerts"].num_rows
    down = _run("--config", str(cfg), "--drain-timeout", "0.5", str(tmp_path / "in.jsonl"))
    assert down.returncode == 1
    assert f"spooled {n}, dropped 0, rejected 0; in spool {n}".encode() in down.stderr
    hec = HecReceiver(token="t", port=port).start()
    try:
        up = _run("--config", str(cfg), "/dev/null")
        assert up.returncode == 0, up.stderr.decode()
        assert sorted(e["alert_id"] for e in hec.payloads()) == sorted(tables["alerts"].column("alert_id").to_pylist())
    finally:
        hec.stop()


def test_forward_from_lake(lake: Path, tables: dict[str, pa.Table], tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"lake: {lake}\nspool_dir: {tmp_path / 'spool'}\nsinks:\n"
        f"  - {{name: f, type: file, forward: all, options: {{path: {tmp_path / 'out.jsonl'}}}}}\n"
    )
    res = _run("--config", str(cfg), "--from-lake", "--table", "all")
    assert res.returncode == 0, res.stderr.decode()
    out = [orjson.loads(x) for x in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert len(out) == tables["alerts"].num_rows + tables["events"].num_rows
    assert {r["record_type"] for r in out} == {"alert", "event"}


def test_forward_usage_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sinks:\n  - {name: a, type: stdout}\n")
    res = _run("--config", str(cfg), "--sink", "nope", "/dev/null")
    assert res.returncode == 2 and b"no sink named nope" in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("sinks:\n  - {name: a, type: smtp}\n")
    res = _run("--config", str(bad), "/dev/null")
    assert res.returncode == 2 and f"{bad}:2:".encode() in res.stderr
    res = _run("--config", str(cfg), "--from-kafka")
    assert res.returncode == 2 and b"--from-kafka needs" in res.stderr


def test_forward_never_prints_a_sink_urls_password(tables: dict[str, pa.Table], tmp_path: Path) -> None:
    """A webhook that is down, its URL with user:password@: the forwarder's logs and summary name the host only."""
    closed = HecReceiver(token="t").start()
    port = closed.port
    closed.stop()
    (tmp_path / "in.jsonl").write_bytes(_native_lines(tables))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""\
spool_dir: {tmp_path / "spool"}
sinks:
  - name: soar
    type: webhook
    options: {{url: "http://alice:hunter2@127.0.0.1:{port}/hooks/T000", timeout_seconds: 1}}
    delivery: {{backoff_initial_seconds: 0.05, backoff_max_seconds: 0.2}}
""")
    res = _run("--config", str(cfg), "--drain-timeout", "0.5", str(tmp_path / "in.jsonl"))
    assert res.returncode == 1  # spooled, not delivered
    stderr = res.stderr.decode()
    assert f"webhook 127.0.0.1:{port}: ConnectionRefusedError" in stderr and "peer unreachable" in stderr
    assert "hunter2" not in stderr and "alice" not in stderr
    shown = subprocess.run(
        [sys.executable, "-m", "tetrapipe", "config", "show", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert f"http://alice:***@127.0.0.1:{port}/***" in shown.stdout and "hunter2" not in shown.stdout
