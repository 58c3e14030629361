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

Lines are split with ``bytes.split`` rather than :mod:`tetrapipe.sources.lines`
(Arrow arrays): the Kafka producer wants one ``bytes`` object per event, and
splitting in C straight into those objects is the cheapest way there.
"""

from __future__ import annotations

import logging
import os
import select
import stat as stat_mod
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from tetrapipe.sources.files import GZIP_MAGIC, GzipStream, InputFault, fingerprint, parse_backup_name

log = logging.getLogger(__name__)

DEFAULT_CHUNK_BYTES = 1024 * 1024
# Kafka's default message.max.bytes is 1048588 for a whole record batch; a line
# above this could never be delivered, so it is set aside at the source.
DEFAULT_MAX_LINE_BYTES = 1_000_000
_FP_CACHE_MAX = 256
_DONE_KEEP = 64  # fingerprints of finished files remembered (>> Tetragon's 5 backups)
_FP_CHECK_SECONDS = 1.0  # how often an idle live file's first line is re-checked (copytruncate)


@dataclass(slots=True)
class Reject:
    """A line that was read but not forwarded, and why (reported with its place)."""

    source: str
    line_no: int
    reason: str
    preview: bytes = b""


@dataclass(slots=True)
class Chunk:
    """Complete lines read together, and where the source stands after them.

    ``position`` is what a checkpoint stores once every line of this chunk
    (and of all chunks before it) is safe; ``None`` for a source that cannot
    resume (stdin, gRPC).
    """

    lines: list[bytes]
    nbytes: int  # source bytes consumed by this chunk (newlines, blank and skipped lines included)
    position: dict[str, Any] | None = None
    source: str = ""
    line_nos: list[int] | None = None  # 1-based line of each entry of ``lines`` (when asked for)
    rejects: list[Reject] = field(default_factory=list)
    spool_seq: int | None = None  # set when the chunk was read back from the disk spool


class LineSplitter:
    """Cut a byte stream into complete lines, keeping the unfinished tail for later.

    ``consumed`` counts bytes of finished lines (skipped over-long lines
    included): exactly the offset to resume from. ``line`` counts lines.
    """

    def __init__(
        self,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        *,
        line: int = 0,
        skipping: bool = False,
        want_line_nos: bool = False,
        source: str = "",
    ) -> None:
        self.max_line_bytes = max_line_bytes
        self.carry = b""
        self.line = line
        self.skipping = skipping  # inside an over-long line: drop bytes up to its newline
        self.want_line_nos = want_line_nos
        self.source = source

    @property
    def pending_bytes(self) -> int:
        return len(self.carry)

    def feed(self, data: bytes, *, final: bool = False) -> tuple[list[bytes], int, list[int] | None, list[Reject]]:
        """Add ``data``; return (lines, bytes consumed, line numbers, rejects).

        ``final``: no more data will come (a finished file): an unterminated
        last line is returned as a line.
        """
        buf = self.carry + data if self.carry else data
        self.carry = b""
        rejects: list[Reject] = []
        consumed = 0
        start = 0
        if self.skipping:
            nl = buf.find(b"\n")
            if nl < 0:
                self.skipping = not final
                if final:
                    self.line += 1
                return [], len(buf), [] if self.want_line_nos else None, rejects
            start = nl + 1
            consumed = start
            self.skipping = False
            self.line += 1
        cut = buf.rfind(b"\n", start) + 1
        if cut <= start:
            cut = start
        end = len(buf) if final else cut
        lines: list[bytes] = buf[start:end].split(b"\n") if end > start else []
        if lines and end == cut:
            lines.pop()  # the empty piece after the last newline
        consumed += end - start
        first_no = self.line + 1
        self.line += len(lines)
        line_nos: list[int] | None = list(range(first_no, first_no + len(lines))) if self.want_line_nos else None
        if lines and (not all(lines) or b"\r" in lines):  # both checks run in C
            lines, line_nos = self._drop_blank(lines, line_nos)
        if lines and max(map(len, lines)) > self.max_line_bytes:
            lines, line_nos = self._drop_long(lines, line_nos, first_no, rejects)
        tail = buf[end:]
        if len(tail) > self.max_line_bytes:  # (after the whole lines' rejects: rejects come in line order)
            rejects.append(
                Reject(self.source, self.line + 1, f"line longer than {self.max_line_bytes} bytes, skipped", tail[:200])
            )
            consumed += len(tail)
            self.skipping = True
        else:
            self.carry = tail
        return lines, consumed, line_nos, rejects

    @staticmethod
    def _drop_blank(lines: list[bytes], nos: list[int] | None) -> tuple[list[bytes], list[int] | None]:
        keep = [i for i, ln in enumerate(lines) if ln and ln != b"\r"]
        return [lines[i] for i in keep], ([nos[i] for i in keep] if nos is not None else None)

    def _drop_long(
        self, lines: list[bytes], nos: list[int] | None, first_no: int, rejects: list[Reject]
    ) -> tuple[list[bytes], list[int] | None]:
        limit = self.max_line_bytes
        out, out_nos = [], []
        for i, ln in enumerate(lines):
            no = nos[i] if nos is not None else -1
            if len(ln) > limit:
                rejects.append(
                    Reject(
                        self.source,
                        no if no > 0 else first_no + i,
                        f"line longer than {limit} bytes ({len(ln)}), skipped",
                        ln[:200],
                    )
                )
            else:
                out.append(ln)
                out_nos.append(no)
        return out, (out_nos if nos is not None else None)


# ---------------------------------------------------------------------------
# Rotated files
# ---------------------------------------------------------------------------


@dataclass(slots=True)
class Candidate:
    """A file that belongs to the followed log: a rotated backup or the live file."""

    path: str
    dev: int
    ino: int
    size: int
    mtime_ns: int
    gz: bool
    fp: str | None
    live: bool


def _backup_order(live: Path, name: str) -> tuple[int, str] | None:
    """Sort key of a rotated sibling of ``live`` (oldest first), or None if it is not one."""
    backup = parse_backup_name(name)
    return backup.order if backup and backup.live_name == live.name else None


def _first_line(f: BinaryIO, limit: int) -> bytes | None:
    """The first complete line of an open stream (None while it has none yet)."""
    head = b""
    while len(head) <= limit:
        more = f.read(64 * 1024)
        if not more:
            return None
        head += more
        nl = head.find(b"\n")
        if nl >= 0:
            return head[:nl]
    return head[:limit]  # an over-long first line still identifies the file


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
        self._fp_cache: dict[tuple[int, int, int, int, int], tuple[str | None, bool]] = {}
        self.files_opened = 0
        self.rotations = 0
        self.truncations = 0
        self.lost_warnings: list[str] = []
        self.files_lost = 0  # backups deleted by rotation before they were read
        self._seen_backups: dict[str, str | None] = {}
        self._lost_fps: set[str] = set()
        self._resume: dict[str, Any] | None = None
        if start == "checkpoint" and checkpoint:
            self._done.extend(checkpoint.get("done", []))
            self._resume = checkpoint
        elif start == "end":
            self._open_live_at_end()
        # beginning (or no checkpoint): _after=None and nothing done -> every candidate, oldest first

    # -- public -------------------------------------------------------------

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
        idx = self._index_of(cands, self._identity())
        for c in cands[idx + 1 :] if idx is not None else cands:
            if c.fp not in self._done and not (cur is not None and self._matches(c, self._identity())):
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
                first = _first_line_at(cur.f.fileno(), self.max_line_bytes)
            else:
                with f:
                    first = _first_line(f, self.max_line_bytes)
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
        """The live file's rotated siblings (oldest first), then the live file, with fingerprints.

        A directory listing is not atomic with the stat of the live file: if
        Tetragon rotates in between, the listing misses the just-renamed file
        while ``tetragon.log`` already names its successor, and the renamed
        file would be skipped. Rotation always gives the live name a new
        inode, so the live file is looked at before and after the listing and
        the listing is taken again until both agree.
        """
        out: list[Candidate] = []
        for _ in range(5):
            before = _inode(self.live)
            out = self._list_candidates()
            live = out[-1] if out and out[-1].live else None
            if (None if live is None else (live.dev, live.ino)) == before:
                break
        self._note_deleted_unread(out)
        return out

    def _list_candidates(self) -> list[Candidate]:
        live = self.live
        try:
            names = os.listdir(live.parent)
        except FileNotFoundError:
            return []
        keyed: list[tuple[tuple[int, str], str]] = []
        present = set(names)
        for name in names:
            key = _backup_order(live, name)
            if key is None:
                continue
            if name.endswith(".gz") and name[:-3] in present:
                continue  # lumberjack is still compressing: the plain file is complete, the .gz not yet
            keyed.append((key, name))
        keyed.sort()
        out: list[Candidate] = []
        for _, name in keyed:
            c = self._candidate(str(live.parent / name), live=False)
            if c is None and not name.endswith(".gz"):
                # compressed and removed since the listing: the .gz is complete now
                c = self._candidate(str(live.parent / (name + ".gz")), live=False)
            if c is not None:
                out.append(c)
        c = self._candidate(str(live), live=True)
        if c is not None:
            out.append(c)
        if len(self._fp_cache) > _FP_CACHE_MAX:  # rotations every few seconds for weeks: forget deleted files
            keep = {(c.dev, c.ino) for c in out}
            self._fp_cache = {k: v for k, v in self._fp_cache.items() if k[:2] in keep}
        return out

    def _note_deleted_unread(self, cands: list[Candidate]) -> None:
        """Report a backup seen in an earlier listing that is gone without having been read.

        Tetragon deletes backups beyond ``--export-file-max-backups`` whether or
        not anyone read them; a collector that falls that far behind loses
        their lines. That cannot be undone, but it must not be silent: it is
        logged with the file's name, counted (``files_lost``) and exported.
        """
        present = {c.fp for c in cands if c.fp is not None}
        reading = self._cur.fp if self._cur is not None else None
        # before the checkpoint is resumed, what was read is not known yet: nothing can be judged lost
        seen = self._seen_backups.items() if self._resume is None else ()
        for path, fp in seen:
            if fp is None or fp in present or fp in self._done or fp == reading or fp in self._lost_fps:
                continue  # still there (perhaps compressed under a new name), read, or being read
            self._lost_fps.add(fp)
            self.files_lost += 1
            msg = (
                f"{path} was deleted by rotation before it was read: its lines are lost (the collector fell "
                f"more than --export-file-max-backups files behind Tetragon; give it more CPU or keep more "
                f"backups)"
            )
            log.warning(msg)
            self.lost_warnings.append(msg)
        self._seen_backups = {c.path: c.fp for c in cands if not c.live}

    def _candidate(self, path: str, *, live: bool) -> Candidate | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not stat_mod.S_ISREG(st.st_mode):
            return None
        # inode numbers are reused as soon as a file is deleted, and two gzip'd backups can have the same size:
        # only with the change time in the key is a cached fingerprint known to belong to this very file
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        cached = None if live else self._fp_cache.get(key)
        if cached is not None:
            fp, gz = cached
        else:
            try:
                f, gz = _open_any(path)
                with f:
                    first = _first_line(f, self.max_line_bytes)
            except (OSError, EOFError, InputFault):
                return None
            fp = fingerprint(first) if first is not None else None
            if not live and first is not None:
                self._fp_cache[key] = (fp, gz)
        return Candidate(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, gz, fp, live)

    @staticmethod
    def _matches(c: Candidate, ident: dict[str, Any] | None) -> bool:
        if ident is None:
            return False
        if not c.gz and (c.dev, c.ino) == (ident.get("dev"), ident.get("ino")):
            return c.fp is None or ident.get("fp") is None or c.fp == ident.get("fp")
        return c.fp is not None and c.fp == ident.get("fp")

    def _index_of(self, cands: list[Candidate], ident: dict[str, Any] | None) -> int | None:
        if ident is None:
            return None
        for i, c in enumerate(cands):
            if self._matches(c, ident):
                return i
        return None

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
            idx = self._index_of(cands, ident)
            if idx is not None:
                rest = cands[idx + 1 :]
            elif ident is not None:
                rest = self._newer_than_gone(cands, ident)
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

    def _newer_than_gone(self, cands: list[Candidate], ident: dict[str, Any]) -> list[Candidate]:
        """The candidates after a finished file that is gone (a backup deleted past max-backups).

        A lumberjack name carries its rotation time, the one order that cannot
        lie: a .gz's mtime is when the mill compressed it, possibly later than
        the last write of the next file. Only for other names (``.N``, which
        shift at every rotation) is the finished file's mtime the floor.
        """
        gone = _backup_order(self.live, Path(str(ident.get("path") or "")).name)
        if gone is not None and gone[0] == 0:
            return [c for c in cands if c.live or (_backup_order(self.live, Path(c.path).name) or gone) > gone]
        floor = int(ident.get("mtime_ns") or 0)
        return [c for c in cands if c.live or c.mtime_ns >= floor]

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
            first = _first_line_at(f.fileno(), self.max_line_bytes)
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
            idx = self._index_of(cands, ident)
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
            c = self._candidate(str(self.live), live=True)
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
                cur.offset = _last_line_end(fd, os.fstat(fd).st_size)
                cur.f.seek(cur.offset)
            return


def _last_line_end(fd: int, size: int) -> int:
    """The offset just after the last newline in the first ``size`` bytes of ``fd`` (0 if there is none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - 64 * 1024)
        block = os.pread(fd, pos - start, start)
        nl = block.rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
        pos = start
    return 0


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _first_line_at(fd: int, limit: int) -> bytes | None:
    head = b""
    pos = 0
    while len(head) <= limit:
        more = os.pread(fd, 64 * 1024, pos)
        if not more:
            return None
        head += more
        pos += len(more)
        nl = head.find(b"\n")
        if nl >= 0:
            return head[:nl]
    return head[:limit]


