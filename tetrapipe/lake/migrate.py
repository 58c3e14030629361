"""``tetrapipe lake migrate``: the old segment layout turned into Delta tables, positions included.

Before Delta, a lake was a directory of Parquet segments,
``<table>/date=YYYY-MM-DD/<name>.parquet``. Where the history came from was
kept beside it: a stream processor's segment was named
``kafka~<topic>~<partition>~<first>~<last>[~e<epoch>]`` (the committed offset
of a partition = the highest ``last`` among its ``events`` segments in its
newest epoch), and the files ``ingest``/``run`` had read were listed in
``_state/ingested/<fingerprint>.json`` (lines, bytes, complete).

Each table is written in ONE Delta commit, streamed segment by segment (a
lake larger than memory migrates), which also carries those positions as app
transactions (:mod:`tetrapipe.lake.positions`): a processor or an ingest
started on the new lake resumes where the old one stopped, and reads nothing
twice.

Idempotent: the commit carries ``tetrapipe:migrated`` = a digest of the
segments' names and sizes; a run that finds the table already holding it
writes nothing (a second run, or two at once: Delta refuses the stale one,
which then sees the marker), and one that finds a different digest (old
segments added since, or a second old lake) refuses rather than store rows
twice. In place (the old directory is the lake), the old files are first
moved into ``<lake>/.old-segments/`` (never deleted: delete that folder once
the new lake is trusted), then migrated from there, so a crash at any point
leaves each row either still to migrate or migrated, never both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from tetrapipe.errors import TetrapipeError
from tetrapipe.fsutil import private_dirs
from tetrapipe.lake.positions import Position
from tetrapipe.lake.store import (
    COMMIT_ORDER,
    DATE_COLUMN,
    TABLE_PROPERTIES,
    WRITER_PROPERTIES,
    Lake,
    private_files,
    with_date,
)
from tetrapipe.schema import SCHEMAS, conform

log = logging.getLogger("tetrapipe.lake.migrate")

#: where an in-place migration keeps the old layout's files
OLD_SEGMENTS = ".old-segments"
_KAFKA_NAME = re.compile(r"^kafka~(?P<topic>[A-Za-z0-9._-]+)~(?P<p>\d+)~(?P<first>\d+)~(?P<last>\d+)(?:~e(?P<e>\d+))?$")
_MANIFEST = Path("_state") / "ingested"
_ATTEMPTS = 4
#: the app id whose version is the digest of the old segments a table was migrated from
MIGRATED_APP = "tetrapipe:migrated"


@dataclass(frozen=True)
class OldSegment:
    """One Parquet file of the old layout and what its name says of Kafka (None: written by ingest/run)."""

    path: Path
    table: str
    kafka: tuple[str, int, int, int, int] | None  # topic, partition, first, last, epoch


@dataclass
class MigrateResult:
    table: str
    segments: int = 0
    rows: int = 0
    committed: bool = False  # False: nothing to do, or the table already held this migration
    positions: int = 0
    unreadable: list[str] = field(default_factory=list)
    orphans: int = 0  # other tables' segments of Kafka batches whose events never committed: not migrated


def kafka_version(epoch: int, last: int) -> int:
    """The contract's Kafka position version: epoch in the high bits, the last offset below."""
    return (epoch << 40) | last


def _parse(stem: str) -> tuple[str, int, int, int, int] | None:
    m = _KAFKA_NAME.match(stem)
    return None if m is None else (m["topic"], int(m["p"]), int(m["first"]), int(m["last"]), int(m["e"] or 0))


def old_segments(root: Path, table: str) -> list[OldSegment]:
    """The old layout's files of ``table`` under ``root`` (never a Delta data file: those start ``part-``)."""
    d = root / table
    if not d.is_dir():
        return []
    return [
        OldSegment(p, table, _parse(p.stem))
        for p in sorted(d.glob("date=*/*.parquet"))
        if not p.name.startswith((".", "part-"))
    ]


def _manifest_positions(root: Path) -> tuple[list[Position], list[Position]]:
    """(file positions, companions) from the old ingest manifest; a damaged entry is skipped, named."""
    main: list[Position] = []
    companions: list[Position] = []
    for p in sorted((root / _MANIFEST).glob("*.json")):
        try:
            body = json.loads(p.read_bytes())
            fp, lines, nbytes = str(body["fingerprint"]), int(body["lines"]), int(body.get("bytes", -1))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("old ingest manifest %s unreadable, not migrated: %s", p, exc)
            continue
        if lines <= 0:
            continue
        main.append(Position(f"file:{fp}", lines))
        if nbytes >= 0:
            companions.append(Position(f"file-bytes:{fp}", nbytes))
        if body.get("complete"):
            companions.append(Position(f"file-done:{fp}", lines))
    return main, companions


def _kafka_committed(events: list[OldSegment]) -> dict[tuple[str, int, int], int]:
    """(topic, partition, epoch) -> last offset committed (events segments are a batch's commit)."""
    done: dict[tuple[str, int, int], int] = {}
    for seg in events:
        if seg.kafka:
            topic, part, _, last, epoch = seg.kafka
            done[(topic, part, epoch)] = max(done.get((topic, part, epoch), -1), last)
    return done


def _kafka_positions(done: dict[tuple[str, int, int], int]) -> list[Position]:
    newest: dict[tuple[str, int], tuple[int, int]] = {}
    for (topic, part, epoch), last in done.items():
        if (topic, part) not in newest or epoch > newest[(topic, part)][0]:
            newest[(topic, part)] = (epoch, last)
    return [Position(f"kafka:{t}:{p}", kafka_version(e, last)) for (t, p), (e, last) in sorted(newest.items())]


