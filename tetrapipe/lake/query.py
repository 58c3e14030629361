"""``tetrapipe query``: SQL over the history, as data for programs (json, csv, parquet).

The table people read is drawn by :mod:`tetrapipe.commands.report` (the command line's
face); this module finds the SQL (saved hunts by name), runs it and turns the
rows into text cells and files.
"""

from __future__ import annotations

import datetime as dt
import decimal
import difflib
import io
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

import duckdb
import orjson

from tetrapipe.errors import TetrapipeError, UsageProblem
from tetrapipe.fsutil import open_private
from tetrapipe.lake.asof import AsOf
from tetrapipe.lake.store import Lake
from tetrapipe.lake.views import VIEW_NAMES, LakeViews, names_read
from tetrapipe.sqltext import sql_ident, sql_string

if TYPE_CHECKING:  # pyarrow only for --format parquet and the Arrow tables other commands write
    import pyarrow as pa
    from duckdb import DuckDBPyRelation as Relation

T = TypeVar("T")

TABLE_DEFAULT_LIMIT = 200

#: a bare word on the command line: a saved hunt's (or a view's) name, not SQL
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_MISSING_TABLE = re.compile(r"Table with name (?P<name>\S+) does not exist!")


class QueryError(UsageProblem):
    """A query the database refused; the message carries DuckDB's position marker (exit 2: the SQL is the user's)."""


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
    """The query's rows as an Arrow table (``--format parquet``); a refused query raises QueryError.

    The other formats never build one (:func:`write_query`, :func:`fetch_rows`):
    pyarrow, numpy with it, is ~80 ms of a command's start.
    """
    import pyarrow as pa

    return run(lake, sql, lambda con, rel: rel.to_arrow_table() if rel is not None else pa.table({}), as_of)


def run(
    lake: Lake, sql: str, consume: Callable[[duckdb.DuckDBPyConnection, Relation | None], T], as_of: AsOf | None
) -> T:
    """``consume(con, rel)`` of the query's relation (None for a statement without rows), over the lake ``as_of``.

    Only the tables the SQL names are opened, and the tree macros only when
    it calls one (:func:`~tetrapipe.lake.views.names_read`): a count over
    ``events`` does not read three other Delta logs. A name that word match
    missed makes the query fail on a missing table; it then runs again over
    every table, which also gives the list of views in the message of a
    name that really is missing. An unreadable data file is left out (and
    named on the ``tetrapipe.lake`` logger) rather than failing the query:
    see :class:`LakeViews` (``consume`` may then run again: it must leave
    nothing behind it cannot redo). A refused query raises QueryError.
    """
    tables, macros = names_read(sql)
    try:
        return _execute(lake, sql, as_of, tables, macros, consume)
    except _NotOpened:
        return _execute(lake, sql, as_of, None, True, consume)


class _NotOpened(Exception):
    """The query names something the views opened for it do not have: open them all."""


def _execute(
    lake: Lake,
    sql: str,
    as_of: AsOf | None,
    tables: set[str] | None,
    macros: bool,
    consume: Callable[[duckdb.DuckDBPyConnection, Relation | None], T],
) -> T:
    def work(con: duckdb.DuckDBPyConnection) -> T:
        try:
            return consume(con, con.sql(sql))
        except duckdb.CatalogException as exc:
            if tables is not None:
                raise _NotOpened from None
            raise QueryError(_missing_table(con, exc)) from None

    try:
        processes = tables is None or "processes" in tables
        with LakeViews(lake, as_of, tables=tables, tree_macros=macros, processes=processes) as views:
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
    from tetrapipe.lake.hunts import saved_hunts

    saved = saved_hunts()
    if word in saved:
        return saved[word].sql
    known = sorted(VIEW_NAMES)
    if word in known:
        return f"SELECT * FROM {word}"
    raise QueryError(unknown_hunt(word, known))


def unknown_hunt(name: str, known_views: list[str] | None = None) -> str:
    """What to say about a name that is no saved hunt: the closest one (or view), and where the list is."""
    from tetrapipe.lake.hunts import saved_hunts

    hunt = _closest(name, list(saved_hunts()))
    view = _closest(name, known_views or [])
    if hunt:
        hint = f"; did you mean {hunt}?"
    elif view:
        hint = f"; did you mean the view {view}? (tetrapipe query {view})"
    else:
        hint = ""
    return f"no saved hunt named {name}{hint} (tetrapipe query --hunts lists them)"


