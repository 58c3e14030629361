"""Merge small segments into large ones without ever losing or doubling a row.

A processor commits a segment per partition per micro-batch: at one batch a
second that is 86,400 files a day, and queries slow down with every file.
Compaction merges the segments of one table, one date and one source (one
Kafka partition, or all ingested files) into one file.

Crash safety comes from a journal: before the merged file is renamed into
place, ``_state/compaction/<id>.json`` lists the segments it replaces; after
the rename they are deleted and the journal is removed. :func:`recover`
finishes any journal left by a crash (deletes the replaced segments when the
merged file exists, else drops the journal), so a crash at any point leaves
each row exactly once. Readers may see a row twice only in the milliseconds
between the rename and the deletes. A merged Kafka segment is named after the
lowest first and highest last offset it holds, so the committed offset the
processor resumes from is unchanged.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tetrapipe.fsutil import atomic_write_bytes, fsync_dir, open_private, open_private_fd
from tetrapipe.lake.positions import parse_segment_name, segment_name
from tetrapipe.lake.store import Lake
from tetrapipe.schema import SCHEMAS, TABLES, conform

SMALL_BYTES = 32 * 1024 * 1024


@dataclass
class CompactionResult:
    merged_files: int = 0
    into: int = 0
    rows: int = 0


@contextmanager
def _lock(lake: Lake) -> Iterator[None]:
    """One compactor per lake at a time (processors on other partitions keep writing)."""
    path = lake.root / "_state" / "compact.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_private(path) as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _journal_dir(lake: Lake) -> Path:
    return lake.root / "_state" / "compaction"


def recover(lake: Lake) -> int:
    """Finish or undo compactions a crash interrupted; returns how many journals were handled."""
    d = _journal_dir(lake)
    if not d.exists():
        return 0
    handled = 0
    for journal in sorted(d.glob("*.json")):
        entry = json.loads(journal.read_text())
        if Path(entry["merged"]).exists():
            for old in entry["replaces"]:
                Path(old).unlink(missing_ok=True)
        else:
            Path(entry["tmp"]).unlink(missing_ok=True)
        journal.unlink()
        handled += 1
    return handled


def _group_key(path: Path) -> tuple[str, str]:
    """Segments merge only with their own kind: one topic, partition and epoch, or the file ingests."""
    parsed = parse_segment_name(path.stem)
    if parsed:
        topic, partition, _, _, epoch = parsed
        return ("kafka", f"{topic}~{partition}~{epoch}")
    return ("files", "")


def _first_offset(path: Path) -> int:
    parsed = parse_segment_name(path.stem)
    assert parsed is not None
    return parsed[2]


def _merged_name(key: tuple[str, str], paths: list[Path]) -> str:
    if key[0] == "kafka":
        topic, partition, epoch = key[1].split("~")
        ranges = [r for r in (parse_segment_name(p.stem) for p in paths) if r]
        first = min(r[2] for r in ranges)
        last = max(r[3] for r in ranges)
        return segment_name(topic, int(partition), first, last, int(epoch))
    return f"{paths[0].stem.split('-')[0]}-{uuid.uuid4().hex[:12]}-compacted"


def compact(
    lake: Lake,
    tables: list[str] | None = None,
    min_files: int = 8,
    small_bytes: int = SMALL_BYTES,
    skip_newest: int = 1,
) -> CompactionResult:
    """Merge groups of at least ``min_files`` small segments.

    ``skip_newest`` segments of each group are left alone: a live processor
    may be about to read them back as its latest commit.
    """
    result = CompactionResult()
    with _lock(lake):
        recover(lake)
        for table in tables or list(TABLES):
            for day_dir in sorted(lake.table_dir(table).glob("date=*")):
                groups: dict[tuple[str, str], list[Path]] = {}
                for p in sorted(day_dir.glob("*.parquet")):
                    if p.stat().st_size < small_bytes:
                        groups.setdefault(_group_key(p), []).append(p)
                for key, paths in groups.items():
                    if key[0] == "kafka":
                        paths.sort(key=_first_offset)
                    candidates = paths[: len(paths) - skip_newest] if skip_newest else paths
                    if len(candidates) < min_files:
                        continue
                    rows = _merge(lake, table, day_dir, key, candidates)
                    result.merged_files += len(candidates)
                    result.into += 1
                    result.rows += rows
    return result


def _merge(lake: Lake, table: str, day_dir: Path, key: tuple[str, str], paths: list[Path]) -> int:
    schema = SCHEMAS[table]
    merged = day_dir / f"{_merged_name(key, paths)}.parquet"
    tmp = day_dir / f".{merged.name}.{uuid.uuid4().hex[:6]}.tmp"
    metadata = pq.read_schema(paths[-1]).metadata or {}
    rows = 0
    os.close(open_private_fd(tmp))  # owner-only before the writer (re)opens it, whatever the umask
    with pq.ParquetWriter(tmp, schema.with_metadata(metadata), compression="zstd") as writer:
        for p in paths:
            part = pq.read_table(p)
            part = conform(part, schema)
            writer.write_table(
                pa.Table.from_batches(part.to_batches(), schema=schema.with_metadata(metadata)),
                row_group_size=128 * 1024,
            )
            rows += part.num_rows
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    journal = _journal_dir(lake) / f"{uuid.uuid4().hex}.json"
    if merged.exists():  # a name collision (same offset range) is a bug, never overwrite data
        tmp.unlink()
        raise RuntimeError(f"refusing to overwrite {merged}")
    atomic_write_bytes(
        journal, json.dumps({"merged": str(merged), "tmp": str(tmp), "replaces": [str(p) for p in paths]}).encode()
    )
    os.replace(tmp, merged)
    for p in paths:
        p.unlink(missing_ok=True)
    fsync_dir(day_dir)
    journal.unlink()
    return rows
