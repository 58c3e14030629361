"""First-seen rules: a learning period per key, the same live, after a restart, in a backtest and in the hunt."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

from conftest import REPO
from test_chains import T0, _exec

from tetrapipe.flows.ingest import ingest
from tetrapipe.flows.transforms import restore_transforms
from tetrapipe.lake import Lake, connect, saved_hunts
from tetrapipe.ruleset import load_ruleset
from tetrapipe.ruleset.backtest import backtest
from tetrapipe.sources.files import expand_inputs
from tetrapipe.transforms.chain import build_transforms

RULE = "new-binary-in-image"
IMAGES = ["docker.io/library/nginx:1.27", "docker.io/library/python:3.12", "quay.io/acme/api:7"]


def stream(since: dt.datetime | None = None) -> tuple[list[str], set[int]]:
    """Three images over three hours, each starting 20 minutes after the last: every 5 minutes a container
    of each runs a binary from a small rotation, and a new one now and then. Returns the lines and the line
    numbers that must alert: a binary's first run in its image, an hour or more after the image's first
    (counting only from ``since``, a re-learn, when given)."""
    rows: list[tuple[dt.datetime, str, str]] = []
    for n, image in enumerate(IMAGES):
        start = T0 + dt.timedelta(minutes=20 * n)
        for step in range(36):
            t = start + dt.timedelta(minutes=5 * step, seconds=n)
            binary = f"/usr/bin/tool{step % 4}" if step % 7 else f"/usr/bin/new{step}"
            rows.append((t, image, binary))
    rows.sort()
    first_of_image: dict[str, dt.datetime] = {}
    seen: set[tuple[str, str]] = set()
    lines, want = [], set()
    for k, (t, image, binary) in enumerate(rows, 1):
        line = json.loads(_exec(t, 300_000 + k, binary, "", 300_000, "/bin/sh"))
        line["process_exec"]["process"]["pod"]["container"]["image"]["name"] = image
        lines.append(json.dumps(line, separators=(",", ":")))
        if since is not None and t < since:
            continue
        first = first_of_image.setdefault(image, t)
        if (image, binary) not in seen and t >= first + dt.timedelta(hours=1):
            want.add(k)
        seen.add((image, binary))
    return lines, want


def _ingest(log: Path, lake: Lake, rules: Path) -> None:
    transforms, _ = build_transforms(rules)
    restore_transforms(transforms, lake)
    ingest(expand_inputs([str(log)]), lake, transforms=transforms, chunk_bytes=4096)


def _lines(lake: Lake, rule_id: str = RULE) -> list[int]:
    con = connect(lake)
    try:
        rows = con.execute(
            "SELECT e.source_offset FROM (SELECT unnest(event_ids) AS event_id FROM alerts WHERE rule_id = ?) a "
            "JOIN events e USING (event_id) ORDER BY 1",
            [rule_id],
        ).fetchall()
    finally:
        con.close()
    return [n for (n,) in rows]


def _same_as_backtest(lake: Lake, rules: Path, rule_id: str = RULE) -> None:
    rs = load_ruleset([rules])
    expected = backtest(lake, [rs.get(rule_id)]).sort_by("alert_id").to_pylist()
    con = connect(lake)
    try:
        stored = con.sql(f"SELECT * EXCLUDE (date) FROM alerts WHERE rule_id = '{rule_id}' ORDER BY alert_id")
        assert stored.to_arrow_table().to_pylist() == expected
    finally:
        con.close()


def test_first_runs_after_the_learning_hour_alert_live_as_in_the_backtest(tmp_path: Path) -> None:
    lines, want = stream()
    log = tmp_path / "tetragon.log"
    log.write_text("\n".join(lines) + "\n")
    lake = Lake(tmp_path / "lake")
    _ingest(log, lake, REPO / "rules")
    assert len(want) == 12 and _lines(lake) == sorted(want)
    _same_as_backtest(lake, REPO / "rules")


def test_a_restart_keeps_the_baseline_and_the_learning_clock(tmp_path: Path) -> None:
    lines, want = stream()
    log, lake = tmp_path / "tetragon.log", Lake(tmp_path / "lake")
    cut = len(lines) // 3  # inside the last image's learning hour
    log.write_text("\n".join(lines[:cut]) + "\n")
    _ingest(log, lake, REPO / "rules")
    with log.open("a") as f:
        f.write("\n".join(lines[cut:]) + "\n")
    _ingest(log, lake, REPO / "rules")
    assert _lines(lake) == sorted(want)


def test_the_saved_hunt_lists_the_baseline_and_since_learns_again(tmp_path: Path) -> None:
    lines, want = stream()
    log, lake = tmp_path / "tetragon.log", Lake(tmp_path / "lake")
    log.write_text("\n".join(lines) + "\n")
    _ingest(log, lake, REPO / "rules")
    con = connect(lake)
    try:
        rows = con.execute(saved_hunts()["first-seen-binaries"].sql).fetchall()
    finally:
        con.close()
    # the baseline: per image, tool0-3, new0 and new7 (35 min) learned in its first hour; later new ones not
    assert {(img, b) for img, b, _first, _runs, learned in rows if learned} == {
        (img, b) for img in IMAGES for b in ["/usr/bin/new0", "/usr/bin/new7", *(f"/usr/bin/tool{k}" for k in range(4))]
    }
    assert sum(1 for *_x, learned in rows if not learned) == len(want)
    # re-learn: from 2 h on, a new hour of learning (the rule's copy with first_seen.since)
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules" / "lib", rules / "lib")
    since = (T0 + dt.timedelta(hours=2)).isoformat(sep=" ")
    text = (REPO / "rules" / f"{RULE}.yaml").read_text().replace("  learn: 1h\n", f"  learn: 1h\n  since: '{since}'\n")
    (rules / f"{RULE}.yaml").write_text(text.split("\ntests:")[0] + "\n")
    relearned = Lake(tmp_path / "relearned")
    _ingest(log, relearned, rules)
    _, want_relearned = stream(since=T0 + dt.timedelta(hours=2))
    assert want_relearned and want_relearned != want  # (a different baseline, so different alerts)
    assert _lines(relearned) == sorted(want_relearned)
    _same_as_backtest(relearned, rules)
