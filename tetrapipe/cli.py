"""The ``tetrapipe`` command line.

Conventions shared by every command (docs/ARCHITECTURE.md): ``--lake DIR`` /
``TETRAPIPE_LAKE``; ``--format table|json|csv``; every option also reads
``TETRAPIPE_<OPTION>``. Errors name the file, line or SQL position at fault
and exit non-zero; they never print a traceback for a user mistake.
"""

from __future__ import annotations

import datetime as dt
import importlib
import sys
from collections.abc import Iterator, MutableMapping
from functools import cache
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

from tetrapipe import __version__
from tetrapipe.commands.options import (
    chunk_bytes_option,
    lake_option,
    open_lake,
    pipeline_transforms,
    rules_option,
    tls_window_option,
)

if TYPE_CHECKING:
    from rich.console import Console

    from tetrapipe.lake import Lake
    from tetrapipe.lake.asof import AsOf


@cache
def _console(stderr: bool) -> Console:
    """Standard output's or standard error's console, made on first use: rich is ~20 ms of a start that a
    query written as CSV or JSON (by DuckDB) never needs."""
    from rich.console import Console

    return Console(stderr=True, highlight=False) if stderr else Console(highlight=False, soft_wrap=False)


#: the commands defined in other modules, by name, and the module that defines each (its ``COMMANDS``).
#: A module is imported when one of its commands is asked for, so ``tetrapipe query`` never imports
#: Kafka, gRPC or polars (tests/test_startup.py holds this list to the modules' own).
LAZY_COMMANDS = {
    "rules": "tetrapipe.commands.rules",
    "tree": "tetrapipe.commands.tree",
    "collect": "tetrapipe.commands.collect",
    "process": "tetrapipe.commands.process",
    "status": "tetrapipe.commands.process",
    "tls": "tetrapipe.commands.tls",
    "lake": "tetrapipe.commands.lake",
    "compact": "tetrapipe.commands.lake",
    "run": "tetrapipe.commands.run",
    "forward": "tetrapipe.commands.forward",
    "config": "tetrapipe.commands.config",
}


class _LazyCommands(MutableMapping[str, click.Command]):
    """A group's ``commands`` that imports a command's module on first use (click reads the group through it).

    Listing the names (``--help``) loads every module, as a help page needs
    their descriptions; running one command loads only its own. A module
    missing from this build (a capability left out) makes its commands
    disappear, as they did when every module was imported up front.
    """

    def __init__(self, lazy: dict[str, str]) -> None:
        self._loaded: dict[str, click.Command] = {}
        self._lazy = dict(lazy)

    def _load(self, name: str) -> None:
        module = self._lazy.get(name)
        if module is None:
            return
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a capability not installed in this build
            if exc.name != module:
                raise
            mod = None
        for other in [n for n, m in self._lazy.items() if m == module]:
            del self._lazy[other]
        for cmd in getattr(mod, "COMMANDS", []):
            self._loaded.setdefault(cmd.name, cmd)

    def __getitem__(self, name: str) -> click.Command:
        self._load(name)
        return self._loaded[name]

    def __setitem__(self, name: str, cmd: click.Command) -> None:
        self._lazy.pop(name, None)
        self._loaded[name] = cmd

    def __delitem__(self, name: str) -> None:
        self._lazy.pop(name, None)
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        for name in list(self._lazy):
            self._load(name)
        return iter(list(self._loaded))

    def __len__(self) -> int:
        return len(list(iter(self)))

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self._load(name)
        return name in self._loaded


