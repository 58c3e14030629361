"""What a person reads: tables and alerts stay whole in a pipe and fit a narrow terminal."""

from __future__ import annotations

import io
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import REAL_LOGS, REPO, SAMPLES
from rich.cells import cell_len
from rich.console import Console

from tetrapipe.commands.report import print_alerts, print_query_table
from tetrapipe.flows.ingest import ingest
from tetrapipe.lake import Lake
from tetrapipe.lake.query import execute, fetch_rows
from tetrapipe.sources.files import expand_inputs
from tetrapipe.transforms.chain import build_transforms

TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?")
SQL = (
    "SELECT time, kind, process_binary, arguments, pid FROM events WHERE pid IS NOT NULL AND time IS NOT NULL "
    "ORDER BY time, event_id"
)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("out") / "lake")
    ingest(expand_inputs([str(p) for p in REAL_LOGS]), lake)
    return lake


def _terminal(width: int) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=width, color_system=None), buf


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETRAPIPE_")}
    env.update(extra)
    return env


def test_query_table_in_a_pipe_is_plain_whole_and_aligned(lake: Lake, tetrapipe_cmd: list[str]) -> None:
    """COLUMNS=40 is what a CI log or `watch` may claim: a pipe is still never folded."""
    rows = execute(lake, SQL).to_pylist()
    proc = subprocess.run(
        [*tetrapipe_cmd, "query", SQL, "--lake", str(lake.root)],
        capture_output=True,
        text=True,
        env=_env(COLUMNS="40"),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(rows) + 3  # header, rule, one line per row, the count
    assert lines[0].split() == ["time", "kind", "process_binary", "arguments", "pid"]
    assert lines[-1] == f"{len(rows)} rows"
    assert "\x1b" not in proc.stdout and not any(line != line.rstrip() for line in lines)
    kind_at = lines[0].index("kind")
    for line, row in zip(lines[2:-1], rows, strict=True):
        assert line.startswith(row["time"].isoformat(sep=" "))  # the whole timestamp, on the row's line
        assert line[kind_at:].startswith(row["kind"])  # aligned under its header
        assert (row["arguments"] or "") in line and "…" not in line  # nothing cut


def test_query_table_fits_a_narrow_terminal_with_ellipses_not_folds(lake: Lake) -> None:
    table = execute(lake, SQL)
    console, buf = _terminal(70)
    print_query_table(console, fetch_rows(lake, SQL, 200), 200)
    lines = buf.getvalue().splitlines()
    assert len(lines) == table.num_rows + 3
    assert all(cell_len(line) <= 70 and line == line.rstrip() for line in lines)
    for line, row in zip(lines[2:-1], table.to_pylist(), strict=True):
        assert line.startswith(row["time"].isoformat(sep=" "))  # times are never cut
        assert line.endswith(str(row["pid"]))  # nor numbers
    assert any("…" in line for line in lines)  # long binaries and arguments are


def test_a_table_too_wide_for_any_column_layout_turns_into_records(lake: Lake) -> None:
    sql = "SELECT * FROM events WHERE time IS NOT NULL ORDER BY time, event_id LIMIT 2"
    table = execute(lake, sql)
    console, buf = _terminal(60)
    print_query_table(console, fetch_rows(lake, sql, 200), 200)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "-- row 1 ".ljust(60, "-")
    assert sum(line.startswith("-- row ") for line in lines) == 2
    assert all(cell_len(line) <= 60 and line == line.rstrip() for line in lines)
    first = table.slice(0, 1).to_pylist()[0]
    name_w = max(len(n) for n in table.column_names)
    assert f"{'time'.ljust(name_w)}  {first['time'].isoformat(sep=' ')}" in lines  # column names aligned


def _scenario_alerts(tmp_path: Path) -> tuple[Lake, list]:
    lake = Lake(tmp_path / "lake")
    transforms, _ = build_transforms(REPO / "rules")
    stats = ingest(expand_inputs([str(SAMPLES / "scenario" / "tenant-jobs.log")]), lake, transforms=transforms)
    assert stats.alerts
    return lake, list(stats.alerts.values())


def test_ingest_output_in_a_pipe_keeps_each_alert_on_two_lines(tmp_path: Path, tetrapipe_cmd: list[str]) -> None:
    proc = subprocess.run(
        [
            *tetrapipe_cmd,
            "ingest",
            str(SAMPLES / "scenario" / "tenant-jobs.log"),
            "--lake",
            str(tmp_path / "lake"),
            "--rules",
            str(REPO / "rules"),
            "--max-alerts",
            "100",
        ],
        capture_output=True,
        text=True,
        env=_env(COLUMNS="40"),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "\x1b" not in proc.stdout and not any(line != line.rstrip() for line in lines)
    n = int(re.search(r"^(\d+) alerts from this ingest", proc.stdout, re.M).group(1))
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{n} alerts from this ingest")) + 1
    alert_lines = lines[start:]
    assert len(alert_lines) == 2 * n  # a header and the whole message, per alert
    for head, message in zip(alert_lines[::2], alert_lines[1::2], strict=True):
        assert TIME.search(head) and head.split()[0] in {"CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO"}
        assert message.startswith(" " * 9) and len(message) > 40
    assert "process_exec" in proc.stdout and "kind" in lines[1]


def test_alerts_fit_a_narrow_terminal(tmp_path: Path) -> None:
    lake, alerts = _scenario_alerts(tmp_path)
    console, buf = _terminal(60)
    print_alerts(console, lake, alerts, 100)
    lines = buf.getvalue().splitlines()
    # (the first line is a sentence: the terminal wraps it between words like any prose)
    assert all(cell_len(line) <= 60 and line == line.rstrip() for line in lines[1:]), lines
    heads = [line for line in lines if line.split(" ", 1)[0] in {"CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO"}]
    assert len(heads) == len(alerts)
    assert all(TIME.search(h) for h in heads)  # the time is never folded or cut
    # the pod name does not fit beside rule and time at 60 columns: it gets the next line, whole
    assert "         tenant-jobs/crawler-5f7c8d9b6-x4k2p" in lines


def test_schema_in_a_pipe_keeps_each_meaning_on_its_column_line() -> None:
    from click.testing import CliRunner

    from tetrapipe.cli import cli
    from tetrapipe.schema import EVENT_COLUMNS

    result = CliRunner().invoke(cli, ["query", "--schema"], catch_exceptions=False)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert not any(line != line.rstrip() for line in lines)
    for col in EVENT_COLUMNS:
        assert any(line.startswith(col.name + " ") and line.endswith(col.doc) for line in lines), col.name
