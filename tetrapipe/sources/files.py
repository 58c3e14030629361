"""Which export logs to read, in which order, and how to open them.

Tetragon's exporter (lumberjack) rotates ``tetragon.log`` by renaming it to
``tetragon-2026-01-02T15-04-05.000.log`` (``.gz`` when compressed) and starting
a new file; logrotate-style setups use ``tetragon.log.1``, ``.2``, ... So a
directory is read oldest backup first, live file last, which keeps the events
of one process in time order. Compression is detected from the gzip magic
bytes, not the name.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
# Tetragon's exporter rotates with lumberjack (tetragon-2024-05-01T10-05-00.000.log[.gz]);
# logrotate-style numbered backups (tetragon.log.1[.gz]) are common too
_LUMBERJACK = re.compile(r"^(?P<base>.+)-(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3})(?P<ext>\.[^.]+)?(\.gz)?$")
_NUMBERED = re.compile(r"^(?P<base>.+)\.(?P<n>\d+)(\.gz)?$")
# ".json" is left out on purpose: in a directory it is usually a config or fixture file, not
# an export log (pass such a file explicitly to ingest it).
_EXPORT_SUFFIXES = (".log", ".jsonl", ".ndjson", ".gz")


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


def _looks_like_export(p: Path) -> bool:
    name = p.name
    if name.startswith("."):
        return False
    return name.endswith(_EXPORT_SUFFIXES) or parse_backup_name(name) is not None


def expand_inputs(paths: list[str]) -> list[InputFile]:
    """Expand directories into their export logs, in rotation order.

    Raises FileNotFoundError naming the path, so the CLI can say which
    argument is wrong instead of ingesting half of them.
    """
    out: list[InputFile] = []
    for raw in paths:
        if raw == "-":
            out.append(InputFile("-"))
            continue
        p = Path(raw)
        if p.is_dir():
            files = [f for f in p.rglob("*") if f.is_file() and _looks_like_export(f)]
            by_dir: dict[Path, list[Path]] = {}
            for f in files:
                by_dir.setdefault(f.parent, []).append(f)
            for d in sorted(by_dir):
                out.extend(InputFile(str(f)) for f in sorted(by_dir[d], key=_rotation_key))
        elif p.exists():
            out.append(InputFile(str(p)))
        else:
            raise FileNotFoundError(f"no such file or directory: {raw}")
    return out


def open_input(inp: InputFile) -> BinaryIO:
    """Open for binary reading, decompressing gzip transparently."""
    if inp.is_stdin:
        raw = sys.stdin.buffer
        head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
        return gzip.GzipFile(fileobj=raw) if head == GZIP_MAGIC else raw
    f = open(inp.path, "rb")
    head = f.read(2)
    f.seek(0)
    if head == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=f)  # type: ignore[return-value]
    return f


def fingerprint(first_line: bytes) -> str:
    """Identity of a log's content: its first line.

    A rotated backup, its gzip'd copy and the live file it used to be all share
    their first line, so re-ingesting any of them is recognized. Tetragon lines
    carry nanosecond times and exec_ids, so two different logs practically
    never start with the same line.
    """
    return hashlib.sha256(first_line.rstrip(b"\r\n")).hexdigest()[:32]


class PeekableInput:
    """A binary stream whose first non-blank line has been read ahead (for the fingerprint)."""

    def __init__(self, stream: BinaryIO, limit: int = 4 * 1024 * 1024) -> None:
        self._stream = stream
        head = b""
        while len(head) < limit:
            if any(line.strip() for line in head.split(b"\n")[:-1]):
                break  # a complete non-blank line is in hand
            more = stream.read(64 * 1024)
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
                return head + self._stream.read(n - len(head))
            out, self._head = self._head[:n], self._head[n:]
            return out
        return self._stream.read(n)

    def close(self) -> None:
        self._stream.close()
