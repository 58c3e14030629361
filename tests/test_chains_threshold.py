"""Threshold and distinct-count rules: counted across micro-batches and restarts, live equal to the backtest."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from conftest import REPO
from test_chains import T0, _exec

from tetrapipe.flows.ingest import ingest
from tetrapipe.flows.transforms import restore_transforms
from tetrapipe.lake import Lake, connect
from tetrapipe.ruleset import load_ruleset
from tetrapipe.ruleset.backtest import backtest
from tetrapipe.sources.files import expand_inputs
from tetrapipe.transforms.chain import build_transforms

RULE = "exec-burst-in-container"


def bursts(n: int) -> tuple[list[str], int]:
    """``n`` one-minute bursts in one container, 3 s apart: burst ``i`` runs ``18 + i % 5`` distinct binaries
    (those with 20 or more fire). Returns the lines and how many bursts should alert."""
    lines, firing = [], 0
    for i in range(n):
        start = T0 + dt.timedelta(minutes=2 * i)
        k = 18 + i % 5
        firing += k >= 20
        for j in range(k):
            t = start + dt.timedelta(seconds=2 * j)
            lines.append(_exec(t, 200_000 + 100 * i + j, f"/usr/bin/tool{j}", "", 200_000 + 100 * i, "/bin/sh"))
            # the same binary again: counted as an event, not as a new distinct value
            lines.append(_exec(t + dt.timedelta(seconds=1), 200_050 + 100 * i + j, "/usr/bin/tool0", "", 1, "/bin/sh"))
    return lines, firing


def _ingest(log: Path, lake: Lake, chunk_bytes: int) -> None:
    transforms, _ = build_transforms(REPO / "rules")
    restore_transforms(transforms, lake)
    ingest(expand_inputs([str(log)]), lake, transforms=transforms, chunk_bytes=chunk_bytes)


def _folded(lake: Lake) -> list[tuple]:
    """Stored alert rows of the rule folded by id: (id, total count, first time, last time, first row's ids)."""
    con = connect(lake)
    try:
        return con.execute(
            "SELECT alert_id, sum(count)::BIGINT, min(time), max(last_time), "
            "arg_min(event_ids, time) FROM alerts WHERE rule_id = ? GROUP BY alert_id ORDER BY alert_id",
            [RULE],
        ).fetchall()
    finally:
        con.close()


def _backtested(lake: Lake) -> list[tuple]:
    rs = load_ruleset([REPO / "rules"])
    table = backtest(lake, [rs.get(RULE)]).sort_by("alert_id")
    return [(r["alert_id"], r["count"], r["time"], r["last_time"], r["event_ids"]) for r in table.to_pylist()]


@pytest.mark.parametrize("chunk_bytes", [1 << 20, 8192])
def test_bursts_counted_across_micro_batches_fire_once_with_the_backtests_totals(
    tmp_path: Path, chunk_bytes: int
) -> None:
    lines, firing = bursts(10)
    log = tmp_path / "tetragon.log"
    log.write_text("\n".join(lines) + "\n")
    lake = Lake(tmp_path / "lake")
    _ingest(log, lake, chunk_bytes)
    got = _folded(lake)
    assert len(got) == firing == 6
    assert all(count >= 40 for _id, count, *_ in got)  # every run of the window counted, not only the 20th
    assert got == _backtested(lake)


def test_a_burst_split_by_a_restart_still_fires_once(tmp_path: Path) -> None:
    lines, firing = bursts(5)
    log = tmp_path / "tetragon.log"
    lake = Lake(tmp_path / "lake")
    cut = len(lines) // 2 + 7  # inside a firing burst: its first part is counted before the restart
    log.write_text("\n".join(lines[:cut]) + "\n")
    _ingest(log, lake, 4096)
    before = _folded(lake)
    with log.open("a") as f:
        f.write("\n".join(lines[cut:]) + "\n")
    _ingest(log, lake, 4096)
    got = _folded(lake)
    assert len(got) == firing and len(before) < firing
    assert got == _backtested(lake)


def test_threshold_mistakes_are_reported_at_their_line(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "id: t\ntitle: t\ndescription: d\nseverity: low\nevent: process_exec\ncondition: 'true'\n"
        "output: x\nthreshold:\n  count: 0\n  by: [container_id]\n"
    )
    rs = load_ruleset([tmp_path])
    assert [(i.line, i.reason) for i in rs.errors] == [(9, "threshold needs count: a number >= 1")]
    (tmp_path / "r.yaml").write_text(
        "id: t\ntitle: t\ndescription: d\nseverity: low\nevent: process_exec\ncondition: 'true'\n"
        "output: x\nthreshold:\n  count: 3\n  distinct: binaryy\n"
    )
    rs = load_ruleset([tmp_path])
    assert len(rs.errors) == 1 and "unknown column binaryy" in rs.errors[0].reason


def test_the_hunt_query_of_a_threshold_rule_finds_the_alerted_windows(tmp_path: Path) -> None:
    from tetrapipe.ruleset.plan import threshold_hunt_sql

    lines, firing = bursts(5)
    log = tmp_path / "tetragon.log"
    log.write_text("\n".join(lines) + "\n")
    lake = Lake(tmp_path / "lake")
    _ingest(log, lake, 1 << 20)
    con = connect(lake)
    try:
        rows = con.execute(threshold_hunt_sql(load_ruleset([REPO / "rules"]).get(RULE)).rstrip(";")).fetchall()
    finally:
        con.close()
    assert sorted((n, first, last) for _k, _w, n, _c, first, last in rows) == sorted(
        (count, t, last) for _id, count, t, last, _ids in _folded(lake)
    )
    assert len(rows) == firing
