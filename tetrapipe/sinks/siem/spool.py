"""The disk spool: where records wait, in order, while a SIEM is unreachable.

Records are appended as JSON lines to numbered segment files in the sink's
spool directory; a cursor file says how far the oldest segment has been
delivered. Replay reads from the cursor, the sink sends, and only then is the
cursor moved (written to a temporary file and renamed, so a crash leaves the
old or the new cursor, never half of one). A crash between sending and moving
the cursor re-sends that batch: delivery from the spool is at least once.

Memory stays bounded (a replay reads one batch at a time); disk is bounded by
``max_bytes``. When the limit is reached the records that do not fit are
counted as dropped and logged at ERROR level: the spool never deletes records
it already holds and never drops silently.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tetrapipe.lake.store import open_private, private_dirs

log = logging.getLogger("tetrapipe.sinks.spool")

SEGMENT_SUFFIX = ".jsonl"
CURSOR = "cursor.json"


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


class DiskSpool:
    """Append-only JSON-lines segments plus a cursor; one instance per sink, one process per directory."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        max_bytes: int = 1 << 30,
        segment_bytes: int = 16 << 20,
        fsync: bool = True,
    ) -> None:
        # owner-only (0700 directories, 0600 files): what waits here are alerts and events
        self.dir = private_dirs(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._cursor = self._load_cursor()
        self._records = 0
        self._repair_and_count()

    # --- state ------------------------------------------------------------------------

    def _segments(self) -> list[Path]:
        return sorted(p for p in self.dir.glob(f"*{SEGMENT_SUFFIX}") if p.stem.isdigit())

    def _load_cursor(self) -> SpoolPosition | None:
        try:
            data = orjson.loads((self.dir / CURSOR).read_bytes())
            return SpoolPosition(data["segment"], int(data["offset"]))
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
        if segments:
            last = segments[-1]
            data = last.read_bytes()
            if data and not data.endswith(b"\n"):
                keep = data.rfind(b"\n") + 1
                log.error(
                    "spool %s: cutting a partial record at the end of %s (%d bytes, written during a crash)",
                    self.dir,
                    last.name,
                    len(data) - keep,
                )
                with open(last, "r+b") as f:
                    f.truncate(keep)
        total = 0
        for seg in segments:
            start = self._cursor.offset if self._cursor and self._cursor.segment == seg.name else 0
            with open(seg, "rb") as f:
                f.seek(start)
                while chunk := f.read(1 << 20):
                    total += chunk.count(b"\n")
        self._records = total

    @property
    def pending_records(self) -> int:
        return self._records

    @property
    def pending_bytes(self) -> int:
        total = 0
        for seg in self._segments():
            total += seg.stat().st_size
            if self._cursor and self._cursor.segment == seg.name:
                total -= self._cursor.offset
        return max(total, 0)

    # --- writing ----------------------------------------------------------------------

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
        return fit

    # --- reading ----------------------------------------------------------------------

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
