"""Which export logs to read, in which order, and how to open them.

Tetragon's exporter (lumberjack) rotates ``tetragon.log`` by renaming it to
``tetragon-2026-01-02T15-04-05.000.log`` (``.gz`` when compressed) and starting
a new file; logrotate-style setups use ``tetragon.log.1``, ``.2``, ... So a
directory is read oldest backup first, live file last, which keeps the events
of one process in time order. Compression is detected from the gzip magic
bytes, not the name.

An input may also be a stream: ``-``, a FIFO, or the ``/dev/fd/N`` of a pipe
that bash's ``<(…)`` hands over. A stream is never opened to be probed (that
would block without a writer, and break the writer's pipe when closed again)
and never seeked: its first bytes are read once and put back in front.

A gzip input is inflated by :class:`GzipStream` rather than :mod:`gzip`, so
that a file cut short (Tetragon still compressing a backup, a disk that filled
up, a copy interrupted) yields every line it holds and then one
:class:`InputFault` that says where the compressed data ends.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
# Tetragon's exporter rotates with lumberjack (tetragon-2024-05-01T10-05-00.000.log[.gz]);
# logrotate-style numbered backups (tetragon.log.1[.gz]) are common too
_LUMBERJACK = re.compile(r"^(?P<base>.+)-(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3})(?P<ext>\.[^.]+)?(\.gz)?$")
_NUMBERED = re.compile(r"^(?P<base>.+)\.(?P<n>\d+)(\.gz)?$")
_EXPORT_SUFFIXES = (".log", ".jsonl", ".ndjson", ".gz")
# A ".json" file in a directory is as often a config or fixture as an export saved by hand
# (``kubectl logs ... > events.json``): it is read when its first line is a Tetragon event.
_SNIFFED_SUFFIXES = (".json",)
#: how far into a ``.json`` file to look for the end of its first line (Tetragon lines are KBs)
_SNIFF_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class InputFile:
    """One input: a file path, or ``-`` for standard input."""

    path: str

    @property
    def is_stdin(self) -> bool:
        return self.path == "-"

    @property
    def label(self) -> str:
        return "<stdin>" if self.is_stdin else self.path

    @property
    def is_stream(self) -> bool:
        """Stdin, a FIFO or a pipe (``<(…)``): read once, front to back; it can be neither reopened nor seeked."""
        if self.is_stdin:
            return True
        try:
            mode = os.stat(self.path).st_mode
        except OSError:
            return False
        return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


@dataclass(frozen=True)
class Backup:
    """A rotated export log's name: the live file it was rotated from, and its age."""

    live_name: str
    order: tuple[int, str]  # sorts oldest first


def parse_backup_name(name: str) -> Backup | None:
    """``tetragon-<time>.log[.gz]`` or ``tetragon.log.N[.gz]``; None for any other name."""
    m = _LUMBERJACK.match(name)
    if m:
        return Backup(m.group("base") + (m.group("ext") or ""), (0, m.group("ts")))
    m = _NUMBERED.match(name)
    if m:
        # tetragon.log.5 is older than tetragon.log.1
        return Backup(m.group("base"), (1, f"{10**9 - int(m.group('n')):012d}"))
    return None


def _rotation_key(p: Path) -> tuple[int, str, str]:
    """Sort key: backups oldest first, then the live file."""
    backup = parse_backup_name(p.name)
    return (*backup.order, p.name) if backup else (2, "", p.name)


@dataclass(frozen=True)
class Skipped:
    """A file or directory met while expanding a directory and not read, and why."""

    path: str
    reason: str


