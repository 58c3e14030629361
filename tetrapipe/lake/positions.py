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

A damaged gzip copy (``corrupt gzip``: a deflate error, a failed CRC) is found
out only where zlib stumbles, often at the member's end, after its lines were
committed: the lines it delivered after the lines already in the lake cannot be
trusted, garbage rejected as such included. So such a read leaves
``file-damaged:<fingerprint>`` on ``events`` (:func:`file_damaged_position`: how
many damaged reads, and how many lines were in before the first of them), and
the next read of that log reads again from there: the lines its damaged copies
claimed go in without a position (the event-id check keeps what is already
stored from being stored twice), the rest as usual, and a read to a clean end
leaves ``file-repaired:<fingerprint>`` (the damage count it made good). The
reject that says where an input broke carries ``file-fault:<fingerprint>:<hash
of its reason>``, not the chunk's position: a table holding the lines before the
break would skip it, and reading the same broken copy again records it once.

Kafka (``process``): ``kafka:<topic>:<partition>``, the version the partition's epoch and last
offset (:func:`kafka_position`); see the helpers further down.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from tetrapipe.lake.store import Lake

#: app id prefixes of the positions of export-log files
FILE_PREFIX = "file:"
FILE_BYTES_PREFIX = "file-bytes:"
FILE_DONE_PREFIX = "file-done:"
FILE_DAMAGED_PREFIX = "file-damaged:"
FILE_REPAIRED_PREFIX = "file-repaired:"
FILE_FAULT_PREFIX = "file-fault:"
#: the low bits of a ``file-damaged`` version hold the lines trusted, the bits above them the damage count
_DAMAGE_SHIFT = 40


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


def file_fault_position(fingerprint: str, reason: str) -> Position:
    """The reject saying where and why a copy of a log broke: stored once, however often that copy is read.

    The reason names the file and the byte, so another copy broken elsewhere
    is recorded too.
    """
    digest = hashlib.sha256(reason.encode("utf-8", errors="replace")).hexdigest()[:16]
    return Position(f"{FILE_FAULT_PREFIX}{fingerprint}:{digest}", 1)


@dataclass(frozen=True)
class FileDamage:
    """A log a damaged copy was read of and no whole copy since: ``count`` damaged reads, ``trusted`` lines good."""

    count: int
    trusted: int


def file_damaged_position(fingerprint: str, count: int, trusted: int) -> Position:
    """The ``count``-th damaged read of a log whose first ``trusted`` lines came from undamaged reads.

    Both in one version (the count above the line number), so that it only
    grows: a new damage after a repair has a higher count, whatever its lines.
    """
    return Position(FILE_DAMAGED_PREFIX + fingerprint, (count << _DAMAGE_SHIFT) | trusted)


def file_repaired_position(fingerprint: str, count: int) -> Position:
    """A read to a clean end after ``count`` damaged reads: they are made good."""
    return Position(FILE_REPAIRED_PREFIX + fingerprint, count)


def file_damage(events: DeltaTable | None, fingerprint: str) -> FileDamage | None:
    """The damage a log's lines in ``events`` (a snapshot of that table) may hold; None when there is none.

    A snapshot rather than the lake: the caller reads the log's other
    positions from the same one (on an object store, each snapshot is a
    round of reads of the Delta log).
    """
    if events is None:
        return None
    version = events.transaction_version(FILE_DAMAGED_PREFIX + fingerprint)
    if version is None:
        return None
    count, trusted = version >> _DAMAGE_SHIFT, version & ((1 << _DAMAGE_SHIFT) - 1)
    if (events.transaction_version(FILE_REPAIRED_PREFIX + fingerprint) or 0) >= count:
        return None
    return FileDamage(count, trusted)


def file_damage_count(lake: Lake, fingerprint: str) -> int:
    """How many damaged reads of the log ``events`` records (a new one is counted after them)."""
    version = lake.committed("events", FILE_DAMAGED_PREFIX + fingerprint)
    return 0 if version is None else version >> _DAMAGE_SHIFT


