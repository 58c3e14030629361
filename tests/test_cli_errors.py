"""What a user sees when a command is stopped or cannot work: one line, a documented exit status, no traceback.

Each test runs the real command line in a subprocess, as the installed wheel
does: Ctrl-C (SIGINT) in the middle of an ingest and of a query, a closed
stdout (``| head``), an input or a lake path that cannot be used, values the
options document (``--since``, ``--keep 90``, ``-o``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REAL_LOGS, REPO

from tetrapipe.lake import Lake, connect
from tetrapipe.metrics import Health
from tetrapipe.sinks.siem import Route, Router
from tetrapipe.sinks.siem.base import DeliveringSink, Delivery

TIMEOUT = 120


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETRAPIPE_")}
    return env | {"PYTHONPATH": str(REPO), "NO_COLOR": "1"}


def _cli(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tetrapipe", *args], capture_output=True, text=True, env=_env(), timeout=TIMEOUT, **kw
    )


def _start(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tetrapipe", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        **kw,
    )


def _count(lake_dir: Path, sql: str = "SELECT count(*) FROM events") -> int:
    con = connect(Lake(lake_dir))
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def _events(n: int) -> str:
    """``n`` distinct real-shaped events: a real exec event with a different time on each line."""
    base = json.loads(REAL_LOGS[0].read_text().splitlines()[2])
    lines = []
    for i in range(n):
        base["time"] = f"2024-05-01T10:{(i // 60) % 60:02d}:{i % 60:02d}.{i:09d}Z"
        lines.append(json.dumps(base, separators=(",", ":")))
    return "\n".join(lines) + "\n"


def _no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and "Exception in thread" not in stderr, stderr


@pytest.fixture(scope="module")
def samples_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("samples") / "lake"
    res = _cli("ingest", *map(str, REAL_LOGS), "--lake", str(lake), "--quiet")
    assert res.returncode == 0, res.stderr
    return lake


# --- Ctrl-C ---------------------------------------------------------------------------------------


def test_ctrl_c_during_an_ingest_says_interrupted_exits_130_and_a_rerun_completes_it_exactly(tmp_path: Path) -> None:
    n = 6000
    log = tmp_path / "big.jsonl"
    log.write_text(_events(n))
    lake = tmp_path / "lake"
    args = ("ingest", str(log), "--lake", str(lake), "--rules", "none", "--quiet", "--chunk-bytes", "262144")
    proc = _start(*args)
    log_dir = lake / "events" / "_delta_log"
    deadline = time.monotonic() + TIMEOUT
    while not (log_dir.is_dir() and any(log_dir.glob("*.json"))) and proc.poll() is None:
        assert time.monotonic() < deadline, "no commit in the lake"
        time.sleep(0.02)  # polling the lake for its first commit, not waiting a fixed time
    assert proc.poll() is None, "the ingest ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    _no_traceback(err)
    assert err.strip().startswith("interrupted") and "run the same command again" in err
    assert len(err.strip().splitlines()) == 1, err
    kept = _count(lake)
    assert 0 < kept < n  # what was committed before Ctrl-C is there
    again = _cli(*args)
    assert again.returncode == 0, again.stderr
    assert _count(lake) == n and _count(lake, "SELECT count(DISTINCT event_id) FROM events") == n


def test_ctrl_c_during_a_long_query_says_interrupted_and_exits_130(tmp_path: Path) -> None:
    endless = "SELECT sum(hash(a.range * b.range)) FROM range(1000000000) a, range(1000000000) b"
    proc = _start("query", endless, "--lake", str(tmp_path / "nowhere"), "--format", "csv")
    assert proc.stderr is not None
    note = proc.stderr.readline()  # the no-history note comes just before the query runs
    assert note.startswith("note: no history"), note
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    _no_traceback(err)
    assert err.strip() == "interrupted"


# --- a closed stdout ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_a_reader_that_closes_stdout_ends_the_query_quietly(fmt: str, tmp_path: Path, samples_lake: Path) -> None:
    sql = "SELECT range AS n, repeat('x', 60) AS pad FROM range(200000)"
    proc = _start("query", sql, "--lake", str(samples_lake), "--format", fmt, "--limit", "200000")
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()  # `| head -1`: one line read, then the pipe is closed
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=TIMEOUT) == 0, err
    assert err == ""


# --- inputs and paths that cannot be used --------------------------------------------------------


def test_forward_of_a_missing_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    cfg = tmp_path / "fw.yaml"
    out = tmp_path / "out.jsonl"
    cfg.write_text(
        f"spool_dir: {tmp_path / 'spool'}\n"
        f"sinks:\n  - {{name: f, type: file, format: native, options: {{path: {out}}}}}\n"
    )
    missing = tmp_path / "nonexist.jsonl"
    res = _cli("forward", "--config", str(cfg), str(missing))
    assert res.returncode == 1, res.stderr
    _no_traceback(res.stderr)
    assert res.stderr.strip() == f"Error: cannot read {missing}: No such file or directory"


class _Keep(DeliveringSink):
    """A sink that keeps what it is given: the router's contract, without a network peer."""

    def __init__(self) -> None:
        super().__init__("keep", Delivery(batch_size=10_000, linger_seconds=0.0))
        self.got: list[dict[str, Any]] = []

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        self.got.extend(records)


