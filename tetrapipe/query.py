"""``tetrapipe query``: SQL over the history, printed for people or for programs."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import sys

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from tetrapipe import history
from tetrapipe.schema import TABLES
from tetrapipe.sinks.lake import Lake

TABLE_DEFAULT_LIMIT = 200


class QueryError(Exception):
    """A query the database refused; the message carries DuckDB's position marker."""


def execute(lake: Lake, sql: str) -> pa.Table:
    con = history.connect(lake)
    try:
        rel = con.sql(sql)
        return rel.to_arrow_table() if rel is not None else pa.table({})
    except duckdb.Error as exc:
        raise QueryError(str(exc).strip()) from None
    finally:
        con.close()


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


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, pa.MonthDayNano):
        return str(dt.timedelta(seconds=_interval_seconds(value)))
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (list, dict)):
        return orjson.dumps(value, default=_json_default).decode()
    return str(value)


def to_csv(table: pa.Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(table.column_names)
    for row in _map_to_dict(table.to_pylist()):
        w.writerow([_cell(v) for v in row.values()])
    return buf.getvalue()


def render_table(console: Console, table: pa.Table, limit: int) -> None:
    shown = table.slice(0, limit)
    t = Table(show_lines=False, header_style="bold cyan")
    for name in table.column_names:
        t.add_column(name, overflow="fold")
    for row in _map_to_dict(shown.to_pylist()):
        t.add_row(*[_cell(v) for v in row.values()])
    console.print(t)
    more = table.num_rows - shown.num_rows
    suffix = f" (showing {shown.num_rows}; --limit or --format json|csv for all)" if more > 0 else ""
    console.print(f"[dim]{table.num_rows} row{'s' if table.num_rows != 1 else ''}{suffix}[/]")


def run_query(lake: Lake, sql: str, *, fmt: str = "table", output: str | None = None,
              limit: int | None = None, console: Console | None = None) -> pa.Table:
    table = execute(lake, sql)
    if limit is not None:
        table = table.slice(0, limit)
    console = console or Console()
    if fmt == "table":
        render_table(console, table, limit or TABLE_DEFAULT_LIMIT)
    elif fmt == "json":
        _emit(to_json(table) + b"\n", output)
    elif fmt == "csv":
        _emit(to_csv(table).encode(), output)
    elif fmt == "parquet":
        assert output
        pq.write_table(table, output, compression="zstd")
        console.print(f"[dim]{table.num_rows} rows written to {output}[/]")
    return table


def _emit(data: bytes, output: str | None) -> None:
    if output:
        with open(output, "wb") as f:
            f.write(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def print_schema(console: Console) -> None:
    for name, cols in TABLES.items():
        t = Table(title=f"[bold]{name}[/]", title_justify="left", header_style="bold cyan")
        t.add_column("column")
        t.add_column("type")
        t.add_column("meaning")
        for c in cols:
            t.add_row(c.name, str(c.type), c.doc)
        t.add_row("date", "string", "partition: UTC date of the row's time, YYYY-MM-DD (\"unknown\" when Tetragon sent no time)")
        console.print(t)
    for name, doc in history.VIEW_DOCS.items():
        console.print(f"[bold]{name}[/] (view): {doc}")


def print_hunts(console: Console) -> None:
    t = Table(header_style="bold cyan")
    t.add_column("hunt")
    t.add_column("what it finds")
    for h in history.hunts().values():
        t.add_row(h.name, h.description)
    console.print(t)
    console.print("[dim]run one: tetrapipe query NAME[/]")
