"""The Delta lake's promises, tried the hard way: kill -9 mid-file, two writers on one file, a real layout.

Each chunk of an input is committed with its position (a Delta app
transaction); a restart resumes from it and re-reads a half-committed chunk in
the same boundaries. These tests kill real ``tetrapipe`` processes at random
points (after the lake's first commit, a random wait later) and then check
that every event is in exactly once and the alerts are those of a clean
ingest.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import REPO
from deltalake import DeltaTable

from tetrapipe.flows.ingest import ingest, resume_point
from tetrapipe.lake import Lake, Position, connect
from tetrapipe.lake.positions import FILE_PREFIX
from tetrapipe.schema import SCHEMAS
from tetrapipe.sources.files import expand_inputs, fingerprint

SCENARIO = REPO / "samples" / "scenario" / "tenant-jobs.log"
SCENARIO_LINES = len(SCENARIO.read_text().splitlines())
CHUNK = "262144"
KILLS = 5


def _scenario_copies(path: Path, copies: int) -> Path:
    """The scenario log ``copies`` times, each 3 minutes later (new event ids; the rules fire again)."""
    src = SCENARIO.read_text().splitlines()
    with path.open("w") as out:
        for k in range(copies):
            for line in src:
                ev = json.loads(line)
                t = dt.datetime.fromisoformat(ev["time"].replace("Z", "+00:00")) + dt.timedelta(minutes=3 * k)
                ev["time"] = t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
                out.write(json.dumps(ev, separators=(",", ":")) + "\n")
    return path


def _query(lake: Path, sql: str) -> list[tuple]:
    con = connect(Lake(lake))
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()


def _alerts(lake: Path) -> Counter:
    return Counter(_query(lake, "SELECT alert_id, rule_id, time, last_time, count FROM alerts"))


def _commits(lake: Path) -> int:
    log = lake / "events" / "_delta_log"
    return len(list(log.glob("*.json"))) if log.is_dir() else 0


def _kill_at_random(cmd: list[str], lake: Path, rng: random.Random, budget: float) -> str:
    """Start ``cmd``, wait for the lake's first events commit, kill -9 after a random wait; what happened."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    start = _commits(lake)
    try:
        # readiness: a commit of this process's own (the table's creation counts on a fresh lake)
        ready = threading.Event()
        while not ready.wait(0.02):
            if _commits(lake) > start or proc.poll() is not None:
                ready.set()
        try:
            proc.wait(timeout=rng.uniform(0, budget))
            return "finished"
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
            return "killed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.parametrize("command", ["ingest", "run"])
def test_kill_9_at_random_points_then_a_full_run_stores_every_event_and_alert_once(
    tmp_path: Path, tetrapipe_cmd: list[str], command: str
) -> None:
    log = _scenario_copies(tmp_path / "tetragon.log", 48)
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    full = {
        "ingest": [*tetrapipe_cmd, "ingest", str(log), "-q", "--chunk-bytes", CHUNK],
        "run": [*tetrapipe_cmd, "run", str(log), "--exit-at-eof", "--poll-seconds", "0.05", "--chunk-bytes", CHUNK],
    }[command]
    started = time.monotonic()
    subprocess.run([*full, "--lake", str(clean)], check=True, capture_output=True, timeout=300)
    # kill within the first half of what a whole run takes on this machine, whatever its speed: a fixed
    # budget let every run finish first once commits got quicker
    budget = (time.monotonic() - started) / 2
    want_events = _query(clean, "SELECT count(*), count(DISTINCT event_id) FROM events")[0]
    want_alerts = _alerts(clean)
    assert want_events[0] == want_events[1] == SCENARIO_LINES * 48 and want_alerts
    rng = random.Random(15)
    fp = fingerprint(log.open("rb").readline().rstrip(b"\n"))
    outcomes = []
    for _ in range(KILLS):
        what = _kill_at_random([*full, "--lake", str(crashed)], crashed, rng, budget)
        lines, _bytes, ahead = resume_point(Lake(crashed), fp)
        outcomes.append(f"{what} at line {lines} (a table at {ahead})")
    print(command, outcomes)  # (the measured kill points, shown with -s)
    assert any(o.startswith("killed") and " at line 0 " not in o for o in outcomes)
    subprocess.run([*full, "--lake", str(crashed)], check=True, capture_output=True, timeout=300)
    got = _query(crashed, "SELECT count(*), count(DISTINCT event_id) FROM events")[0]
    assert got == want_events, outcomes
    assert set(_query(crashed, "SELECT event_id FROM events")) == set(_query(clean, "SELECT event_id FROM events"))
    assert _alerts(crashed) == want_alerts, outcomes


