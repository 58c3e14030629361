"""Which files make up a rotating Tetragon export log, in order, and which of them vanished unread.

The follower (:mod:`tetrapipe.sources.follow`) reads; this module tracks
rotation: it lists the live file's rotated siblings oldest first, knows each
by device+inode plus a fingerprint of its first line (the fingerprint survives
compression and catches inode reuse), closes the races of a directory that
changes while it is listed, and notices a backup Tetragon deleted before it
was read. See docs/ARCHITECTURE.md for the source's place in the data flow.
"""

from __future__ import annotations

import logging
import os
import stat as stat_mod
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tetrapipe.sources.files import fingerprint, parse_backup_name
from tetrapipe.sources.streams import InputFault

log = logging.getLogger("tetrapipe.sources.follow")

FP_CACHE_MAX = 256

#: Opens a file for reading, gzip transparently: (stream, is_gzip).
Opener = Callable[[str], tuple[BinaryIO, bool]]


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


def backup_order(live: Path, name: str) -> tuple[int, str] | None:
    """Sort key of a rotated sibling of ``live`` (oldest first), or None if it is not one."""
    backup = parse_backup_name(name)
    return backup.order if backup and backup.live_name == live.name else None


def first_line(f: BinaryIO, limit: int) -> bytes | None:
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


def first_line_at(fd: int, limit: int) -> bytes | None:
    """The first complete line of an open file, by positioned reads (its offset is left alone)."""
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


def inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def matches(c: Candidate, ident: dict[str, Any] | None) -> bool:
    """Is ``c`` the file ``ident`` (a position's file identity) describes?"""
    if ident is None:
        return False
    if not c.gz and (c.dev, c.ino) == (ident.get("dev"), ident.get("ino")):
        return c.fp is None or ident.get("fp") is None or c.fp == ident.get("fp")
    return c.fp is not None and c.fp == ident.get("fp")


def index_of(cands: list[Candidate], ident: dict[str, Any] | None) -> int | None:
    if ident is None:
        return None
    for i, c in enumerate(cands):
        if matches(c, ident):
            return i
    return None


class RotatedFiles:
    """The live file and its rotated backups, listed race-free, fingerprinted, with losses noticed.

    ``opener`` opens a file (gzip transparently); the follower hands in its
    own so that reading and listing go through one function. ``warnings`` is
    the follower's list of loss messages, appended to here.
    """

    def __init__(self, live: Path, max_line_bytes: int, opener: Opener, warnings: list[str]) -> None:
        self.live = live
        self.max_line_bytes = max_line_bytes
        self.opener = opener
        self.warnings = warnings
        self.files_lost = 0  # backups deleted by rotation before they were read
        self._fp_cache: dict[tuple[int, int, int, int, int], tuple[str | None, bool]] = {}
        self._seen_backups: dict[str, str | None] = {}
        self._lost_fps: set[str] = set()

    def listing(self, *, done: Collection[str], reading: str | None, judge_losses: bool) -> list[Candidate]:
        """The live file's rotated siblings (oldest first), then the live file, with fingerprints.

        A directory listing is not atomic with the stat of the live file: if
        Tetragon rotates in between, the listing misses the just-renamed file
        while ``tetragon.log`` already names its successor, and the renamed
        file would be skipped. Rotation always gives the live name a new
        inode, so the live file is looked at before and after the listing and
        the listing is taken again until both agree.

        ``done``: fingerprints of files read to their end; ``reading``: the
        fingerprint of the file being read; ``judge_losses``: False until a
        checkpoint was resumed (before, what was read is not known yet).
        """
        out: list[Candidate] = []
        for _ in range(5):
            before = inode(self.live)
            out = self._list()
            live = out[-1] if out and out[-1].live else None
            if (None if live is None else (live.dev, live.ino)) == before:
                break
        self._note_deleted_unread(out, done, reading, judge_losses)
        return out

    def _list(self) -> list[Candidate]:
        live = self.live
        try:
            names = os.listdir(live.parent)
        except FileNotFoundError:
            return []
        keyed: list[tuple[tuple[int, str], str]] = []
        present = set(names)
        for name in names:
            key = backup_order(live, name)
            if key is None:
                continue
            if name.endswith(".gz") and name[:-3] in present:
                continue  # lumberjack is still compressing: the plain file is complete, the .gz not yet
            keyed.append((key, name))
        keyed.sort()
        out: list[Candidate] = []
        for _, name in keyed:
            c = self.candidate(str(live.parent / name), live=False)
            if c is None and not name.endswith(".gz"):
                # compressed and removed since the listing: the .gz is complete now
                c = self.candidate(str(live.parent / (name + ".gz")), live=False)
            if c is not None:
                out.append(c)
        c = self.candidate(str(live), live=True)
        if c is not None:
            out.append(c)
        if len(self._fp_cache) > FP_CACHE_MAX:  # rotations every few seconds for weeks: forget deleted files
            keep = {(c.dev, c.ino) for c in out}
            self._fp_cache = {k: v for k, v in self._fp_cache.items() if k[:2] in keep}
        return out

    def _note_deleted_unread(
        self, cands: list[Candidate], done: Collection[str], reading: str | None, judge_losses: bool
    ) -> None:
        """Report a backup seen in an earlier listing that is gone without having been read.

        Tetragon deletes backups beyond ``--export-file-max-backups`` whether or
        not anyone read them; a collector that falls that far behind loses
        their lines. That cannot be undone, but it must not be silent: it is
        logged with the file's name, counted (``files_lost``) and exported.
        """
        present = {c.fp for c in cands if c.fp is not None}
        seen = self._seen_backups.items() if judge_losses else ()
        for path, fp in seen:
            if fp is None or fp in present or fp in done or fp == reading or fp in self._lost_fps:
                continue  # still there (perhaps compressed under a new name), read, or being read
            self._lost_fps.add(fp)
            self.files_lost += 1
            msg = (
                f"{path} was deleted by rotation before it was read: its lines are lost (the collector fell "
                f"more than --export-file-max-backups files behind Tetragon; give it more CPU or keep more "
                f"backups)"
            )
            log.warning(msg)
            self.warnings.append(msg)
        self._seen_backups = {c.path: c.fp for c in cands if not c.live}

    def candidate(self, path: str, *, live: bool) -> Candidate | None:
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
                f, gz = self.opener(path)
                with f:
                    first = first_line(f, self.max_line_bytes)
            except (OSError, EOFError, InputFault):
                return None
            fp = fingerprint(first) if first is not None else None
            if not live and first is not None:
                self._fp_cache[key] = (fp, gz)
        return Candidate(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, gz, fp, live)

    def newer_than_gone(self, cands: list[Candidate], ident: dict[str, Any]) -> list[Candidate]:
        """The candidates after a finished file that is gone (a backup deleted past max-backups).

        A lumberjack name carries its rotation time, the one order that cannot
        lie: a .gz's mtime is when the mill compressed it, possibly later than
        the last write of the next file. Only for other names (``.N``, which
        shift at every rotation) is the finished file's mtime the floor.
        """
        gone = backup_order(self.live, Path(str(ident.get("path") or "")).name)
        if gone is not None and gone[0] == 0:
            return [c for c in cands if c.live or (backup_order(self.live, Path(c.path).name) or gone) > gone]
        floor = int(ident.get("mtime_ns") or 0)
        return [c for c in cands if c.live or c.mtime_ns >= floor]
