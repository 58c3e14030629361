"""Follow a Tetragon export log the way Tetragon writes it, without losing or repeating a line.

Tetragon's exporter (lumberjack) rotates ``tetragon.log`` every 10 MB by
*renaming* it to ``tetragon-<UTC 2006-01-02T15-04-05.000>.log`` and creating a
new file; it keeps a handful of backups and may gzip them (writing
``….log.gz`` beside the plain file, then deleting the plain one). Under load
that happens every few seconds, so the follower:

* keeps its open descriptor on the file it reads: after a rename (or even a
  deletion) it reads that file *to its end* before moving on, and it looks for
  the rotation only after reading to EOF, then drains once more, so the last
  lines written before the rename are never skipped;
* when it fell behind by more than one rotation, reads the backups it has not
  read yet, oldest first (plain or gzip), then the live file;
* identifies a file by device+inode (cheap, and it survives the rename) plus
  a fingerprint of its first line (it survives compression, and it catches
  inode reuse and a truncated-then-rewritten file);
* treats a live file that shrank, or whose first line changed, as truncated
  (copytruncate): if a rotated copy with the old fingerprint exists, the
  lines between our position and the truncation are read from the copy, then
  the live file from its start;
* never emits half a line: the unfinished tail stays buffered and the
  position (what a checkpoint records) covers only complete lines, so a
  restart resumes at a line boundary; a finished file's last line is emitted
  even without its newline;
* skips lines longer than ``max_line_bytes`` (reported, not fatal: a Kafka
  broker refuses records over ~1 MB anyway);
* waits for a file that does not exist yet.

Which files belong to the log and in which order is :mod:`tetrapipe.sources.rotation`;
chunks and line splitting are :mod:`tetrapipe.sources.chunks`; a pipe is
:mod:`tetrapipe.sources.stdin`. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, BinaryIO

from tetrapipe.sources.chunks import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_MAX_LINE_BYTES,
    Chunk,
    LineSplitter,
    Reject,
    last_line_end,
)
from tetrapipe.sources.files import fingerprint
from tetrapipe.sources.rotation import Candidate, RotatedFiles, first_line, first_line_at, index_of, matches
from tetrapipe.sources.streams import GZIP_MAGIC, GzipStream, InputFault

log = logging.getLogger(__name__)

_DONE_KEEP = 64  # fingerprints of finished files remembered (>> Tetragon's 5 backups)
_FP_CHECK_SECONDS = 1.0  # how often an idle live file's first line is re-checked (copytruncate)


def _open_any(path: str) -> tuple[BinaryIO, bool]:
    """Open a file for reading, gzip transparently (by magic bytes, not name).

    gzip through :class:`GzipStream`: at a cut-short end, :class:`gzip.GzipFile`
    drops the lines it inflated in the same read (a chunk's worth).
    """
    raw = open(path, "rb", buffering=0)  # noqa: SIM115 - handed to the caller
    head = os.pread(raw.fileno(), 2, 0)
    if head == GZIP_MAGIC:
        return GzipStream(raw, path), True  # type: ignore[return-value]
    return raw, False  # type: ignore[return-value]


class _Open:
    """The file being read."""

    def __init__(
        self,
        f: BinaryIO,
        path: str,
        st: os.stat_result,
        gz: bool,
        fp: str | None,
        fp_len: int,
        splitter: LineSplitter,
        offset: int,
        final: bool,
    ) -> None:
        self.f = f
        self.path = path
        self.dev = st.st_dev
        self.ino = st.st_ino
        self.mtime_ns = st.st_mtime_ns
        self.gz = gz
        self.fp = fp
        self.fp_len = fp_len
        self.splitter = splitter
        self.offset = offset  # bytes of complete lines consumed
        self.final = final  # no more writes will come (a backup, or a rotated live file being drained)
        self.fp_checked = time.monotonic()
        self.idle = False  # the last read hit the end of the live file
        self.broken: str | None = None  # why reading stopped early (a gzip cut short, a read error)

    def close(self) -> None:
        try:
            self.f.close()
        except OSError:
            pass


class FileFollower:
    """Read a live export log and its rotations as chunks of complete lines.

    ``start``: ``beginning`` (the backups still on disk, oldest first, then
    the live file), ``end`` (the live file from its current end; files that
    appear later are read whole), or ``checkpoint`` (resume at ``checkpoint``,
    a :attr:`Chunk.position`; without one, like ``beginning``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        start: str = "checkpoint",
        checkpoint: dict[str, Any] | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        line_nos: bool = False,
    ) -> None:
        if start not in ("beginning", "end", "checkpoint"):
            raise ValueError(f"start must be beginning, end or checkpoint, not {start!r}")
        self.live = Path(path)
        self.chunk_bytes = chunk_bytes
        self.max_line_bytes = max_line_bytes
        self.want_line_nos = line_nos
        self._cur: _Open | None = None
        self._done: deque[str] = deque(maxlen=_DONE_KEEP)
        self._after: dict[str, Any] | None = None  # identity of the file finished last (to find the next)
        self.files_opened = 0
        self.rotations = 0
        self.truncations = 0
        self.lost_warnings: list[str] = []
        # listing goes through this module's _open_any, looked up at each call (tests replace it)
        self._files = RotatedFiles(self.live, max_line_bytes, lambda path: _open_any(path), self.lost_warnings)
        self._resume: dict[str, Any] | None = None
        if start == "checkpoint" and checkpoint:
            self._done.extend(checkpoint.get("done", []))
            self._resume = checkpoint
        elif start == "end":
            self._open_live_at_end()
        # beginning (or no checkpoint): _after=None and nothing done -> every candidate, oldest first

    # -- public -------------------------------------------------------------

    @property
    def files_lost(self) -> int:
        """Backups deleted by rotation before they were read."""
        return self._files.files_lost

    @property
    def label(self) -> str:
        return str(self.live)

    def read(self) -> Chunk | None:
        """The next chunk of complete lines, or None when there is nothing new right now."""
        for _ in range(1000):  # bounded: each turn either returns or moves to another file
            if self._cur is None and not self._open_next():
                return None
            cur = self._cur
            assert cur is not None
            if cur.idle:
                # new data after a quiet spell: first make sure the file was not truncated and rewritten
                cur.idle = False
                if self._live_state(cur) == "truncated":
                    self._on_truncate(cur)
                    continue
            try:
                data = cur.f.read(self.chunk_bytes)
            except (OSError, EOFError, InputFault) as exc:
                log.warning("%s: read failed after byte %d (%s); moving on", cur.path, cur.offset, exc)
                self.lost_warnings.append(f"{cur.path}: {exc}")
                data = b""
                cur.final = True
                cur.broken = str(exc)
            if data:
                chunk = self._chunk(cur, data, final=False)
                if chunk is not None:
                    return chunk
                continue
            # at the end of what is there now
            if not cur.final:
                state = self._live_state(cur)
                if state == "same":
                    cur.idle = True
                    return None
                if state == "truncated":
                    self._on_truncate(cur)
                    continue
                cur.final = True  # rotated away: drain what was written before the rename, then move on
                self.rotations += 1
                continue
            chunk = self._chunk(cur, b"", final=True)
            self._finish(cur)
            if chunk is not None and (chunk.lines or chunk.rejects or chunk.nbytes):
                return chunk
        return None

    def position(self) -> dict[str, Any]:
        """Where the follower stands (what a checkpoint stores)."""
        cur = self._cur
        pos: dict[str, Any] = {"live": str(self.live), "done": list(self._done)}
        if cur is not None:
            pos["file"] = {
                "path": cur.path,
                "dev": cur.dev,
                "ino": cur.ino,
                "fp": cur.fp,
                "fp_len": cur.fp_len,
                "offset": cur.offset,
                "line": cur.splitter.line,
                "skip": cur.splitter.skipping,
                "gz": cur.gz,
                "mtime_ns": cur.mtime_ns,
            }
        elif self._after is not None:
            pos["after"] = self._after
        return pos

    def lag_bytes(self) -> int:
        """Bytes on disk not read yet: the rest of the current file plus newer files (gzip: compressed size)."""
        cur = self._cur
        total = 0
        try:
            if cur is not None and not cur.gz:
                total += max(0, os.fstat(cur.f.fileno()).st_size - cur.offset - cur.splitter.pending_bytes)
            cands = self._candidates()
        except OSError:
            return total
        idx = index_of(cands, self._identity())
        for c in cands[idx + 1 :] if idx is not None else cands:
            if c.fp not in self._done and not (cur is not None and matches(c, self._identity())):
                total += c.size
        return total

    def close(self) -> None:
        if self._cur is not None:
            self._cur.close()
            self._cur = None

    # -- reading ------------------------------------------------------------

    def _chunk(self, cur: _Open, data: bytes, *, final: bool) -> Chunk | None:
        if final and cur.broken is not None:
            # the unfinished line of a file that broke off is half a line, not a line: a reject
            sp = cur.splitter
            lines, consumed, nos, rejects = [], sp.pending_bytes, [] if sp.want_line_nos else None, []
            if sp.carry or sp.skipping:
                rejects.append(Reject(cur.path, sp.line + 1, cur.broken, sp.carry[:200]))
                sp.carry, sp.skipping = b"", False
                sp.line += 1
        else:
            lines, consumed, nos, rejects = cur.splitter.feed(data, final=final)
        if cur.fp is None and cur.offset == 0 and (lines or rejects or consumed):
            self._set_fingerprint(cur)
        cur.offset += consumed
        if not (lines or rejects):
            return None if not final else Chunk([], consumed, self.position(), cur.path)
        return Chunk(lines, consumed, self.position(), cur.path, nos, rejects)

    def _set_fingerprint(self, cur: _Open) -> None:
        """Fingerprint from the file itself (the first line may have been blank or skipped)."""
        try:
            f, _ = _open_any(cur.path) if cur.gz else (None, False)
            if f is None:
                first = first_line_at(cur.f.fileno(), self.max_line_bytes)
            else:
                with f:
                    first = first_line(f, self.max_line_bytes)
        except OSError:
            first = None
        if first is not None:
            cur.fp = fingerprint(first)
            cur.fp_len = len(first)

    def _finish(self, cur: _Open) -> None:
        if cur.fp is None:
            self._set_fingerprint(cur)
        if cur.fp is not None and cur.fp not in self._done:
            self._done.append(cur.fp)
        self._after = {"path": cur.path, "dev": cur.dev, "ino": cur.ino, "fp": cur.fp, "mtime_ns": cur.mtime_ns}
        cur.close()
        self._cur = None

    def _live_state(self, cur: _Open) -> str:
        """Is the file we read still the live file: same, rotated (renamed/deleted) or truncated?"""
        try:
            st = os.stat(self.live)
        except FileNotFoundError:
            # between lumberjack's rename and create; or deleted. The new file is picked up next time.
            return "rotated" if self._fd_gone_or_renamed(cur) else "same"
        if (st.st_dev, st.st_ino) != (cur.dev, cur.ino):
            return "rotated"
        cur.mtime_ns = max(cur.mtime_ns, st.st_mtime_ns)
        if st.st_size < cur.offset + cur.splitter.pending_bytes:
            return "truncated"
        now = time.monotonic()
        if cur.fp is not None and now - cur.fp_checked >= _FP_CHECK_SECONDS:
            cur.fp_checked = now
            head = os.pread(cur.f.fileno(), cur.fp_len + 1, 0)
            if len(head) < cur.fp_len or fingerprint(head[: cur.fp_len]) != cur.fp:
                return "truncated"
        return "same"

    def _fd_gone_or_renamed(self, cur: _Open) -> bool:
        try:
            return os.fstat(cur.f.fileno()).st_nlink == 0 or not self._path_is(cur.path, cur)
        except OSError:
            return True

    @staticmethod
    def _path_is(path: str, cur: _Open) -> bool:
        try:
            st = os.stat(path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == (cur.dev, cur.ino)

    def _on_truncate(self, cur: _Open) -> None:
        """copytruncate: finish from the copy when there is one, then read the live file from 0."""
        self.truncations += 1
        old_fp, offset = cur.fp, cur.offset
        copy = None
        if old_fp is not None:
            for c in self._candidates():
                if not c.live and c.fp == old_fp and c.size >= offset:
                    copy = c
                    break
        cur.close()
        self._cur = None
        if copy is not None:
            log.info("%s was truncated (copytruncate); reading the rest from %s", self.live, copy.path)
            self._open(copy, offset=offset, line=cur.splitter.line, skipping=cur.splitter.skipping, final=True)
        else:
            msg = (
                f"{self.live} was truncated at byte {offset} and no rotated copy was found: lines written "
                f"between the last read and the truncation are lost"
            )
            log.warning(msg)
            self.lost_warnings.append(msg)
            if old_fp is not None and old_fp not in self._done:
                self._done.append(old_fp)
            self._after = {"path": cur.path, "dev": cur.dev, "ino": cur.ino, "fp": old_fp, "mtime_ns": cur.mtime_ns}

    # -- choosing the next file ---------------------------------------------

    def _identity(self) -> dict[str, Any] | None:
        cur = self._cur
        if cur is not None:
            return {"path": cur.path, "dev": cur.dev, "ino": cur.ino, "fp": cur.fp, "mtime_ns": cur.mtime_ns}
        return self._after

    def _candidates(self) -> list[Candidate]:
        """The log's files, oldest first (:meth:`RotatedFiles.listing`), judged against what was read."""
        reading = self._cur.fp if self._cur is not None else None
        return self._files.listing(done=self._done, reading=reading, judge_losses=self._resume is None)

    def _open_next(self) -> bool:
        if self._resume is not None:
            resume, self._resume = self._resume, None
            if self._open_resumed(resume):
                return True
            if self._resume is not None:
                return False  # the checkpointed file kept moving: the next read tries again
        for _ in range(3):  # a file can vanish between the listing and the open (compressed, deleted): list again
            cands = self._candidates()
            if not cands:
                return False
            ident = self._after
            idx = index_of(cands, ident)
            if idx is not None:
                rest = cands[idx + 1 :]
            elif ident is not None:
                rest = self._files.newer_than_gone(cands, ident)
            else:
                rest = cands
            nxt = next(
                (
                    c
                    for c in rest
                    if not (c.fp is not None and c.fp in self._done) and not (c.fp is None and not c.live)
                ),
                None,
            )  # (an empty backup: nothing to read)
            if nxt is None:
                return False
            if self._open(nxt, offset=0, line=0, skipping=False, final=not nxt.live):
                return True
        return False

    def _open(self, c: Candidate, *, offset: int, line: int, skipping: bool, final: bool) -> bool:
        """Open the file the listing saw; False when its name no longer leads to it (the caller lists again).

        Between a listing and an open, Tetragon may rotate: ``tetragon.log``
        then names a new file. Reading that one under the listed file's
        fingerprint would mark the wrong file as read -- the old one skipped,
        the new one read twice -- so the opened file must be the listed one,
        and its fingerprint is taken from the opened descriptor itself.
        """
        try:
            f, gz = _open_any(c.path)
        except OSError:
            return False
        st = os.fstat(f.fileno())
        if (st.st_dev, st.st_ino) != (c.dev, c.ino):
            f.close()
            return False
        fp, fp_len = c.fp, 0
        if not gz:
            first = first_line_at(f.fileno(), self.max_line_bytes)
            if first is not None:
                fp, fp_len = fingerprint(first), len(first)
        if offset:
            try:
                f.seek(offset)
            except (OSError, EOFError, InputFault) as exc:
                log.warning("%s: cannot seek to %d (%s); reading from the start", c.path, offset, exc)
                f.seek(0)
                offset, line, skipping = 0, 0, False
        splitter = LineSplitter(
            self.max_line_bytes, line=line, skipping=skipping, want_line_nos=self.want_line_nos, source=c.path
        )
        self._cur = _Open(f, c.path, st, gz, fp, fp_len, splitter, offset, final)
        self.files_opened += 1
        log.debug("following %s from byte %d (%s)", c.path, offset, "final" if final else "live")
        return True

    def _open_resumed(self, ck: dict[str, Any]) -> bool:
        """Reopen the checkpointed file at its offset; if it is gone, continue with what is newer."""
        fs = ck.get("file")
        if fs is None:
            self._after = ck.get("after")
            return False
        ident = {k: fs.get(k) for k in ("path", "dev", "ino", "fp", "mtime_ns")}
        for _ in range(3):  # a rotation between the listing and the open: list again
            cands = self._candidates()
            idx = index_of(cands, ident)
            if idx is None:
                msg = (
                    f"checkpointed file {fs.get('path')} (byte {fs.get('offset')}) is gone, probably deleted by "
                    f"rotation while the collector was down: its unread lines are lost"
                )
                log.warning(msg)
                self.lost_warnings.append(msg)
                self._after = ident
                return False
            c = cands[idx]
            if c.live and c.size < int(fs.get("offset", 0)):
                msg = (
                    f"{c.path} is shorter than the checkpoint ({c.size} < {fs.get('offset')}): truncated; "
                    f"reading it again"
                )
                log.warning(msg)
                self.lost_warnings.append(msg)
                if self._open(c, offset=0, line=0, skipping=False, final=False):
                    return True
                continue
            if self._open(
                c,
                offset=int(fs.get("offset", 0)),
                line=int(fs.get("line", 0)),
                skipping=bool(fs.get("skip")),
                final=not c.live,
            ):
                return True
        self._resume = ck  # still moving under us: try again on the next read
        return False

    def _open_live_at_end(self) -> None:
        """--from end: the live file from its last complete line (never from the middle of one)."""
        for _ in range(3):  # a rotation between looking at the file and opening it: look again
            c = self._files.candidate(str(self.live), live=True)
            if c is None:
                return  # not there yet: read whole when it appears
            if not self._open(c, offset=0, line=0, skipping=False, final=False):
                continue
            cur = self._cur
            assert cur is not None
            if not cur.gz:
                # the end is found on the descriptor just opened; line numbers of a file joined midway are
                # unknown: count from where we joined
                fd = cur.f.fileno()
                cur.offset = last_line_end(fd, os.fstat(fd).st_size)
                cur.f.seek(cur.offset)
            return
