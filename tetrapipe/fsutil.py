"""Files that hold events: owner-only from the first byte, and durable renames.

Used by every writer of events or alerts (the lake, the disk spool, the
collector's checkpoints, the SIEM file sink), so it lives beside them, not in
any one of them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (a file's own fsync does not cover its directory entry)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- owner-only files ---------------------------------------------------------------------------
#
# The lake, the collector's spool and checkpoints and the SIEM spools hold Tetragon events and alerts:
# command lines, file paths, pod names, sometimes secrets passed as arguments. Every directory and file
# tetrapipe creates for them is owner-only. The modes are given to mkdir/open themselves (so there is no
# moment when a file is readable by others) and set again with chmod, because a umask only narrows a
# mode while a default ACL on a parent directory can widen it. Directories and files that already exist
# keep their modes: an operator who loosened them on purpose (a log shipper's group) is not overruled.

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dirs(path: str | os.PathLike[str]) -> Path:
    """``mkdir -p path``, every directory it creates (parents included) owner-only (0700)."""
    path = Path(path)
    missing: list[Path] = []
    p = path
    while not p.exists() and p.parent != p:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, PRIVATE_DIR_MODE)
        except FileExistsError:
            if not d.is_dir():
                raise
            continue  # created by a concurrent writer: its mode is its own
        os.chmod(d, PRIVATE_DIR_MODE)
    return path


def open_private_fd(path: str | os.PathLike[str], flags: int = os.O_WRONLY) -> int:
    """``os.open`` for writing that creates a missing file owner-only (0600); an existing file keeps its mode."""
    flags |= getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return os.open(path, flags)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private(path: str | os.PathLike[str], append: bool = True) -> BinaryIO:
    """A binary file opened for appending (or truncated), created owner-only if missing."""
    flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
    return os.fdopen(open_private_fd(path, flags), "ab" if append else "wb")


def cut_partial_line(path: str | os.PathLike[str]) -> int:
    """Cut a last line that has no newline (an append a kill or a full disk cut short); the bytes cut.

    Why: files of lines (the spool's segments, a file sink's output, the dead
    letters) are appended to a record at a time; a fragment left at the end
    would have the next record glued to it, a line no reader can parse. Reads
    backwards from the end a block at a time, so a large file is not read whole.
    """
    try:
        f = open(path, "r+b")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return 0
    with f:
        end = keep = f.seek(0, os.SEEK_END)
        while keep > 0:
            start = max(keep - (1 << 16), 0)
            f.seek(start)
            block = f.read(keep - start)
            if keep == end and block.endswith(b"\n"):
                return 0
            newline = block.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            keep = start
        if keep < end:
            f.truncate(keep)
        return end - keep


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a small file so a crash leaves either the old or the new content (owner-only, see above)."""
    private_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open_private(tmp, append=False) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