@dataclass
class Expansion:
    """What a list of paths expands to: the inputs in reading order, and what was left out."""

    inputs: list[InputFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _export_name(name: str) -> bool:
    return name.endswith(_EXPORT_SUFFIXES + _SNIFFED_SUFFIXES) or parse_backup_name(name) is not None


def _first_line_is_event(fd: int) -> str | None:
    """None when the file's first non-blank line is a Tetragon event, else why it is not one."""
    head = b""
    while len(head) < _SNIFF_BYTES:
        more = os.read(fd, 64 * 1024)
        if not more:
            break
        head += more
        if any(line.strip() for line in head.split(b"\n")[:-1]):
            break
    lines = [line for line in head.split(b"\n") if line.strip()]
    if not lines:
        return "empty"
    try:
        first = json.loads(lines[0])
    except ValueError:
        return "not a Tetragon export: its first line is not a JSON object (a config or pretty-printed JSON?)"
    # every export line has the event under a process_* key, with node_name and time beside it
    if isinstance(first, dict) and ("node_name" in first or any(k.startswith("process_") for k in first)):
        return None
    return "not a Tetragon export: its first line is JSON but not a Tetragon event"


def _check_file(path: str, st: os.stat_result) -> str | None:
    """Why a directory entry that names an export log is not read, or None to read it."""
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"  # a FIFO would block the reader forever
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    try:
        if path.endswith(_SNIFFED_SUFFIXES):
            return _first_line_is_event(fd)
        return None
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    finally:
        os.close(fd)


def _walk(top: Path, out: Expansion) -> list[Path]:
    """The export logs under ``top`` (symlinks followed, each directory once); the rest in ``out.skipped``.

    Why not ``Path.rglob``: it drops, without a word, what it cannot stat (a
    symlink loop, a dangling link) and does not follow linked directories.
    """
    found: list[Path] = []
    top_st = top.stat()
    seen: dict[tuple[int, int], Path] = {(top_st.st_dev, top_st.st_ino): top}

    def visit(d: Path, ancestors: frozenset[tuple[int, int]]) -> None:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            out.skipped.append(Skipped(str(d), f"unreadable directory: {exc.strerror}"))
            return
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                out.skipped.append(Skipped(str(path), "hidden" + (" directory" if entry.is_dir() else "")))
                continue
            try:
                st = os.stat(path)  # follows symlinks
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    reason = "symlink loop"
                elif entry.is_symlink():
                    reason = "broken symlink (its target does not exist)"
                elif exc.errno == errno.ENOENT:
                    reason = "disappeared while the directory was read"
                else:
                    reason = f"unreadable: {exc.strerror}"
                out.skipped.append(Skipped(str(path), reason))
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    out.skipped.append(Skipped(str(path), f"symlink loop (leads back to {seen[key]})"))
                elif key in seen:
                    out.skipped.append(Skipped(str(path), f"same directory as {seen[key]}, read there"))
                else:
                    seen[key] = path
                    visit(path, ancestors | {key})
                continue
            if not _export_name(entry.name):
                out.skipped.append(
                    Skipped(str(path), "not a log file (*.log, *.json, *.jsonl, *.ndjson, *.gz or a rotated backup)")
                )
                continue
            reason = _check_file(str(path), st)
            if reason is None:
                found.append(path)
            else:
                out.skipped.append(Skipped(str(path), reason))

    visit(top, frozenset(seen))
    return found


def scan_inputs(paths: list[str]) -> Expansion:
    """Expand directories into their export logs, in rotation order, saying what was left out and why.

    A path named on the command line is always read, whatever its name. Raises
    FileNotFoundError (or another OSError) naming the path when a named path
    cannot be read, so the CLI can say which argument is wrong instead of
    ingesting half of them.
    """
    out = Expansion()
    for raw in paths:
        if raw == "-":
            out.inputs.append(InputFile("-"))
            continue
        p = Path(raw)
        try:
            st = p.stat()
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(exc.errno, f"symlink loop: {raw}") from None
            if exc.errno == errno.ENOENT:
                raise FileNotFoundError(f"no such file or directory: {raw}") from None
            raise OSError(exc.errno, f"cannot read {raw}: {exc.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            by_dir: dict[Path, list[Path]] = {}
            for f in _walk(p, out):
                by_dir.setdefault(f.parent, []).append(f)
            for d in sorted(by_dir):
                out.inputs.extend(InputFile(str(f)) for f in sorted(by_dir[d], key=_rotation_key))
            continue
        if stat.S_ISREG(st.st_mode):
            try:
                os.close(os.open(raw, os.O_RDONLY))
            except PermissionError as exc:
                raise PermissionError(exc.errno, f"cannot read {raw}: {exc.strerror}") from None
            except OSError:
                pass  # gone since the stat (a rotation under ``tetrapipe run``): the reader deals with that
        elif not os.access(raw, os.R_OK):
            # a FIFO or pipe (``<(…)``) is not opened to find out: that would wait for a writer, and
            # closing it again would leave the writer with a broken pipe and its data lost
            raise PermissionError(errno.EACCES, f"cannot read {raw}: Permission denied")
        out.inputs.append(InputFile(str(p)))
    return out


def expand_inputs(paths: list[str]) -> list[InputFile]:
    """The inputs of :func:`scan_inputs`, for callers that do not report skipped files."""
    return scan_inputs(paths).inputs


def open_input(inp: InputFile) -> BinaryIO:
    """Open for binary reading, inflating gzip (found by its magic bytes) as it is read.

    A regular file is sniffed with a positioned read, so it stays seekable (a
    resumed file is seeked to where the lake ends). A stream cannot be seeked:
    its first bytes are read and put back in front of it.
    """
    raw: BinaryIO
    if inp.is_stdin:
        raw = sys.stdin.buffer
    else:
        raw = open(inp.path, "rb")  # noqa: SIM115 - handed to the caller
    try:
        if not inp.is_stdin and raw.seekable():
            head = os.pread(raw.fileno(), 2, 0)
        else:
            head = _read_exactly(raw, 2)
            raw = _Prefixed(head, raw)  # type: ignore[assignment]
    except BaseException:
        if not inp.is_stdin:
            raw.close()
        raise
    if head == GZIP_MAGIC:
        return GzipStream(raw, inp.label)  # type: ignore[return-value]
    return raw


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    """``n`` bytes, or fewer at the end: a pipe may hand over one byte at a time."""
    out = b""
    while len(out) < n:
        more = stream.read(n - len(out))
        if not more:
            break
        out += more
    return out


class _Prefixed:
    """A stream with bytes already taken from its front put back (the sniffed magic of a pipe)."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        if not self._head:
            return self._stream.read(n)
        head, self._head = self._head, b""
        if n is None or n < 0:
            return head + self._stream.read()
        if n <= len(head):
            self._head = head[n:]
            return head[:n]
        return head + self._stream.read(n - len(head))

    def seekable(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._stream.fileno()

    def close(self) -> None:
        self._stream.close()


class InputFault(Exception):
    """An input that ended abnormally; everything readable before the fault was delivered first.

    ``truncated``: the data simply stops (a gzip file cut short, or still being
    written); otherwise it is damaged or unreadable. Raised by a read once
    nothing is left to deliver, and again by any read after that.
    """

    def __init__(self, message: str, *, truncated: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated


#: compressed bytes read at a time
_GZ_READ = 256 * 1024
#: compressed bytes handed to zlib per call
_GZ_FEED = 64 * 1024
#: inflated bytes produced per zlib call at least (it bounds memory for a small read)
_GZ_OUT_MIN = 256 * 1024
#: compressed bytes per step when approaching damage
_GZ_SALVAGE_STEP = 256


class GzipStream:
    """Inflate a gzip stream (any number of members, zero padding after them) while it is read.

    Why not :class:`gzip.GzipFile`: at a cut-short end it raises EOFError and
    its buffered reader throws away what it inflated in the same call (up to a
    whole read's worth of lines), and it cannot say how far the compressed data
    went. Here every byte that inflates is handed out first; only then does a
    read raise :class:`InputFault` naming the compressed offset where the
    stream ends or the damage is. Reads fill the buffer asked for, as a file's
    do, so a gzip input is read in as few, large batches as a plain one.
    """

    def __init__(self, raw: BinaryIO, label: str) -> None:
        self._raw = raw
        self.label = label
        self._reset()

    def _reset(self) -> None:
        """At the start of the stream."""
        self._d: zlib._Decompress | None = zlib.decompressobj(wbits=31)  # None between members
        self._in = b""  # compressed bytes read and not inflated yet
        self._read = 0  # compressed bytes read from raw
        self._out = memoryview(b"")  # inflated bytes not handed out yet
        self._pos = 0  # inflated bytes handed out
        self._end = False
        self._fault: InputFault | None = None

    @property
    def fileobj(self) -> BinaryIO:
        """The compressed file underneath (its position is the compressed offset)."""
        return self._raw

    def fileno(self) -> int:
        return self._raw.fileno()

    def seekable(self) -> bool:
        return self._raw.seekable()

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        """The position in the inflated data."""
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        """Go to ``offset`` of the inflated data: forward by inflating, back by starting over (a file only)."""
        if whence != 0:
            raise OSError(f"{self.label}: a gzip stream seeks from its start only")
        if offset < self._pos:
            self._raw.seek(0)
            self._reset()
        while self._pos < offset:
            if not self.read(min(1024 * 1024, offset - self._pos)):
                break  # past the end: stays at the end, as a file would report on its next read
        return self._pos

    def readinto(self, target: memoryview | bytearray) -> int:
        """Fill ``target`` as far as the stream goes; 0 at its clean end; InputFault at a broken one."""
        with memoryview(target) as mv, mv.cast("B") as view:
            filled = 0
            while filled < len(view):
                if not self._out:
                    try:
                        if not self._inflate(len(view) - filled):
                            break
                    except InputFault:
                        if filled:
                            break  # hand out what came before; the next read raises it again
                        raise
                n = min(len(self._out), len(view) - filled)
                view[filled : filled + n] = self._out[:n]
                self._out = self._out[n:]
                filled += n
            self._pos += filled
            return filled

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read(1024 * 1024):
                parts.append(chunk)
            return b"".join(parts)
        buf = bytearray(n)
        got = self.readinto(buf)
        del buf[got:]
        return bytes(buf)

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> GzipStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, message: str, *, truncated: bool = False) -> InputFault:
        self._fault = InputFault(message, truncated=truncated)
        return self._fault

    def _more(self) -> bool:
        """Read more compressed bytes; False at the end of the file."""
        more = self._raw.read(_GZ_READ)
        if not more:
            return False
        self._read += len(more)
        self._in = self._in + more if self._in else more
        return True

    def _inflate(self, want: int) -> bool:
        """Put some inflated bytes in ``_out``; False at a clean end; InputFault at a broken one."""
        while True:
            if self._fault is not None:
                raise self._fault
            if self._end:
                return False
            if self._d is None:  # after a member: the end, zero padding, another member or garbage
                self._in = self._in.lstrip(b"\0")
                if len(self._in) < 2 and not self._more():
                    if self._in:
                        raise self._fail(
                            f"not gzip data after the end of the gzip stream at byte "
                            f"{self._read - len(self._in)} of {self.label}"
                        )
                    self._end = True
                    return False
                if len(self._in) < 2 or not self._in[:1].strip(b"\0"):
                    continue  # more padding, or half a magic number: look again
                if self._in[:2] != GZIP_MAGIC:
                    raise self._fail(
                        f"not gzip data after the end of the gzip stream at byte "
                        f"{self._read - len(self._in)} of {self.label}"
                    )
                self._d = zlib.decompressobj(wbits=31)
            if not self._in and not self._more():
                raise self._fail(f"truncated gzip: stream ends at byte {self._read} of {self.label}", truncated=True)
            at = self._read - len(self._in)
            piece, rest = self._in[:_GZ_FEED], self._in[_GZ_FEED:]
            before = self._d.copy()  # ~1 us: lets damage be approached in small steps, see _salvage
            try:
                out = self._d.decompress(piece, max(want, _GZ_OUT_MIN))
            except zlib.error as exc:
                self._d = before
                out, where = self._salvage(piece)
                self._fail(f"corrupt gzip: {exc} (at byte {at + where} of {self.label})")
                if out:
                    self._out = memoryview(out)
                    return True
                raise self._fault from None  # type: ignore[misc]
            if self._d.eof:
                self._in = self._d.unused_data + rest
                self._d = None
            else:
                self._in = self._d.unconsumed_tail + rest
            if out:
                self._out = memoryview(out)
                return True

    def _salvage(self, piece: bytes) -> tuple[bytes, int]:
        """Inflate ``piece`` in small steps up to the damage: what came out, and where the damage starts.

        A damaged block costs only what follows the damage, not the whole
        piece handed to zlib at once (whose output is lost with the error).
        """
        out: list[bytes] = []
        pos = 0
        step = _GZ_SALVAGE_STEP
        while pos < len(piece) and step:
            assert self._d is not None
            before = self._d.copy()
            try:
                out.append(self._d.decompress(piece[pos : pos + step]))
            except zlib.error:
                self._d = before
                step = 1 if step > 1 else 0  # then byte by byte, to the byte zlib stumbles on
                continue
            pos += step
        return b"".join(out), pos


def fingerprint(first_line: bytes) -> str:
    """Identity of a log's content: its first line.

    A rotated backup, its gzip'd copy and the live file it used to be all share
    their first line, so re-ingesting any of them is recognized. Tetragon lines
    carry nanosecond times and exec_ids, so two different logs practically
    never start with the same line.
    """
    return hashlib.sha256(first_line.rstrip(b"\r\n")).hexdigest()[:32]


class PeekableInput:
    """A binary stream whose first non-blank line has been read ahead (for the fingerprint).

    ``fault``: the input broke before that line was complete (a gzip cut short
    in its first line); the read that follows the head raises it again.
    """

    def __init__(self, stream: BinaryIO, limit: int = 4 * 1024 * 1024) -> None:
        self._stream = stream
        self.fault: InputFault | None = None
        head = b""
        while len(head) < limit:
            if any(line.strip() for line in head.split(b"\n")[:-1]):
                break  # a complete non-blank line is in hand
            try:
                more = stream.read(64 * 1024)
            except InputFault as exc:
                self.fault = exc
                break
            if not more:
                break
            head += more
        self._head = head
        self.empty = not head.strip()
        lines = head.split(b"\n")
        complete = [line for line in lines[:-1] if line.strip()]
        #: False while the first line is still being written (no newline yet)
        self.first_line_complete = bool(complete)
        self.first_line = complete[0] if complete else head.strip()

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0 or n >= len(self._head):
                head, self._head = self._head, b""
                if n < 0:
                    return head + self._stream.read()
                return head + self._rest(n - len(head))
            out, self._head = self._head[:n], self._head[n:]
            return out
        return self._stream.read(n)

    def _rest(self, n: int) -> bytes:
        """After the head: a fault is raised by the next read, once the head has been handed out."""
        try:
            return self._stream.read(n)
        except InputFault:
            return b""

    def readinto(self, target: memoryview) -> int:
        """The head first, then straight into ``target`` (no intermediate copy of a whole chunk)."""
        if self._head:
            n = min(len(self._head), len(target))
            target[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        readinto = getattr(self._stream, "readinto", None)
        if readinto is not None:
            return readinto(target)
        data = self._stream.read(len(target))
        target[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
