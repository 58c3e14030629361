"""DuckDB's own Parquet reader (a local lake) answers exactly what the pyarrow datasets answer.

Every view, the trees, an old version, a broken data file and a table whose
schema grew: the same rows, the same column types, the same bytes out of
``query``'s writers, read both ways side by side.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from click.testing import CliRunner
from conftest import SAMPLES
from deltalake import write_deltalake

from tetrapipe.cli import cli
from tetrapipe.lake import Lake, Position
from tetrapipe.lake.native import NativeScan, native_scan, read_local_log
from tetrapipe.lake.query import execute, to_csv, to_json
from tetrapipe.lake.views import LakeViews, names_read
from tetrapipe.schema import EVENT_SCHEMA, TABLES
from tetrapipe.tree import Selection, build_tree, list_pods

READERS = ("auto", "arrow")


@pytest.fixture(scope="module")
def samples_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The samples ingested with the shipped rules (events, alerts, tls_stats) and a file of junk (rejects)."""
    base = tmp_path_factory.mktemp("native")
    junk = base / "junk.jsonl"
    junk.write_text('{"process_exec": \n not json at all\n{"time": 3}\n')
    root = base / "lake"
    result = CliRunner().invoke(cli, ["ingest", str(SAMPLES), str(junk), "--lake", str(root), "-q"])
    assert result.exit_code == 0, result.output
    return root


def _both(lake: Path | Lake, sql: str, **kw: object) -> list[pa.Table]:
    out = []
    for reader in READERS:
        with LakeViews(lake, reader=reader, **kw) as views:
            out.append(views.run(lambda con: con.sql(sql).to_arrow_table()))
            assert bool(views._native) == (reader == "auto")
    return out


def test_every_view_has_the_same_columns_rows_and_output_bytes(samples_lake: Path) -> None:
    with LakeViews(samples_lake) as views:
        assert set(views._native) == {"events", "alerts", "tls_stats", "rejects"} & {
            n for n, v in views.versions.items() if v is not None
        }
        assert views.versions["rejects"] is not None, "the junk made a rejects table"
    # the dates come from the directories, a null date (an event without a time) included
    scan = native_scan(Lake(samples_lake).table("events"))
    assert scan is not None and scan.hive and (None,) in scan.partitions
    for name in (*TABLES, "processes"):
        native, arrow = _both(samples_lake, f"SELECT * FROM {name} ORDER BY ALL")
        assert native.num_rows > 0, name
        assert native.schema == arrow.schema, name
        assert native.equals(arrow), name
        assert to_json(native) == to_json(arrow) and to_csv(native) == to_csv(arrow), name
        described = _both(samples_lake, f"DESCRIBE {name}")
        assert described[0].equals(described[1]), name
    for sql in (
        "SELECT kind, count(*) AS n, min(time), max(date) FROM events GROUP BY ALL ORDER BY ALL",
        "SELECT count(*) FROM events WHERE date = '2022-01-19' AND time > '2022-01-19 12:00'",
        "SELECT pod_labels, arguments FROM events WHERE pod IS NOT NULL ORDER BY ALL LIMIT 7",
    ):
        native, arrow = _both(samples_lake, sql)
        assert native.equals(arrow), sql


def test_trees_and_the_pod_list_are_the_same(samples_lake: Path) -> None:
    trees, pods = [], []
    for reader in READERS:
        with LakeViews(samples_lake, reader=reader, tables=("events", "alerts"), tree_macros=False) as views:
            pods.append(views.run(list_pods))
            trees.append(
                [views.run(lambda con, p=p: build_tree(con, Selection(pod=p)).to_dict()) for p in ("crawler",)]
            )
    assert pods[0] == pods[1] and len(pods[0]) > 1
    assert trees[0] == trees[1] and trees[0][0]["processes"]


