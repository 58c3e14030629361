"""``tetrapipe lake optimize|vacuum|retention|history|stats|configure|migrate`` and ``tetrapipe compact`` (= optimize).

The work is in :mod:`tetrapipe.lake.maintenance` and :mod:`tetrapipe.lake.migrate`;
this module parses options and prints. Durations use the one grammar of
:func:`tetrapipe.units.parse_duration` (``168h``, ``7d``, ``90d``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from tetrapipe.commands.options import lake_option, lake_storage_option, open_lake
from tetrapipe.units import parse_duration

TABLE_NAMES = ("events", "alerts", "rejects", "tls_stats")


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc


def _days(ctx: click.Context, param: click.Parameter, value: str) -> dt.timedelta:
    """A duration whose bare number is days (``--keep 90`` = ``90d``), as the option's help says."""
    try:
        return parse_duration(value, bare="d")
    except ValueError as exc:
        raise click.BadParameter(f"not a number of days: {value!r} (try 90, 90d or 12w)", ctx, param) from exc


def _tables_option(help: str = "Only this table (repeatable; default: all).") -> click.Option:
    return click.option("--table", "tables", multiple=True, type=click.Choice(TABLE_NAMES), help=help)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@click.group("lake")
def lake_group() -> None:
    """Maintain the Delta lake: compact, vacuum, retention, history, stats, migrate the old layout."""


def _optimize(lake_dir: str, tables: tuple[str, ...]) -> None:
    from tetrapipe.lake.maintenance import optimize

    for r in optimize(open_lake(lake_dir), list(tables) or None):
        click.echo(f"{r.table}: {r.files_removed} files compacted into {r.files_added} (version {r.version})")


@lake_group.command("optimize")
@lake_option()
@_tables_option()
def optimize_command(lake_dir: str, tables: tuple[str, ...]) -> None:
    """Compact small files (Delta OPTIMIZE) and drop expired log entries.

    Safe while processors write: readers see each row once, before or after.
    """
    _optimize(lake_dir, tables)


@click.command("compact")
@lake_option()
@_tables_option()
def compact_command(lake_dir: str, tables: tuple[str, ...]) -> None:
    """Same as `tetrapipe lake optimize` (kept for scripts written for the segment lake)."""
    _optimize(lake_dir, tables)


@lake_group.command("vacuum")
@lake_option()
@click.option(
    "--retention",
    default="168h",
    show_default=True,
    callback=_duration,
    help="Keep files any version this recent references. Shorter than 7 days breaks time travel "
    "(query --as-of) past it, queries that outlive it, and writers whose commit takes longer.",
)
@click.option("--dry-run", is_flag=True, help="List what would be deleted, delete nothing.")
@_tables_option()
def vacuum_command(lake_dir: str, retention: dt.timedelta, dry_run: bool, tables: tuple[str, ...]) -> None:
    """Delete data files no longer referenced by any version younger than the retention."""
    from tetrapipe.lake.maintenance import DEFAULT_VACUUM_RETENTION, vacuum

    if retention < DEFAULT_VACUUM_RETENTION:
        click.echo(
            f"warning: retention {retention} is under 7 days: time travel past it, a query that started "
            "before it and a commit still being written can lose their files",
            err=True,
        )
    for r in vacuum(open_lake(lake_dir), retention, list(tables) or None, dry_run=dry_run):
        verb = "would delete" if dry_run else "deleted"
        click.echo(f"{r.table}: {verb} {len(r.deleted)} files")


@lake_group.command("retention")
@lake_option()
@click.option(
    "--keep",
    required=True,
    callback=_days,
    help="History to keep, in days: 90 (or 90d) keeps today and 89 more; other units need theirs (12w).",
)
@_tables_option()
def retention_command(lake_dir: str, keep: dt.timedelta, tables: tuple[str, ...]) -> None:
    """Delete the date partitions older than --keep (the files go at the next vacuum)."""
    from tetrapipe.lake.maintenance import retention

    for r in retention(open_lake(lake_dir), keep, list(tables) or None):
        click.echo(f"{r.table}: deleted {r.rows_deleted:,} rows dated before {r.cutoff} ({r.files_removed} files)")


@lake_group.command("history")
@lake_option()
@click.option("--table", default="events", show_default=True, type=click.Choice(TABLE_NAMES))
@click.option("--limit", default=20, show_default=True, help="Newest commits to show (0: all).")
def history_command(lake_dir: str, table: str, limit: int) -> None:
    """The table's commits, newest first, with the input positions each carries."""
    from tetrapipe.lake.maintenance import history

    commits = history(open_lake(lake_dir), table, limit or None)
    if not commits:
        click.echo(f"no {table} table in this lake yet")
        return
    click.echo(f"{'version':>8}  {'time (UTC)':19}  {'operation':10}  {'rows added':>10}  positions")
    for c in commits:
        rows = "" if c.rows_added is None else f"{c.rows_added:,}"
        txns = ", ".join(f"{app}={v}" for app, v in c.app_transactions[:4])
        if len(c.app_transactions) > 4:
            txns += f", +{len(c.app_transactions) - 4} more"
        when = c.time.strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{c.version:>8}  {when}  {c.operation:10}  {rows:>10}  {txns}")


