"""Lake maintenance on Delta: optimize, vacuum, retention, history, stats — tried against real writers and readers."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable

from tetrapipe.cli import cli
from tetrapipe.errors import TetrapipeError
from tetrapipe.lake import Lake
from tetrapipe.lake.maintenance import (
    configure,
    history,
    interval,
    optimize,
    retention,
    retention_cutoff,
    stats,
    vacuum,
)
from tetrapipe.lake.positions import Position
from tetrapipe.lake.store import TABLE_PROPERTIES
from tetrapipe.schema import SCHEMAS, conform

TODAY = dt.date(2026, 6, 1)
NOW = dt.datetime.combine(TODAY, dt.time(15), dt.UTC)


def _events(ids: range, day: dt.date = TODAY) -> pa.Table:
    base = dt.datetime.combine(day, dt.time(1))
    rows = pa.table(
        {
            "event_id": pa.array([f"e{i}" for i in ids]),
            "time": pa.array([base + dt.timedelta(seconds=i % 3600) for i in ids], pa.timestamp("us")),
        }
    )
    return conform(rows, SCHEMAS["events"])


def _small_commits(lake: Lake, n: int, per: int = 5, day: dt.date = TODAY) -> None:
    for i in range(n):
        lake.commit("events", _events(range(i * per, (i + 1) * per), day), Position("kafka:t:0", (i + 1) * per - 1))


def _ids(table: DeltaTable) -> list[str]:
    return table.to_pyarrow_table(columns=["event_id"]).column("event_id").to_pylist()


WRITER = """
import datetime as dt, sys
import pyarrow as pa
from tetrapipe.lake import Lake
from tetrapipe.lake.positions import Position
from tetrapipe.schema import SCHEMAS, conform
lake = Lake(sys.argv[1])
start, n = int(sys.argv[2]), int(sys.argv[3])
for i in range(start, start + n):
    t = pa.table({"event_id": [f"w{i}-{k}" for k in range(3)],
                  "time": pa.array([dt.datetime(2026, 6, 1 + i % 2, 2)] * 3, pa.timestamp("us"))})
    lake.commit("events", conform(t, SCHEMAS["events"]), Position("kafka:w:0", i))
