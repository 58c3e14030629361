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

from tetrapipe.flows.ingest import ingest
from tetrapipe.lake import Lake, connect
from tetrapipe.sources.files import expand_inputs


def _count(lake: Lake, sql: str = "SELECT count(*) FROM events") -> int:
    con = connect(lake)
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
    names = [
        "tetragon.log",
        "tetragon-2024-05-01T10-05-00.000.log.gz",
        "tetragon-2024-05-01T09-00-00.000.log",
        "tetragon.log.1",
        "tetragon.log.2",
        "notes.txt",
    ]
    for n in names:
        (d / n).write_bytes(b"")
    order = [Path(i.path).name for i in expand_inputs([str(d)])]
    assert order == [
        "tetragon-2024-05-01T09-00-00.000.log",
        "tetragon-2024-05-01T10-05-00.000.log.gz",
        "tetragon.log.2",
        "tetragon.log.1",
        "tetragon.log",
    ]


def test_bad_lines_go_to_rejects_with_file_and_line(tmp_path: Path, lake_dir: Path) -> None:
    lake = Lake(lake_dir)
    good = _lines(0, 3)
    f = tmp_path / "mixed.log"
    f.write_bytes(
        "\n".join(
            [good[0], "not json at all", good[1], '{"process_exec":{"process":', '{"hello":"world"}', good[2]]
        ).encode()
        + b"\n\xff\xfe\n"
    )
    stats = ingest(expand_inputs([str(f)]), lake)
    assert stats.events == 3 and stats.rejects == 4
    con = connect(lake)
    rows = con.sql("SELECT source, source_offset, reason FROM rejects ORDER BY source_offset").fetchall()
    assert [(Path(s).name, n) for s, n, _ in rows] == [
        ("mixed.log", 2),
        ("mixed.log", 4),
        ("mixed.log", 5),
        ("mixed.log", 7),
    ]
    assert rows[1][2].startswith("truncated JSON")
    assert rows[3][2].startswith("not UTF-8")