@dataclass(frozen=True)
class Rows:
    """The first rows of a query's answer, for a table a person reads, and how many rows it had.

    ``types`` are DuckDB's type ids (``bigint``, ``timestamp with time zone``,
    ``list``): see :func:`is_number` and :func:`is_time`.
    """

    names: list[str]
    types: list[str]
    rows: list[tuple[object, ...]]
    total: int


def fetch_rows(lake: Lake, sql: str, shown: int, limit: int | None = None, as_of: AsOf | None = None) -> Rows:
    """The first ``shown`` rows of the answer (of its first ``limit`` rows), and the count of them all.

    The answer is kept in DuckDB (a temporary table) and only the rows shown
    become Python values: a table of a million rows is counted, not converted.
    """

    def consume(con: duckdb.DuckDBPyConnection, rel: Relation | None) -> Rows:
        if rel is None:
            return Rows([], [], [], 0)
        source = _positional(con, rel)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _query_answer AS SELECT * FROM {source}{_limit(limit)}")
        (total,) = con.execute("SELECT count(*) FROM _query_answer").fetchone() or (0,)
        rows = con.execute(f"SELECT * FROM _query_answer LIMIT {max(shown, 0)}").fetchall()
        return Rows(list(rel.columns), [t.id for t in rel.types], rows, total)

    return run(lake, sql, consume, as_of)


def is_number(type_id: str) -> bool:
    """Whether a column of this DuckDB type holds numbers (right-aligned, never cut)."""
    return type_id in _NUMBERS


def is_time(type_id: str) -> bool:
    """Whether a column of this DuckDB type holds times, dates or intervals (never cut)."""
    return type_id.startswith(("timestamp", "time", "date", "interval"))


_NUMBERS = frozenset(
    {"tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint", "usmallint", "uinteger", "ubigint"}
    | {"uhugeint", "float", "double", "decimal"}
)


def _json_default(value: object) -> object:
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def cell_text(value: object) -> str:
    """One value as the text a table cell shows (NULL is empty, nested values are JSON).

    The text is exact, control characters included: the table a person reads
    makes them visible where it is drawn
    (:func:`tetrapipe.commands.report.print_table`), after this. Only the
    rows a table shows go through here; the machine formats are written by
    DuckDB (:func:`write_query`). Intervals count a month as 30 days (as
    DuckDB hands them to Python).
    """
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (list, dict, tuple)):
        return orjson.dumps(value, default=_json_default).decode()
    return str(value)


def rows_as_text(rows: Rows) -> list[list[str]]:
    """Every row shown as its cells' text, in column order (maps as JSON objects)."""
    return [[cell_text(v) for v in row] for row in rows.rows]


def _as_text(position: int, name: str, kind: duckdb.sqltypes.DuckDBPyType, fmt: str) -> str:
    """The SQL that writes one column in ``fmt``: DuckDB's own text, save where a program needs more.

    JSON: times in ISO 8601 with their zone (the session is UTC), intervals
    as seconds, decimals (and 128-bit integers) as numbers, a JSON value as
    the text it is (a string). CSV: nested values (lists, structs, maps) as
    JSON text, so that a cell holds one parseable value. (These answers were
    written through Arrow once, and are still what that wrote.)
    """
    col = f"_c{position}"
    t = kind.id
    if fmt == "json":
        if t.startswith("timestamp"):
            col = f"strftime({col}, '%Y-%m-%dT%H:%M:%S.%f+00:00')"
        elif t == "interval":
            col = f"epoch({col})"
        elif t in ("decimal", "hugeint", "uhugeint"):
            col = f"CAST({col} AS DOUBLE)"
        elif str(kind) == "JSON" or t in ("uuid", "enum"):
            col = f"CAST({col} AS VARCHAR)"
    elif t in ("list", "struct", "map", "union", "array"):
        col = f"CAST(to_json({col}) AS VARCHAR)"
    return f"{col} AS {sql_ident(name)}"


def _positional(con: duckdb.DuckDBPyConnection, rel: Relation) -> str:
    """``rel`` as a FROM item whose columns are ``_c0``, ``_c1``, ... (an answer's names may repeat)."""
    con.register("_query_rows", rel)
    return f"_query_rows AS _rows({', '.join(f'_c{i}' for i in range(len(rel.columns)))})"


def _limit(limit: int | None) -> str:
    return "" if limit is None else f" LIMIT {max(int(limit), 0)}"