print("done", flush=True)
"""


def test_optimize_while_a_writer_commits_and_a_reader_counts(tmp_path: Path) -> None:
    """No row lost, none seen twice by a reader at any moment, the writer never fails."""
    lake = Lake(tmp_path / "lake")
    _small_commits(lake, 20)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, lake.root, "0", "150"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen: list[tuple[int, int]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            ids = _ids(Lake(lake.root).table("events"))
            seen.append((len(ids), len(set(ids))))

    t = threading.Thread(target=reader)
    t.start()
    compacted = 0
    try:
        while writer.poll() is None or compacted == 0:
            for r in optimize(lake, ["events"]):
                compacted += r.files_removed
    finally:
        stop.set()
        t.join()
    out, errs = writer.communicate()
    assert writer.returncode == 0 and "done" in out, errs
    assert compacted > 0 and seen
    assert all(rows == distinct for rows, distinct in seen), "a reader saw a row twice"
    counts = [rows for rows, _ in seen]
    assert counts == sorted(counts), "a reader saw rows disappear"
    final = _ids(lake.table("events"))
    assert len(final) == len(set(final)) == 100 + 150 * 3
    assert lake.table("events").transaction_version("kafka:w:0") == 149


def test_two_optimizers_at_once_both_finish(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    _small_commits(lake, 30)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            optimize(Lake(lake.root))
        except BaseException as exc:  # noqa: BLE001 - the test reports whatever a thread raised
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(_ids(lake.table("events"))) == sorted(f"e{i}" for i in range(150))


def test_compact_is_optimize(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    _small_commits(lake, 10)
    result = CliRunner().invoke(cli, ["compact", "--lake", lake.root])
    assert result.exit_code == 0, result.output
    assert "events: 10 files compacted into 1" in result.output
    assert len(lake.table("events").file_uris()) == 1


def _codecs(table: DeltaTable) -> set[str]:
    """Every column chunk's compression codec, over the table's current files."""
    import pyarrow.parquet as pq

    codecs = set()
    for uri in table.file_uris():
        meta = pq.ParquetFile(uri.removeprefix("file://")).metadata
        for g in range(meta.num_row_groups):
            codecs |= {meta.row_group(g).column(c).compression for c in range(meta.num_columns)}
    return codecs


def test_appends_and_compactions_write_zstd(tmp_path: Path) -> None:
    """delta-rs would write Snappy, ~2.7x larger on events (migration: see test_lake_migrate)."""
    lake = Lake(tmp_path / "lake")
    _small_commits(lake, 3)
    assert _codecs(lake.table("events")) == {"ZSTD"}
    optimize(lake, ["events"])
    assert len(lake.table("events").file_uris()) == 1
    assert _codecs(lake.table("events")) == {"ZSTD"}


def test_vacuum_never_deletes_what_the_current_version_reads(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    _small_commits(lake, 12)
    optimize(lake)
    # the default retention keeps everything this young
    assert vacuum(lake)[0].deleted == []
    # the shortest retention deletes the compacted-away files, and only those
    gone = vacuum(lake, dt.timedelta(0))[0].deleted
    assert len(gone) == 12
    table = lake.table("events")
    assert all(Path(uri).exists() for uri in table.file_uris())
    assert len(_ids(table)) == 60
    with pytest.raises(Exception):  # noqa: B017 - delta-rs reports the missing file its own way
        lake.table("events", version=3).to_pyarrow_table()  # time travel before the retention: its files are gone


def test_vacuum_cli_warns_about_a_short_retention(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    _small_commits(lake, 3)
    ok = CliRunner().invoke(cli, ["lake", "vacuum", "--lake", lake.root, "--retention", "1h", "--dry-run"])
    assert ok.exit_code == 0, ok.output
    assert "under 7 days" in ok.output and "would delete 0 files" in ok.output
    bad = CliRunner().invoke(cli, ["lake", "vacuum", "--lake", lake.root, "--retention", "soon"])
    assert bad.exit_code == 2 and "not a duration" in bad.output


def test_retention_deletes_exactly_the_old_partitions(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    days = {TODAY - dt.timedelta(days=d): d for d in (0, 1, 88, 89, 90, 91, 400)}
    for i, day in enumerate(days):
        lake.commit("events", _events(range(i * 10, i * 10 + 10), day))
    undated = conform(pa.table({"event_id": ["no-time"]}), SCHEMAS["events"])
    lake.commit("events", undated)
    assert retention_cutoff(dt.timedelta(days=90), NOW) == (TODAY - dt.timedelta(days=89)).isoformat()
    [r] = retention(lake, dt.timedelta(days=90), ["events"], now=NOW)
    assert r.rows_deleted == 30  # 90, 91 and 400 days old
    left = lake.table("events").to_pyarrow_table()
    kept = {d for d in left.column("date").to_pylist()}
    assert kept == {(TODAY - dt.timedelta(days=d)).isoformat() for d in (0, 1, 88, 89)} | {None}
    assert "no-time" in left.column("event_id").to_pylist()
    # the files go at the vacuum, not before
    assert len(vacuum(lake, dt.timedelta(0))[0].deleted) == 3
    assert retention(lake, dt.timedelta(days=90), ["events"], now=NOW)[0].rows_deleted == 0
    with pytest.raises(TetrapipeError, match="today"):
        retention(lake, dt.timedelta(hours=12))


def test_retention_while_a_writer_commits_today(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    lake.commit("events", _events(range(0, 10), TODAY - dt.timedelta(days=200)))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, lake.root, "0", "60"], stderr=subprocess.PIPE, text=True)
    deleted = 0
    while writer.poll() is None or deleted == 0:
        deleted += retention(Lake(lake.root), dt.timedelta(days=30), ["events"], now=NOW)[0].rows_deleted
    _, errs = writer.communicate()
    assert writer.returncode == 0, errs
    assert deleted == 10
    assert len(set(_ids(lake.table("events")))) == 60 * 3


def test_history_and_stats(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    _small_commits(lake, 105, per=2)  # past delta-rs's checkpoint interval (100)
    lake.commit("events", _events(range(1000, 1002), TODAY - dt.timedelta(days=3)), Position("file:abc", 2))
    v = lake.table("events").version()
    commits = history(lake, "events", 3)
    assert [c.version for c in commits] == [v, v - 1, v - 2]
    assert commits[0].app_transactions == [("file:abc", 2)] and commits[0].rows_added == 2
    assert commits[1].app_transactions == [("kafka:t:0", 209)]
    [s] = stats(lake, ["events"])
    assert (s.version, s.files, s.rows, s.partitions) == (v, 106, 212, 2)
    assert (s.oldest, s.newest) == ((TODAY - dt.timedelta(days=3)).isoformat(), TODAY.isoformat())
    assert s.last_checkpoint == 99  # delta-rs's post-commit hook, every 100 commits
    assert s.log_files >= 5 and s.bytes > 0

    out = CliRunner().invoke(cli, ["lake", "stats", "--lake", lake.root])
    assert out.exit_code == 0, out.output
    assert f"events: version {v}, 106 files, 212 rows" in out.output
    hist = CliRunner().invoke(cli, ["lake", "history", "--lake", lake.root, "--limit", "2"])
    assert hist.exit_code == 0, hist.output
    assert "file:abc=2" in hist.output and "WRITE" in hist.output
    optimize(lake)
    assert stats(lake, ["events"])[0].files == 2  # one per date


def test_an_empty_lake_says_so(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "nothing")
    assert optimize(lake) == [] and stats(lake) == [] and history(lake, "events") == []
    out = CliRunner().invoke(cli, ["lake", "stats", "--lake", lake.root])
    assert out.exit_code == 0 and "no tables" in out.output
    with pytest.raises(TetrapipeError, match="no table nope"):
        optimize(lake, ["nope"])


def _wait_past(moment: float, seconds: float) -> None:
    """Wait until ``seconds`` have passed since ``moment`` (the condition is the clock itself)."""
    while time.time() < moment + seconds:
        time.sleep(0.02)


def test_new_tables_keep_a_day_of_log_and_configure_changes_it(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    _small_commits(lake, 2)
    props = lake.table("events").metadata().configuration
    assert props["delta.logRetentionDuration"] == TABLE_PROPERTIES["delta.logRetentionDuration"] == "interval 1 days"
    assert props["delta.deletedFileRetentionDuration"] == "interval 1 days"
    out = CliRunner().invoke(cli, ["lake", "configure", "--lake", lake.root, "--log-retention", "7d"])
    assert out.exit_code == 0, out.output
    assert "events: delta.logRetentionDuration = interval 7 days" in out.output
    assert lake.table("events").metadata().configuration["delta.logRetentionDuration"] == "interval 7 days"
    shown = CliRunner().invoke(cli, ["lake", "stats", "--lake", lake.root])
    assert "log kept 7 days, removed files tracked 1 day" in shown.output
    assert _ids(lake.table("events")) and lake.committed("events", "kafka:t:0") == 9  # data and position untouched
    nothing = CliRunner().invoke(cli, ["lake", "configure", "--lake", lake.root])
    assert nothing.exit_code == 2 and "nothing to change" in nothing.output
    assert interval(dt.timedelta(hours=36)) == "interval 36 hours" and interval(dt.timedelta(seconds=90)) == (
        "interval 90 seconds"
    )


def test_the_log_stays_bounded_and_keeps_every_position(tmp_path: Path) -> None:
    """Commit entries past the log retention go at checkpoints; the positions they carried stay in the checkpoint."""
    lake = Lake(tmp_path / "lake")
    _small_commits(lake, 1)
    configure(lake, {"delta.logRetentionDuration": interval(dt.timedelta(seconds=1)), "delta.checkpointInterval": "10"})
    for i in range(30):  # each commit its own input, as 30 files or partitions would be
        lake.commit("events", _events(range(100 + i, 101 + i)), Position(f"file:f{i}", i + 1))
    _wait_past(time.time(), 1.1)
    for i in range(30, 60):
        lake.commit("events", _events(range(100 + i, 101 + i)), Position(f"file:f{i}", i + 1))
    [s] = stats(lake, ["events"])
    assert s.log_files < 40, s  # 62 commits, the first ~30 expired: one checkpoint and the entries after it
    assert [lake.committed("events", f"file:f{i}") for i in range(60)] == list(range(1, 61))
    assert lake.committed("events", "kafka:t:0") == 4
    assert sorted(_ids(lake.table("events"))) == sorted(
        [f"e{i}" for i in range(5)] + [f"e{i}" for i in range(100, 160)]
    )
    # a second writer's snapshot, opened after the cleanup, skips what is held
    assert not Lake(lake.root).commit("events", _events(range(100, 101)), Position("file:f0", 1))


def test_vacuum_deletes_files_whose_tombstones_expired(tmp_path: Path) -> None:
    """delta-rs's default vacuum only looks at tombstones: one that left the checkpoints would leak its file."""
    lake = Lake(tmp_path / "lake")
    _small_commits(lake, 4)
    configure(lake, {"delta.deletedFileRetentionDuration": interval(dt.timedelta(seconds=1))})
    optimize(lake)
    removed_at = time.time()
    live = set(lake.table("events").file_uris())
    _wait_past(removed_at, 1.1)
    lake.table("events").create_checkpoint()  # the checkpoint no longer lists the expired tombstones
    gone = vacuum(lake, dt.timedelta(0))[0].deleted
    assert len(gone) == 4
    on_disk = {str(p) for p in (Path(lake.root) / "events").glob("date=*/*.parquet")}
    assert on_disk == {str(Path(u)) for u in live}
    assert len(_ids(lake.table("events"))) == 20


