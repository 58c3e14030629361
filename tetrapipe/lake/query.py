"""``tetrapipe query``: SQL over the history, as data for programs (json, csv, parquet).

The table people read is drawn by :mod:`tetrapipe.commands.report` (the command line's
face); this module finds the SQL (saved hunts by name), runs it and turns the
rows into text cells and files.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import difflib
import re
import sys

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from tetrapipe.errors import TetrapipeError
from tetrapipe.fsutil import open_private
from tetrapipe.lake.asof import AsOf
from tetrapipe.lake.hunts import saved_hunts
from tetrapipe.lake.store import Lake
from tetrapipe.lake.views import VIEW_NAMES, LakeViews

TABLE_DEFAULT_LIMIT = 200

#: a bare word on the command line: a saved hunt's (or a view's) name, not SQL
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_MISSING_TABLE = re.compile(r"Table with name (?P<name>\S+) does not exist!")


class QueryError(Exception):
    """A query the database refused; the message carries DuckDB's position marker."""


def views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The views a query can read (not the empty placeholders behind them)."""
    rows = con.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal AND NOT starts_with(view_name, '_') ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def _closest(word: str, names: list[str]) -> str | None:
    close = difflib.get_close_matches(word.lower(), names, n=1, cutoff=0.6)
    return close[0] if close else None


def _missing_table(con: duckdb.DuckDBPyConnection, exc: duckdb.CatalogException) -> str:
    """DuckDB's "Table with name x does not exist! Did you mean "pg_constraint"?" said for this lake."""
    text = str(exc).strip()
    m = _MISSING_TABLE.search(text)
    if m is None:
        return text  # a missing function or type: DuckDB's own message names it well
    name = m.group("name")
    known = views(con)
    guess = _closest(name, known)
    hint = f"; did you mean {guess}?" if guess else "."
    return (
        f"no table or view named {name}{hint} The views are: {', '.join(known)}; the table macros: "
        "process_tree(...), process_lineage(exec_id) (tetrapipe query --schema)"
    )


def execute(lake: Lake, sql: str, as_of: AsOf | None = None) -> pa.Table:
    """The query's rows (over the lake ``as_of`` a version or time); a refused query raises QueryError.

    An unreadable data file is left out (and named on the ``tetrapipe.lake``
    logger) rather than failing the query: see :class:`LakeViews`.
    """

    def work(con: duckdb.DuckDBPyConnection) -> pa.Table:
        try:
            rel = con.sql(sql)
            return rel.to_arrow_table() if rel is not None else pa.table({})
        except duckdb.CatalogException as exc:
            raise QueryError(_missing_table(con, exc)) from None

    try:
        with LakeViews(lake, as_of) as views:
            return views.run(work)
    except duckdb.Error as exc:
        raise QueryError(str(exc).strip()) from None
    except TetrapipeError as exc:  # an --as-of version the table does not have
        raise QueryError(str(exc)) from None


def resolve(lake: Lake, text: str) -> str:
    """The SQL to run for what was typed: a saved hunt's SQL by its name, a view by its name, or SQL as is.

    A bare word that is neither is a mistyped name (DuckDB would only answer
    "syntax error at or near"), so it raises QueryError with the closest
    hunt or view. The views are known without opening the lake (``lake``
    stays in the signature for callers).
    """
    word = text.strip()
    if not _NAME.match(word):
        return text
    saved = saved_hunts()
    if word in saved:
        return saved[word].sql
    known = sorted(VIEW_NAMES)
    if word in known:
        return f"SELECT * FROM {word}"
    raise QueryError(unknown_hunt(word, known))


def unknown_hunt(name: str, known_views: list[str] | None = None) -> str:
    """What to say about a name that is no saved hunt: the closest one (or view), and where the list is."""
    hunt = _closest(name, list(saved_hunts()))
    view = _closest(name, known_views or [])
    if hunt:
        hint = f"; did you mean {hunt}?"
    elif view:
        hint = f"; did you mean the view {view}? (tetrapipe query {view})"
    else:
        hint = ""
    return f"no saved hunt named {name}{hint} (tetrapipe query --hunts lists them)"


def _interval_seconds(value: pa.MonthDayNano) -> float:
    """DuckDB INTERVALs (e.g. process_start_time - container_start_time) as seconds; months count as 30 days."""
    return (value.months * 30 + value.days) * 86400 + value.nanoseconds / 1e9


def _json_default(value: object) -> object:
    if isinstance(value, pa.MonthDayNano):
        return _interval_seconds(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _map_to_dict(rows: list[dict]) -> list[dict]:
    for row in rows:
        for k, v in row.items():
            if isinstance(v, list) and v and isinstance(v[0], tuple) and len(v[0]) == 2:
                row[k] = dict(v)
    return rows


def to_json(table: pa.Table) -> bytes:
    rows = _map_to_dict(table.to_pylist())
    return orjson.dumps(rows, default=_json_default, option=orjson.OPT_NAIVE_UTC | orjson.OPT_INDENT_2)


def cell_text(value: object) -> str:
    """One value as the text a table or a CSV cell shows (NULL is empty, nested values are JSON).

    The text is exact, control characters included: a CSV file is data. The
    table a person reads makes them visible where it is drawn
    (:func:`tetrapipe.commands.report.print_table`), after this.
    """
    if value is None:
        return ""
    if isinstance(value, pa.MonthDayNano):
        return str(dt.timedelta(seconds=_interval_seconds(value)))
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (list, dict)):
        return orjson.dumps(value, default=_json_default).decode()
    return str(value)


def rows_as_text(table: pa.Table) -> list[list[str]]:
    """Every row as its cells' text, in column order."""
    return [[cell_text(v) for v in row.values()] for row in _map_to_dict(table.to_pylist())]


def to_csv(table: pa.Table) -> str:
    """RFC 4180 quoting, but lines end with \\n as every other text tetrapipe writes (csv's default is \\r\\n).

    The cells keep the exact data (a terminal escape in an argument stays one),
    like json and parquet: these formats are for programs, not for a terminal.
    A cell holding a bare carriage return is quoted too: Python before 3.13
    quotes only the characters of the line terminator, and readers (Python's
    csv module among them) take a bare \\r for a line end.
    """
    out = _Rows()
    w = csv.writer(out, lineterminator="\r\n")  # quotes cells holding \r or \n; _Rows ends each row with \n
    w.writerow(table.column_names)
    w.writerows(rows_as_text(table))
    return "".join(out.rows)


class _Rows:
    """A file for csv.writer that keeps its rows, each ending with \\n instead of the writer's \\r\\n."""

    def __init__(self) -> None:
        self.rows: list[str] = []

    def write(self, row: str) -> None:
        if not row.endswith("\r\n"):  # csv.writer writes one whole row per call
            raise ValueError(f"csv row without its terminator: {row[-20:]!r}")
        self.rows.append(row[:-2] + "\n")


def write_output(table: pa.Table, fmt: str, output: str | None) -> None:
    """json, csv or parquet to ``output`` (standard output when None; parquet needs a file)."""
    if fmt == "json":
        _emit(to_json(table) + b"\n", output)
    elif fmt == "csv":
        _emit(to_csv(table).encode(), output)
    elif fmt == "parquet":
        if not output:
            raise ValueError("parquet needs an output file")
        with open_private(output, append=False) as f:  # events carry command lines: owner-only, like the lake
            pq.write_table(table, f, compression="zstd")
    else:
        raise ValueError(f"unknown format {fmt!r}")


def _emit(data: bytes, output: str | None) -> None:
    if output:
        with open_private(output, append=False) as f:  # owner-only, like the lake the rows come from
            f.write(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
