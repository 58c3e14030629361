"""The history lake: immutable Parquet segments that DuckDB reads through views.

Why not one DuckDB database file: DuckDB locks a database against every other
process while a writer holds it, so a processor that runs for weeks would lock
every hunter out. Segments are written under a hidden temporary name, fsync'd,
then renamed into ``<table>/date=YYYY-MM-DD/``: a reader sees a segment whole or
not at all, and any number of readers query while the writer writes.

Each segment may carry metadata (the input lines or Kafka offsets it covers) in
its Parquet footer, under ``tetrapipe.*`` keys.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tetrapipe.fsutil import atomic_write_bytes, fsync_dir, open_private, private_dirs
from tetrapipe.schema import PARTITION_TIME, SCHEMAS
from tetrapipe.worker import OrderedWorker

DEFAULT_LAKE = "./tetrapipe-lake"
LAKE_ENV = "TETRAPIPE_LAKE"


class Lake:
    """A lake directory: ``events/``, ``rejects/``, ``alerts/``, ``tls_stats/`` and state."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def table_dir(self, name: str) -> Path:
        return self.root / name

    def segments(self, name: str) -> list[Path]:
        d = self.table_dir(name)
        if not d.exists():
            return []
        return sorted(d.glob("date=*/*.parquet"))

    def glob(self, name: str) -> str:
        return str(self.table_dir(name) / "date=*" / "*.parquet")

    def write(
        self,
        name: str,
        table: pa.Table,
        metadata: dict[str, str] | None = None,
        segment: str | None = None,
        keep_empty: bool = False,
    ) -> list[Path]:
        """Write ``table`` as one segment per date it covers; returns the segment paths.

        ``segment`` names the file (without .parquet) and writes ONE file, in the
        date folder of the table's earliest row: one rename is one commit, which
        the stream processor's exactly-once protocol relies on. ``keep_empty``
        writes a file even for no rows (a commit marker).
        """
        if table.num_rows == 0 and not keep_empty:
            return []
        if segment is not None:
            return [self._write_one(name, table, metadata, segment)]
        schema = SCHEMAS[name]
        table = table.cast(schema) if table.schema != schema else table
        tcol = table.column(PARTITION_TIME[name])
        days = pc.cast(pc.cast(tcol, pa.timestamp("us")), pa.date32())
        written: list[Path] = []
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        seg_id = uuid.uuid4().hex[:12]
        unique = pc.unique(days).to_pylist()
        for day in unique:
            part = table if len(unique) == 1 else table.filter(pc.equal(days, pa.scalar(day, pa.date32())))
            label = "unknown" if day is None else day.isoformat()
            if day is None:
                part = table.filter(pc.is_null(days))
            final = self._commit(name, label, f"{stamp}-{seg_id}", part, metadata)
            written.append(final)
        return written

    def _write_one(self, name: str, table: pa.Table, metadata: dict[str, str] | None, segment: str) -> Path:
        schema = SCHEMAS[name]
        table = table.cast(schema) if table.schema != schema else table
        tcol = table.column(PARTITION_TIME[name])
        first = pc.min(tcol).as_py() if table.num_rows else None
        label = first.date().isoformat() if first is not None else "unknown"
        return self._commit(name, label, segment, table, metadata)

    def _commit(self, name: str, label: str, segment: str, table: pa.Table, metadata: dict[str, str] | None) -> Path:
        """Write one segment under a hidden name, fsync it, rename it into its date folder."""
        d = private_dirs(self.table_dir(name) / f"date={label}")
        final = d / f"{segment}.parquet"
        tmp = d / f".{final.name}.tmp"
        meta = dict(table.schema.metadata or {})
        for k, v in (metadata or {}).items():
            meta[f"tetrapipe.{k}".encode()] = v.encode()
        # created owner-only first (a crash's left-over is replaced, not reused with its mode): Arrow then
        # opens it with O_TRUNC, which keeps the mode of an existing file
        tmp.unlink(missing_ok=True)
        open_private(tmp, append=False).close()
        pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd", row_group_size=128 * 1024)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(d)
        return final

    # --- which inputs were already ingested -------------------------------------------

    def _manifest_path(self, fp: str) -> Path:
        return self.root / "_state" / "ingested" / f"{fp}.json"

    def ingested_position(self, fp: str) -> tuple[int, int]:
        """(lines, uncompressed bytes) of the log with this fingerprint already in the lake."""
        p = self._manifest_path(fp)
        try:
            body = json.loads(p.read_bytes())
            return int(body["lines"]), int(body.get("bytes", -1))
        except (OSError, ValueError, KeyError):
            return 0, 0

    def ingested_complete(self, fp: str) -> bool:
        try:
            return bool(json.loads(self._manifest_path(fp).read_bytes()).get("complete"))
        except (OSError, ValueError):
            return False

    def mark_complete(self, fp: str) -> None:
        p = self._manifest_path(fp)
        try:
            body = json.loads(p.read_bytes())
        except (OSError, ValueError):
            return
        body["complete"] = True
        atomic_write_bytes(p, json.dumps(body).encode())

    def record_ingested(self, fp: str, source: str, lines: int, nbytes: int = -1) -> None:
        body = {"fingerprint": fp, "source": source, "lines": lines, "bytes": nbytes, "updated": time.time()}
        atomic_write_bytes(self._manifest_path(fp), json.dumps(body).encode())


class AsyncWriter:
    """Writes segments on a background thread while the next batch is normalized.

    Parquet encoding and zstd release the GIL, so this overlaps real work. The
    queue is small (bounded memory), ``on_commit`` runs after a batch's
    segments are renamed into place, and a write error is re-raised in the
    caller at the next submit or at close: never swallowed, and no later batch
    is committed past the one that failed.
    """

    def __init__(self, lake: Lake, max_pending: int = 1) -> None:
        self.lake = lake
        self._worker = OrderedWorker("lake-writer", max_pending)

    def _write(
        self, tables: dict[str, pa.Table], metadata: dict[str, str] | None, on_commit: Callable[[], None] | None
    ) -> None:
        for name, table in tables.items():
            self.lake.write(name, table, metadata)
        if on_commit is not None:
            on_commit()

    def submit(
        self,
        tables: dict[str, pa.Table],
        metadata: dict[str, str] | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._worker.submit(lambda: self._write(tables, metadata, on_commit))

    def flush(self) -> None:
        self._worker.flush()

    def close(self) -> None:
        self._worker.close()