class StreamFollower:
    """Lines from a pipe (``kubectl logs -f … -c export-stdout | tetrapipe collect -``).

    Non-blocking (``select``) so the collector keeps acknowledging and
    reporting while the pipe is quiet. A pipe cannot be resumed, so chunks
    carry no position; ``exhausted`` turns true at end of input.
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        line_nos: bool = False,
        label: str = "<stdin>",
        wait_seconds: float = 0.05,
    ) -> None:
        self.stream = stream
        self.fd = stream.fileno()
        self.chunk_bytes = chunk_bytes
        self.splitter = LineSplitter(max_line_bytes, want_line_nos=line_nos, source=label)
        self.label = label
        self.wait_seconds = wait_seconds
        self.exhausted = False
        self._head: bytes | None = b""  # the first bytes, until two tell whether it is gzip (then None)
        self._gzip = False
        self._gz: Any = None  # the gzip member being inflated (None between members)
        self._read = 0  # bytes read from the pipe
        self._fault: str | None = None

    def read(self) -> Chunk | None:
        if self.exhausted:
            return None
        ready, _, _ = select.select([self.fd], [], [], self.wait_seconds)
        if not ready:
            return None
        raw = os.read(self.fd, self.chunk_bytes)
        self._read += len(raw)
        if self._head is not None:
            if raw and len(self._head + raw) < 2:
                self._head += raw  # one byte so far: the next one tells whether it is gzip
                return None
            raw, self._head = self._head + raw, None
            self._gzip = raw[:2] == GZIP_MAGIC  # a gzip'd log piped in
        if not raw:
            return self._end()
        data = self._inflate(raw) if self._gzip else raw
        if self._fault is not None:
            return self._end(data)
        if not data:
            return None  # (gzip: a header, or a block not inflated yet)
        lines, consumed, nos, rejects = self.splitter.feed(data)
        if not (lines or rejects):
            return None
        return Chunk(lines, consumed, None, self.label, nos, rejects)

    def _inflate(self, data: bytes) -> bytes:
        """Inflate what came through the pipe: gzip members one after the other, zero padding between them."""
        import zlib

        out: list[bytes] = []
        while data:
            if self._gz is None:
                data = data.lstrip(b"\0")
                if not data:
                    break
                self._gz = zlib.decompressobj(wbits=31)
            try:
                out.append(self._gz.decompress(data))
            except zlib.error as exc:  # the pipe's data is damaged from here on: what came before is kept
                self._fault = f"corrupt gzip: {exc} (in the data after byte {self._read - len(data)} of {self.label})"
                break
            if not self._gz.eof:
                break
            data, self._gz = self._gz.unused_data, None
        return b"".join(out)

    def _end(self, data: bytes = b"") -> Chunk | None:
        """End of input (or of what can be read of it): the last line, or the fault that ended it."""
        self.exhausted = True
        if self._fault is None and self._gzip and self._gz is not None:
            self._fault = f"truncated gzip: stream ends at byte {self._read} of {self.label}"
        lines, consumed, nos, rejects = self.splitter.feed(data, final=self._fault is None)
        if self._fault is not None:  # the unfinished line of a broken stream is half a line: a reject
            sp = self.splitter
            rejects.append(Reject(self.label, sp.line + 1, self._fault, sp.carry[:200]))
            consumed += sp.pending_bytes
            sp.carry, sp.skipping = b"", False
        return Chunk(lines, consumed, None, self.label, nos, rejects) if (lines or rejects) else None

    def lag_bytes(self) -> int:
        return self.splitter.pending_bytes

    def close(self) -> None:
        pass
