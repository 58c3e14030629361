"""DuckDB's own Parquet reader over one snapshot of a local Delta table: the views' fast path.

The Arrow dataset of :mod:`.scan` works everywhere (object stores included),
but every row it hands DuckDB is decoded by pyarrow first, all of a query's
columns for every row its filters keep by file: a count of a million events
costs ~0.15 s there against ~0.03 s when DuckDB's reader answers it from the
footers, and a pod's tree decodes every needed column of the history before
the pod filter drops most of it. For a table on a local disk this module
hands DuckDB the snapshot's file list instead, as one ``read_parquet`` call:

* the **columns** are the Delta schema's, given to the reader by name with
  their types (``schema=``), so no file is opened to bind a query, a file
  written before a column was added reads it as NULL (schema evolution), and
  the column order and types are those of the Arrow path;
* the **partition values** (``date``) come from the files' directories
  (``date=2026-03-10/...``, what delta-rs writes), after checking that every
  file's directory says exactly what the log says; DuckDB then skips the
  files of other dates without opening them. A table whose paths do not say
  it (a value that needs escaping, another writer's layout) gets one
  ``read_parquet`` per partition value with the value as a constant instead
  (a null date is the directory ``date=__HIVE_DEFAULT_PARTITION__``, which
  DuckDB reads as NULL);
* the **file list** is the snapshot's: the newest one replayed from the
  table's ``_delta_log`` here (:func:`read_local_log`, a few milliseconds where
  opening the table with delta-rs took tens), an older one (time travel) or a
  log the replay does not follow read with delta-rs (:func:`native_scan`,
  without pyarrow); either way the files and their order are delta-rs's.

A filter on the table's time prunes inside the files (row groups, from their
footers) rather than by the log's statistics: a local footer read costs
well under a millisecond. A table this module cannot read the same way as
the Arrow path (reader features other than ``timestampNtz``: deletion
vectors, column mapping; a type it does not map; a path it would have to
escape or a root with glob characters) is left to the Arrow path
(:func:`native_scan` answers None).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb

from tetrapipe.sqltext import sql_ident, sql_string, sql_string_list

if TYPE_CHECKING:
    from deltalake import DeltaTable

#: reader features read the same way as :mod:`.scan` does
_SUPPORTED_FEATURES = frozenset({"timestampNtz"})
_PRIMITIVES = {
    "string": "VARCHAR",
    "long": "BIGINT",
    "integer": "INTEGER",
    "short": "SMALLINT",
    "byte": "TINYINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "binary": "BLOB",
    "date": "DATE",
    "timestamp": "TIMESTAMP WITH TIME ZONE",
    "timestamp_ntz": "TIMESTAMP",
}
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
#: what a partition value or a path may hold to be written in a directory name and a glob-free list as is
_PLAIN = re.compile(r"^[A-Za-z0-9._-]+$")
_GLOB = re.compile(r"[*?\[\]{}]")
#: the directory of a null partition value (delta-rs writes it, DuckDB reads it as NULL)
_NULL_DIRECTORY = "__HIVE_DEFAULT_PARTITION__"


@dataclass(frozen=True)
class NativeScan:
    """A snapshot's files and columns as ``read_parquet`` needs them.

    ``files`` are relative to ``root`` (as the log names them); ``partitions``
    holds each file's partition values; ``columns`` are the Delta schema's
    (name, DuckDB type) in its order, partition columns included;
    ``hive``: every file's directories spell its partition values.
    """

    root: str
    files: tuple[str, ...]
    partitions: tuple[tuple[str | None, ...], ...]
    columns: tuple[tuple[str, str], ...]
    partition_columns: tuple[str, ...]
    hive: bool

    def path(self, file: str) -> str:
        return self.root + file

    def schema_literal(self) -> str:
        """The data columns as ``read_parquet``'s ``schema=`` map (by name; a missing column reads as NULL)."""
        entries = (
            f"{sql_string(name)}: {{name: {sql_string(name)}, type: {sql_string(kind)}, default_value: NULL}}"
            for name, kind in self.columns
            if name not in self.partition_columns
        )
        return "MAP {" + ", ".join(entries) + "}"

    def select(self, schema_variable: str, leave_out: set[str] | frozenset[str] = frozenset()) -> str:
        """The SELECT of the table's rows (every column in the table's order), without the files in ``leave_out``.

        ``schema_variable`` names a DuckDB variable holding :meth:`schema_literal`
        (set once per connection: the map is long, and a view is bound on every query).
        """
        names = ", ".join(sql_ident(name) for name, _ in self.columns)
        kept = [(f, p) for f, p in zip(self.files, self.partitions, strict=True) if f not in leave_out]
        if not kept:
            empty = ", ".join(f"NULL::{kind} AS {sql_ident(name)}" for name, kind in self.columns)
            return f"SELECT {empty} WHERE false"
        schema = f"schema = getvariable({sql_string(schema_variable)})"
        types = dict(self.columns)
        if self.hive:
            hive_types = ", ".join(f"{sql_string(c)}: {sql_string(types[c])}" for c in self.partition_columns)
            options = f"{schema}, hive_partitioning = true" + (f", hive_types = {{{hive_types}}}" if hive_types else "")
            return f"SELECT {names} FROM read_parquet({sql_string_list(self.path(f) for f, _ in kept)}, {options})"
        groups: dict[tuple[str | None, ...], list[str]] = {}
        for file, values in kept:
            groups.setdefault(values, []).append(self.path(file))
        parts = []
        for values, paths in groups.items():
            constants = "".join(
                f", CAST({'NULL' if v is None else sql_string(v)} AS {types[c]}) AS {sql_ident(c)}"
                for c, v in zip(self.partition_columns, values, strict=True)
            )
            parts.append(
                f"SELECT {names} FROM (SELECT *{constants} FROM read_parquet({sql_string_list(paths)}, {schema}, "
                "hive_partitioning = false))"
            )
        return " UNION ALL ".join(parts)


