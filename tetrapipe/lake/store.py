"""The history lake: one Delta table per kind of row, which DuckDB reads through views.

Why Delta rather than a directory of Parquet files: a commit is one atomic
entry in the table's ``_delta_log``, readers see a commit whole or not at all
(any number of them, while the writer writes, from a laptop directory or an
object store), old versions stay readable (time travel), and every commit can
carry *where its rows came from* as an app transaction (see
:mod:`tetrapipe.lake.positions`): the lake itself is the record of what was
ingested, and a commit the table already holds is never written twice.

Layout: ``<root>/<table>`` for ``events``, ``alerts``, ``rejects`` and
``tls_stats``; the schema is :data:`tetrapipe.schema.SCHEMAS` plus a ``date``
string column (UTC date of :data:`tetrapipe.schema.PARTITION_TIME`, null when
that time is), which partitions the table. :meth:`Lake.commit` is the one way
rows reach the lake.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from deltalake import CommitProperties, DeltaTable, Schema, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from tetrapipe.errors import TetrapipeError
from tetrapipe.fsutil import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, private_dirs
from tetrapipe.lake.positions import Position
from tetrapipe.redact import redact_url
from tetrapipe.schema import PARTITION_TIME, SCHEMAS

# pyarrow (numpy with it) costs a reader (tetrapipe query, tree) ~80 ms of start-up: the writers import it
if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as ds

DEFAULT_LAKE = "./tetrapipe-lake"
LAKE_ENV = "TETRAPIPE_LAKE"
#: the partition column every table carries (``YYYY-MM-DD`` of its partition time, UTC)
DATE_COLUMN = "date"
#: the tables of a lake, in the order one batch commits them (``events`` last: a restart resumes from it)
COMMIT_ORDER = ("rejects", "alerts", "tls_stats", "events")
#: attempts of one commit that keeps meeting a concurrent commit of the same position
COMMIT_ATTEMPTS = 8

_URI_SCHEMES = (
    "az://",
    "abfs://",
    "abfss://",
    "adl://",
    "azure://",
    "s3://",
    "s3a://",
    "gs://",
    "file://",
    "memory://",
)

log = logging.getLogger("tetrapipe.lake")


#: versions after which a cached table object is opened again from the newest checkpoint (see Lake._current)
REOPEN_EVERY = 100

#: Delta table properties every table is created with (``tetrapipe lake configure`` changes them later).
#: Why not Delta's defaults (30 days of log, 7 days of tombstones): delta-rs lists the whole
#: ``_delta_log`` to bring a table up to date, so every commit pays ~10-15 us per log file
#: (measured with 1.6.6: 2,000 files 24 ms a commit, 4,000 files 60 ms, 86,400 files 870 ms). One
#: commit every 10 s keeps ~8,640 entries a day; 30 days of them would make each commit seconds
#: long. A day of log is a day of ``query --as-of``. Tombstones (files removed by optimize or
#: retention) sit in every checkpoint until they expire: at 600,000 of them a checkpoint is 52 MB,
#: rewritten every 100 commits. ``lake vacuum`` lists the files itself (full mode), so a tombstone
#: that expired before a vacuum ran still has its file deleted.
TABLE_PROPERTIES = {
    "delta.checkpointInterval": "100",
    "delta.logRetentionDuration": "interval 1 days",
    "delta.deletedFileRetentionDuration": "interval 1 days",
}


#: How every data file is written (appends and compactions alike). delta-rs writes Snappy by
#: default; zstd level 1 costs no more CPU at commit (measured with 1.6.6 on 300k generated
#: events, 27 commits: ~2.5-2.8 s either way) and makes the files ~2.7x smaller (66.9 MB
#: against 179.9 MB), most of it the ``raw`` column. Smaller files are less to read back for
#: every query, and less to store and move on object storage.
WRITER_PROPERTIES = WriterProperties(compression="ZSTD", compression_level=1)


class PartlyCommittedError(TetrapipeError):
    """A commit of several positions finds some of them already in the table (another writer got there first)."""

    def __init__(self, table: str, held: list[Position], missing: list[Position]) -> None:
        self.held, self.missing = held, missing
        super().__init__(
            f"the {table} table already holds {', '.join(p.app_id for p in held)} but not "
            f"{', '.join(p.app_id for p in missing)} of this commit: another writer committed part of it"
        )


def is_uri(root: str) -> bool:
    """Whether ``root`` names an object store (or another delta-rs URI) rather than a local directory."""
    return root.lower().startswith(_URI_SCHEMES)


class Lake:
    """A lake: ``events``, ``rejects``, ``alerts`` and ``tls_stats`` Delta tables under one root.

    ``root`` is a directory or an object-store URI; ``storage_options`` go to
    delta-rs as they are (credentials otherwise come from its own environment
    variables). One Lake caches the tables it opened: a long-running writer
    reloads only the log entries new since its last commit.
    """

    def __init__(self, root: str | os.PathLike[str], storage_options: dict[str, str] | None = None) -> None:
        raw = os.fspath(root)
        self.is_local = not is_uri(raw)
        self.root: str = raw if self.is_local else raw.rstrip("/")
        self.storage_options: dict[str, str] = dict(storage_options or {})
        self._tables: dict[str, DeltaTable] = {}
        self._opened_at: dict[str, int] = {}  # the version each cached table object was opened at
        self._lock = threading.Lock()
        self._commit_lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Lake({redact_url(self.root)!r})"

    @property
    def path(self) -> Path:
        """The root as a local path (the lake's own state files live under it); only for a local lake."""
        if not self.is_local:
            raise TetrapipeError(f"the lake {redact_url(self.root)} is not a local directory")
        return Path(self.root)

    def table_uri(self, name: str) -> str:
        if self.is_local:
            return os.path.abspath(os.path.join(self.root, name))
        return f"{self.root}/{name}"

    # --- reading -------------------------------------------------------------------------------------

    def table(self, name: str, version: int | str | dt.datetime | None = None) -> DeltaTable | None:
        """The Delta table ``name`` (at ``version``: a number, a datetime or an ISO time); None when absent.

        Raises :class:`TetrapipeError` for a table in the old segment layout
        and for a version the table does not have.
        """
        try:
            if version is None or isinstance(version, int):
                return DeltaTable(self.table_uri(name), version=version, storage_options=self.storage_options or None)
            table = DeltaTable(self.table_uri(name), storage_options=self.storage_options or None)
        except TableNotFoundError:
            self.refuse_old_layout(name)
            return None
        except OSError as exc:  # delta-rs: a version past the newest is reported as an IO error
            if version is not None:
                raise TetrapipeError(f"the {name} table has no version {version}: {exc}") from exc
            raise
        try:
            table.load_as_version(version)
        except (ValueError, OSError) as exc:
            raise TetrapipeError(f"the {name} table has no version as of {version}: {exc}") from exc
        return table

    def dataset(self, name: str, version: int | str | dt.datetime | None = None) -> ds.Dataset | None:
        """The rows of ``name`` (at ``version``) as a pyarrow dataset for DuckDB; None when there is no table."""
        from tetrapipe.lake.scan import table_dataset  # pyarrow.fs and the Delta storage handler: readers only

        table = self.table(name, version)
        return None if table is None else table_dataset(table, PARTITION_TIME.get(name), self.storage_options)

    def exists(self) -> bool:
        """Whether any table is there (a first run has nothing to restore or query)."""
        return any(self.table(name) is not None for name in SCHEMAS)

    def committed(self, name: str, app_id: str) -> int | None:
        """The newest version of ``app_id`` that table ``name`` holds now (None: nothing of that input)."""
        table = self.table(name)  # (a snapshot of its own: the cached one belongs to the committing thread)
        return None if table is None else table.transaction_version(app_id)

    def refuse_old_layout(self, name: str) -> None:
        """Raise when ``<root>/<name>`` holds the segments of tetrapipe's old layout (no ``_delta_log``)."""
        if not self.is_local:
            return
        d = Path(self.root) / name
        if (d / "_delta_log").is_dir():
            return
        if any(d.glob("date=*/*.parquet")):
            raise TetrapipeError(
                f"{d} holds the old segment layout: run `tetrapipe lake migrate --lake {self.root}` "
                f"to turn it into a Delta table"
            )

    # --- writing -------------------------------------------------------------------------------------

    def commit(
        self,
        name: str,
        rows: pa.Table,
        position: Position | Sequence[Position] | None = None,
        *,
        also: Sequence[Position] = (),
        offset_column: str | None = None,
    ) -> bool:
        """Append ``rows`` to table ``name`` in one atomic commit that carries ``position``; False if skipped.

        Skipped (nothing written) when the table already holds ``position``
        (its version of that app id is at least ``position.version``): a
        commit repeated after a crash, or made by a concurrent writer first.
        ``also``: companion positions recorded in the same commit that never
        cause a skip (see :mod:`tetrapipe.lake.positions`). A commit that
        meets a concurrent commit of the same app id reloads the table,
        checks again and retries (:data:`COMMIT_ATTEMPTS` times). With no
        rows and no position there is nothing to commit.

        Several positions (a stream processor's batch spanning partitions, one
        app transaction each): skipped when the table holds all of them;
        holding some but not all raises :class:`PartlyCommittedError`, as the
        rows cannot be told apart here (the caller re-forms its batch).

        ``offset_column`` (one position): the rows' place in the input
        (``source_offset``, a line number). When the table holds an older
        version of the position's app id, rows at or before it are dropped: a
        writer whose chunk overlaps what another committed adds only what is new.

        Commits through one Lake object are serialized: each table's snapshot
        is cached and brought up to date before the next commit.
        """
        positions = [position] if isinstance(position, Position) else list(position or ())
        if rows.num_rows == 0 and not positions and not also:
            return False
        data = with_date(name, rows)
        txns = [Transaction(p.app_id, p.version) for p in [*positions, *also]]
        props = CommitProperties(app_transactions=txns) if txns else None
        with self._commit_lock:
            return self._commit(name, data, positions, props, offset_column)

    def _commit(
        self,
        name: str,
        data: pa.Table,
        positions: list[Position],
        props: CommitProperties | None,
        offset_column: str | None,
    ) -> bool:
        for attempt in range(COMMIT_ATTEMPTS):
            table = self._current(name) or self._create(name, data.schema)
            if positions:
                held = [p for p in positions if (table.transaction_version(p.app_id) or -1) >= p.version]
                if len(held) == len(positions):
                    return False
                if held:
                    raise PartlyCommittedError(name, held, [p for p in positions if p not in held])
            rows = data
            older = table.transaction_version(positions[0].app_id) if len(positions) == 1 else None
            if older is not None and offset_column is not None and rows.num_rows:
                import pyarrow.compute as pc

                rows = rows.filter(pc.fill_null(pc.greater(rows.column(offset_column), older), True))
            # merged only when the rows bring columns the table lacks (a newer tetrapipe's): a merging
            # write costs delta-rs ~12% more CPU (measured on 300k events), though the schemas agree
            merge = Schema.from_arrow(rows.schema) != table.schema()
            try:
                # the check above and the commit read one snapshot: a concurrent commit of the same app id
                # after it fails this one (CommitFailedError) instead of being appended to
                with private_files(self.is_local):
                    write_deltalake(
                        table,
                        rows,
                        mode="append",
                        partition_by=[DATE_COLUMN],
                        schema_mode="merge" if merge else None,
                        storage_options=self.storage_options or None,
                        commit_properties=props,
                        writer_properties=WRITER_PROPERTIES,
                    )
            except CommitFailedError as exc:
                log.debug("commit to %s met a concurrent one (attempt %d): %s", name, attempt + 1, exc)
                self._forget(name)
                time.sleep(0.01 * (attempt + 1))
                continue
            if self.is_local:
                self._chmod_commit(name, table.version())
            return True
        raise TetrapipeError(
            f"cannot commit to the {name} table of {redact_url(self.root)}: {COMMIT_ATTEMPTS} attempts met "
            f"a concurrent commit of {', '.join(p.app_id for p in positions) or 'the same input'}"
        )

    def _create(self, name: str, schema: pa.Schema) -> DeltaTable:
        """Create the empty table ``name`` (a first commit of its own, so that every append is checked against
        a snapshot: two first writers would otherwise both append without seeing each other's position)."""
        with private_files(self.is_local):
            if self.is_local:
                private_dirs(self.root)
            try:
                DeltaTable.create(
                    self.table_uri(name),
                    schema,
                    mode="ignore",
                    partition_by=[DATE_COLUMN],
                    configuration=TABLE_PROPERTIES,
                    storage_options=self.storage_options or None,
                )
            except (CommitFailedError, OSError) as exc:  # created by a concurrent first writer meanwhile
                log.debug("table %s created concurrently: %s", name, exc)
        if self.is_local:
            self._chmod_commit(name, None)
        self._forget(name)
        table = self._current(name)
        if table is None:
            raise TetrapipeError(f"cannot create the {name} table at {redact_url(self.table_uri(name))}")
        return table

    def _current(self, name: str) -> DeltaTable | None:
        """The cached table, brought up to the newest version (opened on first use).

        Opened again from the newest checkpoint every :data:`REOPEN_EVERY`
        versions: a table object kept up to date incrementally carries every
        commit since it was opened, and each commit through it got slower with
        their number (26 ms at 10 commits, 339 ms at 1,500 in one object, while
        a fresh open at 1,500 commits took 29 ms and committed in ~45 ms).
        """
        with self._lock:
            table = self._tables.get(name)
            opened = self._opened_at.get(name, 0)
        if table is not None:
            table.update_incremental()
            if table.version() - opened >= REOPEN_EVERY:
                table = None
        if table is None:
            table = self.table(name)
            if table is None:
                return None
            opened = table.version()
        with self._lock:
            self._tables[name] = table
            self._opened_at[name] = opened
        return table

    def _forget(self, name: str) -> None:
        with self._lock:
            self._tables.pop(name, None)

    def _chmod_commit(self, name: str, version: int | None) -> None:
        """Owner-only modes on what commit ``version`` added (a default ACL can widen what the umask narrowed).

        Only that commit's files are looked at (its log entry, the data files it
        adds, a checkpoint written with it), so the cost stays the same at the
        ten-thousandth commit as at the first. ``None``: the newest entry.
        """
        base = Path(self.table_uri(name))
        log_dir = base / "_delta_log"
        if version is None:
            entries = [n for n in os.listdir(log_dir) if n.endswith(".json") and n[:-5].isdigit()]
            if not entries:
                return
            version = int(max(entries)[:-5])
        entry = log_dir / f"{version:020d}.json"
        paths = [entry, log_dir, log_dir / f"{version:020d}.checkpoint.parquet", log_dir / "_last_checkpoint"]
        try:
            # split on "\n" only: a value in the entry's statistics may hold U+2028 or U+0085 (splitlines cuts there)
            for line in entry.read_text(encoding="utf-8").split("\n"):
                add = json.loads(line).get("add") if line.strip() else None
                if add and "path" in add and "://" not in add["path"]:
                    paths += [base / unquote(add["path"]), (base / unquote(add["path"])).parent]
        except (OSError, ValueError) as exc:
            log.debug("cannot read %s: %s", entry, exc)
        paths.append(base)
        for p in dict.fromkeys(paths):
            with contextlib.suppress(OSError):  # someone else's file, or gone: its mode is not ours to set
                mode = p.stat().st_mode & 0o777
                want = PRIVATE_DIR_MODE if p.is_dir() else PRIVATE_FILE_MODE
                if mode & ~want:
                    os.chmod(p, want)


def with_date(name: str, rows: pa.Table) -> pa.Table:
    """``rows`` in the table's schema plus the ``date`` partition column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = SCHEMAS[name]
    if rows.num_columns == 0:
        rows = schema.empty_table()
    elif rows.schema != schema:
        rows = rows.cast(schema)
    times = pc.cast(rows.column(PARTITION_TIME[name]), pa.timestamp("us"))
    if not rows.num_rows:
        return rows.append_column(DATE_COLUMN, pa.array([], pa.string()))
    # each distinct day formatted once, then looked up: a chunk spans a day or two, and
    # formatting every row cost ~8 ms a chunk of 11k (~7% of the events commit)
    micros = times.combine_chunks().cast(pa.int64())
    day_numbers = pc.divide(pc.subtract(micros, pc.if_else(pc.less(micros, 0), _DAY_US - 1, 0)), _DAY_US)
    distinct = pc.unique(day_numbers)
    names = pc.strftime(pc.multiply(distinct, _DAY_US).cast(pa.timestamp("us")), format="%Y-%m-%d")
    days = pc.take(names, pc.index_in(day_numbers, value_set=distinct))
    return rows.append_column(DATE_COLUMN, days)


#: microseconds in a day: a time's day number is its floor division by this
_DAY_US = 86_400_000_000


_umask_lock = threading.Lock()
_umask_depth = 0
_umask_saved = 0


@contextlib.contextmanager
def private_files(local: bool) -> Iterator[None]:
    """umask 077 while delta-rs creates files (it takes no modes): a commit's files are never readable by others.

    The umask is the process's: nested or concurrent writes share one
    narrowing, restored when the last one ends.
    """
    global _umask_depth, _umask_saved  # (the process umask is global state itself)
    if not local:
        yield
        return
    with _umask_lock:
        if _umask_depth == 0:
            _umask_saved = os.umask(0o077)
        _umask_depth += 1
    try:
        yield
    finally:
        with _umask_lock:
            _umask_depth -= 1
            if _umask_depth == 0:
                os.umask(_umask_saved)


__all__ = [
    "COMMIT_ORDER",
    "DATE_COLUMN",
    "DEFAULT_LAKE",
    "LAKE_ENV",
    "Lake",
    "PartlyCommittedError",
    "is_uri",
    "private_files",
    "with_date",
]
