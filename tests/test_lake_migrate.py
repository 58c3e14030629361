"""`tetrapipe lake migrate`: an old segment lake becomes Delta tables, positions included, and only once.

The old lake is written here by hand, the way the segment store wrote it
(``<table>/date=YYYY-MM-DD/<name>.parquet``, Kafka offsets in the names, the
ingest manifest under ``_state/ingested``): the old code is gone, its format
is what a user's disk still holds.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tetrapipe.cli import cli
from tetrapipe.errors import TetrapipeError
from tetrapipe.lake import Lake
from tetrapipe.lake.migrate import OLD_SEGMENTS, kafka_version, migrate
from tetrapipe.schema import SCHEMAS, conform


def _events(ids: range, day: dt.date) -> pa.Table:
    base = dt.datetime.combine(day, dt.time(12))
    times = [base + dt.timedelta(seconds=i) for i in ids]
    rows = pa.table(
        {
            "event_id": pa.array([f"e{i}" for i in ids]),
            "time": pa.array(times, pa.timestamp("us")),
            "kind": pa.array(["process_exec"] * len(ids)),
        }
    )
    return conform(rows, SCHEMAS["events"])


def _alerts(ids: range, day: dt.date) -> pa.Table:
    base = dt.datetime.combine(day, dt.time(12))
    rows = pa.table(
        {
            "alert_id": pa.array([f"a{i}" for i in ids]),
            "rule_id": pa.array(["r1"] * len(ids)),
            "time": pa.array([base + dt.timedelta(seconds=i) for i in ids], pa.timestamp("us")),
        }
    )
    return conform(rows, SCHEMAS["alerts"])


def _segment(root: Path, table: str, day: dt.date, name: str, rows: pa.Table) -> Path:
    d = root / table / f"date={day.isoformat()}"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.parquet"
    pq.write_table(rows, path, compression="zstd")
    return path


D1, D2 = dt.date(2026, 3, 9), dt.date(2026, 3, 10)


def _old_lake(root: Path) -> dict[str, int]:
    """An old lake: ingested-file segments, two Kafka partitions (one in epoch 2), an orphan, a manifest."""
    _segment(root, "events", D1, "20260309T120000-aaaaaaaaaaaa", _events(range(0, 50), D1))
    _segment(root, "events", D2, "20260310T120000-bbbbbbbbbbbb-compacted", _events(range(50, 80), D2))
    _segment(root, "events", D2, "kafka~tetragon~0~0~9", _events(range(100, 110), D2))
    _segment(root, "events", D2, "kafka~tetragon~0~10~19", _events(range(110, 120), D2))
    _segment(root, "events", D2, "kafka~tetragon~1~0~4", _events(range(200, 205), D2))
    _segment(root, "events", D2, "kafka~tetragon~1~0~6~e2", _events(range(300, 307), D2))
    _segment(root, "alerts", D2, "kafka~tetragon~0~10~19", _alerts(range(0, 3), D2))
    # an alert segment past the events commit: its batch never committed, the old processor deleted such files
    _segment(root, "alerts", D2, "kafka~tetragon~0~20~29", _alerts(range(3, 5), D2))
    _segment(root, "alerts", D1, "20260309T120000-aaaaaaaaaaaa", _alerts(range(10, 14), D1))
    manifest = root / "_state" / "ingested"
    manifest.mkdir(parents=True)
    body = {"fingerprint": "fp1", "source": "/var/log/tetragon.log", "lines": 80, "bytes": 4096, "complete": True}
    (manifest / "fp1.json").write_text(json.dumps(body))
    return {"events": 50 + 30 + 10 + 10 + 5 + 7, "alerts": 3 + 4}


def _count(lake: Lake, table: str) -> tuple[int, int]:
    rows = lake.table(table).to_pyarrow_table()
    key = "event_id" if table == "events" else "alert_id"
    return rows.num_rows, len(set(rows.column(key).to_pylist()))


def test_migrate_to_a_new_lake_keeps_rows_and_positions_and_is_idempotent(tmp_path: Path) -> None:
    old = tmp_path / "old"
    want = _old_lake(old)
    lake = Lake(tmp_path / "new")
    results = {r.table: r for r in migrate(old, lake)}
    assert results["events"].committed and results["events"].rows == want["events"]
    assert results["alerts"].orphans == 1
    assert _count(lake, "events") == (want["events"], want["events"])
    assert _count(lake, "alerts") == (want["alerts"], want["alerts"])
    events = lake.table("events")
    assert events.version() == 0  # one commit for the whole table
    # the processor resumes where the old lake stopped: partition 0 at 19, partition 1 in epoch 2 at 6
    assert events.transaction_version("kafka:tetragon:0") == kafka_version(0, 19)
    assert events.transaction_version("kafka:tetragon:1") == kafka_version(2, 6)
    assert events.transaction_version("file:fp1") == 80
    assert events.transaction_version("file-bytes:fp1") == 4096
    assert events.transaction_version("file-done:fp1") == 80
    dates = set(events.to_pyarrow_table().column("date").to_pylist())
    assert dates == {D1.isoformat(), D2.isoformat()}
    for uri in events.file_uris():  # written like every other data file of the lake (store.WRITER_PROPERTIES)
        meta = pq.ParquetFile(uri.removeprefix("file://")).metadata
        assert {meta.row_group(0).column(c).compression for c in range(meta.num_columns)} == {"ZSTD"}
    # the old lake is left as it was (not in place)
    assert (old / "events" / f"date={D1.isoformat()}" / "20260309T120000-aaaaaaaaaaaa.parquet").exists()

    again = {r.table: r for r in migrate(old, lake)}
    assert not again["events"].committed and not again["alerts"].committed
    assert _count(lake, "events") == (want["events"], want["events"])
    assert lake.table("events").version() == 0


def test_migrate_in_place_moves_the_old_files_aside(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    want = _old_lake(root)
    result = CliRunner().invoke(cli, ["lake", "migrate", str(root)])
    assert result.exit_code == 0, result.output
    assert "the old files are in" in result.output
    lake = Lake(root)
    assert _count(lake, "events") == (want["events"], want["events"])
    assert not [p for p in (root / "events").glob("date=*/*.parquet") if not p.name.startswith("part-")]
    kept = root / OLD_SEGMENTS / "events" / f"date={D2.isoformat()}" / "kafka~tetragon~0~10~19.parquet"
    assert kept.exists()
    assert (root / OLD_SEGMENTS / "_state" / "ingested" / "fp1.json").exists()
    # the query face reads the migrated lake
    q = CliRunner().invoke(cli, ["query", "--lake", str(root), "--format", "csv", "SELECT count(*) AS n FROM events"])
    assert q.exit_code == 0, q.output
    assert str(want["events"]) in q.output
    # twice: nothing more
    again = CliRunner().invoke(cli, ["lake", "migrate", str(root)])
    assert again.exit_code == 0, again.output
    assert "already migrated" in again.output
    assert _count(lake, "events") == (want["events"], want["events"])


def test_crash_between_moves_and_commit_then_rerun(tmp_path: Path) -> None:
    """In place: half the old files moved aside when the process died: the re-run still migrates each row once."""
    root = tmp_path / "lake"
    want = _old_lake(root)
    segs = sorted((root / "events").glob("date=*/*.parquet"))
    for seg in segs[:3]:  # the moves a killed run managed
        dest = root / OLD_SEGMENTS / seg.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(seg, dest)
    migrate(root, Lake(root))
    migrate(root, Lake(root))
    assert _count(Lake(root), "events") == (want["events"], want["events"])


def test_kill_9_during_migration_then_rerun(tmp_path: Path) -> None:
    """A migration killed at a random point and run again: every row once."""
    root = tmp_path / "lake"
    for i in range(40):  # enough segments that the kill lands mid-migration on some runs
        _segment(root, "events", D2, f"kafka~t~0~{i * 10}~{i * 10 + 9}", _events(range(i * 10, i * 10 + 10), D2))
    code = f"from tetrapipe.lake import Lake; from tetrapipe.lake.migrate import migrate; migrate({str(root)!r}, Lake({str(root)!r}))"
    proc = subprocess.Popen([sys.executable, "-c", code])
    moved = root / OLD_SEGMENTS / "events"
    while proc.poll() is None and not moved.exists():  # wait for the run to have started moving
        time.sleep(0.001)
    proc.kill()
    proc.wait()
    migrate(root, Lake(root))
    assert _count(Lake(root), "events") == (400, 400)
    assert Lake(root).table("events").transaction_version("kafka:t:0") == kafka_version(0, 399)


def test_an_unreadable_segment_costs_only_itself(tmp_path: Path) -> None:
    old = tmp_path / "old"
    _old_lake(old)
    bad = _segment(old, "events", D1, "20260309T130000-cccccccccccc", _events(range(900, 910), D1))
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    lake = Lake(tmp_path / "new")
    results = {r.table: r for r in migrate(old, lake)}
    assert results["events"].unreadable == [str(bad)]
    assert _count(lake, "events")[0] == 112


def test_a_processor_position_further_on_is_not_moved_back(tmp_path: Path) -> None:
    from tetrapipe.lake.positions import Position

    old = tmp_path / "old"
    _old_lake(old)
    lake = Lake(tmp_path / "new")
    lake.commit("events", _events(range(500, 501), D2), Position("kafka:tetragon:0", kafka_version(0, 50)))
    migrate(old, lake)
    assert lake.table("events").transaction_version("kafka:tetragon:0") == kafka_version(0, 50)
    assert lake.table("events").transaction_version("kafka:tetragon:1") == kafka_version(2, 6)


def test_nothing_of_the_old_layout_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(TetrapipeError, match="no segments of the old layout"):
        migrate(tmp_path / "empty", Lake(tmp_path / "new"))


def test_segments_added_after_a_migration_are_refused_not_doubled(tmp_path: Path) -> None:
    old = tmp_path / "old"
    want = _old_lake(old)
    lake = Lake(tmp_path / "new")
    migrate(old, lake)
    _segment(old, "events", D2, "kafka~tetragon~0~20~29", _events(range(120, 130), D2))  # an old writer kept going
    with pytest.raises(TetrapipeError, match="different set of old segments"):
        migrate(old, lake)
    assert _count(lake, "events") == (want["events"], want["events"])
