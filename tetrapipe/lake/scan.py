"""The pyarrow dataset a view reads: one Delta table version's files, each tagged with what it can hold.

delta-rs's own ``DeltaTable.to_pyarrow_dataset()`` tags every file with the
min/max/null statistics of every column, building pyarrow expressions one
scalar at a time (and, without python-dateutil, failing an import for each of
them): about 12 ms a file here, so a year of history (tens of thousands of
files) would take minutes before the first row. The queries people run filter
on the partition (``date``) and on the table's time (``time``,
``window_start``); this module tags each file with exactly those, from the
table's add actions read as one Arrow table, which costs microseconds a file.
DuckDB hands a query's filters to the dataset, and pyarrow skips every file
whose tags contradict them without opening it.

A table that needs a reader feature other than ``timestampNtz`` (deletion
vectors, column mapping) is left to delta-rs, which refuses what it cannot
read with its own message.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.fs import DeltaStorageHandler

#: reader features this module reads the same way delta-rs's dataset does
_SUPPORTED_FEATURES = frozenset({"timestampNtz"})
#: the log keeps timestamps to the millisecond: a file's true maximum may lie up to 1 ms past it
_STATS_SLACK = dt.timedelta(milliseconds=1)


def table_dataset(
    table: DeltaTable, time_column: str | None, storage_options: dict[str, str] | None = None
) -> pads.FileSystemDataset:
    """The files of ``table`` (at its loaded version) as a dataset, tagged with partition and time range."""
    protocol = table.protocol()
    if protocol.min_reader_version > 3 or set(protocol.reader_features or ()) - _SUPPORTED_FEATURES:
        return table.to_pyarrow_dataset()
    schema = pa.schema(table.schema().to_arrow())
    actions = pa.table(table.get_add_actions(flatten=True))
    paths = actions.column("path").to_pylist()
    sizes = dict(zip(paths, actions.column("size_bytes").to_pylist(), strict=True))
    fs = pafs.PyFileSystem(DeltaStorageHandler(table.table_uri, storage_options or None, sizes))
    fmt = pads.ParquetFileFormat(default_fragment_scan_options=pads.ParquetFragmentScanOptions(pre_buffer=True))
    tags = _tags(actions, schema, time_column)
    fragments = [
        fmt.make_fragment(path, filesystem=fs, partition_expression=tag) for path, tag in zip(paths, tags, strict=True)
    ]
    return pads.FileSystemDataset(fragments, schema, fmt, fs)


def _tags(actions: pa.Table, schema: pa.Schema, time_column: str | None) -> list[pads.Expression]:
    """Per file: its partition values, and its time range when the log has one (always true: no tag)."""
    names = actions.column_names
    columns: dict[str, list[Any]] = {n: actions.column(n).to_pylist() for n in names if n.startswith("partition.")}
    stats = time_column is not None and f"min.{time_column}" in names and f"max.{time_column}" in names
    if stats:
        lows = actions.column(f"min.{time_column}").to_pylist()
        highs = actions.column(f"max.{time_column}").to_pylist()
        nulls = (
            actions.column(f"null_count.{time_column}").to_pylist()
            if f"null_count.{time_column}" in names
            else [None] * actions.num_rows
        )
        rows = actions.column("num_records").to_pylist()
    tags = []
    # one expression per partition value, shared by its files: building one costs ~0.3 ms (pyarrow
    # tries an import that fails, every time), and a table has thousands of files over a few dates
    typed: dict[tuple[str, object], pads.Expression] = {}
    for i in range(actions.num_rows):
        tag = pads.scalar(True)
        for key, values in columns.items():
            name = key.removeprefix("partition.")
            value = values[i]
            if (name, value) not in typed:
                field = pads.field(name)
                typed[name, value] = (
                    field.is_null() if value is None else field == _typed(value, schema.field(name).type)
                )
            tag = tag & typed[name, value]
        if stats:
            tag = tag & _time_range(time_column, lows[i], highs[i], nulls[i], rows[i], schema)
        tags.append(tag)
    return tags


def _time_range(
    column: str, low: object, high: object, null_count: int | None, num_records: int | None, schema: pa.Schema
) -> pads.Expression:
    """What the log says of one file's times: a range with no nulls, all nulls, or (mixed, unknown) nothing."""
    field = pads.field(column)
    if null_count is not None and num_records is not None and null_count == num_records:
        return field.is_null()
    if null_count != 0 or not isinstance(low, dt.datetime) or not isinstance(high, dt.datetime):
        return pads.scalar(True)
    kind = schema.field(column).type
    return field.is_valid() & (field >= pa.scalar(low, kind)) & (field <= pa.scalar(high + _STATS_SLACK, kind))


def _typed(value: object, kind: pa.DataType) -> pa.Scalar:
    """A partition value as the column's type (the log gives partition values as text)."""
    return (
        pa.scalar(value).cast(kind) if not isinstance(value, str) or not pa.types.is_string(kind) else pa.scalar(value)
    )
