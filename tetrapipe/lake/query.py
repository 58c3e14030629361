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
from pathlib import Path
from typing import BinaryIO

import duckdb
import orjson
import pyarrow as pa

from tetrapipe.errors import TetrapipeError
from tetrapipe.fsutil import open_private
from tetrapipe.lake.asof import AsOf
from tetrapipe.lake.hunts import saved_hunts
from tetrapipe.lake.store import Lake
from tetrapipe.lake.views import VIEW_NAMES, LakeViews, names_read

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

    Only the tables the SQL names are opened, and the tree macros only when
    it calls one (:func:`~tetrapipe.lake.views.names_read`): a count over
    ``events`` does not read three other Delta logs. A name that word match
    missed makes the query fail on a missing table; it then runs again over
    every table, which also gives the list of views in the message of a
    name that really is missing. An unreadable data file is left out (and
    named on the ``tetrapipe.lake`` logger) rather than failing the query:
    see :class:`LakeViews`.
    """
    tables, macros = names_read(sql)
    try:
        return _execute(lake, sql, as_of, tables, macros)
    except _NotOpened:
        return _execute(lake, sql, as_of, None, True)


class _NotOpened(Exception):
    """The query names something the views opened for it do not have: open them all."""


def _execute(lake: Lake, sql: str, as_of: AsOf | None, tables: set[str] | None, macros: bool) -> pa.Table:
    def work(con: duckdb.DuckDBPyConnection) -> pa.Table:
        try:
            rel = con.sql(sql)
            return rel.to_arrow_table() if rel is not None else pa.table({})
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


def cell_text(value: object) -> str:
    """One value as the text a table cell shows (NULL is empty, nested values are JSON).

    The text is exact, control characters included: the table a person reads
    makes them visible where it is drawn
    (:func:`tetrapipe.commands.report.print_table`), after this. Only the
    rows a table shows go through here; the machine formats are written by
    DuckDB (:func:`write_text`).
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
    """Every row as its cells' text, in column order (maps as JSON objects)."""
    rows = []
    for row in table.to_pylist():
        for k, v in row.items():
            if isinstance(v, list) and v and isinstance(v[0], tuple) and len(v[0]) == 2:
                row[k] = dict(v)
        rows.append([cell_text(v) for v in row.values()])
    return rows


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _as_text(position: int, field: pa.Field, fmt: str) -> str:
    """The SQL that writes one column in ``fmt``: DuckDB's own text, save where a program needs more.

    JSON: times in ISO 8601 with their zone (the session is UTC), intervals
    as seconds, decimals as numbers. CSV: nested values (lists, structs,
    maps) as JSON text, so that a cell holds one parseable value.
    """
    col = f"_c{position}"
    t = field.type
    if fmt == "json":
        if pa.types.is_timestamp(t):
            col = f"strftime({col}, '%Y-%m-%dT%H:%M:%S.%f+00:00')"
        elif pa.types.is_interval(t) or pa.types.is_duration(t):
            col = f"epoch({col})"
        elif pa.types.is_decimal(t):
            col = f"CAST({col} AS DOUBLE)"
    elif pa.types.is_nested(t):
        col = f"CAST(to_json({col}) AS VARCHAR)"
    return f"{col} AS {_quoted(field.name)}"


def write_text(table: pa.Table, fmt: str, dest: BinaryIO) -> None:
    """``table`` as CSV (RFC 4180, lines ending with \\n, a header) or a JSON array, written by DuckDB to ``dest``.

    The values are exact, control characters included: these formats are for
    programs, not for a terminal. DuckDB quotes a CSV cell holding a comma, a
    quote, \\n or a bare \\r (which readers, Python's csv module among them,
    take for a line end). DuckDB writes into a private temporary directory
    (the rows carry command lines) and the file is copied to ``dest``, which
    may be any binary file: standard output, a test's capture.
    """
    if table.num_columns == 0:  # a statement without rows (SET, CREATE): nothing to write but the frame
        dest.write(b"[]\n" if fmt == "json" else b"\n")
        return
    positional = table.rename_columns([f"_c{i}" for i in range(table.num_columns)])  # names may repeat
    select = ", ".join(_as_text(i, f, fmt) for i, f in enumerate(table.schema))
    options = "FORMAT csv, HEADER" if fmt == "csv" else "FORMAT json, ARRAY true"
    with tempfile.TemporaryDirectory(prefix="tetrapipe-query-") as tmp:  # 0700
        path = Path(tmp) / f"rows.{fmt}"
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.register("_rows", positional)
            con.execute(f"COPY (SELECT {select} FROM _rows) TO {_literal(str(path))} ({options})")
        finally:
            con.close()
        with path.open("rb") as f:
            shutil.copyfileobj(f, dest, 1 << 20)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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
    """json, csv or parquet to ``output`` (standard output when None; parquet needs a file).

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
