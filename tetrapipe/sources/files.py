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

A stream input is opened through :mod:`tetrapipe.sources.streams` (gzip
inflated as it is read, a sniffed head put back in front).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tetrapipe.sources.streams import GZIP_MAGIC, GzipStream, InputFault, Prefixed, read_exactly

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
        """The name the history and the messages give the input: always valid UTF-8.

        A file name is bytes; one that is not UTF-8 reaches Python with lone
        surrogates (``bad\\udcff.log``), which neither DuckDB nor Arrow can
        store: its undecodable bytes are written as ``\\xff`` instead (the
        path itself, to open the file, stays as it is).
        """
        if self.is_stdin:
            return "<stdin>"
        return os.fsencode(self.path).decode("utf-8", "backslashreplace")

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


def rotation_key(p: Path) -> tuple[int, str, str]:
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
                out.inputs.extend(InputFile(str(f)) for f in sorted(by_dir[d], key=rotation_key))
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
            head = read_exactly(raw, 2)
            raw = Prefixed(head, raw)  # type: ignore[assignment]
    except BaseException:
        if not inp.is_stdin:
            raw.close()
        raise
    if head == GZIP_MAGIC:
        return GzipStream(raw, inp.label)  # type: ignore[return-value]
    return raw


class FaultWatch:
    """A stream that remembers the :class:`InputFault` it raised, whoever caught it.

    Why: a reader skipping lines the lake already holds does not report a
    break among them (:func:`tetrapipe.sources.lines.read_line_batches`), yet a
    damaged copy is worth a reject even when a whole copy came first.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        #: the first fault the stream raised, if any
        self.fault: InputFault | None = None

    def read(self, n: int = -1) -> bytes:
        try:
            return self._stream.read(n)
        except InputFault as exc:
            self.fault = self.fault or exc
            raise

    def readinto(self, target: memoryview) -> int:
        readinto = getattr(self._stream, "readinto", None)
        try:
            if readinto is not None:
                return readinto(target)
            data = self._stream.read(len(target))
        except InputFault as exc:
            self.fault = self.fault or exc
            raise
        target[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()


def fingerprint(first_line: bytes) -> str:
    """Identity of a log's content: its first line.

    A rotated backup, its gzip'd copy and the live file it used to be all share
    their first line, so re-ingesting any of them is recognized. Tetragon lines
    carry nanosecond times and exec_ids, so two different logs practically
    never start with the same line.
    """
    return hashlib.sha256(first_line.rstrip(b"\r\n")).hexdigest()[:32]
