"""Kafka offsets recorded in segment names: the lake is the source of truth.

A segment the stream processor writes is named
``kafka~<topic>~<partition>~<first offset>~<last offset>.parquet`` (``~`` never
occurs in a Kafka topic name). The ``events`` segment of a partition's batch is
written last and is its commit: the committed offset of a partition is the
highest last offset among its events segments. Segments of the other tables
beyond that offset belong to a batch that never committed (a crash between
the two writes) and are deleted before the partition is processed again, so
a crash at any point neither loses nor duplicates a row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tetrapipe.schema import TABLES
from tetrapipe.sinks.lake import Lake

_NAME = re.compile(r"^kafka~(?P<topic>[A-Za-z0-9._-]+)~(?P<partition>\d+)~(?P<first>\d+)~(?P<last>\d+)$")


@dataclass(frozen=True)
class KafkaSegment:
    path: Path
    table: str
    topic: str
    partition: int
    first: int
    last: int


def segment_name(topic: str, partition: int, first: int, last: int) -> str:
    return f"kafka~{topic}~{partition}~{first}~{last}"


def kafka_segments(lake: Lake, topic: str, table: str = "events") -> list[KafkaSegment]:
    out = []
    for path in lake.segments(table):
        m = _NAME.match(path.stem)
        if m and m.group("topic") == topic:
            out.append(KafkaSegment(path, table, topic, int(m.group("partition")), int(m.group("first")),
                                    int(m.group("last"))))
    return out


def committed_offsets(lake: Lake, topic: str) -> dict[int, int]:
    """partition -> last offset committed into the lake."""
    done: dict[int, int] = {}
    for seg in kafka_segments(lake, topic, "events"):
        done[seg.partition] = max(done.get(seg.partition, -1), seg.last)
    return done


def remove_uncommitted(lake: Lake, topic: str, partitions: set[int]) -> list[Path]:
    """Delete other tables' segments past the committed offset of ``partitions`` (orphans of a crash)."""
    done = committed_offsets(lake, topic)
    removed = []
    for table in TABLES:
        if table == "events":
            continue
        for seg in kafka_segments(lake, topic, table):
            if seg.partition in partitions and seg.first > done.get(seg.partition, -1):
                seg.path.unlink(missing_ok=True)
                removed.append(seg.path)
    return removed