def test_forward_flow_sends_what_it_read_then_raises_for_an_input_it_cannot_read(tmp_path: Path) -> None:
    from tetrapipe.flows import forward as flow

    good = tmp_path / "alerts.jsonl"
    good.write_text("".join(json.dumps({"alert_id": f"a{i}", "rule_id": "r"}) + "\n" for i in range(3)))
    sink = _Keep()
    router = Router([Route("keep", sink)])
    source = flow.from_lines([str(good), str(tmp_path / "gone.jsonl")], 100, lambda where, why: None)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(flow.InputError, match=r"cannot read .*gone\.jsonl: No such file or directory"):
            flow.forward(router, source, drain_timeout=1.0, health=Health())
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    assert [r["alert_id"] for r in sink.got] == ["a0", "a1", "a2"]
    assert not [t for t in threading.enumerate() if t.name == "tetrapipe-forward-reader"]


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_ingest_into_a_lake_path_that_cannot_be_written_names_the_lake(where: str, tmp_path: Path) -> None:
    if where == "proc":
        lake, reason = "/proc/tetrapipe-lake", "No such file or directory"
    else:
        (tmp_path / "a-file").write_text("")
        lake, reason = str(tmp_path / "a-file" / "lake"), "Not a directory"
    res = _cli("ingest", str(REAL_LOGS[0]), "--lake", lake, "--quiet", "--rules", "none")
    assert res.returncode == 1, res.stderr
    _no_traceback(res.stderr)
    assert res.stderr.strip() == f"Error: cannot write the lake at {lake}: {reason}"


def test_tls_since_that_is_not_a_time_is_refused_as_tree_refuses_it(samples_lake: Path) -> None:
    tls = _cli("tls", "--since", "garbage", "--lake", str(samples_lake))
    tree = _cli("tree", "--since", "garbage", "--lake", str(samples_lake))
    assert tls.returncode == tree.returncode == 2, tls.stderr
    _no_traceback(tls.stderr)
    why = "not a time or a duration: 'garbage'"
    assert why in tls.stderr and why in tree.stderr
    said = [r.stderr.strip().splitlines()[-1] for r in (tls, tree)]
    assert said[0][said[0].index(why) :] == said[1][said[1].index(why) :]  # the same words, hints and all
    for since in ("2026-03-10", "2026-03-10 09:00", "2026-03-10T09:00:00+01:00"):
        ok = _cli("tls", "--since", since, "--lake", str(samples_lake), "--format", "json")
        assert ok.returncode == 0, ok.stderr


# --- what the options promise --------------------------------------------------------------------


def test_query_table_with_output_writes_the_plain_table_to_the_file(tmp_path: Path, samples_lake: Path) -> None:
    sql = "SELECT kind, count(*) AS n FROM events GROUP BY 1 ORDER BY 1"
    piped = _cli("query", sql, "--lake", str(samples_lake))
    out = tmp_path / "out.txt"
    res = _cli("query", sql, "--lake", str(samples_lake), "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    text = out.read_text()
    assert text == piped.stdout and "process_exec" in text and "\x1b" not in text


def test_lake_retention_keep_with_a_bare_number_means_days(tmp_path: Path, samples_lake: Path) -> None:
    before = _count(samples_lake)
    bare = _cli("lake", "retention", "--keep", "36500", "--lake", str(samples_lake))
    assert bare.returncode == 0, bare.stderr  # not "a retention of 10:08:20 would delete today's history"
    days = _cli("lake", "retention", "--keep", "36500d", "--lake", str(samples_lake))
    assert bare.stdout == days.stdout and "deleted 0 rows dated before" in bare.stdout
    assert _count(samples_lake) == before


def test_query_of_a_directory_that_is_not_a_lake_gets_the_no_history_note(tmp_path: Path) -> None:
    empty = tmp_path / "not-a-lake"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello\n")
    res = _cli("query", "alerts", "--lake", str(empty))
    assert res.returncode == 0, res.stderr
    assert res.stderr.startswith(f"note: no history at {empty}")


def test_chunk_bytes_takes_a_size_and_says_what_it_does(tmp_path: Path) -> None:
    """``--chunk-bytes`` (the README's memory knob) is in ``--help``, reads ``4M`` as a size and refuses ``4X``."""
    help_text = _cli("ingest", "--help").stdout
    assert "--chunk-bytes SIZE" in help_text and "Peak memory grows with it" in help_text
    log, lake = REAL_LOGS[0], tmp_path / "lake"
    ok = _cli("ingest", str(log), "--lake", str(lake), "--rules", "none", "-q", "--chunk-bytes", "4M")
    assert ok.returncode == 0, ok.stderr
    assert _count(lake) == _count_lines(log)
    bad = _cli("ingest", str(log), "--lake", str(tmp_path / "other"), "--chunk-bytes", "4X")
    assert bad.returncode == 2 and "'4X' is not a size (e.g. 64M, 1G)" in bad.stderr, bad.stderr
    assert not (tmp_path / "other").exists()


def _count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").split("\n") if line.strip())
