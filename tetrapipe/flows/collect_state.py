"""Where ``tetrapipe collect`` stands: its checkpoint (written on its own thread) and its "sent up to" mark.

The checkpoint records the source position of the newest chunk that, with
every chunk before it, is safe (acknowledged by Kafka, or spooled); the mark
records how far chunks were handed to the producer, so a restart can count
the events that may reach the topic twice. Both files are owner-only. The
loop that feeds them is :mod:`tetrapipe.flows.collect`; see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from tetrapipe.fsutil import atomic_write_bytes, open_private_fd, private_dirs
from tetrapipe.sinks.spool import state_home

CHECKPOINT_VERSION = 1
MARK_SIZE = 256


def default_state_dir() -> Path:
    """The collector's checkpoints and spool by default: ``$XDG_STATE_HOME/tetrapipe/collect``, never the cwd."""
    return state_home() / "collect"


def state_slug(spec: str) -> str:
    """A file-name-safe, collision-free name for a source (its checkpoint, mark and spool are named by it)."""
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", spec.strip("/"))[-48:].strip("_") or "stdin"
    return f"{tail}-{sha256(spec.encode()).hexdigest()[:8]}"


class CheckpointWriter:
    """Writes the newest checkpoint on its own thread, atomically (temp file, fsync, rename).

    Why a thread: an fsync costs milliseconds, dozens of times a second at full
    speed; on the loop it would stall reading, while here it only bounds how
    stale the checkpoint is. Positions that arrive while a write is under way
    are coalesced: only the newest is written next. After a ``kill -9`` the
    collector resumes at most a few milliseconds of acknowledgements behind,
    which keeps the re-sent (possibly duplicated) window to about what was
    unacknowledged.
    """

    def __init__(self, path: Path, min_interval: float = 0.0) -> None:
        self.path = path
        self.min_interval = min_interval
        self.written_at = 0.0
        self.writes = 0
        self._pending: bytes | None = None
        self._cond = threading.Condition()
        self._busy = False
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="tetrapipe-checkpoint", daemon=True)
        self._thread.start()

    def submit(self, data: bytes) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise RuntimeError(f"cannot write checkpoint {self.path}: {err}") from err
        with self._cond:
            self._pending = data
            self._cond.notify()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything submitted is on disk."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._pending is not None or self._busy) and time.monotonic() < deadline:
                self._cond.wait(0.05)
        if self._error is not None:
            raise RuntimeError(f"cannot write checkpoint {self.path}: {self._error}") from self._error

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None and self._closed:
                    return
                data, self._pending = self._pending, None
                self._busy = True
            try:
                atomic_write_bytes(self.path, data)
                self.written_at = time.time()
                self.writes += 1
            except OSError as exc:
                self._error = exc
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if self.min_interval:
                time.sleep(self.min_interval)


@dataclass(slots=True)
class Ticket:
    """A source chunk on its way to safety (acknowledged, or spooled)."""

    position: dict[str, Any] | None
    total_end: int  # source bytes consumed up to the end of this chunk (since the first run)
    spool_upto: int = 0
    safe: bool = False


class SentMark:
    """The "sent up to" mark: overwritten in place as chunks go to the producer, never fsync'd.

    A killed process keeps it (the page cache survives), a power cut may not:
    it only sharpens the count of possibly duplicated events, it never decides
    what is read again (the checkpoint does).

    ``from_start`` says the run counted its bytes from the beginning of the
    source without a checkpoint: a run killed before its first checkpoint
    reached the disk leaves no checkpoint, so the next run reads from the
    beginning again, and only such a mark tells it how much of that was sent.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = {"total": 0, "spool": -1, "from_start": 0}
        self._fd: int | None = None

    def read(self) -> dict[str, int]:
        """What the last run marked (zeros when there is no readable mark)."""
        try:
            raw = json.loads(self.path.read_bytes().rstrip(b" \n\x00") or b"{}")
            return {
                "total": int(raw.get("total", 0)),
                "spool": int(raw.get("spool", -1)),
                "from_start": int(raw.get("from_start", 0)),
            }
        except (OSError, ValueError, AttributeError):
            return {"total": 0, "spool": -1, "from_start": 0}

    def advance(self, total_end: int | None, spool_seq: int | None) -> None:
        """Move the mark forward to a chunk's end (read from the source) or a spool batch (read back)."""
        mark = self.state
        if total_end is not None and total_end > mark["total"]:
            mark["total"] = total_end
        elif spool_seq is not None and spool_seq > mark["spool"]:
            mark["spool"] = spool_seq
        else:
            return
        if self._fd is None:
            # owner-only like the checkpoint and the spool (they say what was read from the node's log)
            private_dirs(self.path.parent)
            self._fd = open_private_fd(self.path)
        data = json.dumps(mark).encode().ljust(MARK_SIZE - 1) + b"\n"
        os.pwrite(self._fd, data, 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