def test_cli_ingest_from_stdin_and_summary(tmp_path: Path, lake_dir: Path, tetrapipe_cmd: list[str]) -> None:
    data = "\n".join(_lines(0, 20)) + "\nnot json\n"
    proc = subprocess.run(
        [*tetrapipe_cmd, "ingest", "-", "--lake", str(lake_dir), "--rules", "none"],
        input=data.encode(),
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode()
    assert "ingested 20 events" in text
    assert "<stdin>:21" in text and "invalid JSON" in text
    assert _count(Lake(lake_dir)) == 20


def test_a_utf16_file_says_so_and_rejects_are_listed_in_file_order(
    tmp_path: Path, lake_dir: Path, tetrapipe_cmd: list[str]
) -> None:
    """PowerShell 5's ``kubectl logs ... > events.log`` writes UTF-16: every line is a reject, and each says why.

    The reader's reject (the byte order mark is no UTF-8) is found apart from the
    normalizer's; the summary still lists them by line.
    """
    f = tmp_path / "events.log"
    f.write_bytes(("\n".join(_lines(0, 3)) + "\n").encode("utf-16"))
    proc = subprocess.run(
        [*tetrapipe_cmd, "ingest", str(f), "--lake", str(lake_dir), "--rules", "none"],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    listed = [line.strip() for line in proc.stdout.decode().splitlines() if "events.log:" in line]
    assert [line.split(":")[1] for line in listed] == ["1", "2", "3", "4"], listed
    assert "not UTF-8: byte 0xff at character 1" in listed[0]
    # the first line too, whose byte order mark is what the reader trips on: it was the one line without the fix
    assert all("as UTF-16 text is written (convert the file to UTF-8)" in line for line in listed), listed


@pytest.mark.parametrize("chunk_bytes", [None, 2])
def test_a_utf8_byte_order_mark_opens_the_file_and_is_no_part_of_its_first_line(
    tmp_path: Path, lake_dir: Path, chunk_bytes: int | None
) -> None:
    """What PowerShell's ``Set-Content -Encoding utf8`` writes (the conversion a UTF-16 reject advises): every
    event lands, the first line's ``raw`` is the event, and the grown file adds only its new lines."""
    lake = Lake(lake_dir)
    f = tmp_path / "events.log"
    f.write_bytes(b"\xef\xbb\xbf" + ("\n".join(_lines(0, 3)) + "\n").encode())
    extra = {} if chunk_bytes is None else {"chunk_bytes": chunk_bytes}
    stats = ingest(expand_inputs([str(f)]), lake, **extra)
    assert (stats.events, stats.rejects) == (3, 0)
    first = _count(lake, "SELECT raw FROM events ORDER BY source_offset LIMIT 1")
    assert first == _lines(0, 1)[0]
    with f.open("ab") as out:
        out.write(("\n".join(_lines(3, 2)) + "\n").encode())
    again = ingest(expand_inputs([str(f)]), lake, **extra)
    assert (again.events, again.rejects) == (2, 0) and _count(lake) == 5


def test_cli_missing_path_is_a_usage_error(lake_dir: Path, tetrapipe_cmd: list[str]) -> None:
    proc = subprocess.run(
        [*tetrapipe_cmd, "ingest", "/nonexistent/tetragon.log", "--lake", str(lake_dir)],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert b"no such file or directory: /nonexistent/tetragon.log" in proc.stderr


def test_query_while_an_ingest_is_running(lake_dir: Path, tetrapipe_cmd: list[str]) -> None:
    """A second process queries the lake while the ingest process is still writing."""
    lines = _lines(0, 3000)
    proc = subprocess.Popen(
        [
            *tetrapipe_cmd,
            "ingest",
            "-",
            "--lake",
            str(lake_dir),
            "--rules",
            "none",
            "--quiet",
            "--chunk-bytes",
            "65536",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(("\n".join(lines[:1500]) + "\n").encode())
    proc.stdin.flush()
    lake = Lake(lake_dir)
    seen = 0
    deadline = time.monotonic() + 60
    while seen == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
        if lake.table("events") is not None:
            seen = _count(lake)
    assert proc.poll() is None, "the ingest must still be running (it waits for more input)"
    assert 0 < seen < 3000
    q = subprocess.run(
        [*tetrapipe_cmd, "query", "SELECT count(*) AS n FROM events", "--lake", str(lake_dir), "--format", "json"],
        capture_output=True,
        timeout=60,
    )
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
    """A transform that fails on every event is broken: the ingest stops, no chunk after the failed one is
    committed, and the next run resumes exactly there. (One that fails once is retried on halves of its batch.)
    """
    from tetrapipe.flows.batch import TransformError

    lake = Lake(lake_dir)
    log = tmp_path / "tetragon.log"
    log.write_text("\n".join(_lines(0, 3000)) + "\n")
    calls = 0

    def broken_from_chunk_3(events: pa.Table) -> tuple[pa.Table, dict]:
        nonlocal calls
        calls += 1
        if calls >= 3:
            raise RuntimeError("transform broke on chunk 3")
        return events, {}

    with pytest.raises(
        TransformError, match=r"fails on more than 16 events of one batch \(RuntimeError: transform broke"
    ):
        ingest(expand_inputs([str(log)]), lake, transforms=[broken_from_chunk_3], chunk_bytes=64 * 1024)
    partial_events = _count(lake)
    assert 0 < partial_events < 3000
    assert _count(lake, "SELECT count(*) FROM rejects") == 0  # a broken transform rejects nothing
    assert ingest(expand_inputs([str(log)]), lake, chunk_bytes=64 * 1024).events == 3000 - partial_events
    assert _count(lake, "SELECT count(DISTINCT event_id) FROM events") == _count(lake) == 3000

    # failing once, on one batch, costs nothing: its halves go through
    calls = -(10**9)
    flaky_log = tmp_path / "flaky.log"
    flaky_log.write_text("\n".join(_lines(5000, 3000)) + "\n")

    def flaky(events: pa.Table) -> tuple[pa.Table, dict]:
        nonlocal calls
        calls += 1
        if calls == -(10**9) + 3:
            raise RuntimeError("a passing hiccup")
        return events, {}

    stats = ingest(expand_inputs([str(flaky_log)]), lake, transforms=[flaky], chunk_bytes=64 * 1024)
    assert (stats.events, stats.rejects) == (3000, 0)


# --- what a directory holds besides logs, and the alerts of one run -------------------------


def _without_root_file_access() -> None:
    """In a child before exec: drop the capabilities that let root read any file (a no-op for other users).

    Root keeps its uid (the interpreter under /root stays reachable) but, like
    anyone, can no longer read a file whose mode says nobody may.
    """
    import ctypes
    import os

    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: out of the bounding set, so gone after exec
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_directory_reads_json_exports_and_says_what_it_skipped_and_why(tmp_path: Path) -> None:
    import os
    import sys

    from tetrapipe.sources.files import scan_inputs

    d = tmp_path / "export"
    d.mkdir()
    (d / "tetragon.log").write_text("\n".join(_lines(0, 3)) + "\n")
    (d / "by-hand.json").write_text("\n".join(_lines(3, 2)) + "\n")  # kubectl logs ... > by-hand.json
    (d / "export.jsonl").write_text("\n".join(_lines(5, 2)) + "\n")
    (d / "config.json").write_text('{\n  "exportFilename": "tetragon.log"\n}\n')
    (d / "settings.json").write_text('{"exportFilename": "tetragon.log"}\n')
    (d / "notes.txt").write_text("not a log\n")
    (d / ".tetragon.log.swp").write_bytes(b"\0")
    (d / "secret.log").write_text("\n".join(_lines(7, 1)) + "\n")
    (d / "secret.log").chmod(0)
    os.symlink("loop-b.log", d / "loop-a.log")
    os.symlink("loop-a.log", d / "loop-b.log")
    os.symlink("gone.log", d / "dangling.log")
    os.mkdir(d / "sub")
    os.symlink("..", d / "sub" / "up")  # a directory link back to an ancestor
    os.mkfifo(d / "pipe.log")
    code = (
        "import json; from tetrapipe.sources.files import scan_inputs; e = scan_inputs(['.']);"
        "print(json.dumps([[i.path for i in e.inputs], {s.path: s.reason for s in e.skipped}]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=d,
        preexec_fn=_without_root_file_access,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    inputs, skipped = json.loads(proc.stdout)
    assert inputs == ["by-hand.json", "export.jsonl", "tetragon.log"]
    assert skipped == {
        ".tetragon.log.swp": "hidden",
        "config.json": "not a Tetragon export: its first line is not a JSON object (a config or pretty-printed JSON?)",
        "dangling.log": "broken symlink (its target does not exist)",
        "loop-a.log": "symlink loop",
        "loop-b.log": "symlink loop",
        "notes.txt": "not a log file (*.log, *.json, *.jsonl, *.ndjson, *.gz or a rotated backup)",
        "pipe.log": "not a regular file",
        "secret.log": "unreadable: Permission denied",
        "settings.json": "not a Tetragon export: its first line is JSON but not a Tetragon event",
        "sub/up": "symlink loop (leads back to .)",
    }
    # a file named on the command line is read whatever its name; a named path that cannot be read is an error
    named = tmp_path / "events.txt"
    named.write_text(_lines(0, 1)[0] + "\n")
    assert [i.path for i in scan_inputs([str(named)]).inputs] == [str(named)]
    loop = tmp_path / "loop.log"
    os.symlink(loop.name, loop)
    with pytest.raises(OSError, match="symlink loop"):
        scan_inputs([str(loop)])


def test_cli_ingest_lists_skipped_files_and_reads_json_exports(tmp_path: Path, lake_dir: Path) -> None:
    from click.testing import CliRunner

    from tetrapipe.cli import cli

    d = tmp_path / "export"
    d.mkdir()
    (d / "tetragon.log").write_text("\n".join(_lines(0, 3)) + "\n")
    (d / "events.json").write_text("\n".join(_lines(3, 2)) + "\n")
    (d / "README.md").write_text("# notes\n")
    result = CliRunner().invoke(
        cli, ["ingest", str(d), "--lake", str(lake_dir), "--rules", "none"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "ingested 5 events from 2 inputs" in result.stdout
    assert "1 file in the directories not read:" in result.stdout
    assert f"  {d / 'README.md'}: not a log file" in result.stdout


def _ingest_cli(lake_dir: Path, *args: str) -> str:
    from click.testing import CliRunner
    from conftest import REPO

    from tetrapipe.cli import cli

    result = CliRunner().invoke(
        cli,
        ["ingest", *args, "--lake", str(lake_dir), "--rules", str(REPO / "rules"), "--max-alerts", "100"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def _alert_ids(lake: Lake) -> set[str]:
    con = connect(lake)
    try:
        return {r[0] for r in con.execute("SELECT DISTINCT alert_id FROM alerts").fetchall()}
    finally:
        con.close()


def _printed_alerts(text: str) -> list[str]:
    """The alert header lines of an ingest's output (severity first)."""
    return [
        line for line in text.splitlines() if line.split(" ", 1)[0] in {"CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO"}
    ]


def test_ingest_prints_the_alerts_of_this_run_not_the_whole_lake(lake_dir: Path) -> None:
    from conftest import SAMPLES

    lake = Lake(lake_dir)
    first = _ingest_cli(lake_dir, str(SAMPLES / "scenario" / "tenant-jobs.log"))
    scenario_ids = _alert_ids(lake)
    assert len(scenario_ids) >= 5
    n = len(scenario_ids)
    assert f"{n} alerts from this ingest, most severe first (the lake holds {n} alerts in all" in first
    assert len(_printed_alerts(first)) == n
    assert any("reverse-shell  2026-03-10" in line for line in _printed_alerts(first))

    # another log: only its own alerts, the scenario's are not printed again
    second = _ingest_cli(lake_dir, *(str(p) for p in REAL_LOGS))
    real_ids = _alert_ids(lake) - scenario_ids
    total = n + len(real_ids)
    assert f"{len(real_ids)} alerts from this ingest, most severe first (the lake holds {total} alerts in all" in second
    printed = _printed_alerts(second)
    assert len(printed) == len(real_ids)
    assert not any("2026-03-10" in line for line in printed)  # the scenario's day

    # nothing new: said so, with the lake's total
    third = _ingest_cli(lake_dir, str(SAMPLES / "scenario" / "tenant-jobs.log"))
    assert f"no new alerts (the lake holds {total} alerts in all: tetrapipe query alerts)" in third
    assert _printed_alerts(third) == []

    # --force: the same events again extend alerts the lake holds (new-terms rules stay quiet), each marked so
    forced = _ingest_cli(lake_dir, str(SAMPLES / "scenario" / "tenant-jobs.log"), "--force")
    printed = _printed_alerts(forced)
    k = len(printed)
    assert 0 < k < n and f"{k} alerts from this ingest, {k} of them adding to an alert already in the lake" in forced
    assert all(line.endswith("(more events of an alert already in the lake)") for line in printed)
    assert _alert_ids(lake) == scenario_ids | real_ids


@pytest.mark.parametrize("bad_lines_only", [False, True])
def test_rules_that_do_not_load_stop_the_ingest_before_the_lake_takes_anything(
    tmp_path: Path, lake_dir: Path, tetrapipe_cmd: list[str], bad_lines_only: bool
) -> None:
    """The rules load on a thread while the first chunk is read and normalized: an error in them still
    stops the command with every error listed, and the lake is not even created, not even for a log of
    nothing but bad lines (whose rejects need no rules to be written)."""
    from conftest import REPO

    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    good = (REPO / "rules" / "exec-from-tmp.yaml").read_text()
    # one rule that parses but does not compile: a column no table has
    (rules / "broken.yaml").write_text(
        good.replace("id: exec-from-tmp", "id: broken").replace("OR starts_with", "OR nosuchcolumn = 1 OR starts_with")
    )
    log = tmp_path / "tetragon.log"
    log.write_text("not json\n{}\n" if bad_lines_only else "\n".join(_lines(0, 50)) + "\n")
    proc = subprocess.run(
        [*tetrapipe_cmd, "ingest", str(log), "--lake", str(lake_dir), "--rules", str(rules)],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr.decode()
    assert b"broken.yaml" in proc.stderr and b"nosuchcolumn" in proc.stderr, proc.stderr.decode()
    assert not lake_dir.exists(), sorted(lake_dir.rglob("*"))