# --- Kafka (process) ------------------------------------------------------------------------------------

#: app id prefix of a Kafka partition's position: ``kafka:<topic>:<partition>`` (``:`` never occurs in a topic)
KAFKA_PREFIX = "kafka:"
#: the low bits of a Kafka version hold the last offset, the bits above them the partition's epoch
EPOCH_SHIFT = 40
_OFFSET_MASK = (1 << EPOCH_SHIFT) - 1


def kafka_app_id(topic: str, partition: int) -> str:
    return f"{KAFKA_PREFIX}{topic}:{partition}"


def kafka_position(topic: str, partition: int, last: int, epoch: int = 0) -> Position:
    """The position of a processor's commit: every record of the partition up to offset ``last`` is in.

    Offsets can move backwards (a topic deleted and created again starts at
    0 while the lake holds offsets far beyond): the processor then starts a
    new *epoch* of the partition (``tetrapipe process --on-offset-reset``).
    The epoch sits above the offset in the version (``epoch << 40 | last``),
    so a newer epoch's version is larger whatever its offsets, and a table's
    version of the partition always says where the newest epoch stands.
    """
    if not 0 <= last <= _OFFSET_MASK:
        raise ValueError(f"offset {last} of {topic}/{partition} does not fit in {EPOCH_SHIFT} bits")
    return Position(kafka_app_id(topic, partition), (epoch << EPOCH_SHIFT) | last)


def decode_kafka_version(version: int) -> tuple[int, int]:
    """``(epoch, last offset)`` of a Kafka position's version."""
    return version >> EPOCH_SHIFT, version & _OFFSET_MASK


def kafka_committed(lake: Lake, topic: str, partitions: Iterable[int], table: str = "events") -> dict[int, int]:
    """partition -> the version (:func:`kafka_position`) ``table`` holds; partitions it holds nothing of are left out.

    Delta keeps app transactions by id and cannot list them, so the caller
    names the partitions (the broker's, or the group's assignment). One
    snapshot answers for all of them: on an object store, opening the table
    reads every log entry since its last checkpoint, and the processor asks
    before every batch (a snapshot per partition cost 4 x up to 99 reads).
    """
    snapshot = lake.table(table)
    if snapshot is None:
        return {}
    out: dict[int, int] = {}
    for p in partitions:
        held = snapshot.transaction_version(kafka_app_id(topic, p))
        if held is not None:
            out[p] = held
    return out


def kafka_lake_positions(lake: Lake, topic: str, partitions: Iterable[int]) -> dict[int, tuple[int, int]]:
    """partition -> ``(epoch, last offset)`` committed into the ``events`` table, where a processor resumes."""
    return {p: decode_kafka_version(v) for p, v in kafka_committed(lake, topic, partitions).items()}


def kafka_committed_offsets(lake: Lake, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """partition -> last offset in the lake (of the partition's newest epoch): what ``tetrapipe status`` shows."""
    return {p: last for p, (_, last) in kafka_lake_positions(lake, topic, partitions).items()}


__all__ = [
    "EPOCH_SHIFT",
    "FILE_BYTES_PREFIX",
    "FILE_DAMAGED_PREFIX",
    "FILE_DONE_PREFIX",
    "FILE_FAULT_PREFIX",
    "FILE_PREFIX",
    "FILE_REPAIRED_PREFIX",
    "FileDamage",
    "KAFKA_PREFIX",
    "Position",
    "decode_kafka_version",
    "kafka_app_id",
    "kafka_committed",
    "kafka_committed_offsets",
    "kafka_lake_positions",
    "kafka_position",
    "file_bytes_position",
    "file_damage",
    "file_damage_count",
    "file_damaged_position",
    "file_done_position",
    "file_fault_position",
    "file_position",
    "file_repaired_position",
]
