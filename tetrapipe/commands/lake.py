"""Lake maintenance: ``tetrapipe compact``."""

from __future__ import annotations

import click

from tetrapipe.commands.options import lake_option
from tetrapipe.lake import Lake


@click.command("compact")
@lake_option()
@click.option("--min-files", default=8, show_default=True, help="Merge a group once it has this many small segments.")
@click.option("--table", "tables", multiple=True, help="Only these tables (default: all).")
def compact_command(lake_dir: str, min_files: int, tables: tuple[str, ...]) -> None:
    """Merge small Parquet segments (safe while a processor is writing; crash-safe)."""
    from tetrapipe.lake.maintenance import compact

    result = compact(Lake(lake_dir), list(tables) or None, min_files=min_files)
    click.echo(f"merged {result.merged_files} segments into {result.into} ({result.rows:,} rows)")


COMMANDS = [compact_command]
