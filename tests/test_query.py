"""tetrapipe query: formats, saved hunts, schema, and errors that point at the mistake."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from conftest import REAL_LOGS

from tetrapipe.cli import cli
from tetrapipe.flows.ingest import ingest
from tetrapipe.lake import Lake, saved_hunts
from tetrapipe.schema import EVENT_COLUMNS
from tetrapipe.sources.files import expand_inputs


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("q") / "lake"
    ingest(expand_inputs([str(p) for p in REAL_LOGS]), Lake(d))
    return d


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_json_csv_and_parquet(lake: Path, tmp_path: Path) -> None:
    sql = "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY n DESC, kind"
    code, text = _run("query", sql, "--lake", str(lake), "--format", "json")
    assert code == 0
    rows = json.loads(text)
    assert rows[0] == {"kind": "process_exec", "n": 22} and sum(r["n"] for r in rows) == 55
    code, text = _run("query", sql, "--lake", str(lake), "--format", "csv")
    assert list(csv.reader(io.StringIO(text)))[:2] == [["kind", "n"], ["process_exec", "22"]]
    out = tmp_path / "k.parquet"
    code, _ = _run("query", sql, "--lake", str(lake), "--format", "parquet", "-o", str(out))
    assert code == 0 and pq.read_table(out).num_rows == len(rows)


def test_table_output_and_env_var_lake(lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETRAPIPE_LAKE", str(lake))
    code, text = _run(
        "query",
        "SELECT process_name, pod FROM events WHERE function_name = 'security_file_permission'"
        " AND policy_name = 'file-monitoring'",
    )
    assert code == 0 and "vi" in text and "file-access" in text and "1 row" in text


def test_sql_error_names_the_position(lake: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["query", "SELECT kind FROM events WHERE kind = 'x' GROUPBY kind", "--lake", str(lake)])
    assert result.exit_code == 2
    assert "query failed" in result.output and "LINE 1" in result.output and "GROUPBY" in result.output
    result = runner.invoke(cli, ["query", "SELECT no_such_column FROM events", "--lake", str(lake)])
    assert result.exit_code == 2 and "no_such_column" in result.output


def test_schema_lists_every_column_with_its_meaning() -> None:
    code, text = _run("query", "--schema")
    assert code == 0
    for col in EVENT_COLUMNS:
        assert col.name in text
    assert "processes" in text


def test_every_saved_hunt_runs(lake: Path) -> None:
    assert len(saved_hunts()) >= 6
    for name in saved_hunts():
        code, text = _run("query", name, "--lake", str(lake), "--format", "json")
        assert code == 0, (name, text)
        json.loads(text)


def test_hunt_results(lake: Path) -> None:
    code, text = _run("query", "--hunt", "sensitive-files", "--lake", str(lake), "--format", "json")
    rows = json.loads(text)
    assert {r["process_binary"] for r in rows} >= {"/bin/vi", "/usr/bin/vi"}
    assert all(r["file_path"].lstrip("/").startswith("etc/passwd") for r in rows)
    code, text = _run("query", "--hunt", "nope", "--lake", str(lake))
    assert code == 2


def test_processes_view_joins_exec_and_exit(lake: Path) -> None:
    code, text = _run(
        "query",
        "SELECT process_binary, exit_time IS NOT NULL AS exited, since_container_start "
        "FROM processes WHERE exec_id = 'bWluaWt1YmU6MTA1NzU3MjgzNTAwNzk6MTE1MTUz'",
        "--lake",
        str(lake),
        "--format",
        "json",
    )
    (row,) = json.loads(text)
    assert row == {"process_binary": "/usr/bin/curl", "exited": True, "since_container_start": 65.861}


def test_empty_lake_has_typed_empty_views(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "query",
            "SELECT count(*) AS n, count(process_binary) AS b FROM events",
            "--lake",
            str(tmp_path / "empty"),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0 and json.loads(result.stdout) == [{"n": 0, "b": 0}]
    assert "no history at" in result.stderr  # a mistyped --lake is said, not mistaken for an empty hunt


def test_csv_lines_end_with_a_newline_only(lake: Path) -> None:
    sql = "SELECT kind, 'two' || chr(10) || 'lines' AS note FROM events GROUP BY kind ORDER BY kind LIMIT 2"
    result = CliRunner().invoke(cli, ["query", sql, "--lake", str(lake), "--format", "csv"], catch_exceptions=False)
    assert result.exit_code == 0
    data = result.stdout_bytes
    assert b"\r" not in data and data.endswith(b"\n")
    assert list(csv.reader(io.StringIO(data.decode())))[1][1] == "two\nlines"  # quoted, still one record


def test_a_mistyped_hunt_name_says_which_one_was_meant(lake: Path) -> None:
    for args in (["late-shels"], ["--hunt", "sensitve-files"]):
        result = CliRunner().invoke(cli, ["query", *args, "--lake", str(lake)], catch_exceptions=False)
        assert result.exit_code == 2
        name = args[-1]
        meant = {"late-shels": "late-shells", "sensitve-files": "sensitive-files"}[name]
        assert f"query failed: no saved hunt named {name}; did you mean {meant}?" in result.stderr
        assert "Parser Error" not in result.stderr and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["query", "zzzz", "--lake", str(lake)])
    assert result.exit_code == 2
    assert "query failed: no saved hunt named zzzz (tetrapipe query --hunts lists them)\n" == result.stderr


def test_a_bare_view_name_shows_the_view(lake: Path) -> None:
    code, text = _run("query", "events", "--lake", str(lake), "--format", "json")
    assert code == 0 and len(json.loads(text)) == 55


def test_an_unknown_table_lists_the_views(lake: Path) -> None:
    result = CliRunner().invoke(cli, ["query", "SELECT * FROM alert", "--lake", str(lake)], catch_exceptions=False)
    assert result.exit_code == 2
    assert (
        "query failed: no table or view named alert; did you mean alerts? The views are: alerts, events, "
        "processes, rejects, tls_stats; the table macros: process_tree(...), process_lineage(exec_id)"
    ) in result.stderr
    assert "Catalog Error" not in result.stderr and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["query", "SELECT * FROM qqq", "--lake", str(lake)])
    assert result.exit_code == 2 and "no table or view named qqq. The views are: alerts," in result.stderr


#: one value of each kind an answer may hold, the text each format writes of it (what the Arrow path wrote)
KINDS_SQL = (
    "SELECT sum(x) AS s, 1.5::DECIMAL(4,2) AS d, INTERVAL 1 MONTH + INTERVAL 1 SECOND AS i, "
    """'{"a": 1}'::JSON AS j, 'a'::ENUM('a', 'b') AS e, [1, 2] AS l, {'k': 'v'} AS st, MAP {'k': 'v'} AS m, """
    "TIMESTAMPTZ '2026-03-10 09:00:00+00' AS tz, TIMESTAMP '2026-03-10 09:00:00.5' AS ts, DATE '2026-03-10' AS dt "
    "FROM range(3) t(x)"
)
KINDS_TEXT = {
    "json": '[\n\t{"s":3.0,"d":1.5,"i":2592001.0,"j":"{\\"a\\": 1}","e":"a","l":[1,2],"st":{"k":"v"},"m":{"k":"v"},'
    '"tz":"2026-03-10T09:00:00.000000+00:00","ts":"2026-03-10T09:00:00.500000+00:00","dt":"2026-03-10"}\n]\n',
    "csv": "s,d,i,j,e,l,st,m,tz,ts,dt\n"
    '3,1.50,1 month 00:00:01,"{""a"": 1}",a,"[1,2]","{""k"":""v""}","{""k"":""v""}",2026-03-10 09:00:00+00,'
    "2026-03-10 09:00:00.5,2026-03-10\n",
    "table": "s     d  i                 j         e  l      st         m          tz                         "
    "ts                          dt\n"
    "-  ----  ----------------  --------  -  -----  ---------  ---------  -------------------------  "
    "--------------------------  ----------\n"
    '3  1.50  30 days, 0:00:01  {"a": 1}  a  [1,2]  {"k":"v"}  {"k":"v"}  2026-03-10 09:00:00+00:00  '
    "2026-03-10 09:00:00.500000  2026-03-10\n1 row\n",
}


@pytest.mark.parametrize("fmt", KINDS_TEXT)
def test_every_kind_of_value_is_written_as_it_always_was(lake: Path, fmt: str) -> None:
    """The answers no longer pass through Arrow: a 128-bit sum, a JSON or ENUM value, an interval, a zoned time
    keep the text the Arrow round trip gave them (a sum is a JSON number, a JSON value a string)."""
    code, text = _run("query", KINDS_SQL, "--lake", str(lake), "--format", fmt)
    assert code == 0 and text == KINDS_TEXT[fmt]


def test_a_table_shows_columns_of_the_same_name(lake: Path) -> None:
    """An answer's names may repeat (``SELECT 1 AS a, 2 AS a``): each column is drawn, in its place."""
    code, text = _run("query", "SELECT 1 AS a, 2 AS a, 'x' AS b", "--lake", str(lake))
    assert code == 0 and text.splitlines() == ["a  a  b", "-  -  -", "1  2  x", "1 row"]


def test_an_empty_view_has_the_types_the_written_tables_have(tmp_path: Path) -> None:
    """The schema keeps its types by name (no pyarrow at import): a table the lake lacks is an empty view
    declared with DuckDB types, which must be what DuckDB makes of the Arrow schema the writers use."""
    import duckdb

    from tetrapipe.lake.views import LakeViews
    from tetrapipe.schema import SCHEMAS, TABLES

    con = duckdb.connect()
    with LakeViews(tmp_path / "empty") as views:
        for name, columns in TABLES.items():
            assert [str(c.type) for c in columns] == [c.kind for c in columns], name
            con.register("arrow", SCHEMAS[name].empty_table())
            written = con.sql("DESCRIBE arrow").fetchall()
            viewed = views.con.sql(f"DESCRIBE {name}").fetchall()
            assert [r[:2] for r in viewed] == [r[:2] for r in written] + [("date", "VARCHAR")], name
