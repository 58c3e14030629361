"""``--as-of``: which version of each table a query reads (Delta time travel).

Two forms, because the two questions people ask differ:

* a **time** (``2026-03-10T09:00``, ``2026-03-10 09:00:00+02:00``, ``2026-03-10``;
  no zone means UTC): every table as it was at that time, i.e. its newest
  commit made at or before it. A table created later reads as empty.
* a **version** (``12``, or ``alerts@7`` for another table): that table at that
  version, and every other table as of the moment that version was committed.
  A plain number is a version of ``events``; ``alerts@7`` answers "what did
  the lake hold when this alert was written": a batch commits ``rejects``,
  ``alerts``, ``tls_stats`` and ``events`` in that order, so as of the
  ``alerts`` commit the other tables hold every earlier batch (and not yet the
  events of the alert's own batch, which commit after it).

A version's moment is when its commit file was written (the object store's or
the file system's modification time, to the millisecond): that is the clock
delta-rs itself uses to find "the version as of a time", so resolving the
other tables by it is consistent with resolving them by a typed time.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from tetrapipe.errors import TetrapipeError
from tetrapipe.schema import TABLES

_VERSION = re.compile(r"^(?:(?P<table>[a-z_]+)@)?(?P<version>\d+)$")


@dataclass(frozen=True)
class AsOf:
    """A point in the lake's history: ``version`` of ``table``, or a ``time`` (UTC, aware)."""

    version: int | None = None
    table: str = "events"
    time: dt.datetime | None = None

    @classmethod
    def parse(cls, text: str) -> AsOf:
        """``12``, ``alerts@7`` or an ISO time; a ValueError names the forms."""
        raw = text.strip()
        m = _VERSION.match(raw)
        if m:
            table = m["table"] or "events"
            if table not in TABLES:
                raise ValueError(f"no table named {table!r} (tables: {', '.join(TABLES)})")
            return cls(version=int(m["version"]), table=table)
        try:
            when = dt.datetime.fromisoformat(raw.replace(" ", "T", 1) if len(raw) > 10 else raw)
        except ValueError:
            raise ValueError(
                f"{text!r} is neither a version (12, alerts@7) nor an ISO time (2026-03-10T09:00, UTC unless a zone "
                "is given)"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return cls(time=when.astimezone(dt.UTC))

    def describe(self) -> str:
        if self.time is not None:
            return f"as of {self.time.isoformat(sep=' ')}"
        return f"as of {self.table} version {self.version}"


def commit_time(table: DeltaTable, version: int) -> dt.datetime | None:
    """When ``version`` of ``table`` was committed (its log file's modification time); None if unknown."""
    import pyarrow.fs as pafs
    from deltalake.fs import DeltaStorageHandler

    fs = pafs.PyFileSystem(DeltaStorageHandler(table.table_uri, _options(table)))
    info = fs.get_file_info(f"_delta_log/{version:020d}.json")
    if info.type != pafs.FileType.File or info.mtime is None:
        return None
    mtime = info.mtime
    return mtime if mtime.tzinfo is not None else mtime.replace(tzinfo=dt.UTC)


def _options(table: DeltaTable) -> dict[str, str] | None:
    """The storage options a table was opened with (delta-rs keeps them on the table object)."""
    options = getattr(table, "_storage_options", None)
    return dict(options) if options else None


def at_version(table: DeltaTable, name: str, version: int) -> DeltaTable:
    """``table`` loaded at ``version``; a version it does not have raises TetrapipeError saying which it has."""
    newest = table.version()
    if version > newest:
        raise TetrapipeError(f"the {name} table has no version {version} (its newest is {newest})")
    try:
        table.load_as_version(version)
    except (DeltaError, ValueError, OSError) as exc:  # delta-rs: versions before a log cleanup are gone
        raise TetrapipeError(f"the {name} table no longer holds version {version}: {exc}") from exc
    return table


def at_time(table: DeltaTable, name: str, when: dt.datetime) -> DeltaTable | None:
    """``table`` as of ``when``; None when it did not exist yet then (its first commit is later)."""
    try:
        table.load_as_version(when)
    except (DeltaError, ValueError, OSError) as exc:
        raise TetrapipeError(f"the {name} table holds no version as of {when.isoformat()}: {exc}") from exc
    if table.version() == 0:  # delta-rs answers version 0 for any time before the table's creation too
        created = commit_time(table, 0)
        if created is not None and created > when:
            return None
    return table