def test_broken_files_are_left_out_and_named_the_same_way(samples_lake: Path, tmp_path: Path, caplog) -> None:
    """A truncated file, one that is not Parquet and one gone from the disk: both readers answer from the rest
    and name each (DuckDB looks for a gone file as it binds the view: it is left out there)."""
    skipped, counts = [], []
    for reader in READERS:  # a copy each: a file found unreadable is remembered per table for the process
        lake = tmp_path / reader
        shutil.copytree(samples_lake, lake)
        cut, junk, gone = (next((lake / "events" / f"date={d}").glob("*.parquet")) for d in _DAYS)
        with open(cut, "r+b") as f:
            f.truncate(cut.stat().st_size // 2)
        junk.write_bytes(b"not parquet at all\n")
        gone.unlink()
        caplog.clear()
        with LakeViews(lake, reader=reader) as views, caplog.at_level(logging.WARNING, "tetrapipe.lake"):
            counts.append(views.run(lambda con: con.sql("SELECT count(*), count(DISTINCT pod) FROM events").fetchall()))
            skipped.append(sorted(views.skipped))
            for f in (cut, junk, gone):
                assert f.name in caplog.text
            assert caplog.text.count("skipping unreadable data file") == 3
    assert skipped[0] == skipped[1] and len(skipped[0]) == 3
    assert counts[0] == counts[1] and 0 < counts[0][0][0] < 190


#: three days of the samples with one data file each
_DAYS = ("2022-01-19", "2021-10-18", "2022-02-01")


def test_as_of_reads_the_old_files_both_ways(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    for b in range(3):
        rows = [
            {"event_id": f"b{b}-{i}", "time": dt.datetime(2026, 3, 10 + b, 9, 0, i), "kind": "process_exec"}
            for i in range(5)
        ]
        lake.commit("events", pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), Position("file:x", b + 1))
    first = lake.table("events").version() - 2
    from tetrapipe.lake.asof import AsOf

    native, arrow = _both(lake, "SELECT event_id, date FROM events ORDER BY ALL", as_of=AsOf(version=first))
    assert native.equals(arrow) and native.num_rows == 5
    native, arrow = _both(lake, "SELECT event_id, date FROM events ORDER BY ALL")
    assert native.equals(arrow) and native.num_rows == 15


def test_a_column_added_later_reads_as_null_in_the_older_files(tmp_path: Path) -> None:
    """Schema evolution: files written before a column joined the table do not have it; both readers say NULL."""
    lake = Lake(tmp_path / "lake")
    added = ["tls_cipher_code", "pod_labels"]
    older = pa.schema([f for f in EVENT_SCHEMA if f.name not in added])
    first = [{"event_id": "old", "time": dt.datetime(2026, 3, 10, 9), "kind": "process_exec"}]
    # what an older tetrapipe wrote (its schema had neither column): Lake.commit would add them
    old = pa.Table.from_pylist(first, schema=older).append_column("date", pa.array(["2026-03-10"]))
    write_deltalake(lake.table_uri("events"), old, partition_by=["date"])
    assert "pod_labels" not in {f.name for f in lake.table("events").schema().fields}
    later = [
        {"event_id": "new", "time": dt.datetime(2026, 3, 10, 10), "kind": "process_exec", "tls_cipher_code": 4865}
        | {"pod_labels": [("app", "x")]}
    ]
    lake.commit("events", pa.Table.from_pylist(later, schema=EVENT_SCHEMA), Position("file:b", 1))
    scan = native_scan(lake.table("events"))
    assert isinstance(scan, NativeScan) and scan.hive
    native, arrow = _both(lake, "SELECT * FROM events ORDER BY event_id")
    assert native.equals(arrow)
    rows = {r["event_id"]: r for r in native.to_pylist()}
    assert rows["old"]["tls_cipher_code"] is None and rows["old"]["pod_labels"] is None
    assert rows["new"]["tls_cipher_code"] == 4865 and rows["new"]["pod_labels"] == [("app", "x")]
    described = _both(lake, "DESCRIBE events")
    assert described[0].equals(described[1])


def test_a_lake_under_a_key_value_directory_takes_the_date_from_the_log(samples_lake: Path, tmp_path: Path) -> None:
    """DuckDB would read every ``k=v`` directory of a path as a column: under one, the date is a constant per
    date from the log (one read per date) instead of the path, with the same rows and no extra column."""
    root = tmp_path / "x=1" / "lake"
    shutil.copytree(samples_lake, root)
    scan = native_scan(Lake(root).table("events"))
    assert scan is not None and not scan.hive and len(set(scan.partitions)) > 1
    native, arrow = _both(root, "SELECT * FROM events ORDER BY ALL")
    assert native.equals(arrow) and "x" not in native.column_names
    whole, _ = _both(samples_lake, "SELECT * FROM events ORDER BY ALL")
    assert native.equals(whole)
    for sql in ("SELECT count(*) FROM events WHERE date = '2022-01-19'", "SELECT DISTINCT date FROM events ORDER BY 1"):
        native, arrow = _both(root, sql)
        assert native.equals(arrow) and native.num_rows > 0, sql


def test_a_query_defines_the_processes_view_only_when_it_names_it(samples_lake: Path) -> None:
    """Binding ``processes`` costs a query of ``events`` tens of milliseconds: defined only when named (or a tree
    macro is), and a name word matching cannot see still finds it (the query runs again over everything)."""
    assert names_read("SELECT count(*) FROM events") == ({"events"}, False)
    assert names_read("SELECT count(*) FROM processes") == ({"events", "processes"}, False)
    assert names_read("SELECT * FROM process_tree(pod_name := 'x')") == ({"events", "processes"}, True)
    with LakeViews(samples_lake, tables={"events"}, tree_macros=False, processes=False) as views:
        names = {r[0] for r in views.con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert "events" in names and "processes" not in names
    lake = Lake(samples_lake)
    hidden = execute(lake, "SELECT count(*) AS n FROM query_table('proc' || 'esses')")
    assert hidden.equals(execute(lake, "SELECT count(*) AS n FROM processes")) and hidden.column("n")[0].as_py() > 0


def _same_as_delta_rs(lake: Lake, name: str = "events") -> NativeScan:
    """The log replayed here lists what delta-rs lists: the same files in the same order, dates, columns, version."""
    snapshot = read_local_log(lake.table_uri(name), duckdb.connect())
    table = lake.table(name)
    assert snapshot is not None and table is not None
    assert snapshot.scan == native_scan(table)
    assert (snapshot.version, snapshot.table_uri) == (table.version(), table.table_uri)
    return snapshot.scan


def test_the_log_is_replayed_as_delta_rs_reads_it(tmp_path: Path) -> None:
    """Commits of several dates each, a checkpoint with the commits before it cleaned up, a compaction's removes,
    a retention's deletes: at every step the files a query reads are delta-rs's, in its order."""
    from tetrapipe.lake.maintenance import optimize, retention

    lake = Lake(tmp_path / "lake")
    today = dt.datetime.now(dt.UTC).replace(tzinfo=None, hour=9, minute=0, second=0, microsecond=0)

    def commit(batch: int) -> None:
        rows = [
            {"event_id": f"b{batch}-{d}-{i}", "time": today - dt.timedelta(days=d, seconds=i), "kind": "process_exec"}
            for d in (0, 3, 20)
            for i in range(2)
        ]
        lake.commit("events", pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), Position("file:x", batch))

    for b in range(1, 5):
        commit(b)
    assert len(_same_as_delta_rs(lake).files) == 12
    lake.table("events").create_checkpoint()
    log = Path(lake.table_uri("events")) / "_delta_log"
    checkpoint = int(next(log.glob("*.checkpoint.parquet")).name[:20])
    for old in log.glob("*.json"):  # what log cleanup leaves: only the checkpoint says what came before
        if int(old.name[:20]) < checkpoint:
            old.unlink()
    lake = Lake(lake.root)  # (the first one's cached table would look for the log files just removed)
    commit(5)
    commit(6)
    assert len(_same_as_delta_rs(lake).files) == 18
    optimize(lake, ["events"])
    assert len(_same_as_delta_rs(lake).files) == 3  # one file per date
    retention(lake, dt.timedelta(days=7), ["events"])
    scan = _same_as_delta_rs(lake)
    assert len(scan.files) == 2 and len(set(scan.partitions)) == 2
    with LakeViews(lake) as views:
        assert views.con.sql("SELECT count(*) FROM events").fetchall() == [(24,)]
    # a commit missing from the middle of the log: not replayed here (delta-rs reads the table, or says why not)
    newest = max(int(p.name[:20]) for p in log.glob("*.json"))
    (log / f"{newest - 1:020d}.json").unlink()
    assert read_local_log(lake.table_uri("events"), duckdb.connect()) is None
    assert read_local_log(str(tmp_path / "nothing"), duckdb.connect()) is None


def test_a_checkpoint_alone_is_the_whole_log(samples_lake: Path, tmp_path: Path) -> None:
    """Every commit file cleaned up, the newest checkpoint's own included: the checkpoint says the version."""
    root = tmp_path / "lake"
    shutil.copytree(samples_lake, root)
    lake = Lake(root)
    lake.table("events").create_checkpoint()
    for commit in (root / "events" / "_delta_log").glob("*.json"):
        commit.unlink()
    assert len(_same_as_delta_rs(lake).files) > 1