def test_two_concurrent_ingests_of_one_file_store_each_event_once(tmp_path: Path, tetrapipe_cmd: list[str]) -> None:
    log = _scenario_copies(tmp_path / "tetragon.log", 16)
    lake = tmp_path / "lake"
    cmd = [*tetrapipe_cmd, "ingest", str(log), "--lake", str(lake), "-q", "--chunk-bytes", CHUNK]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode() if p.stderr else ""
    n, distinct = _query(lake, "SELECT count(*), count(DISTINCT event_id) FROM events")[0]
    assert n == distinct == SCENARIO_LINES * 16
    fp = fingerprint(log.open("rb").readline().rstrip(b"\n"))
    assert Lake(lake).committed("events", FILE_PREFIX + fp) == SCENARIO_LINES * 16


def test_ingest_of_the_samples_makes_delta_tables_that_deltalake_and_query_agree_on(
    tmp_path: Path, tetrapipe_cmd: list[str]
) -> None:
    lake = tmp_path / "lake"
    subprocess.run(
        [*tetrapipe_cmd, "ingest", str(REPO / "samples"), "--lake", str(lake), "-q"], check=True, capture_output=True
    )
    tables = [t for t in SCHEMAS if (lake / t).exists()]
    assert {"events", "alerts"} <= set(tables)
    for t in tables:
        assert (lake / t / "_delta_log").is_dir()
        q = subprocess.run(
            [*tetrapipe_cmd, "query", f"SELECT count(*) AS n FROM {t}", "--lake", str(lake), "--format", "json"],
            check=True,
            capture_output=True,
        )
        assert json.loads(q.stdout)[0]["n"] == DeltaTable(str(lake / t)).count() > 0


def _rejects(offsets: list[int]) -> pa.Table:
    schema = SCHEMAS["rejects"]
    n = len(offsets)
    cols = {f.name: pa.nulls(n, f.type) for f in schema}
    cols["time"] = pa.array([dt.datetime(2024, 5, 1)] * n, schema.field("time").type)
    cols["source_offset"] = pa.array(offsets, pa.int64())
    return pa.table(cols, schema=schema)


def test_a_commit_the_table_holds_is_skipped_and_an_overlap_adds_only_what_is_new(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    assert lake.commit("rejects", _rejects([1, 2, 3]), Position("file:x", 3), offset_column="source_offset")
    assert not lake.commit("rejects", _rejects([1, 2, 3]), Position("file:x", 3), offset_column="source_offset")
    assert lake.commit("rejects", _rejects([2, 3, 4, 5]), Position("file:x", 5), offset_column="source_offset")
    offsets = sorted(lake.dataset("rejects").to_table().column("source_offset").to_pylist())
    assert offsets == [1, 2, 3, 4, 5]
    assert lake.committed("rejects", "file:x") == 5
    assert lake.table("rejects", version=1).transaction_version("file:x") == 3  # time travel


def test_commits_from_many_threads_each_land_once(tmp_path: Path) -> None:
    """Writers with stale snapshots of one app id: CommitFailedError, reload, skip or retry; never twice."""
    root = tmp_path / "lake"
    errors: list[BaseException] = []

    def writer() -> None:
        lake = Lake(root)  # (a Lake of its own: one process's commits are serialized, several processes' are not)
        try:
            for k in range(8):
                lake.commit("rejects", _rejects(list(range(k * 5, k * 5 + 5))), Position("file:y", k * 5 + 4))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    offsets = Lake(root).dataset("rejects").to_table().column("source_offset").to_pylist()
    assert sorted(offsets) == list(range(40))


def test_a_delta_lake_is_owner_only_under_a_wide_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        lake = Lake(tmp_path / "made" / "lake")
        ingest(expand_inputs([str(SCENARIO)]), lake)
    finally:
        os.umask(old)
    loose = [p for p in (tmp_path / "made").rglob("*") if p.stat().st_mode & 0o077]
    assert loose == []
