"""Keeping a Delta lake fast and bounded: compaction, vacuum, retention, and what the tables hold.

A processor commits once per partition per micro-batch: at one batch a second
that is tens of thousands of small files a day, and every query opens each
one. Delta makes the repairs safe for readers, which is why they live here as
thin, explained calls into delta-rs rather than as file moves of our own:

* :func:`optimize` (``OPTIMIZE``) rewrites a partition's small files into
  large ones in one commit that removes the old files and adds the new: a
  reader sees either version whole, never a row twice. It does not conflict
  with concurrent appends (measured: a writer committing every few
  milliseconds while optimize runs loses nothing and never fails). Two
  optimizers at once are NOT caught by delta-rs 1.6.6's conflict check
  (measured: both commit, every compacted row is then stored twice), so an
  optimizer first claims the table with a lease, see :func:`optimize_lease`.
* :func:`vacuum` deletes the files no version younger than the retention
  references (removed by optimize or retention). Readers of the current
  version never lose a file; time travel and long queries older than the
  retention do, hence the 7-day default.
* :func:`retention` deletes whole ``date`` partitions older than N days (a
  partition predicate drops files, it rewrites none); the files go at the
  next vacuum.
* Checkpoints: delta-rs writes one every ``delta.checkpointInterval`` commits
  (100), and at each deletes the commit entries older than
  ``delta.logRetentionDuration`` (a day for tetrapipe's tables, see
  :data:`tetrapipe.lake.store.TABLE_PROPERTIES`): a table's log holds a day
  of commits, not all of them, and every commit, which lists the log, stays
  as quick. The positions old entries carried live on in the checkpoint.
  :func:`configure` changes the retentions of existing tables.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError
from deltalake.fs import DeltaStorageHandler

from tetrapipe.errors import TetrapipeError
from tetrapipe.lake.store import COMMIT_ORDER, DATE_COLUMN, WRITER_PROPERTIES, Lake, private_files, with_date
from tetrapipe.schema import SCHEMAS

log = logging.getLogger("tetrapipe.lake.maintenance")

#: the default VACUUM retention, Delta's own (``delta.deletedFileRetentionDuration``)
DEFAULT_VACUUM_RETENTION = dt.timedelta(days=7)
#: attempts of one maintenance commit that meets a concurrent one
ATTEMPTS = 6

T = TypeVar("T")


def _tables(lake: Lake, names: Iterable[str] | None) -> list[tuple[str, DeltaTable]]:
    """The existing tables among ``names`` (default: all), each opened once; an unknown name is an error."""
    wanted = list(names or COMMIT_ORDER)
    unknown = [n for n in wanted if n not in COMMIT_ORDER]
    if unknown:
        raise TetrapipeError(f"no table {', '.join(unknown)} (the lake's tables: {', '.join(sorted(COMMIT_ORDER))})")
    out = []
    for name in wanted:
        table = lake.table(name)
        if table is not None:
            out.append((name, table))
    return out


def _retrying(lake: Lake, name: str, what: str, op: Callable[[DeltaTable], T]) -> T:
    """``op`` on a fresh snapshot of ``name``, again while it meets a concurrent commit it conflicts with."""
    for attempt in range(ATTEMPTS):
        table = lake.table(name)
        if table is None:
            raise TetrapipeError(f"the {name} table is gone")
        try:
            with private_files(lake.is_local):
                return op(table)
        except CommitFailedError as exc:
            log.info("%s of %s met a concurrent commit (attempt %d): %s", what, name, attempt + 1, exc)
            time.sleep(0.05 * (attempt + 1))
    raise TetrapipeError(f"{what} of the {name} table kept meeting concurrent commits ({ATTEMPTS} attempts)")


# --- one optimizer at a time ----------------------------------------------------------------------------------------

#: the app id whose version is the wall-clock time (ms) until which one optimizer holds a table
LEASE_APP = "tetrapipe:optimize-lease"
#: how long a claim lasts if its holder dies without releasing it
LEASE_TTL = dt.timedelta(hours=6)


def _lease_commit(lake: Lake, table: DeltaTable, name: str, until_ms: int) -> None:
    """An empty commit carrying the lease: Delta refuses it when another commit of the same app id won since."""
    with private_files(lake.is_local):
        write_deltalake(
            table,
            with_date(name, SCHEMAS[name].empty_table()),
            mode="append",
            partition_by=[DATE_COLUMN],
            schema_mode="merge",
            storage_options=lake.storage_options or None,
            commit_properties=CommitProperties(app_transactions=[Transaction(LEASE_APP, until_ms)]),
        )


@contextmanager
def optimize_lease(lake: Lake, name: str, wait: float = 60.0) -> Iterator[None]:
    """Hold table ``name`` against other optimizers, wherever they run (the claim is a Delta commit).

    Two claims made from the same snapshot cannot both commit (a stale commit
    of an app id another commit set is refused), so one optimizer wins; the
    other waits up to ``wait`` seconds, then gives up with an error. A claim
    whose holder died expires after :data:`LEASE_TTL`.
    """
    deadline = time.monotonic() + wait
    while True:
        table = lake.table(name)
        if table is None:
            raise TetrapipeError(f"the {name} table is gone")
        held = table.transaction_version(LEASE_APP)
        now_ms = int(time.time() * 1000)
        if held is None or held <= now_ms:
            try:
                _lease_commit(lake, table, name, now_ms + int(LEASE_TTL.total_seconds() * 1000))
                break
            except CommitFailedError:
                continue  # another claim (or a commit of the same app id) won: look again
        if time.monotonic() >= deadline:
            until = dt.datetime.fromtimestamp(held / 1000, dt.UTC).isoformat(timespec="seconds")
            raise TetrapipeError(
                f"another optimize holds the {name} table (its claim ends by {until} if it died): try again later"
            )
        time.sleep(0.5)
    try:
        yield
    finally:
        for _ in range(ATTEMPTS):
            try:
                current = lake.table(name)
                if current is not None:
                    _lease_commit(lake, current, name, int(time.time() * 1000))
                break
            except CommitFailedError:
                continue


# --- optimize ---------------------------------------------------------------------------------------------


@dataclass
class OptimizeResult:
    table: str
    files_removed: int = 0
    files_added: int = 0
    version: int = 0


def optimize(
    lake: Lake, tables: Iterable[str] | None = None, target_size: int | None = None, wait: float = 60.0
) -> list[OptimizeResult]:
    """Compact each table's small files (Delta ``OPTIMIZE``), then drop expired log entries.

    ``wait``: seconds to wait for another optimizer of the same table.
    Safe while processors write: appends never conflict with a compaction,
    and a reader sees the table before or after it, each row once.
    """
    results = []
    for name, _ in _tables(lake, tables):

        def run(table: DeltaTable) -> dict[str, Any]:
            return table.optimize.compact(target_size=target_size, writer_properties=WRITER_PROPERTIES)

        with optimize_lease(lake, name, wait):
            metrics = _retrying(lake, name, "optimize", run)
        table = lake.table(name)
        assert table is not None
        table.cleanup_metadata()  # log entries past delta.logRetentionDuration, behind a checkpoint
        results.append(
            OptimizeResult(
                name,
                files_removed=int(metrics.get("numFilesRemoved", 0)),
                files_added=int(metrics.get("numFilesAdded", 0)),
                version=table.version(),
            )
        )
    return results


# --- vacuum and retention ---------------------------------------------------------------------------------


@dataclass
class VacuumResult:
    table: str
    deleted: list[str] = field(default_factory=list)


def vacuum(
    lake: Lake,
    retention: dt.timedelta = DEFAULT_VACUUM_RETENTION,
    tables: Iterable[str] | None = None,
    dry_run: bool = False,
) -> list[VacuumResult]:
    """Delete files that no version younger than ``retention`` references.

    A retention shorter than the table's own (7 days) is allowed because the
    caller asked for it: it can break time travel past it, a query that
    started before a compaction, and a writer whose commit is slower than
    the retention (its written, not yet committed files look unreferenced).
    """
    hours = int(retention.total_seconds() // 3600)
    if retention.total_seconds() % 3600:
        raise TetrapipeError(f"vacuum retention {retention} is not whole hours (Delta counts it in hours)")
    out = []
    for name, _ in _tables(lake, tables):

        def run(table: DeltaTable) -> list[str]:
            return table.vacuum(
                retention_hours=hours,
                dry_run=dry_run,
                enforce_retention_duration=retention >= DEFAULT_VACUUM_RETENTION,
                # full: list the table's files rather than trust the tombstones alone. A tombstone leaves
                # the checkpoints once delta.deletedFileRetentionDuration passes; in delta-rs's default
                # ("lite") mode its file would then never be deleted (measured with 1.6.6).
                full=True,
            )

        out.append(VacuumResult(name, sorted(_retrying(lake, name, "vacuum", run))))
    return out


def interval(span: dt.timedelta) -> str:
    """``span`` as a Delta interval property value (``interval 7 days``), in the largest whole unit."""
    seconds = int(span.total_seconds())
    if seconds <= 0 or seconds != span.total_seconds():
        raise TetrapipeError(f"{span} is not a whole, positive number of seconds")
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0:
            return f"interval {seconds // size} {unit}"
    return f"interval {seconds} seconds"


def configure(lake: Lake, properties: dict[str, str], tables: Iterable[str] | None = None) -> list[str]:
    """Set Delta table properties (log and tombstone retention) on existing tables; the tables changed.

    New tables get :data:`tetrapipe.lake.store.TABLE_PROPERTIES`; this is how
    a lake made earlier, or one that wants a longer ``query --as-of`` window,
    changes them. One metadata commit per table.
    """
    changed = []
    for name, _ in _tables(lake, tables):

        def run(table: DeltaTable) -> None:
            table.alter.set_table_properties(properties, raise_if_not_exists=False)

        _retrying(lake, name, "configure", run)
        changed.append(name)
    return changed


@dataclass
class RetentionResult:
    table: str
    cutoff: str
    rows_deleted: int = 0
    files_removed: int = 0


def retention_cutoff(keep: dt.timedelta, now: dt.datetime | None = None) -> str:
    """The first ``date`` kept when keeping ``keep`` of history: today (UTC) counts as day one."""
    if keep < dt.timedelta(days=1):
        raise TetrapipeError(f"a retention of {keep} would delete today's history: keep at least 1d")
    today = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).date()
    return (today - dt.timedelta(days=keep.days - 1)).isoformat()


def retention(
    lake: Lake, keep: dt.timedelta, tables: Iterable[str] | None = None, now: dt.datetime | None = None
) -> list[RetentionResult]:
    """Delete every partition dated before :func:`retention_cutoff` (rows with no date are kept).

    A partition predicate removes whole files in one commit, and rewrites
    none; the space comes back at the next :func:`vacuum`.
    """
    cutoff = retention_cutoff(keep, now)
    out = []
    for name, _ in _tables(lake, tables):

        def run(table: DeltaTable) -> dict[str, Any]:
            return table.delete(f"{DATE_COLUMN} < '{cutoff}'")

        metrics = _retrying(lake, name, "retention", run)
        out.append(
            RetentionResult(
                name,
                cutoff,
                rows_deleted=int(metrics.get("num_deleted_rows", 0)),
                files_removed=int(metrics.get("num_removed_files", 0)),
            )
        )
    return out


# --- history and stats ------------------------------------------------------------------------------------


@dataclass
class Commit:
    version: int
    time: dt.datetime
    operation: str
    rows_added: int | None
    files_added: int | None
    files_removed: int | None
    app_transactions: list[tuple[str, int]] = field(default_factory=list)


def _log_fs(lake: Lake, name: str) -> pafs.FileSystem:
    """The table's directory through delta-rs's own object store (local or remote, same credentials)."""
    return pafs.PyFileSystem(DeltaStorageHandler(lake.table_uri(name), lake.storage_options or None))


def _app_transactions(fs: pafs.FileSystem, version: int) -> list[tuple[str, int]]:
    """The ``txn`` actions of one commit file (empty when the log entry was cleaned up)."""
    try:
        with fs.open_input_stream(f"_delta_log/{version:020d}.json") as f:
            body = f.read().decode()
    except (OSError, FileNotFoundError):
        return []
    out = []
    for line in body.split("\n"):  # not splitlines(): U+2028 or U+0085 inside a logged value is not a line end
        txn = json.loads(line).get("txn") if line.strip() else None
        if txn:
            out.append((str(txn["appId"]), int(txn["version"])))
    return out


def _metric(metrics: dict[str, Any], *names: str) -> int | None:
    for n in names:
        if n in metrics and metrics[n] is not None:
            return int(metrics[n])
    return None


def history(lake: Lake, name: str, limit: int | None = 20) -> list[Commit]:
    """The newest ``limit`` commits of ``name``, newest first, with the positions each one carries."""
    table = _tables(lake, [name])
    if not table:
        return []
    fs = _log_fs(lake, name)
    out = []
    for entry in table[0][1].history(limit):
        metrics = entry.get("operationMetrics") or {}
        version = int(entry["version"])
        out.append(
            Commit(
                version=version,
                time=dt.datetime.fromtimestamp(int(entry.get("timestamp", 0)) / 1000, dt.UTC),
                operation=str(entry.get("operation", "?")),
                rows_added=_metric(metrics, "num_added_rows", "numOutputRows"),
                files_added=_metric(metrics, "num_added_files", "numFilesAdded"),
                files_removed=_metric(metrics, "num_removed_files", "numFilesRemoved"),
                app_transactions=_app_transactions(fs, version),
            )
        )
    return out


@dataclass
class TableStats:
    table: str
    version: int
    files: int
    rows: int
    bytes: int
    partitions: int
    oldest: str | None
    newest: str | None
    log_files: int
    log_bytes: int
    last_checkpoint: int | None
    properties: dict[str, str] = field(default_factory=dict)


def _log_size(fs: pafs.FileSystem) -> tuple[int, int, int | None]:
    """(files, bytes, last checkpoint version) of a table's ``_delta_log``."""
    infos = fs.get_file_info(pafs.FileSelector("_delta_log", allow_not_found=True))
    files = [i for i in infos if i.type == pafs.FileType.File]
    checkpoint = None
    try:
        with fs.open_input_stream("_delta_log/_last_checkpoint") as f:
            checkpoint = int(json.loads(f.read())["version"])
    except (OSError, FileNotFoundError, ValueError, KeyError):
        pass
    return len(files), sum(i.size or 0 for i in files), checkpoint


