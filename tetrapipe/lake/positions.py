"""Where a flow is in its input, as the lake itself records it: Delta app transactions.

Every commit a flow makes carries a :class:`Position`: an application id
naming the input and a version saying how far into it the commit goes
(``Lake.commit`` writes it as a Delta ``txn`` action in the same atomic commit
as the rows). The table then says where a restarted flow resumes, and a commit
whose position the table already holds is skipped: each input's rows reach a
table exactly once, whatever crashed and whoever else writes.

Files (``ingest``, ``run``): the app id is ``file:<fingerprint>`` (the
fingerprint of the log's first line, :func:`tetrapipe.sources.files.fingerprint`)
and the version the last line number the commit covers. Two companions ride on
the ``events`` commits of a file: ``file-bytes:<fingerprint>`` (the
uncompressed byte offset after that line, so ``run`` seeks a growing file
instead of reading it again) and ``file-done:<fingerprint>`` (a gzip'd backup
read to its end, never read again by ``run``; its version is the file's line
count). A companion never decides whether a commit is skipped: only the
commit's own position does.

Kafka (``process``): see the helpers further down.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tetrapipe.schema import TABLES

if TYPE_CHECKING:
    from tetrapipe.lake.store import Lake

#: app id prefixes of the positions of export-log files
FILE_PREFIX = "file:"
FILE_BYTES_PREFIX = "file-bytes:"
FILE_DONE_PREFIX = "file-done:"


@dataclass(frozen=True)
class Position:
    """How far into one input a commit goes: a Delta app transaction ``(app_id, version)``.

    ``version`` only grows for one ``app_id``: a table holding version ``v``
    holds everything of that input up to ``v``.
    """

    app_id: str
    version: int

    def __post_init__(self) -> None:
        if not self.app_id:
            raise ValueError("a position needs an app id")
        if self.version < 0:
            raise ValueError(f"position {self.app_id}: version {self.version} is negative")


def file_position(fingerprint: str, last_line: int) -> Position:
    """The position of a log file's commit: every line up to ``last_line`` (1-based) is in."""
    return Position(FILE_PREFIX + fingerprint, last_line)


def file_bytes_position(fingerprint: str, end_byte: int) -> Position:
    """Companion of :func:`file_position`: the uncompressed byte offset just after the last line covered."""
    return Position(FILE_BYTES_PREFIX + fingerprint, max(end_byte, 0))


def file_done_position(fingerprint: str, lines: int) -> Position:
    """A gzip'd backup read to its end (``lines`` lines): ``run`` never reads it again."""
    return Position(FILE_DONE_PREFIX + fingerprint, lines)


# --- Kafka (process) ------------------------------------------------------------------------------------
# TRANSITIONAL: the segment-name offsets below are the old layout's; D-process replaces this block with
# ``kafka_position``/``decode_kafka_version`` over app transactions (the contract). Kept so that
# flows/process.py and lake/maintenance.py still import while they move.

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


__all__ = [
    "FILE_BYTES_PREFIX",
    "FILE_DONE_PREFIX",
    "FILE_PREFIX",
    "Position",
    "file_bytes_position",
    "file_done_position",
    "file_position",
]
