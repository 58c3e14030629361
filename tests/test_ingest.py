"""tetrapipe ingest end to end: files, rotation, gzip, stdin, rejects, dedupe, concurrent readers."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import REAL_LOGS

from tetrapipe import history
from tetrapipe.ingest import ingest
from tetrapipe.sinks.lake import Lake
from tetrapipe.sources.files import expand_inputs


def _count(lake: Lake, sql: str = "SELECT count(*) FROM events") -> int:
    con = history.connect(lake)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def _lines(n_from: int, n: int) -> list[str]:
    """Distinct real-shaped events: a real exec event with a different time per line."""
    base = json.loads(REAL_LOGS[0].read_text().splitlines()[2])
    out = []
    for i in range(n_from, n_from + n):
        base["time"] = f"2024-05-01T10:{(i // 60) % 60:02d}:{i % 60:02d}.{i:09d}Z"[:30] + "Z"
        base["time"] = f"2024-05-01T10:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 10**9:09d}Z"
        out.append(json.dumps(base, separators=(",", ":")))
    return out


def test_real_samples_land_with_zero_rejects(lake_dir: Path) -> None:
    lake = Lake(lake_dir)
    stats = ingest(expand_inputs([str(p) for p in REAL_LOGS]), lake)
    assert stats.events == 55 and stats.rejects == 0
    assert _count(lake) == 55
    assert _count(lake, "SELECT count(*) FROM events WHERE kind = 'process_kprobe' AND function_name IS NULL") == 0
    assert _count(lake, "SELECT count(*) FROM rejects") == 0
    assert _count(lake, "SELECT count(DISTINCT date) FROM events") >= 5  # hive partitions by event date


def test_reingest_rotated_gzipped_and_grown_copies_adds_nothing_twice(tmp_path: Path, lake_dir: Path) -> None:
    lake = Lake(lake_dir)
    live = tmp_path / "tetragon.log"
    live.write_text("\n".join(_lines(0, 100)) + "\n")
    assert ingest(expand_inputs([str(live)]), lake).events == 100
    assert ingest(expand_inputs([str(live)]), lake).events == 0  # same file again
    # Tetragon rotates: rename to a timestamped backup, gzip it; the same events, another name
    backup = tmp_path / "tetragon-2024-05-01T10-05-00.000.log"
    shutil.copy(live, backup)
    with open(live, "rb") as src, gzip.open(str(backup) + ".gz", "wb") as dst:
        dst.write(src.read())
    stats = ingest(expand_inputs([str(backup), str(backup) + ".gz"]), lake)
    assert stats.events == 0 and stats.skipped_lines == 200
    # the live file grew: only the new lines go in
    with open(live, "a") as f:
        f.write("\n".join(_lines(100, 50)) + "\n")
    assert ingest(expand_inputs([str(live)]), lake).events == 50
    assert _count(lake) == 150
    assert _count(lake, "SELECT count(DISTINCT event_id) FROM events") == 150
    # --force really ingests again (and the ids show the duplicates)
    assert ingest(expand_inputs([str(live)]), lake, force=True).events == 150
    assert _count(lake, "SELECT count(*) - count(DISTINCT event_id) FROM events") == 150


def test_directory_is_read_oldest_backup_first(tmp_path: Path) -> None:
    d = tmp_path / "tetragon"
    d.mkdir()
    names = ["tetragon.log", "tetragon-2024-05-01T10-05-00.000.log.gz", "tetragon-2024-05-01T09-00-00.000.log",
             "tetragon.log.1", "tetragon.log.2", "notes.txt"]
    for n in names:
        (d / n).write_bytes(b"")
    order = [Path(i.path).name for i in expand_inputs([str(d)])]
    assert order == ["tetragon-2024-05-01T09-00-00.000.log", "tetragon-2024-05-01T10-05-00.000.log.gz",
                     "tetragon.log.2", "tetragon.log.1", "tetragon.log"]


def test_bad_lines_go_to_rejects_with_file_and_line(tmp_path: Path, lake_dir: Path) -> None:
    lake = Lake(lake_dir)
    good = _lines(0, 3)
    f = tmp_path / "mixed.log"
    f.write_bytes("\n".join([good[0], "not json at all", good[1], '{"process_exec":{"process":',
                             '{"hello":"world"}', good[2]]).encode() + b"\n\xff\xfe\n")
    stats = ingest(expand_inputs([str(f)]), lake)
    assert stats.events == 3 and stats.rejects == 4
    con = history.connect(lake)
    rows = con.sql("SELECT source, source_offset, reason FROM rejects ORDER BY source_offset").fetchall()
    assert [(Path(s).name, n) for s, n, _ in rows] == [("mixed.log", 2), ("mixed.log", 4), ("mixed.log", 5),
                                                       ("mixed.log", 7)]
    assert rows[1][2].startswith("truncated JSON")
    assert rows[3][2].startswith("not UTF-8")


def test_cli_ingest_from_stdin_and_summary(tmp_path: Path, lake_dir: Path, tetrapipe_cmd: list[str]) -> None:
    data = "\n".join(_lines(0, 20)) + "\nnot json\n"
    proc = subprocess.run([*tetrapipe_cmd, "ingest", "-", "--lake", str(lake_dir), "--rules", "none"],
                          input=data.encode(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode()
    assert "ingested 20 events" in text
    assert "<stdin>:21" in text and "invalid JSON" in text
    assert _count(Lake(lake_dir)) == 20


def test_cli_missing_path_is_a_usage_error(lake_dir: Path, tetrapipe_cmd: list[str]) -> None:
    proc = subprocess.run([*tetrapipe_cmd, "ingest", "/nonexistent/tetragon.log", "--lake", str(lake_dir)],
                          capture_output=True, timeout=60)
    assert proc.returncode == 2
    assert b"no such file or directory: /nonexistent/tetragon.log" in proc.stderr


def test_query_while_an_ingest_is_running(lake_dir: Path, tetrapipe_cmd: list[str]) -> None:
    """A second process queries the lake while the ingest process is still writing."""
    lines = _lines(0, 3000)
    proc = subprocess.Popen(
        [*tetrapipe_cmd, "ingest", "-", "--lake", str(lake_dir), "--rules", "none", "--quiet",
         "--chunk-bytes", "65536"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(("\n".join(lines[:1500]) + "\n").encode())
    proc.stdin.flush()
    lake = Lake(lake_dir)
    seen = 0
    deadline = time.monotonic() + 60
    while seen == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
        if lake.segments("events"):
            seen = _count(lake)
    assert proc.poll() is None, "the ingest must still be running (it waits for more input)"
    assert 0 < seen < 3000
    q = subprocess.run([*tetrapipe_cmd, "query", "SELECT count(*) AS n FROM events", "--lake", str(lake_dir),
                        "--format", "json"], capture_output=True, timeout=60)
    assert q.returncode == 0, q.stderr.decode()
    assert 0 < json.loads(q.stdout)[0]["n"] < 3000
    proc.stdin.write(("\n".join(lines[1500:]) + "\n").encode())
    proc.stdin.close()
    assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    assert _count(lake) == 3000


def test_one_run_over_a_log_and_its_gzip_copy_ingests_it_once(tmp_path: Path, lake_dir: Path) -> None:
    """Chunks flow through threads; the second copy must still see the first one's commits."""
    lake = Lake(lake_dir)
    log = tmp_path / "tetragon-2024-05-01T10-05-00.000.log"
    log.write_text("\n".join(_lines(0, 3000)) + "\n")
    with open(log, "rb") as src, gzip.open(str(log) + ".gz", "wb") as dst:
        dst.write(src.read())
    stats = ingest(expand_inputs([str(log), str(log) + ".gz"]), lake, chunk_bytes=64 * 1024)
    assert stats.events == 3000 and stats.skipped_lines == 3000
    assert _count(lake, "SELECT count(DISTINCT event_id) FROM events") == _count(lake) == 3000


def test_a_failing_transform_stops_the_ingest_and_a_rerun_completes_it_once(tmp_path: Path, lake_dir: Path) -> None:
    """No chunk after the failed one is committed, so the next run resumes exactly there."""
    lake = Lake(lake_dir)
    log = tmp_path / "tetragon.log"
    log.write_text("\n".join(_lines(0, 3000)) + "\n")
    calls = 0

    def flaky(events: pa.Table) -> tuple[pa.Table, dict]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("transform broke on chunk 3")
        return events, {}

    with pytest.raises(RuntimeError, match="chunk 3"):
        ingest(expand_inputs([str(log)]), lake, transforms=[flaky], chunk_bytes=64 * 1024)
    partial_events = _count(lake)
    assert 0 < partial_events < 3000
    assert ingest(expand_inputs([str(log)]), lake, chunk_bytes=64 * 1024).events == 3000 - partial_events
    assert _count(lake, "SELECT count(DISTINCT event_id) FROM events") == _count(lake) == 3000
