"""The read side over Delta: views over one snapshot, pruning, time travel, a bad data file, a concurrent writer."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import REPO, SAMPLES

from tetrapipe.cli import cli
from tetrapipe.flows.ingest import ingest
from tetrapipe.lake import Lake, Position
from tetrapipe.lake.asof import AsOf, commit_time
from tetrapipe.lake.query import QueryError, execute
from tetrapipe.lake.scan import table_dataset
from tetrapipe.lake.views import LakeViews, connect
from tetrapipe.ruleset.backtest import backtest
from tetrapipe.ruleset.loader import load_ruleset
from tetrapipe.schema import ALERT_SCHEMA, EVENT_SCHEMA, SCHEMAS, TABLES
from tetrapipe.sources.files import expand_inputs
from tetrapipe.transforms.ancestry import AncestryTransform
from tetrapipe.tree import Selection, build_tree

DAY = dt.datetime(2026, 3, 10, 9, 0)


def events(n: int, first: dt.datetime, tag: str) -> pa.Table:
    """``n`` process_exec rows a second apart from ``first``, each with its own event_id."""
    return pa.Table.from_pylist(
        [{"event_id": f"{tag}-{i}", "time": first + dt.timedelta(seconds=i), "kind": "process_exec"} for i in range(n)],
        schema=EVENT_SCHEMA,
    )


def alert(tag: str, when: dt.datetime) -> pa.Table:
    row = dict.fromkeys(ALERT_SCHEMA.names)
    row.update(alert_id=tag, rule_id="r", title="t", severity="high", time=when, last_time=when, count=1)
    return pa.Table.from_pylist([row], schema=ALERT_SCHEMA)


def data_files(lake: Lake, table: str, date: str) -> list[Path]:
    return sorted((Path(lake.root) / table / f"date={date}").glob("*.parquet"))


def truncate(path: Path) -> None:
    """Cut a data file in half: its footer is gone, as after a crash or a disk that filled up mid-copy."""
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _count(lake: Lake | LakeViews, sql: str) -> int:
    views = lake if isinstance(lake, LakeViews) else LakeViews(lake)
    try:
        return views.run(lambda con: con.sql(sql).fetchall()[0][0])
    finally:
        if views is not lake:
            views.close()


@pytest.fixture
def three_days(tmp_path: Path) -> Lake:
    """events of 2026-03-10, -11, -12: two commits (two files) of 100 rows a day, at 09:00 and at 09:10."""
    lake = Lake(tmp_path / "lake")
    for day in range(3):
        for k in range(2):
            first = DAY + dt.timedelta(days=day, minutes=10 * k)
            lake.commit("events", events(100, first, f"d{day}k{k}"), Position(f"file:d{day}", k + 1))
    return lake


def test_views_read_the_delta_tables_with_date_as_text_and_missing_tables_empty_and_typed(three_days: Lake) -> None:
    with LakeViews(three_days) as views:
        con = views.con
        assert views.versions["events"] is not None and views.versions["alerts"] is None
        n, distinct, first, kind = con.sql(
            "SELECT count(*), count(DISTINCT event_id), min(date), typeof(min(date)) FROM events"
        ).fetchall()[0]
        assert (n, distinct, first, kind) == (600, 600, "2026-03-10", "VARCHAR")
        for name in TABLES:  # every view: the table's columns in order, then date
            cols = [r[0] for r in con.sql(f"DESCRIBE {name}").fetchall()]
            assert cols == [*SCHEMAS[name].names, "date"], name
        assert con.sql("SELECT count(*) FROM alerts").fetchall() == [(0,)]
        assert con.sql("SELECT count(*) FROM processes").fetchall() == [(0,)]
        # the views are the only names a query lists (the registered datasets stay hidden)
        names = {r[0] for r in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert {n for n in names if not n.startswith("_")} == {*TABLES, "processes"}


def test_a_filter_on_date_or_time_never_opens_the_files_that_cannot_match(three_days: Lake, caplog) -> None:
    """Pruning reaches the files through pyarrow (the object-store path): with 03-10, 03-11 and the 09:00 file of
    03-12 broken, queries that cannot match them read clean: by partition (date, or time through it) and by a
    file's min/max time."""
    broken, early_12 = _break_all_but_the_last_file(three_days)
    with LakeViews(three_days, reader="arrow") as views, caplog.at_level(logging.WARNING, "tetrapipe.lake"):
        assert _count(views, "SELECT count(*) FROM events WHERE time >= TIMESTAMP '2026-03-12 09:10'") == 100
        assert (
            _count(views, "SELECT count(*) FROM events WHERE date >= '2026-03-12' AND time > '2026-03-12 09:05'") == 100
        )
        assert views.skipped == [] and not caplog.records
        # the query over every day does meet them: it answers from the rest and names each file
        assert _count(views, "SELECT count(*) FROM events") == 100
        assert len(views.skipped) == 5 and len(caplog.records) == 5
        assert {Path(s).name for s in views.skipped} == {f.name for f in [*broken, *early_12]}
        assert "skipping unreadable data file" in caplog.text


