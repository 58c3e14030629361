"""The disk spool: where data waits, in order, while its peer (a SIEM, Kafka) is unreachable.

One disk buffer for every writer that must not lose what its peer cannot take
yet: a directory of numbered files, owner-only (0700 directories, 0600 files:
what waits here are Tetragon events and alerts), created on the first write,
bounded by ``max_bytes``, drained oldest first. Two writers use it, in the two
ways their delivery works (see docs/ARCHITECTURE.md):

* **Records** (the SIEM sinks): :meth:`DiskSpool.append` adds records as JSON
  lines to segment files (``NNN.jsonl``, a new one past ``segment_bytes``); a
  cursor file says how far the oldest segment has been delivered. Replay
  :meth:`~DiskSpool.read`\\ s from the cursor, the sink sends, and only then is
  the cursor moved (:meth:`~DiskSpool.commit`: written to a temporary file and
  renamed, so a crash leaves the old or the new cursor, never half of one; a
  cursor naming a segment a crash deleted before it is dropped at the next
  start). A crash between sending and moving the cursor re-sends that batch:
  delivery from the spool is at least once. When the limit is reached the
  records that do not fit are returned as not written: the caller counts them
  as dropped and logs them; the spool never deletes records it already holds.
* **Batches** (the collector): :meth:`DiskSpool.put_batch` writes one file per
  batch (``NNN.spool``: a JSON header line, then the raw lines byte for byte)
  atomically (temp file, fsync, rename), so a batch is on disk whole or not at
  all and is as safe as a Kafka acknowledgement. A batch that would take the
  spool past ``max_bytes`` is not written (:meth:`~DiskSpool.put_batch` says
  so; :meth:`~DiskSpool.fitting` says how many of its lines would fit). Batches are handed out oldest
  first (:meth:`~DiskSpool.take_batch`) while earlier ones are still in
  flight, removed once acknowledged (:meth:`~DiskSpool.remove_batch`), and
  :meth:`~DiskSpool.drop_from` forgets those a crash left beyond the last
  checkpoint when the source reads them again (a file; a stream's are kept).

Memory stays bounded: a replay reads one batch of records at a time.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tetrapipe.fsutil import atomic_write_bytes, cut_partial_line, open_private, private_dirs

log = logging.getLogger("tetrapipe.sinks.spool")

SEGMENT_SUFFIX = ".jsonl"
BATCH_SUFFIX = ".spool"
CURSOR = "cursor.json"
STATE_HOME_ENV = "XDG_STATE_HOME"


def state_home() -> Path:
    """tetrapipe's own state directory: ``$XDG_STATE_HOME/tetrapipe``, else ``~/.local/state/tetrapipe``.

    Why not the current directory: a spool or checkpoint left wherever a
    command happened to run is found by nobody, and lost by the next run from
    elsewhere. A relative ``$XDG_STATE_HOME`` is ignored, as the XDG base
    directory specification asks.
    """
    base = os.environ.get(STATE_HOME_ENV, "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "state"
    return root / "tetrapipe"


def default_spool_dir() -> Path:
    """Where sinks spool when no directory is configured: ``$XDG_STATE_HOME/tetrapipe/spool``."""
    return state_home() / "spool"


@dataclass(frozen=True)
class SpoolPosition:
    """Where a read ended: the segment file, the byte offset just after the last line read, and how
    many lines the read consumed (records plus any unreadable line it skipped)."""

    segment: str
    offset: int
    lines: int = 0


@dataclass
class SpoolChunk:
    """Records read from the spool; ``positions[i]`` is where to commit once records[:i+1] are delivered."""

    records: list[dict[str, Any]] = field(default_factory=list)
    positions: list[SpoolPosition] = field(default_factory=list)
    end: SpoolPosition | None = None


@dataclass(frozen=True)
class SpooledBatch:
    """A batch read back: its sequence number, its raw lines and the header it was put with."""

    seq: int
    lines: list[bytes]
    meta: dict[str, Any]


def _batch_header(meta: dict[str, Any], lines: int) -> bytes:
    """A batch file's first line: what :meth:`DiskSpool.fitting` counts is what :meth:`DiskSpool.put_batch` writes."""
    return json.dumps({**meta, "lines": lines}).encode()