def native_scan(table: DeltaTable) -> NativeScan | None:
    """The loaded version of a local ``table`` for ``read_parquet``; None when only the Arrow path reads it as it is."""
    uri = table.table_uri
    root = uri.removeprefix("file://") if uri.startswith("file://") else uri
    protocol = table.protocol()
    partition_columns = tuple(table.metadata().partition_columns)
    actions = table.get_add_actions(flatten=True)
    files = tuple(actions.column("path").to_pylist())
    values = [actions.column(f"partition.{c}").to_pylist() for c in partition_columns]
    partitions = tuple(zip(*values, strict=True)) if values else tuple(() for _ in files)
    return _scan(
        root,
        protocol.min_reader_version,
        protocol.reader_features,
        json.loads(table.schema().to_json())["fields"],
        partition_columns,
        files,
        partitions,
    )


def _scan(
    root: str,
    min_reader_version: int,
    reader_features: Any,
    fields: list[dict[str, Any]],
    partition_columns: tuple[str, ...],
    files: tuple[str, ...],
    partitions: tuple[tuple[str | None, ...], ...],
) -> NativeScan | None:
    """A snapshot (by whoever read its log) as ``read_parquet`` reads it; None when only the Arrow path can."""
    if "://" in root or not root.startswith("/") or _GLOB.search(root) or "'" in root:
        return None
    if min_reader_version > 3 or set(reader_features or ()) - _SUPPORTED_FEATURES:
        return None
    columns = []
    for field in fields:
        kind = duckdb_type(field["type"])
        if kind is None or field.get("metadata", {}).get("delta.columnMapping.physicalName"):
            return None
        columns.append((field["name"], kind))
    if any("://" in f or f.startswith("/") or "%" in f or _GLOB.search(f) or "'" in f for f in files):
        return None
    # DuckDB reads every ``k=v`` directory of a path as a column: a root with one would add or clash
    hive = "=" not in root and all(
        _spells(file, partition_columns, part) for file, part in zip(files, partitions, strict=True)
    )
    return NativeScan(root.rstrip("/") + "/", files, partitions, tuple(columns), partition_columns, hive)


def _spells(file: str, columns: tuple[str, ...], values: tuple[str | None, ...]) -> bool:
    """Whether ``file`` lies in exactly the directories ``col=value/`` of its partition values, in order."""
    if not columns or any(v is not None and not _PLAIN.match(v) for v in values):
        return False
    prefix = "".join(f"{c}={_NULL_DIRECTORY if v is None else v}/" for c, v in zip(columns, values, strict=True))
    return file.startswith(prefix) and "/" not in file[len(prefix) :]


def duckdb_type(kind: Any) -> str | None:
    """A Delta schema type (its JSON form) as a DuckDB type; None for one this module does not map."""
    if isinstance(kind, str):
        if kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
        m = _DECIMAL.match(kind)
        return f"DECIMAL({m[1]}, {m[2]})" if m else None
    shape = kind.get("type")
    if shape == "array":
        inner = duckdb_type(kind["elementType"])
        return None if inner is None else f"{inner}[]"
    if shape == "map":
        key, value = duckdb_type(kind["keyType"]), duckdb_type(kind["valueType"])
        return None if key is None or value is None else f"MAP({key}, {value})"
    if shape == "struct":
        fields = [(f["name"], duckdb_type(f["type"])) for f in kind["fields"]]
        if any(t is None for _, t in fields):
            return None
        return "STRUCT(" + ", ".join(f"{sql_ident(n)} {t}" for n, t in fields) + ")"
    return None


#: a commit of the log, and a checkpoint of the one kind read here (single-part, classic: other kinds fall back)
_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")
_CHECKPOINT_FILE = re.compile(r"^(\d{20})\.checkpoint\.parquet$")
_ANY_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint\.")


@dataclass(frozen=True)
class LocalSnapshot:
    """The newest version of a local table as its own log says it (see :func:`read_local_log`)."""

    version: int
    table_uri: str
    scan: NativeScan


