"""The lake's read side: a DuckDB connection whose views are the history that hunters, rules and trees query.

``events``, ``rejects``, ``alerts`` and ``tls_stats`` are views over one
snapshot of their Delta table each: the table's file list at one version.
A table on a local disk is read by DuckDB's own Parquet reader over that
list (:mod:`.native`: columns by name from the Delta schema, ``date`` from
the checked directories, so a filter on ``date`` skips other dates' files
unopened and one on ``time`` prunes row groups from each file's footer).
Any other table (an object store, Delta features that reader does not
follow) is a pyarrow dataset whose fragments carry each file's ``date`` and
time range (:mod:`.scan`), which DuckDB pushes a query's filters into.
``processes`` folds each process's exec and exit into one row, and the
tree macros of :mod:`tetrapipe.tree.sql` walk it.

A snapshot is fixed when the connection opens: a writer committing meanwhile
adds files a later connection sees, never rows this one reads twice. With
:class:`~tetrapipe.lake.asof.AsOf` the snapshot is an older version (time
travel). A data file that cannot be read (truncated, lost, not Parquet)
costs only its own rows: :meth:`LakeViews.run` catches the read error,
which names the file (DuckDB's reader or Arrow's), leaves that file out of
its table's view, says so on the ``tetrapipe.lake`` logger and runs the work
again; no footer is read ahead of a query.

Callers use :func:`connect` (a bare connection) or :class:`LakeViews` (with
the bad-file retry); the saved hunts run over these views live in
:mod:`tetrapipe.lake.hunts`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING, TypeVar

import duckdb

from tetrapipe.lake.asof import AsOf, at_time, at_version, commit_time
from tetrapipe.lake.native import NativeScan, native_scan, read_local_log
from tetrapipe.lake.store import Lake
from tetrapipe.redact import redact_url
from tetrapipe.schema import PARTITION_TIME, TABLES
from tetrapipe.sqltext import sql_ident

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.dataset as pads

log = logging.getLogger("tetrapipe.lake")

T = TypeVar("T")

#: the views a query reads, besides the table macros (known without opening the lake)
VIEW_NAMES = (*TABLES, "processes")
#: the table macros of :mod:`tetrapipe.tree.sql`, and the views that are not a table of their own
TREE_MACROS = ("process_tree", "process_lineage")
_READS = {"processes": ("events",), "process_tree": ("events",), "process_lineage": ("events",)}
_NAMED = re.compile(r"\b(" + "|".join((*VIEW_NAMES, *TREE_MACROS)) + r")\b", re.IGNORECASE)
#: most unreadable files one piece of work steps over before it gives up (each costs one more run)
MAX_SKIPPED_FILES = 32
#: the name a table's dataset is registered under (hidden from the list of views by its underscore)
_STREAM = "_lake_{}"
#: DuckDB's words for an Arrow stream that failed, and Arrow's for the file it could not read
_FAILED_STREAM = re.compile(r"registered as '_lake_(?P<table>[a-z_]+)' failed")
_FAILED_FILE = re.compile(r"(?:input source|location) '?(?P<path>[^':\n]+\.parquet)'?")
#: a path DuckDB's own reader names in its message ('No magic bytes found at end of file '/x.parquet'',
#: 'Failed to read file "/x.parquet": ...', 'Cannot open file "/x.parquet": No such file or directory')
_QUOTED_FILE = re.compile(r"""['"](?P<path>/[^'"\n]+?\.parquet)['"]""")
#: what DuckDB raises for a data file it cannot read (missing, truncated, not Parquet)
_FILE_ERRORS = (duckdb.IOException, duckdb.InvalidInputException)
#: the variable holding a table's column map for ``read_parquet`` (:meth:`NativeScan.schema_literal`)
_SCHEMA_VARIABLE = "_lake_{}_columns"
#: how :class:`LakeViews` reads a table: DuckDB's own Parquet reader where it can (a local table), or pyarrow
READERS = ("auto", "arrow")

#: files found unreadable in this process, by table URI: a later connection leaves them out from the start
_bad_files: dict[str, set[str]] = {}
_bad_lock = threading.Lock()

#: the events' columns a process row is made of
PROCESS_COLUMNS = """node_name, exec_id, parent_exec_id, pid, uid, auid, process_binary, process_name, arguments, cwd, flags,
           process_start_time, in_init_tree, cap_effective, namespace, pod, pod_labels, workload,
           workload_kind, container_id, container_name, image, container_start_time, container_pid,
           parent_binary, parent_arguments, ancestor_binaries"""
#: ... and those the fold reads besides (a narrower copy of the events needs all of these)
PROCESS_EVENT_COLUMNS = PROCESS_COLUMNS + ", kind, time, exit_status, exit_signal"
_EVENT_COLUMNS = tuple(c.strip() for c in PROCESS_COLUMNS.split(","))

#: the processes view's columns in order: name, SQL over ``f`` (a process's first event), ``x`` (its exit)
#: and ``c`` (its count of hook events), and the event columns it reads (None: the one of its name)
_START = "coalesce(f.process_start_time, f.time)"
_PROCESS_OUTPUT: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    ("exec_id", "f.exec_id", None),
    ("node_name", "f.node_name", None),
    *((c, f"f.{c}", None) for c in _EVENT_COLUMNS[2:11]),  # parent_exec_id ... flags
    ("start_time", f"{_START} AS start_time", ("process_start_time",)),
    ("exit_time", "x.exit_time", ()),
    ("exit_status", "x.exit_status", ()),
    ("exit_signal", "x.exit_signal", ()),
    ("duration", f"x.exit_time - {_START} AS duration", ("process_start_time",)),
    *((c, f"f.{c}", None) for c in _EVENT_COLUMNS[14:24]),  # namespace ... container_pid
    (
        "since_container_start",
        "f.process_start_time - f.container_start_time AS since_container_start",
        ("process_start_time", "container_start_time"),
    ),
    *((c, f"f.{c}", None) for c in ("in_init_tree", "cap_effective", *_EVENT_COLUMNS[24:])),
    ("seen_exec", "f.seen_exec", ()),
    ("hook_events", "c.hook_events", ()),
)

#: one row per process, from the rows of ``{events}`` (a view or a CTE with the event columns it reads)
PROCESSES_SQL = """
WITH firsts AS (
    SELECT {firsts}, kind = 'process_exec' AS seen_exec, time
    FROM {events}
    WHERE exec_id IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY node_name, exec_id
                               ORDER BY kind = 'process_exec' DESC, time) = 1
),
exits AS (
    SELECT node_name, exec_id, min(time) AS exit_time, max(exit_status) AS exit_status,
           max(exit_signal) AS exit_signal
    FROM {events} WHERE kind = 'process_exit' GROUP BY ALL
),
counts AS (
    SELECT node_name, exec_id, count(*) FILTER (WHERE kind NOT IN ('process_exec', 'process_exit')) AS hook_events
    FROM {events} WHERE exec_id IS NOT NULL GROUP BY ALL
)
SELECT {outputs}
FROM firsts f
LEFT JOIN exits x USING (node_name, exec_id)
LEFT JOIN counts c USING (node_name, exec_id)
"""


def process_event_columns(columns: Collection[str] | None = None) -> str:
    """The event columns a fold of the processes' ``columns`` (None: all of them) reads, as a SELECT list."""
    if columns is None:
        return PROCESS_EVENT_COLUMNS
    reads = {"node_name", "exec_id"}
    for name, _, needs in _PROCESS_OUTPUT:
        if name in columns:
            reads.update((name,) if needs is None else needs)
    return ", ".join([*(c for c in _EVENT_COLUMNS if c in reads), "kind", "time", "exit_status", "exit_signal"])