def _digest(root: Path, segments: list[OldSegment]) -> str:
    h = hashlib.sha256()
    for seg in segments:
        h.update(f"{seg.path.relative_to(root)}:{seg.path.stat().st_size}\n".encode())
    return h.hexdigest()[:24]


def _batches(name: str, segments: list[OldSegment], unreadable: list[str], rows: list[int]) -> Iterator[pa.RecordBatch]:
    """Each readable segment's rows in the table's schema plus ``date``; an unreadable one costs only itself."""
    schema = SCHEMAS[name]
    for seg in segments:
        try:
            part = conform(pq.read_table(seg.path), schema)
        except (OSError, pa.ArrowException, ValueError) as exc:
            log.warning("old segment %s unreadable, not migrated: %s", seg.path, exc)
            unreadable.append(str(seg.path))
            continue
        rows[0] += part.num_rows
        yield from with_date(name, part).to_batches()


def _move_in(root: Path) -> None:
    """In place: the old layout's files into ``.old-segments/`` (same tree shape), so the lake is Delta only."""
    keep = root / OLD_SEGMENTS
    for name in COMMIT_ORDER:
        for seg in old_segments(root, name):
            dest = keep / seg.path.relative_to(root)
            private_dirs(dest.parent)
            os.replace(seg.path, dest)
    manifest = root / _MANIFEST
    if manifest.is_dir():
        dest = keep / _MANIFEST
        private_dirs(dest)
        for p in manifest.glob("*.json"):
            os.replace(p, dest / p.name)


def migrate(old_dir: str | os.PathLike[str], lake: Lake) -> list[MigrateResult]:
    """Write every table of the old lake at ``old_dir`` into ``lake``; returns what each table got.

    In place when ``lake`` is ``old_dir`` itself. Raises :class:`TetrapipeError`
    when ``old_dir`` holds nothing of the old layout.
    """
    old = Path(old_dir)
    if not old.is_dir():
        raise TetrapipeError(f"{old} is not a directory: nothing to migrate")
    in_place = lake.is_local and Path(lake.root).resolve() == old.resolve()
    source = old
    if in_place:
        _move_in(old)
        source = old / OLD_SEGMENTS
    segments = {name: old_segments(source, name) for name in COMMIT_ORDER}
    files, companions = _manifest_positions(source)
    if not any(segments.values()) and not files:
        raise TetrapipeError(
            f"{old} holds no segments of the old layout (<table>/date=*/*.parquet): nothing to migrate"
        )
    done = _kafka_committed(segments["events"])
    kafka = _kafka_positions(done)
    results = []
    for name in COMMIT_ORDER:
        mine, orphans = [], 0
        for seg in segments[name]:
            if name != "events" and seg.kafka and seg.kafka[2] > done.get(seg.kafka[:2] + (seg.kafka[4],), -1):
                orphans += 1  # written by a batch whose events commit never happened: the processor redoes it
            else:
                mine.append(seg)
        positions = kafka + files + (companions if name == "events" else [])
        if not mine and not (name == "events" and positions):
            results.append(MigrateResult(name, orphans=orphans))
            continue
        result = _migrate_table(lake, name, mine, source, positions)
        result.orphans = orphans
        results.append(result)
    return results


def _migrate_table(
    lake: Lake, name: str, segments: list[OldSegment], source: Path, positions: list[Position]
) -> MigrateResult:
    """One streamed commit of ``segments`` carrying ``positions`` and the migration's marker (skipped if held)."""
    digest = int(_digest(source, segments), 16) >> 36  # 60 bits: a Delta txn version is a signed long
    result = MigrateResult(name, segments=len(segments))
    for attempt in range(_ATTEMPTS):
        table = lake.table(name)
        held = None if table is None else table.transaction_version(MIGRATED_APP)
        if held == digest:
            return result  # this very migration is already in the table
        if held is not None:
            raise TetrapipeError(
                f"the {name} table already holds a migration of a different set of old segments (did a writer of "
                "the old layout add some since, or is this another old lake?): migrating again would store "
                "rows twice"
            )
        # a position the table already holds further on (a processor ran on the new lake first) is left alone
        carried = [p for p in positions if table is None or _held(table.transaction_version(p.app_id)) < p.version]
        txns = [Transaction(MIGRATED_APP, digest)] + [Transaction(p.app_id, p.version) for p in carried]
        result.unreadable, counted = [], [0]
        reader = pa.RecordBatchReader.from_batches(
            with_date(name, SCHEMAS[name].empty_table()).schema,
            _batches(name, segments, result.unreadable, counted),
        )
        try:
            with private_files(lake.is_local):
                if lake.is_local:
                    private_dirs(lake.root)
                write_deltalake(
                    table if table is not None else lake.table_uri(name),
                    reader,
                    mode="append",
                    partition_by=[DATE_COLUMN],
                    schema_mode="merge",
                    configuration=TABLE_PROPERTIES if table is None else None,
                    storage_options=lake.storage_options or None,
                    commit_properties=CommitProperties(app_transactions=txns),
                    writer_properties=WRITER_PROPERTIES,
                )
        except CommitFailedError as exc:  # another migration of the same marker won: look again
            log.info("migration of %s met a concurrent commit (attempt %d): %s", name, attempt + 1, exc)
            continue
        result.rows, result.committed, result.positions = counted[0], True, len(carried)
        return result
    raise TetrapipeError(f"migration of the {name} table kept meeting concurrent commits ({_ATTEMPTS} attempts)")


def _held(version: int | None) -> int:
    return -1 if version is None else version