def read_local_log(table_dir: str, con: duckdb.DuckDBPyConnection) -> LocalSnapshot | None:
    """The newest snapshot of the Delta table at ``table_dir``, replayed from its ``_delta_log`` here.

    Why not delta-rs: opening a table and listing its files cost ~50-90 ms of
    a one-line query (its runtime starts, reads and re-encodes every add
    action), where the log of a day of commits is a few hundred kilobytes of
    JSON that Python reads in ~4 ms. The replay is the protocol's own: the
    newest classic checkpoint (read by DuckDB, ``con``), then every commit
    after it; an ``add`` is live unless a newer commit removed its path; the
    newest ``metaData`` and ``protocol`` win. Files are listed in the order
    delta-rs lists them (newest commit first, the checkpoint's last), so an
    answer without ORDER BY comes back in the same order either way.

    None (delta-rs reads it instead, as it always did) for anything this
    replay does not follow: no log, a gap in the commits, a multi-part or V2
    checkpoint, a log file that vanished meanwhile (a cleanup), a reader
    feature or a column :func:`native_scan` would refuse too.
    """
    log_dir = os.path.join(table_dir, "_delta_log")
    try:
        names = os.listdir(log_dir)
    except OSError:
        return None
    commits: set[int] = set()
    checkpoints: set[int] = set()
    others: set[int] = set()
    for name in names:
        if m := _COMMIT_FILE.match(name):
            commits.add(int(m[1]))
        elif m := _ANY_CHECKPOINT.match(name):
            (checkpoints if _CHECKPOINT_FILE.match(name) else others).add(int(m[1]))
    if not commits and not checkpoints:
        return None
    newest = max(commits | checkpoints)  # (a checkpoint whose own commit file was cleaned up says the version too)
    start = max(checkpoints, default=-1)
    if any(v >= start for v in others) or any(v not in commits for v in range(start + 1, newest + 1)):
        return None
    seen: set[str] = set()
    files: list[str] = []
    values: list[dict[str, str | None]] = []
    protocol: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    try:
        for version in range(newest, start, -1):
            with open(os.path.join(log_dir, f"{version:020d}.json"), "rb") as f:
                for line in f:
                    if not line.strip():
                        continue
                    action = json.loads(line)
                    if "add" in action:
                        path = action["add"]["path"]
                        if path not in seen:
                            seen.add(path)
                            files.append(path)
                            values.append(action["add"].get("partitionValues") or {})
                    elif "remove" in action:
                        seen.add(action["remove"]["path"])
                    elif "metaData" in action and metadata is None:
                        metadata = action["metaData"]
                    elif "protocol" in action and protocol is None:
                        protocol = action["protocol"]
        if start >= 0:
            checkpoint = os.path.join(log_dir, f"{start:020d}.checkpoint.parquet")
            protocol, metadata = _read_checkpoint(con, checkpoint, seen, files, values, protocol, metadata)
    except (OSError, ValueError, KeyError, TypeError, duckdb.Error):
        return None  # a file gone meanwhile, or a log this replay does not follow: delta-rs reads it
    if protocol is None or metadata is None:
        return None
    root = os.path.realpath(table_dir)
    partition_columns = tuple(metadata.get("partitionColumns") or ())
    scan = _scan(
        root,
        int(protocol.get("minReaderVersion") or 1),
        protocol.get("readerFeatures"),
        json.loads(metadata["schemaString"])["fields"],
        partition_columns,
        tuple(files),
        tuple(tuple(v.get(c) for c in partition_columns) for v in values),
    )
    return None if scan is None else LocalSnapshot(newest, f"file://{root}/", scan)


def _read_checkpoint(
    con: duckdb.DuckDBPyConnection,
    path: str,
    seen: set[str],
    files: list[str],
    values: list[dict[str, str | None]],
    protocol: dict[str, Any] | None,
    metadata: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The checkpoint's live files (after those of the newer commits) and its protocol and metadata if still newest."""
    source = f"read_parquet({sql_string(path)})"
    for file, partition_values in con.execute(
        f"SELECT add.path, add.partitionValues FROM {source} WHERE add IS NOT NULL"
    ).fetchall():
        if file not in seen:
            seen.add(file)
            files.append(file)
            values.append(dict(partition_values or {}))
    if protocol is None:
        row = con.execute(
            f"SELECT protocol.minReaderVersion, protocol.readerFeatures FROM {source} WHERE protocol IS NOT NULL"
        ).fetchone()
        protocol = None if row is None else {"minReaderVersion": row[0], "readerFeatures": row[1]}
    if metadata is None:
        row = con.execute(
            f'SELECT "metaData".schemaString, "metaData".partitionColumns FROM {source} WHERE "metaData" IS NOT NULL'
        ).fetchone()
        metadata = None if row is None else {"schemaString": row[0], "partitionColumns": row[1]}
    return protocol, metadata
