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

Kafka (``process``): ``kafka:<topic>:<partition>``, the version the partition's epoch and last
offset (:func:`kafka_position`); see the helpers further down.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
    "FILE_DONE_PREFIX",
    "FILE_PREFIX",
    "KAFKA_PREFIX",
    "Position",
    "decode_kafka_version",
    "kafka_app_id",
    "kafka_committed",
    "kafka_committed_offsets",
    "kafka_lake_positions",
    "kafka_position",
    "file_bytes_position",
    "file_done_position",
    "file_position",
]