@lake_group.command("stats")
@lake_option()
@_tables_option()
def stats_command(lake_dir: str, tables: tuple[str, ...]) -> None:
    """Per table: version, files, rows, bytes, partitions, date range, log size, last checkpoint."""
    from tetrapipe.lake.maintenance import stats

    found = stats(open_lake(lake_dir), list(tables) or None)
    if not found:
        click.echo("no tables in this lake yet")
        return
    for s in found:
        dates = f"{s.oldest} .. {s.newest}" if s.oldest else "-"
        checkpoint = "none" if s.last_checkpoint is None else str(s.last_checkpoint)
        click.echo(
            f"{s.table}: version {s.version}, {s.files:,} files, {s.rows:,} rows, {_size(s.bytes)}, "
            f"{s.partitions} partitions ({dates}); log {s.log_files} files {_size(s.log_bytes)}, "
            f"last checkpoint {checkpoint}; log kept {_kept(s.properties, 'delta.logRetentionDuration')}, "
            f"removed files tracked {_kept(s.properties, 'delta.deletedFileRetentionDuration')}"
        )


def _kept(properties: dict[str, str], key: str) -> str:
    """A retention property as set, or Delta's default when the table does not set it."""
    defaults = {
        "delta.logRetentionDuration": "interval 30 days",
        "delta.deletedFileRetentionDuration": "interval 7 days",
    }
    value = properties.get(key)
    shown = (value or defaults[key]).removeprefix("interval ")
    shown = shown[:-1] if shown.startswith("1 ") and shown.endswith("s") else shown
    return shown if value else f"{shown} (Delta's default)"


@lake_group.command("configure")
@lake_option()
@click.option(
    "--log-retention",
    callback=_duration,
    help="How long commit entries stay in the _delta_log, i.e. how far back `query --as-of` reaches "
    "(e.g. 7d). Every commit lists the log: more entries, slower commits.",
)
@click.option(
    "--deleted-file-retention",
    callback=_duration,
    help="How long files removed by optimize or retention stay listed in the checkpoints (e.g. 1d).",
)
@_tables_option()
def configure_command(
    lake_dir: str,
    log_retention: dt.timedelta | None,
    deleted_file_retention: dt.timedelta | None,
    tables: tuple[str, ...],
) -> None:
    """Change the tables' log and removed-file retention (Delta table properties).

    New tables keep one day of each; `lake stats` shows what a table has.
    """
    from tetrapipe.lake.maintenance import configure, interval

    properties = {}
    if log_retention is not None:
        properties["delta.logRetentionDuration"] = interval(log_retention)
    if deleted_file_retention is not None:
        properties["delta.deletedFileRetentionDuration"] = interval(deleted_file_retention)
    if not properties:
        raise click.UsageError("nothing to change: give --log-retention and/or --deleted-file-retention")
    changed = configure(open_lake(lake_dir), properties, list(tables) or None)
    settings = ", ".join(f"{k} = {v}" for k, v in properties.items())
    click.echo(f"{', '.join(changed)}: {settings}" if changed else "no tables in this lake yet")


@lake_group.command("migrate")
@click.argument("old_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--lake",
    "lake_dir",
    default=None,
    metavar="DIR|URI",
    help="The Delta lake to write (default: OLD_DIR itself, in place).",
)
@lake_storage_option()
def migrate_command(old_dir: str, lake_dir: str | None) -> None:
    """Turn a lake of the old segment layout into Delta tables, Kafka and file positions included.

    In place (no --lake), the old files are moved into OLD_DIR/.old-segments/,
    never deleted. Running it again adds nothing.
    """
    from tetrapipe.lake.migrate import OLD_SEGMENTS, migrate

    lake = open_lake(lake_dir or old_dir)
    results = migrate(old_dir, lake)
    for r in results:
        if r.committed:
            line = f"{r.table}: {r.rows:,} rows from {r.segments} segments, {r.positions} positions"
        elif r.segments:
            line = f"{r.table}: already migrated ({r.segments} segments)"
        else:
            line = f"{r.table}: nothing to migrate"
        if r.orphans:
            line += f"; {r.orphans} segments of uncommitted Kafka batches left out"
        click.echo(line)
        for path in r.unreadable:
            click.echo(f"  unreadable, not migrated: {path}", err=True)
    if lake.is_local and lake.path.resolve() == Path(old_dir).resolve():
        click.echo(f"the old files are in {lake.path / OLD_SEGMENTS} (delete it once the new lake is trusted)")


COMMANDS = [lake_group, compact_command]