def processes_sql(events: str = "events", columns: Collection[str] | None = None) -> str:
    """The ``processes`` fold over ``events``: the view's, or a tree's over only the events it needs.

    The fold is a window over every row it is given, so a caller that needs
    a few processes (one pod's tree) hands it only their events rather than
    filtering the view, which would window over the whole history first.
    ``columns``: only these of the view's columns, in its order (None: all),
    so that ``events`` need only the columns :func:`process_event_columns`
    names: each column read costs its pages of every file scanned.
    """
    outputs = [sql for name, sql, _ in _PROCESS_OUTPUT if columns is None or name in columns]
    firsts = process_event_columns(columns).removesuffix(", kind, time, exit_status, exit_signal")
    return PROCESSES_SQL.format(events=events, firsts=firsts, outputs=", ".join(outputs))


PROCESSES_VIEW = "CREATE OR REPLACE VIEW processes AS" + processes_sql()

VIEW_DOCS = {
    "processes": "one row per process (exec_id): its exec joined with its exit, with time since container start",
    "process_tree(...)": "table macro: a pod's / container's / process's tree (depth, path from the root), "
    "e.g. process_tree(pod_name := 'crawler-7d9f8b6c5-x2x4z')",
    "process_lineage(exec_id)": "table macro: a process and its ancestors in the history, level 0 = itself",
}