def test_a_value_holding_unicode_line_separators_does_not_cut_the_log_entries(tmp_path: Path) -> None:
    """Column statistics in the Delta log carry event values: U+2028, U+2029 and U+0085 are not line ends there.

    ``str.splitlines`` cuts at them, so ``lake history`` crashed on a lake holding such an event id, and
    the owner-only pass over a commit's files stopped reading its entry at that point (the files listed
    after it kept whatever mode a default ACL gave them).
    """
    lake = Lake(tmp_path / "lake")
    rows = _events(range(3))
    odd = pa.array(["a\u2028b", "c\u0085d", "e\u2029f"])  # the min and the max of event_id are logged as stats
    lake.commit("events", rows.set_column(0, "event_id", odd), Position("file:odd", 3))
    [entry] = [c for c in history(lake, "events", 5) if c.rows_added]
    assert entry.app_transactions == [("file:odd", 3)]
    hist = CliRunner().invoke(cli, ["lake", "history", "--lake", lake.root])
    assert hist.exit_code == 0 and "file:odd=3" in hist.output, hist.output
    data = [p for p in (tmp_path / "lake" / "events").rglob("*.parquet")]
    assert data
    for p in data:
        p.chmod(0o644)  # as a default ACL could leave it
    lake._chmod_commit("events", None)
    assert {oct(p.stat().st_mode & 0o777) for p in data} == {"0o600"}
