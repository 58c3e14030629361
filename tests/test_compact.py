"""Compaction merges small segments and never loses or doubles a row, even across a crash."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from conftest import REAL_LOGS

from tetrapipe.lake import Lake, connect
from tetrapipe.lake.maintenance import compact, recover
from tetrapipe.lake.positions import committed_offsets, segment_name
from tetrapipe.transforms.normalize import normalize_lines


def _events() -> list:
    lines = [line for p in REAL_LOGS for line in p.read_text().splitlines() if line.strip()]
    return normalize_lines(lines).events


def _count(lake: Lake) -> tuple[int, int]:
    con = connect(lake)
    return con.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()


def _write_kafka_segments(lake: Lake, n: int) -> int:
    """n small segments of one partition, all dated the same day so they compact together."""
    events = _events()
    events = events.set_column(
        1, "time", pa.array([dt.datetime(2026, 3, 10, 9, 0, i) for i in range(events.num_rows)], pa.timestamp("us"))
    )
    per = max(1, events.num_rows // n)
    offset = 0
    total = 0
    for i in range(n):
        part = events.slice(i * per, per)
        if part.num_rows == 0:
            continue
        lake.write("events", part, segment=segment_name("t", 0, offset, offset + part.num_rows - 1))
        offset += part.num_rows
        total += part.num_rows
    return total


def test_compaction_keeps_rows_and_committed_offsets(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    total = _write_kafka_segments(lake, 12)
    before_files = len(lake.segments("events"))
    before = _count(lake)
    offsets = committed_offsets(lake, "t")
    result = compact(lake, min_files=3, skip_newest=1)
    assert result.merged_files >= 3 and result.rows > 0
    assert len(lake.segments("events")) < before_files
    assert _count(lake) == before and before[0] == total
    assert committed_offsets(lake, "t") == offsets  # the processor resumes at the same place


def test_crash_after_rename_is_recovered(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    _write_kafka_segments(lake, 6)
    before = _count(lake)
    segs = lake.segments("events")
    # simulate: merged file renamed into place, originals not yet deleted, journal present
    merged = segs[0].parent / "kafka~t~0~0~999999.parquet"
    tables = [pq.read_table(p) for p in segs[:3]]
    pq.write_table(pa.concat_tables(tables), merged)
    jdir = lake.root / "_state" / "compaction"
    jdir.mkdir(parents=True)
    (jdir / "x.json").write_text(
        json.dumps({"merged": str(merged), "tmp": str(merged) + ".tmp", "replaces": [str(p) for p in segs[:3]]})
    )
    assert _count(lake)[0] > before[0]  # the crash window: duplicates visible
    assert recover(lake) == 1
    assert _count(lake) == before


def test_crash_before_rename_drops_the_temp(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    _write_kafka_segments(lake, 4)
    before = _count(lake)
    segs = lake.segments("events")
    tmp = segs[0].parent / ".merged.tmp"
    tmp.write_bytes(b"partial")
    jdir = lake.root / "_state" / "compaction"
    jdir.mkdir(parents=True)
    (jdir / "y.json").write_text(
        json.dumps(
            {
                "merged": str(segs[0].parent / "kafka~t~0~0~5.parquet"),
                "tmp": str(tmp),
                "replaces": [str(p) for p in segs],
            }
        )
    )
    recover(lake)
    assert not tmp.exists() and all(p.exists() for p in segs)
    assert _count(lake) == before


def test_segments_written_before_a_column_existed_still_merge_and_read(tmp_path: Path) -> None:
    """A lake from an older tetrapipe (no tls_cipher_code yet) compacts and queries with the column NULL."""
    lake = Lake(tmp_path / "lake")
    events = _events()
    events = events.set_column(
        1,
        "time",
        pa.array([dt.datetime(2026, 3, 10, 9, 0, i % 60) for i in range(events.num_rows)], pa.timestamp("us")),
    )
    old = events.drop_columns(["tls_cipher_code"])
    day = lake.root / "events" / "date=2026-03-10"
    day.mkdir(parents=True)
    for i in range(4):
        pq.write_table(old, day / f"20260310T09000{i}-old{i:05d}.parquet")
    lake.write("events", events)
    result = compact(lake, min_files=3, skip_newest=0)
    assert result.merged_files >= 4
    con = connect(lake)
    total, codes = con.execute("SELECT count(*), count(tls_cipher_code) FROM events").fetchone()
    assert total == 5 * events.num_rows and codes == 0