def names_read(sql: str) -> tuple[set[str], bool]:
    """The tables a piece of SQL names (a view or macro counts as the tables it reads), and whether it names a tree macro.

    ``processes`` is in the set too when the SQL names it (or a macro), for
    :class:`LakeViews`'s ``processes`` argument. A word match, not a parse: a name in a string or a comment counts too,
    which only opens a table for nothing. What it cannot see (a name built at
    run time, ``query_table('ev' || 'ents')``) fails as a missing table,
    which :func:`tetrapipe.lake.query.execute` answers by opening everything.
    """
    tables: set[str] = set()
    macros = False
    for word in {m.lower() for m in _NAMED.findall(sql)}:
        tables.update(_READS.get(word, (word,)))
        macros = macros or word in TREE_MACROS
        if word in _READS:
            tables.add("processes")
    return tables, macros


class LakeViews:
    """One DuckDB connection over one snapshot of the lake's tables (the newest, or ``as_of``).

    ``versions`` says which version of each table the views read (None: no
    table, an empty view with the table's columns). Use :meth:`run` for work
    that should step over an unreadable data file; ``con`` is the bare
    connection.

    ``tables``: only these tables get a view (None: all of them). Each table
    opened costs its Delta log read and file listing (tens of milliseconds,
    more on an object store), which a one-line query should not pay for
    tables it never reads. ``tree_macros``: define ``process_tree`` and
    ``process_lineage``. ``processes``: define the ``processes`` view
    (binding it costs tens of milliseconds, which a query of ``events``
    alone need not pay). ``reader``: ``auto`` reads a local table with
    DuckDB's own Parquet reader (:mod:`.native`) and the rest through pyarrow
    (:mod:`.scan`); ``arrow`` reads every table through pyarrow (the answers
    are the same: tests hold the two side by side).
    """

    def __init__(
        self,
        lake: Lake | str,
        as_of: AsOf | None = None,
        database: str = ":memory:",
        *,
        tables: Collection[str] | None = None,
        tree_macros: bool = True,
        reader: str = "auto",
        processes: bool = True,
    ) -> None:
        if reader not in READERS:
            raise ValueError(f"unknown reader {reader!r} (readers: {', '.join(READERS)})")
        self.lake = lake if isinstance(lake, Lake) else Lake(lake)
        self.as_of = as_of
        self.tables = [t for t in TABLES if tables is None or t in tables]
        self.reader = reader
        self.versions: dict[str, int | None] = {}
        self.skipped: list[str] = []
        self._datasets: dict[str, pads.FileSystemDataset] = {}
        self._native: dict[str, NativeScan] = {}
        #: a native table's files by the path DuckDB names them with: (table, path relative to the table)
        self._native_files: dict[str, tuple[str, str]] = {}
        self._uris: dict[str, str] = {}
        self.con = duckdb.connect(database)
        try:
            self.con.execute("SET TimeZone = 'UTC'")
            self._open_tables()
            if "events" in self.tables and (processes or tree_macros):
                self.con.execute(PROCESSES_VIEW)
            if tree_macros:
                from tetrapipe.tree.sql import install as install_tree_macros

                install_tree_macros(self.con)
        except BaseException:
            self.con.close()
            raise

    def __enter__(self) -> LakeViews:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def _open_tables(self) -> None:
        """Register every table's snapshot and create its view; an ``as_of`` version moves the others' time."""
        as_of = self.as_of
        when = as_of.time if as_of is not None else None
        order = list(self.tables)
        if as_of is not None and as_of.version is not None:
            if as_of.table in order:
                order.remove(as_of.table)
            table = self.lake.table(as_of.table)
            if table is None:
                raise _no_table(as_of.table)
            at_version(table, as_of.table, as_of.version)
            when = commit_time(table, as_of.version)
            self._register(as_of.table, table)
        for name in order:
            if when is None and self.reader == "auto" and self.lake.is_local:
                # the newest snapshot of a local table: its log read here, not by delta-rs (see read_local_log)
                snapshot = read_local_log(self.lake.table_uri(name), self.con)
                if snapshot is not None:
                    self._register_native(name, snapshot.version, snapshot.table_uri, snapshot.scan)
                    continue
            table = self.lake.table(name)
            if table is not None and when is not None:
                table = at_time(table, name, when)
            self._register(name, table)

    def _known_bad(self, name: str, version: int, uri: str) -> set[str]:
        """Record the table's version and URI; the files of it found unreadable earlier in this process."""
        self.versions[name] = version
        self._uris[name] = uri
        with _bad_lock:
            return set(_bad_files.get(uri, ()))

    def _register_native(self, name: str, version: int, uri: str, scan: NativeScan) -> None:
        """A table read by DuckDB's own Parquet reader over ``scan``'s files."""
        known = self._known_bad(name, version, uri)
        self._native[name] = scan
        self._native_files.update({scan.path(f): (name, f) for f in scan.files})
        self.con.execute(f"SET VARIABLE {_SCHEMA_VARIABLE.format(name)} = {scan.schema_literal()}")
        self._attach(name, known)
        for path in sorted(known & set(scan.files)):
            self._skipped_file(name, path, "found unreadable earlier")

    def _register(self, name: str, table: object) -> None:
        if table is None:
            self.versions[name] = None
            self._empty(name)
            return
        scan = native_scan(table) if self.reader == "auto" and self.lake.is_local else None
        if scan is not None:
            self._register_native(name, table.version(), table.table_uri, scan)
            return
        known = self._known_bad(name, table.version(), table.table_uri)
        from tetrapipe.lake.scan import table_dataset  # pyarrow: only a table the native reader leaves

        self._datasets[name] = table_dataset(table, PARTITION_TIME[name], self.lake.storage_options)
        present = {f.path for f in self._datasets[name].get_fragments()} if known else set()
        self._attach(name, known)
        for path in sorted(known & present):
            self._skipped_file(name, path, "found unreadable earlier")

    def _empty(self, name: str) -> None:
        """A view with the table's columns and no rows, for a table the lake does not have (yet, or as of then)."""
        cols = ", ".join(f"NULL::{c.duckdb_type} AS {sql_ident(c.name)}" for c in TABLES[name])
        self.con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT {cols}, NULL::VARCHAR AS date WHERE false")

    def _attach(self, name: str, leave_out: set[str]) -> None:
        """(Re)create ``name``'s view over its snapshot without the files in ``leave_out``."""
        if name in self._native:
            scan = self._native[name]
            cols = "* EXCLUDE (date), date" if "date" in dict(scan.columns) else "*, NULL::VARCHAR AS date"
            while True:  # DuckDB looks for every file as it binds the view: one gone is left out here
                select = scan.select(_SCHEMA_VARIABLE.format(name), leave_out)
                try:
                    self.con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT {cols} FROM ({select})")
                    return
                except _FILE_ERRORS as exc:
                    found = self._note_bad_file(exc)
                    if found is None or found[0] != name:
                        raise
                    leave_out = found[1]
        import pyarrow.dataset as pads

        full = self._datasets[name]
        data = full
        if leave_out:
            kept = [f for f in full.get_fragments() if f.path not in leave_out]
            data = pads.FileSystemDataset(kept, full.schema, full.format, full.filesystem)
        self.con.register(_STREAM.format(name), data)
        # ``date`` last, as it always was (a column merged into the schema later comes after it in the table)
        cols = "* EXCLUDE (date), date" if "date" in full.schema.names else "*, NULL::VARCHAR AS date"
        self.con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT {cols} FROM {_STREAM.format(name)}")

    def run(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """``work(con)``; a data file it cannot read is left out of its table and ``work`` runs again.

        Only an error that names the failing stream and its file is stepped
        over (at most :data:`MAX_SKIPPED_FILES` files); anything else is
        raised as it is. ``work`` must not have emitted anything it cannot
        take back: it runs whole again.
        """
        for _ in range(MAX_SKIPPED_FILES + 1):
            try:
                return work(self.con)
            except duckdb.Error as exc:
                if not self.skip_bad_file(exc):
                    raise
        raise RuntimeError("unreachable")  # pragma: no cover - the last failed run re-raises above

    def skip_bad_file(self, exc: BaseException) -> bool:
        """Leave out the data file ``exc`` names; False when it names none (or the limit is reached)."""
        found = self._note_bad_file(exc)
        if found is None:
            return False
        self._attach(*found)
        return True

    def _note_bad_file(self, exc: BaseException) -> tuple[str, set[str]] | None:
        """Record (and log) the data file ``exc`` names as unreadable: its table and the files to leave out."""
        text = str(exc)
        if len(self.skipped) >= MAX_SKIPPED_FILES:
            return None
        found = self._named_file(text, isinstance(exc, _FILE_ERRORS))
        if found is None:
            return None
        name, path, said = found
        if path in self.skipped:
            return None  # already left out, yet named again: not something leaving it out mends
        with _bad_lock:
            bad = _bad_files.setdefault(self._uris[name], set())
            bad.add(path)
            leave_out = set(bad)
        self._skipped_file(name, path, _reason(text, said))
        return name, leave_out

    def _named_file(self, text: str, reading: bool) -> tuple[str, str, str] | None:
        """The table and data file an error message names (and the path as it says it), if one of ours.

        ``reading``: the error is one DuckDB raises for a file it cannot read
        (not, say, a cast the query asked for that failed on a file's values).
        """
        for m in _QUOTED_FILE.finditer(text) if reading else ():  # DuckDB's reader: a native table's file, in full
            if m["path"] in self._native_files:
                return (*self._native_files[m["path"]], m["path"])
        stream = _FAILED_STREAM.search(text)  # the Arrow path: the stream's table, and the file Arrow names
        found = _FAILED_FILE.search(text)
        if stream is None or found is None or stream["table"] not in self._datasets:
            return None
        name = stream["table"]
        return name, _relative(found["path"], self._uris[name]), found["path"]

    def _skipped_file(self, name: str, path: str, reason: str) -> None:
        self.skipped.append(path)
        where = redact_url(self._uris[name].removeprefix("file://").rstrip("/"))
        log.warning("skipping unreadable data file %s/%s (%s): answers leave its rows out", where, path, reason)


def _reason(text: str, path: str) -> str:
    """What an error says of a file, without the path: what follows it (Arrow), else what precedes it (DuckDB)."""
    before, _, after = text.partition(path)
    after = after.strip(" '\":").splitlines()
    if after and after[0].strip():
        return after[0][:200]
    before = before.rstrip(" '\"").splitlines()[-1] if before.strip() else "unreadable"
    return re.sub(r"^[A-Za-z ]*Error: ", "", before)[:200]


def _relative(path: str, table_uri: str) -> str:
    """A file path as the dataset's fragments name it (relative to the table); Arrow may say it in full."""
    root = table_uri.removeprefix("file://").rstrip("/") + "/"
    for prefix in (root, table_uri.rstrip("/") + "/"):
        if path.startswith(prefix):
            return path[len(prefix) :]
    return path


def _no_table(name: str) -> Exception:
    from tetrapipe.errors import TetrapipeError

    return TetrapipeError(f"the lake has no {name} table yet: it has no versions to go back to")


def connect(lake: Lake | str, database: str = ":memory:", as_of: AsOf | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the lake's views (a bare one: see :class:`LakeViews` for bad-file retry)."""
    return LakeViews(lake, as_of, database).con


def run(lake: Lake | str, work: Callable[[duckdb.DuckDBPyConnection], T], as_of: AsOf | None = None) -> T:
    """``work(con)`` over the lake's views, stepping over unreadable data files (:meth:`LakeViews.run`)."""
    with LakeViews(lake, as_of) as views:
        return views.run(work)


def read_rows(
    lake: Lake | str, table: str, since: str | None = None, until: str | None = None, batch_size: int = 1000
) -> Iterator[pa.Table]:
    """The rows of ``table`` with ``since <= time < until`` (UTC; None: open), oldest first, in batches.

    Every column of the table's schema, nothing the views add (``date``), so
    a batch looks like what the flows wrote. An unreadable data file is
    stepped over while no batch has been handed out yet (the sort reads every
    file before the first batch, so in practice always).
    """
    import pyarrow as pa

    cols = ", ".join(sql_ident(c.name) for c in TABLES[table])
    sql = (
        f"SELECT {cols} FROM {table} WHERE ($since IS NULL OR time >= $since::TIMESTAMP) "
        "AND ($until IS NULL OR time < $until::TIMESTAMP) ORDER BY time"
    )
    views = LakeViews(lake)
    try:
        reader = views.run(
            lambda con: _first(con.sql(sql, params={"since": since, "until": until}).to_arrow_reader(batch_size))
        )
        for batch in reader:
            yield pa.Table.from_batches([batch])
    finally:
        views.close()


def _first(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    """The reader's batches, its first one read now (so that a read error surfaces inside :meth:`LakeViews.run`)."""
    try:
        first = reader.read_next_batch()
    except StopIteration:
        return iter(())

    def rest() -> Iterator[pa.RecordBatch]:
        yield first
        yield from reader

    return rest()