def stats(lake: Lake, tables: Iterable[str] | None = None) -> list[TableStats]:
    """What each table holds now: from the current snapshot's file list, no data file is read."""
    out = []
    for name, table in _tables(lake, tables):
        adds = pa.table(table.get_add_actions(flatten=True))
        dates = adds.column(f"partition.{DATE_COLUMN}") if f"partition.{DATE_COLUMN}" in adds.column_names else None
        known = pc.drop_null(dates) if dates is not None else pa.array([], pa.string())
        log_files, log_bytes, checkpoint = _log_size(_log_fs(lake, name))
        out.append(
            TableStats(
                table=name,
                version=table.version(),
                files=adds.num_rows,
                rows=int(pc.sum(adds.column("num_records")).as_py() or 0) if adds.num_rows else 0,
                bytes=int(pc.sum(adds.column("size_bytes")).as_py() or 0) if adds.num_rows else 0,
                partitions=len(pc.unique(dates)) if dates is not None else 0,
                oldest=pc.min(known).as_py() if len(known) else None,
                newest=pc.max(known).as_py() if len(known) else None,
                log_files=log_files,
                log_bytes=log_bytes,
                last_checkpoint=checkpoint,
                properties={k: v for k, v in table.metadata().configuration.items() if v is not None},
            )
        )
    return out