def _copy(con: duckdb.DuckDBPyConnection, rel: Relation | None, fmt: str, path: Path, limit: int | None) -> bool:
    """Write ``rel`` (its first ``limit`` rows) in ``fmt`` to ``path`` with DuckDB's COPY; False: no rows to write.

    DuckDB quotes a CSV cell holding a comma, a quote, \\n or a bare \\r
    (which readers, Python's csv module among them, take for a line end).
    """
    if rel is None or not rel.columns:
        return False
    select = ", ".join(_as_text(i, n, t, fmt) for i, (n, t) in enumerate(zip(rel.columns, rel.types, strict=True)))
    options = "FORMAT csv, HEADER" if fmt == "csv" else "FORMAT json, ARRAY true"
    source = _positional(con, rel)
    con.execute(f"COPY (SELECT {select} FROM {source}{_limit(limit)}) TO {sql_string(str(path))} ({options})")
    return True


def _written(wrote: bool, fmt: str, path: Path, dest: BinaryIO) -> None:
    if not wrote:  # a statement without rows (SET, CREATE): nothing to write but the frame
        dest.write(b"[]\n" if fmt == "json" else b"\n")
        return
    with path.open("rb") as f:
        shutil.copyfileobj(f, dest, 1 << 20)


def write_query(
    lake: Lake, sql: str, fmt: str, dest: BinaryIO | None, limit: int | None = None, as_of: AsOf | None = None
) -> None:
    """The answer (its first ``limit`` rows) as CSV or JSON, written by DuckDB from the query's own connection.

    CSV: RFC 4180, lines ending with \\n, a header; JSON: an array of
    objects. The values are exact, control characters included: these formats
    are for programs, not for a terminal. DuckDB writes into a private
    temporary directory (the rows carry command lines) and the file is copied
    to ``dest`` (standard output when None) once the query has succeeded:
    a failed query writes nothing, and an unreadable data file stepped over
    costs a rewrite of the file, never rows written twice.
    """
    if fmt not in ("json", "csv"):
        raise ValueError(f"unknown format {fmt!r}")
    with tempfile.TemporaryDirectory(prefix="tetrapipe-query-") as tmp:  # 0700
        path = Path(tmp) / f"rows.{fmt}"
        wrote = run(lake, sql, lambda con, rel: _copy(con, rel, fmt, path, limit), as_of)
        _written(wrote, fmt, path, dest or sys.stdout.buffer)
    if dest is None:
        sys.stdout.flush()


def write_text(table: pa.Table, fmt: str, dest: BinaryIO) -> None:
    """An Arrow ``table`` as CSV or JSON (as :func:`write_query` writes an answer), written by DuckDB to ``dest``."""
    if table.num_columns == 0:  # (DuckDB registers no table without columns)
        _written(False, fmt, Path(), dest)
        return
    with tempfile.TemporaryDirectory(prefix="tetrapipe-query-") as tmp:  # 0700
        path = Path(tmp) / f"rows.{fmt}"
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.register("_arrow_rows", table)
            wrote = _copy(con, con.table("_arrow_rows"), fmt, path, None)
        finally:
            con.close()
        _written(wrote, fmt, path, dest)


def _text(table: pa.Table, fmt: str) -> bytes:
    buf = io.BytesIO()
    write_text(table, fmt, buf)
    return buf.getvalue()


def to_json(table: pa.Table) -> bytes:
    """The rows as a JSON array of objects (see :func:`write_text`)."""
    return _text(table, "json")


def to_csv(table: pa.Table) -> str:
    """The rows as CSV with a header line (see :func:`write_text`)."""
    return _text(table, "csv").decode()


def write_output(table: pa.Table, fmt: str, output: str | None) -> None:
    """An Arrow table as json, csv or parquet to ``output`` (standard output when None; parquet needs a file).

    A file is created owner-only, like the lake the rows come from (events
    carry command lines).
    """
    if fmt not in ("json", "csv", "parquet"):
        raise ValueError(f"unknown format {fmt!r}")
    if fmt == "parquet":
        if not output:
            raise ValueError("parquet needs an output file")
        import pyarrow.parquet as pq  # pyarrow.dataset with it: only for this format

        with open_private(output, append=False) as f:
            pq.write_table(table, f, compression="zstd")
    elif output:
        with open_private(output, append=False) as f:
            write_text(table, fmt, f)
    else:
        write_text(table, fmt, sys.stdout.buffer)
        sys.stdout.flush()