def test_the_native_reader_skips_other_dates_unopened_and_prunes_time_inside_the_files(
    three_days: Lake, caplog
) -> None:
    """DuckDB's own reader (a local lake): a filter on date never opens another date's files (the partition is
    in the path); a filter on time reads each remaining file's footer, so a broken file there is met, named and
    left out, and the answer is the one the whole lake gives."""
    broken, early_12 = _break_all_but_the_last_file(three_days)
    with LakeViews(three_days) as views, caplog.at_level(logging.WARNING, "tetrapipe.lake"):
        assert set(views._native) == {"events"}  # the path under test
        assert (
            _count(views, "SELECT count(*) FROM events WHERE date > '2026-03-11' AND time > '2026-03-12 09:05'") == 100
        )
        assert views.skipped == [f"date=2026-03-12/{early_12[0].name}"]  # its own date's broken file only
        assert _count(views, "SELECT count(*) FROM events WHERE time >= TIMESTAMP '2026-03-12 09:10'") == 100
        assert {Path(s).name for s in views.skipped} == {f.name for f in [*broken, *early_12]}
        assert len(caplog.records) == 5 and "No magic bytes" in caplog.text
        assert _count(views, "SELECT count(*) FROM events") == 100


def _break_all_but_the_last_file(lake: Lake) -> tuple[list[Path], list[Path]]:
    """Truncate the files of 03-10 and 03-11 and the 09:00 file of 03-12: the 09:10 file of 03-12 stays whole."""
    broken = [*data_files(lake, "events", "2026-03-10"), *data_files(lake, "events", "2026-03-11")]
    early_12 = [
        f for f in data_files(lake, "events", "2026-03-12") if pq.read_metadata(f).num_rows and _starts(f, 9, 0)
    ]
    assert len(broken) == 4 and len(early_12) == 1
    for f in [*broken, *early_12]:
        truncate(f)
    return broken, early_12


def _starts(path: Path, hour: int, minute: int) -> bool:
    first = pq.read_table(path, columns=["time"]).column("time")[0].as_py()
    return (first.hour, first.minute) == (hour, minute)


def test_query_answers_without_a_truncated_file_and_names_it_on_stderr(three_days: Lake) -> None:
    bad = data_files(three_days, "events", "2026-03-11")[0]
    truncate(bad)
    proc = subprocess.run(
        [sys.executable, "-m", "tetrapipe", "query", "SELECT count(*) AS n FROM events", "--format", "json"]
        + ["--lake", str(three_days.root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"n": 500}]
    assert bad.name in proc.stderr and "unreadable" in proc.stderr
    assert proc.stderr.count("skipping") == 1
    # in one process, a later connection leaves the file out from the start, and says so again
    assert execute(three_days, "SELECT count(*) AS n FROM processes").num_rows == 1
    with LakeViews(three_days) as views:
        assert _count(views, "SELECT count(*) FROM events") == 500
        assert views.skipped == [f"date=2026-03-11/{bad.name}"]


def test_an_error_naming_no_file_is_not_stepped_over(three_days: Lake) -> None:
    with pytest.raises(QueryError, match="Conversion Error|Could not convert"):
        execute(three_days, "SELECT event_id::INTEGER FROM events")


@pytest.fixture(scope="module")
def samples_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("samples") / "lake")
    ingest(expand_inputs([str(SAMPLES)]), lake, transforms=[AncestryTransform()])
    return lake


