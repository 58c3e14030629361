"""Kafka offsets recorded in segment names: the lake is the source of truth.

A segment the stream processor writes is named
``kafka~<topic>~<partition>~<first offset>~<last offset>.parquet`` (``~`` never
occurs in a Kafka topic name). The ``events`` segment of a partition's batch is
written last and is its commit: the committed offset of a partition is the
highest last offset among its events segments. Segments of the other tables
beyond that offset belong to a batch that never committed (a crash between
the two writes) and are deleted before the partition is processed again, so
a crash at any point neither loses nor duplicates a row.

Offsets can move backwards: a topic deleted and created again (or a new
cluster) starts at 0 while the lake holds offsets far beyond. The processor
then starts a new *epoch* of the partition (by the operator's policy, see
``tetrapipe process --on-offset-reset``), and the segments it writes from then
on carry it: ``...~<last offset>~e<epoch>`` (no suffix: epoch 0). Only the
newest epoch of a partition says where to resume; the older segments stay as
history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tetrapipe.lake.store import Lake
from tetrapipe.schema import TABLES

_NAME = re.compile(
    r"^kafka~(?P<topic>[A-Za-z0-9._-]+)~(?P<partition>\d+)~(?P<first>\d+)~(?P<last>\d+)(?:~e(?P<epoch>\d+))?$"
)


@dataclass(frozen=True)
class KafkaSegment:
    path: Path
    table: str
    topic: str
    partition: int
    first: int
    last: int
    epoch: int = 0


def segment_name(topic: str, partition: int, first: int, last: int, epoch: int = 0) -> str:
    return f"kafka~{topic}~{partition}~{first}~{last}" + (f"~e{epoch}" if epoch else "")


def parse_segment_name(stem: str) -> tuple[str, int, int, int, int] | None:
    """``(topic, partition, first, last, epoch)`` of a processor's segment name, None for any other file."""
    m = _NAME.match(stem)
    if not m:
        return None
    return (m["topic"], int(m["partition"]), int(m["first"]), int(m["last"]), int(m["epoch"] or 0))


def kafka_segments(lake: Lake, topic: str, table: str = "events") -> list[KafkaSegment]:
    out = []
    for path in lake.segments(table):
        parsed = parse_segment_name(path.stem)
        if parsed and parsed[0] == topic:
            out.append(KafkaSegment(path, table, *parsed))
    return out


def _committed_by_epoch(lake: Lake, topic: str) -> dict[tuple[int, int], int]:
    done: dict[tuple[int, int], int] = {}
    for seg in kafka_segments(lake, topic, "events"):
        key = (seg.partition, seg.epoch)
        done[key] = max(done.get(key, -1), seg.last)
    return done


def lake_positions(lake: Lake, topic: str) -> dict[int, tuple[int, int]]:
    """partition -> (newest epoch, last offset committed in it)."""
    out: dict[int, tuple[int, int]] = {}
    for (partition, epoch), last in _committed_by_epoch(lake, topic).items():
        if partition not in out or epoch > out[partition][0]:
            out[partition] = (epoch, last)
    return out


def committed_offsets(lake: Lake, topic: str) -> dict[int, int]:
    """partition -> last offset committed into the lake (in the partition's newest epoch)."""
    return {p: last for p, (_, last) in lake_positions(lake, topic).items()}


def remove_uncommitted(lake: Lake, topic: str, partitions: set[int]) -> list[Path]:
    """Delete other tables' segments past the committed offset of ``partitions`` (orphans of a crash)."""
    done = _committed_by_epoch(lake, topic)
    removed = []
    for table in TABLES:
        if table == "events":
            continue
        for seg in kafka_segments(lake, topic, table):
            if seg.partition in partitions and seg.first > done.get((seg.partition, seg.epoch), -1):
                seg.path.unlink(missing_ok=True)
                removed.append(seg.path)
    return removed