class _Face(click.Group):
    """The one place a domain error (:mod:`tetrapipe.errors`) becomes a message and an exit code."""

    def invoke(self, ctx: click.Context) -> object:
        import logging

        from tetrapipe.errors import TetrapipeError, UsageProblem
        from tetrapipe.redact import RedactingFilter
        from tetrapipe.textsafe import visible

        # a one-shot command sets up no logging: its warnings go out through logging's last-resort handler,
        # and quote data (a rule that failed on an event names the event's value) as much as any message
        if not any(isinstance(f, RedactingFilter) for f in logging.lastResort.filters):
            logging.lastResort.addFilter(RedactingFilter())
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:  # a command's own error may quote data too (a value a rule failed on)
            exc.message = visible(exc.message, newlines=True)
            raise
        except UsageProblem as exc:
            raise click.UsageError(visible(str(exc), newlines=True)) from exc
        except TetrapipeError as exc:  # its text may quote data (a pod name, a file name): shown, not obeyed
            raise click.ClickException(visible(str(exc), newlines=True)) from exc
        except BrokenPipeError as exc:  # stdout closed by its reader (`| head`): nothing more is wanted
            _silence_stdout()
            raise click.exceptions.Exit(0) from exc
        except OSError as exc:
            message = _store_error(exc)
            if message is None:
                raise
            raise click.ClickException(visible(message, newlines=True)) from exc
        except SystemExit as exc:
            if not _rich_broken_pipe(exc):
                raise
            raise click.exceptions.Exit(0) from exc  # rich's own broken-pipe exit is 1, with no word said
        except (KeyboardInterrupt, Exception) as exc:  # Ctrl-C may surface as what a clean-up raised after it
            if not _interrupted(exc):
                raise
            command = ctx.invoked_subcommand or ""
            click.echo(f"interrupted{INTERRUPTED_NOTES.get(command, '')}", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from exc


#: exit status after Ctrl-C (SIGINT): 128 + the signal's number, as shells and other command-line tools report it
EXIT_INTERRUPTED = 130

#: what a command that writes the lake says after Ctrl-C: each input's batches are committed whole with their
#: input positions, so what was committed stays and the same command run again carries on after it
INTERRUPTED_NOTES = {
    "ingest": ": what was committed to the lake is kept; run the same command again to ingest the rest",
}


def _interrupted(exc: BaseException) -> bool:
    """Ctrl-C, seen as Python's KeyboardInterrupt or as DuckDB's "Query interrupted" (its SIGINT handler stops
    the query running when the signal comes and raises that instead), here or behind a clean-up it caused."""
    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:
        visited.add(id(seen))
        if isinstance(seen, KeyboardInterrupt):
            return True
        duckdb = sys.modules.get("duckdb")
        interrupt = getattr(duckdb, "InterruptException", None) if duckdb is not None else None
        if (interrupt is not None and isinstance(seen, interrupt)) or (
            isinstance(seen, RuntimeError) and str(seen).strip() == "Query interrupted"
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so the interpreter's last flush of what is still buffered does not
    fail again on the closed pipe (and print "Exception ignored ... BrokenPipeError")."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor behind stdout (an embedding caller): nothing to flush to
        pass


def _rich_broken_pipe(exc: SystemExit) -> bool:
    """Whether ``exc`` is rich's ``Console.on_broken_pipe`` (which has already pointed stdout at /dev/null)."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and frames[-1].name == "on_broken_pipe" and "rich" in Path(frames[-1].filename).parts


def _store_error(exc: OSError) -> str | None:
    """delta-rs's I/O error (an object store that is unreachable or refuses the credentials) as a sentence.

    Those are the user's to fix (an endpoint, a key, a role), so they get the
    store's own words, masked and without colour codes, instead of a
    traceback; an OSError raised anywhere else stays a traceback (a bug).
    """
    import re
    import traceback

    from tetrapipe.redact import redact_text

    frames = traceback.extract_tb(exc.__traceback__)
    if not frames or "deltalake" not in Path(frames[-1].filename).parts:
        return None
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).replace("\u21b3", "-")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "the lake's storage failed: " + redact_text(" ".join(lines))


@click.group(cls=_Face, context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "TETRAPIPE"})
@click.version_option(__version__, prog_name="tetrapipe")
def cli() -> None:
    """Tetragon events in, answers out: history, hunts, detections, process trees."""


cli.commands = _LazyCommands(LAZY_COMMANDS)


def _lake_write_error(exc: OSError, lake_dir: str) -> str | None:
    """A local lake's file system refusing a write, as ``cannot write the lake at DIR: reason``; else None.

    The writes run on a worker thread and its error comes back as it was
    raised (``[Errno 2] No such file or directory: '/proc/lake'``), naming
    neither the lake nor ``--lake``. Only an error raised in the lake's own
    code is meant: one from an object store keeps its own sentence
    (:func:`_store_error`), and anything else stays a traceback (a bug).
    """
    import traceback

    from tetrapipe.textsafe import visible

    if _store_error(exc) is not None:
        return None
    lake_code = Path(__file__).parent / "lake"
    frames = traceback.extract_tb(exc.__traceback__)
    if not any(Path(f.filename).parent == lake_code for f in frames):
        return None
    reason = exc.strerror or str(exc)
    if exc.filename is not None and str(exc.filename) != lake_dir:
        reason += f": {exc.filename}"
    return f"cannot write the lake at {visible(lake_dir)}: {visible(reason)}"


def _shipped_samples_hint(paths: tuple[str, ...]) -> str:
    """Where the wheel keeps the sample logs, when README's ``tetrapipe ingest samples/`` runs outside a checkout.

    Only for a missing path named ``samples``: the quick start's own argument,
    which an installed package has nowhere but inside itself.
    """
    if not any(Path(p).name == "samples" and not Path(p).exists() for p in paths):
        return ""
    import shlex

    from tetrapipe.ruleset.locate import shipped_samples

    shipped = shipped_samples()
    if shipped is None:
        return ""
    return f" (the sample logs shipped with tetrapipe are in {shipped}: tetrapipe ingest {shlex.quote(str(shipped))})"


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@lake_option()
@click.option("--force", is_flag=True, help="Ingest again even lines the lake already holds.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary, only errors.")
@rules_option()
@click.option("--max-alerts", default=30, show_default=True, help="Alerts to print after the summary.")
@tls_window_option
@chunk_bytes_option
def ingest(
    paths: tuple[str, ...],
    lake_dir: str,
    force: bool,
    quiet: bool,
    rules_dir: str | None,
    max_alerts: int,
    tls_window: dt.timedelta,
    chunk_bytes: int,
) -> None:
    """Load Tetragon export logs into the history and show what fired.

    PATHS are files (plain or gzip), directories (rotated backups read oldest
    first; files that are not logs are listed with the reason) or - for
    standard input, e.g.
    ``kubectl logs -n kube-system ds/tetragon -c export-stdout | tetrapipe ingest -``.
    """
    from tetrapipe.commands.progress import IngestProgress
    from tetrapipe.commands.report import print_alerts, print_ingest_summary
    from tetrapipe.flows.ingest import ingest as run_ingest
    from tetrapipe.sources.files import scan_inputs
    from tetrapipe.worker import in_thread

    out, err = _console(False), _console(True)
    try:
        found = scan_inputs(list(paths))
    except OSError as exc:  # a named path that is missing, unreadable or a symlink loop
        raise click.UsageError(str(exc) + _shipped_samples_hint(paths)) from exc
    inputs = found.inputs
    lake = open_lake(lake_dir)
    # the rules are loaded, checked and planned on a thread while the first events are read and normalized
    # (~0.4 s of CPU for the shipped rules, most of it holding the GIL, beside work that mostly does not);
    # the lake takes nothing before they are ready, and an error in them still stops the command
    loaded: dict[str, object] = {}

    def load_rules() -> list:
        transforms, loaded["detector"] = pipeline_transforms(rules_dir, lake, tls_window, long_running=False)
        return transforms

    transforms = in_thread(load_rules, "tetrapipe-rules-load")
    show = not quiet and err.is_terminal
    from tetrapipe.flows.batch import TransformError

    try:
        with IngestProgress(err, enabled=show) as progress:
            stats = run_ingest(
                inputs, lake, transforms=transforms, progress=progress, force=force, chunk_bytes=chunk_bytes
            )
    except TransformError as exc:  # a broken transform, not a bad line: what was committed stays, rerun resumes
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # the lake cannot be made or written (a bad read of an input is a reject, not this)
        message = _lake_write_error(exc, lake_dir)
        if message is None:
            raise
        raise click.ClickException(message) from exc
    transforms.result()  # (raises what loading raised, had no chunk waited for it)
    detector = loaded["detector"]
    if not quiet:
        print_ingest_summary(out, stats, lake, found.skipped)
        if detector is not None:
            print_alerts(out, lake, stats.alerts.values(), max_alerts)


@cli.command()
@click.argument("sql", required=False)
@click.option("-f", "--file", "sql_file", type=click.File("r"), help="Read the SQL from a file.")
@click.option("--hunt", help="Run a saved hunt by name (see --hunts).")
@click.option("--hunts", "list_hunts", is_flag=True, help="List the saved hunts.")
@click.option("--schema", "show_schema", is_flag=True, help="List tables and columns with their meaning.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv", "parquet"]), default="table", show_default=True
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    help="Write to this file (required for parquet; a table is written as plain text, as in a pipe).",
)
@click.option("--limit", type=int, default=None, help="At most this many rows (table format: 200 by default).")
@click.option(
    "--as-of",
    "as_of",
    metavar="VERSION|TIME",
    help="Read the lake as it was: an ISO time (every table as of then; UTC unless a zone is given), "
    "a version of events (12; the other tables as of its commit), or TABLE@VERSION (alerts@7).",
)
@lake_option()
def query(
    sql: str | None,
    sql_file: IO[str] | None,
    hunt: str | None,
    list_hunts: bool,
    show_schema: bool,
    fmt: str,
    output: str | None,
    limit: int | None,
    as_of: str | None,
    lake_dir: str,
) -> None:
    """Run SQL over the history (views: events, processes, alerts, rejects, tls_stats).

    \b
    tetrapipe query "SELECT process_binary, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC"
    tetrapipe query -f hunt.sql --format json
    tetrapipe query late-shells          (a saved hunt, by name)
    tetrapipe query alerts --as-of 2026-03-10T09:00
    """
    from tetrapipe.lake.query import QueryError, resolve, unknown_hunt

    if show_schema or list_hunts:
        from tetrapipe.commands.report import print_hunts, print_schema

        (print_schema if show_schema else print_hunts)(_console(False))
        return
    lake = open_lake(lake_dir)
    try:
        from tetrapipe.lake.asof import AsOf

        when = AsOf.parse(as_of) if as_of else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--as-of") from None
    try:
        if hunt is not None:
            from tetrapipe.lake.hunts import saved_hunts

            saved = saved_hunts()
            if hunt not in saved:
                raise QueryError(unknown_hunt(hunt))
            sql = saved[hunt].sql
        elif sql_file is not None:
            sql = sql_file.read()
        elif sql is not None:
            sql = resolve(lake, sql)  # a saved hunt or a view by name, else SQL
        if not sql:
            raise click.UsageError("give SQL, -f FILE, --hunt NAME, --hunts or --schema")
        if fmt == "parquet" and not output:
            raise click.UsageError("--format parquet needs --output FILE")
        # a mistyped --lake would otherwise look like a hunt that found nothing
        if not _holds_history(lake):
            from rich.markup import escape

            from tetrapipe.textsafe import visible

            shown = escape(visible(lake_dir))  # a path with [brackets] is a path, not markup
            _console(True).print(
                f"[yellow]note:[/] no history at {shown} (tetrapipe ingest FILE --lake {shown}): every view is empty",
                highlight=False,
                soft_wrap=True,  # one line in a pipe: the path is not cut where 80 columns end
            )
        _answer(lake, sql, when, fmt, output, limit)
    except QueryError as exc:
        from rich.text import Text

        from tetrapipe.commands.report import emit
        from tetrapipe.textsafe import visible

        # DuckDB's message can quote a value (a failed cast): its controls are shown; its own line ends are kept
        emit(_console(True), Text.assemble(("query failed:", "bold red"), " ", visible(str(exc), newlines=True)))
        sys.exit(2)


def _holds_history(lake: Lake) -> bool:
    """Whether ``--lake`` names a lake: a local directory with at least one of its tables, or a store that has one.

    A directory that exists but holds none (a typo for the lake's parent, an
    empty directory) answers every query with 0 rows, just as a missing one.
    """
    if not lake.is_local:
        return lake.exists()
    from tetrapipe.schema import TABLES

    return any((Path(lake.root) / name).is_dir() for name in TABLES)


def _answer(lake: Lake, sql: str, when: AsOf | None, fmt: str, output: str | None, limit: int | None) -> None:
    """Run the query and write its answer in ``fmt``: only a table for a person is drawn by rich, only parquet
    goes through Arrow (CSV and JSON are written by DuckDB from the query's connection)."""
    from tetrapipe.fsutil import open_private
    from tetrapipe.lake.query import TABLE_DEFAULT_LIMIT, execute, fetch_rows, write_output, write_query

    if fmt == "table" and output:
        import io

        from rich.console import Console

        from tetrapipe.commands.report import print_query_table

        # the table a pipe gets (plain columns, no colour or escapes), written once the query has succeeded
        shown = limit or TABLE_DEFAULT_LIMIT
        text = io.StringIO()
        plain = Console(file=text, force_terminal=False, color_system=None, highlight=False, soft_wrap=False)
        print_query_table(plain, fetch_rows(lake, sql, shown, limit, when), shown)
        with open_private(output, append=False) as f:
            f.write(text.getvalue().encode())
    elif fmt == "table":
        from tetrapipe.commands.report import print_query_table

        shown = limit or TABLE_DEFAULT_LIMIT
        print_query_table(_console(False), fetch_rows(lake, sql, shown, limit, when), shown)
    elif fmt == "parquet":
        table = execute(lake, sql, when)
        if limit is not None:
            table = table.slice(0, limit)
        write_output(table, fmt, output)
        _console(False).print(f"{table.num_rows} rows written to {output}", style="dim", highlight=False, markup=False)
    elif output:
        import io

        answer = io.BytesIO()  # the file is created once the query has succeeded, as it always was
        write_query(lake, sql, fmt, answer, limit, when)
        with open_private(output, append=False) as f:
            f.write(answer.getbuffer())
    else:
        write_query(lake, sql, fmt, None, limit, when)


def main() -> None:
    cli(prog_name="tetrapipe")


if __name__ == "__main__":  # pragma: no cover
    main()


__all__ = ["cli", "main", "Path"]