class DiskSpool:
    """Numbered files in one owner-only directory, oldest first; one instance per writer, one process per directory.

    ``max_bytes`` 0 switches writing off (what an earlier run left is still
    read back). ``fsync``: records are fsync'd as they are appended (batches
    always are).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        max_bytes: int = 1 << 30,
        segment_bytes: int = 16 << 20,
        fsync: bool = True,
    ) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._cursor = self._load_cursor()
        self._records = 0
        self._record_bytes = 0
        self._repair_and_count()
        self._batches: dict[int, tuple[int, int]] = {}  # seq -> (file size, lines)
        self.next_seq = 0
        self._send_from = 0  # lowest batch not handed out yet
        self._scan_batches()

    # --- state ------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def pending_records(self) -> int:
        """Records and batch lines waiting (batches handed out but not removed included)."""
        return self._records + sum(n for _, n in self._batches.values())

    @property
    def pending_bytes(self) -> int:
        return self._record_bytes + sum(size for size, _ in self._batches.values())

    def has_room(self) -> bool:
        return self.enabled and self.pending_bytes < self.max_bytes

    def _segments(self) -> list[Path]:
        return sorted(p for p in self.dir.glob(f"*{SEGMENT_SUFFIX}") if p.stem.isdigit())

    def _load_cursor(self) -> SpoolPosition | None:
        try:
            data = orjson.loads((self.dir / CURSOR).read_bytes())
            cursor = SpoolPosition(data["segment"], int(data["offset"]))
            if not (self.dir / cursor.segment).exists():
                # a crash between deleting a delivered segment and its cursor (commit): a later append
                # may create a segment of that name again, and the cursor would skip its first records
                (self.dir / CURSOR).unlink(missing_ok=True)
                return None
            return cursor
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            log.error(
                "spool %s: unreadable cursor; replaying the oldest segment from its start (records may be sent twice)",
                self.dir,
            )
            return None

    def _repair_and_count(self) -> None:
        """Cut a half-written last line (a crash during append) and count what is pending."""
        segments = self._segments()
        if segments and (cut := cut_partial_line(segments[-1])):
            log.error(
                "spool %s: cutting a partial record at the end of %s (%d bytes, written during a crash)",
                self.dir,
                segments[-1].name,
                cut,
            )
        total = 0
        for seg in segments:
            start = self._cursor.offset if self._cursor and self._cursor.segment == seg.name else 0
            with open(seg, "rb") as f:
                f.seek(start)
                while chunk := f.read(1 << 20):
                    total += chunk.count(b"\n")
        self._records = total
        self._count_record_bytes()

    def _count_record_bytes(self) -> None:
        total = 0
        for seg in self._segments():
            total += seg.stat().st_size
            if self._cursor and self._cursor.segment == seg.name:
                total -= self._cursor.offset
        self._record_bytes = max(total, 0)

    # --- records: append, read from the cursor, commit ------------------------------

    def append(self, records: list[dict[str, Any]] | list[bytes]) -> int:
        """Append records in order; return how many fit (the caller counts the rest as dropped)."""
        if not records:
            return 0
        lines = [r if isinstance(r, bytes) else orjson.dumps(r) for r in records]
        budget = self.max_bytes - self.pending_bytes
        fit = 0
        size = 0
        for line in lines:
            if size + len(line) + 1 > budget:
                break
            size += len(line) + 1
            fit += 1
        if fit == 0:
            return 0
        private_dirs(self.dir)
        segments = self._segments()
        if not segments or segments[-1].stat().st_size >= self.segment_bytes:
            number = int(segments[-1].stem) + 1 if segments else 1
            target = self.dir / f"{number:012d}{SEGMENT_SUFFIX}"
        else:
            target = segments[-1]
        with open_private(target) as f:
            f.write(b"\n".join(lines[:fit]) + b"\n")
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        self._records += fit
        self._record_bytes += size
        return fit

    def read(self, max_records: int) -> SpoolChunk:
        """Up to ``max_records`` records from the cursor on, with the position after each of them.

        A line that is not JSON (disk corruption) is skipped and logged: it cannot be delivered.
        """
        chunk = SpoolChunk()
        consumed = 0
        for seg in self._segments():
            if self._cursor and seg.name < self._cursor.segment:
                continue
            start = self._cursor.offset if self._cursor and self._cursor.segment == seg.name else 0
            with open(seg, "rb") as f:
                f.seek(start)
                offset = start
                for line in f:
                    offset += len(line)
                    consumed += 1
                    chunk.end = SpoolPosition(seg.name, offset, consumed)
                    try:
                        chunk.records.append(orjson.loads(line))
                    except orjson.JSONDecodeError:
                        log.error(
                            "spool %s: skipping an unreadable record in %s at byte %d",
                            self.dir,
                            seg.name,
                            offset - len(line),
                        )
                        continue
                    chunk.positions.append(chunk.end)
                    if len(chunk.records) >= max_records:
                        return chunk
        return chunk

    def commit(self, position: SpoolPosition) -> None:
        """The records up to ``position`` are delivered: move the cursor, delete finished segments."""
        for seg in self._segments():
            if seg.name < position.segment:
                seg.unlink(missing_ok=True)
        seg_path = self.dir / position.segment
        done = seg_path.exists() and seg_path.stat().st_size <= position.offset
        if done:
            # the segment is delivered; the next read starts at the beginning of the next one, if any
            seg_path.unlink(missing_ok=True)
            self._cursor = None
            (self.dir / CURSOR).unlink(missing_ok=True)
        else:
            self._cursor = position
            tmp = self.dir / f".{CURSOR}.tmp"
            tmp.unlink(missing_ok=True)  # a crash's left-over would keep its own mode
            with open_private(tmp, append=False) as f:
                f.write(orjson.dumps({"segment": position.segment, "offset": position.offset}))
            os.replace(tmp, self.dir / CURSOR)
        self._records = max(self._records - position.lines, 0)
        self._count_record_bytes()

    # --- batches: one atomic file each, handed out in order, removed when acknowledged ------

    def _batch_path(self, seq: int) -> Path:
        return self.dir / f"{seq:012d}{BATCH_SUFFIX}"

    def _scan_batches(self) -> None:
        """Index the batches an earlier run parked (even when writing is now off: they must still go out)."""
        if not self.dir.exists():
            return
        for p in self.dir.glob(f"*{BATCH_SUFFIX}"):
            try:
                size = p.stat().st_size
                with open(p, "rb") as f:
                    lines = int(json.loads(f.readline()).get("lines", 0))
                self._batches[int(p.stem)] = (size, lines)
            except (ValueError, OSError):
                continue
        if self._batches:
            self.next_seq = max(self._batches) + 1
            self._send_from = min(self._batches)

    @property
    def batch_count(self) -> int:
        return len(self._batches)

    def has_unsent(self) -> bool:
        return any(s >= self._send_from for s in self._batches)

    def fitting(self, lines: list[bytes], meta: dict[str, Any]) -> int:
        """How many of ``lines``, from the first, :meth:`put_batch` takes now without passing ``max_bytes``.

        Counted with the header ``meta`` gives for all of them: a batch of
        fewer lines (smaller numbers in its header) is never larger.
        """
        room = self.max_bytes - self.pending_bytes - len(_batch_header(meta, len(lines))) - 1
        n = 0
        for line in lines:
            room -= len(line) + 1
            if room < 0:
                break
            n += 1
        return n

    def put_batch(self, lines: list[bytes], meta: dict[str, Any]) -> int | None:
        """Write ``lines`` (raw, one per line) with a JSON header ``meta`` as the next batch; its number.

        None, and nothing written, when the batch would take the spool past
        ``max_bytes`` (the batch files, the one being written included, never
        hold more): the caller keeps the lines and tries again when there is room.
        """
        seq = self.next_seq
        header = _batch_header(meta, len(lines))
        data = b"\n".join([header, *lines]) + b"\n"
        if self.pending_bytes + len(data) > self.max_bytes:
            return None
        atomic_write_bytes(self._batch_path(seq), data)
        self._batches[seq] = (len(data), len(lines))
        self.next_seq = seq + 1
        return seq

    def take_batch(self) -> SpooledBatch | None:
        """The oldest batch not handed out yet (it stays on disk until :meth:`remove_batch`)."""
        ready = [s for s in self._batches if s >= self._send_from]
        if not ready:
            return None
        seq = min(ready)
        self._send_from = seq + 1
        parts = self._batch_path(seq).read_bytes().split(b"\n")
        parts.pop()  # after the final newline
        return SpooledBatch(seq, parts[1:], json.loads(parts[0]))

    def remove_batch(self, seq: int) -> None:
        """The batch is delivered: delete it."""
        self._batch_path(seq).unlink(missing_ok=True)
        self._batches.pop(seq, None)

    def drop_from(self, seq: int) -> int:
        """Delete batches ``>= seq`` (spooled after the last checkpoint: the source reads them again)."""
        gone = 0
        for s in sorted(self._batches):
            if s >= seq:
                self._batch_path(s).unlink(missing_ok=True)
                del self._batches[s]
                gone += 1
        # never reuse a number the checkpoint already covers
        self.next_seq = max(seq, max(self._batches, default=-1) + 1)
        return gone