def test_tree_and_backtest_step_over_a_truncated_file(samples_lake: Lake, tmp_path: Path, caplog) -> None:
    # a copy: the module's lake stays whole for the other tests
    lake = Lake(tmp_path / "lake")
    subprocess.run(["cp", "-a", str(samples_lake.root), str(lake.root)], check=True)
    whole = build_tree(lake, Selection(pod="crawler"))
    # (first-seen rules left out: a lost day moves a key's learning period, so their later alerts change too)
    rules = [r for r in load_ruleset([REPO / "rules"]).enabled() if r.first_seen is None]
    alerts_whole = backtest(lake, rules)
    (bad,) = data_files(lake, "events", "2022-01-19")  # the privileged pod's day: not the crawler's
    truncate(bad)
    with caplog.at_level(logging.WARNING, "tetrapipe.lake"):
        view = build_tree(lake, Selection(pod="crawler"))
        assert view.counts() == whole.counts()
        assert bad.name in caplog.text
        caplog.clear()
        alerts = backtest(lake, rules)
        assert bad.name in caplog.text
    lost = {r["alert_id"] for r in alerts_whole.to_pylist() if str(r["time"]).startswith("2022-01-19")}
    assert lost, "the broken day had alerts"
    assert {r["alert_id"] for r in alerts.to_pylist()} == {r["alert_id"] for r in alerts_whole.to_pylist()} - lost
    # the command line: the pods listed are every pod but the broken day's, and the file is named on stderr
    proc = subprocess.run(
        [sys.executable, "-m", "tetrapipe", "tree", "--format", "json", "--lake", str(lake.root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    pods = {p["pod"] for p in json.loads(proc.stdout)}
    assert "privileged-pod" not in pods and any(p.startswith("crawler") for p in pods)
    assert bad.name in proc.stderr


# --- time travel -------------------------------------------------------------------------------------


def _after_last_commit(lake: Lake) -> None:
    """Wait until the clock has moved past the newest commit (commits are told apart to the millisecond)."""
    newest = max(commit_time(t, t.version()) for t in (lake.table(n) for n in TABLES) if t is not None).timestamp()
    while time.time() < newest + 0.005:
        time.sleep(0.001)


@pytest.fixture
def batches(tmp_path: Path) -> tuple[Lake, dict[str, list[int]], list[dt.datetime]]:
    """Three batches, each committing an alert and then its events (the order a flow commits them)."""
    lake = Lake(tmp_path / "lake")
    versions: dict[str, list[int]] = {"alerts": [], "events": []}
    moments = []
    for b in range(3):
        when = DAY + dt.timedelta(hours=b)
        lake.commit("alerts", alert(f"a{b}", when), Position("file:x", b + 1))
        lake.commit("events", events(10, when, f"b{b}"), Position("file:x", b + 1))
        for name in versions:
            versions[name].append(lake.table(name).version())
        _after_last_commit(lake)
        moments.append(dt.datetime.now(dt.UTC))
    return lake, versions, moments


def _held(lake: Lake, as_of: AsOf) -> tuple[int, int]:
    with LakeViews(lake, as_of) as views:
        return _count(views, "SELECT count(*) FROM events"), _count(views, "SELECT count(*) FROM alerts")


def test_as_of_a_version_of_events_reads_every_table_as_of_its_commit(batches) -> None:
    lake, versions, _ = batches
    assert _held(lake, AsOf(version=versions["events"][0])) == (10, 1)
    assert _held(lake, AsOf(version=versions["events"][1])) == (20, 2)
    assert _held(lake, AsOf()) == (30, 3)  # an AsOf of nothing: the newest


def test_as_of_an_alerts_version_shows_what_the_lake_held_when_that_alert_was_written(batches) -> None:
    lake, versions, _ = batches
    # the second alert is committed before its batch's events: as of it, the events of the first batch only
    assert _held(lake, AsOf(table="alerts", version=versions["alerts"][1])) == (10, 2)


def test_as_of_a_time_reads_every_table_then_and_nothing_before_it_existed(batches) -> None:
    lake, _, moments = batches
    assert _held(lake, AsOf(time=moments[0])) == (10, 1)
    assert _held(lake, AsOf(time=moments[2])) == (30, 3)
    assert _held(lake, AsOf(time=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))) == (0, 0)


def test_as_of_on_the_command_line(batches) -> None:
    lake, versions, moments = batches

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["query", *args, "--lake", str(lake.root)])
        return result.exit_code, result.output

    code, out = run("SELECT count(*) AS n FROM events", "--format", "json", "--as-of", str(versions["events"][0]))
    assert code == 0 and json.loads(out) == [{"n": 10}]
    code, out = run("SELECT count(*) AS n FROM alerts", "--format", "json", "--as-of", moments[1].isoformat())
    assert code == 0 and json.loads(out) == [{"n": 2}]
    code, out = run("SELECT count(*) FROM events", "--as-of", "99")
    assert code == 2 and "no version 99" in out and f"newest is {versions['events'][-1]}" in out
    code, out = run("SELECT count(*) FROM events", "--as-of", "yesterday")
    assert code == 2 and "--as-of" in out and "ISO time" in out


def test_as_of_forms() -> None:
    assert AsOf.parse("12") == AsOf(version=12, table="events")
    assert AsOf.parse("alerts@7") == AsOf(version=7, table="alerts")
    assert AsOf.parse("2026-03-10").time == dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
    assert AsOf.parse("2026-03-10 09:00").time == dt.datetime(2026, 3, 10, 9, tzinfo=dt.UTC)
    assert AsOf.parse("2026-03-10T09:00+02:00").time == dt.datetime(2026, 3, 10, 7, tzinfo=dt.UTC)
    for bad in ("yesterday", "nosuch@3", "-1", "events@"):
        with pytest.raises(ValueError):
            AsOf.parse(bad)


# --- a reader beside a writer ------------------------------------------------------------------------

WRITER = """
import datetime as dt, sys
import pyarrow as pa
from tetrapipe.lake import Lake, Position
from tetrapipe.schema import EVENT_SCHEMA
lake, commits, rows = Lake(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for c in range(commits):
    t0 = dt.datetime(2026, 3, 10, 9) + dt.timedelta(minutes=c)
    batch = [{"event_id": f"c{c}-{i}", "time": t0 + dt.timedelta(seconds=i), "kind": "process_exec"} for i in range(rows)]
    assert lake.commit("events", pa.Table.from_pylist(batch, schema=EVENT_SCHEMA), Position("file:w", c + 1))
    print(c, flush=True)
"""


def test_readers_beside_a_committing_writer_never_see_a_row_twice_nor_fail(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    commits, rows = 40, 50
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(lake.root), str(commits), str(rows)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "0", writer.stderr.read()  # the table exists
        seen = []
        while writer.poll() is None:
            with LakeViews(lake) as views:
                n, distinct = views.run(
                    lambda con: con.sql("SELECT count(*), count(DISTINCT event_id) FROM events").fetchall()[0]
                )
                assert n == distinct and n % rows == 0, (n, distinct)
                # one snapshot: the processes view and a second read agree with the first
                assert views.con.sql("SELECT count(*) FROM events").fetchall()[0][0] == n
                assert views.skipped == []
            seen.append(n)
        assert writer.wait() == 0, writer.stderr.read()
    finally:
        writer.kill()
        writer.wait()
    assert seen == sorted(seen), "a later reader never sees less"
    assert any(0 < n < commits * rows for n in seen), f"the reads overlapped the commits: {seen}"
    con = connect(lake)
    assert con.sql("SELECT count(*), count(DISTINCT event_id) FROM events").fetchall() == [(commits * rows,) * 2]
    con.close()


def test_the_old_segment_layout_is_refused_with_the_way_out(tmp_path: Path) -> None:
    seg = tmp_path / "lake" / "events" / "date=2026-03-10"
    seg.mkdir(parents=True)
    pq.write_table(events(1, DAY, "x"), seg / "old.parquet")
    with pytest.raises(QueryError, match="lake migrate"):
        execute(Lake(tmp_path / "lake"), "SELECT count(*) FROM events")
    assert (seg / "old.parquet").exists()


def test_the_tagged_dataset_answers_as_delta_rs_own_does_at_every_boundary(tmp_path: Path) -> None:
    """Each file tagged with its date and time range only: the same rows as delta-rs's dataset (all stats),
    for filters on the exact (sub-millisecond) first and last times, null times and another column."""
    lake = Lake(tmp_path / "lake")
    edge = dt.datetime(2026, 3, 10, 23, 59, 59, 999_999)  # the log keeps it as ...59.999: the file's max is past it
    batches = [
        [dt.datetime(2026, 3, 10, 9, 0, 0, 500), edge],
        [dt.datetime(2026, 3, 11, 0, 0), None, None],
        [None],
        [dt.datetime(2026, 3, 11, 12, 0, 0, 123_456)],
    ]
    for b, times in enumerate(batches):
        rows = [{"event_id": f"{b}-{i}", "time": t, "kind": "k"} for i, t in enumerate(times)]
        lake.commit("events", pa.Table.from_pylist(rows, schema=EVENT_SCHEMA), Position("file:e", b + 1))
    table = lake.table("events")
    ours = table_dataset(table, "time")
    theirs = table.to_pyarrow_dataset()
    filters = [
        pc.field("time") >= pa.scalar(edge, pa.timestamp("us")),
        pc.field("time") > pa.scalar(edge - dt.timedelta(microseconds=1), pa.timestamp("us")),
        pc.field("time") <= pa.scalar(dt.datetime(2026, 3, 10, 9, 0, 0, 500), pa.timestamp("us")),
        pc.field("time") == pa.scalar(dt.datetime(2026, 3, 11, 12, 0, 0, 123_456), pa.timestamp("us")),
        pc.field("time").is_null(),
        pc.field("date").is_null(),
        pc.field("date") == "2026-03-11",
        pc.field("event_id") == "1-0",
        None,
    ]
    for f in filters:
        got = sorted(ours.to_table(filter=f, columns=["event_id", "date"]).to_pylist(), key=str)
        want = sorted(theirs.to_table(filter=f, columns=["event_id", "date"]).to_pylist(), key=str)
        assert got == want, f
    assert ours.count_rows() == 7
    with LakeViews(lake) as views:
        assert _count(views, f"SELECT count(*) FROM events WHERE time = TIMESTAMP '{edge}'") == 1
        assert _count(views, "SELECT count(*) FROM events WHERE time IS NULL AND date IS NULL") == 3
