"""``tetrapipe tls``: which TLS versions and ciphers each workload negotiates, and with whom."""

from __future__ import annotations

import datetime as dt
import sys
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tetrapipe.commands.options import lake_option, open_lake
from tetrapipe.lake import Lake
from tetrapipe.textsafe import visible
from tetrapipe.transforms.tls_ciphers import weak_reasons

if TYPE_CHECKING:
    import duckdb

SUMMARY_SQL = """
SELECT namespace, workload, daddr, dport, tls_sni, tls_version, tls_cipher,
       sum(connections)::BIGINT AS connections, min(first_seen) AS first_seen, max(last_seen) AS last_seen
FROM tls_stats
WHERE ($namespace IS NULL OR namespace = $namespace)
  AND ($since IS NULL OR last_seen >= $since)
GROUP BY ALL
ORDER BY namespace, workload, connections DESC, tls_sni
"""

#: the width a pipe gets: wider than any row (an SNI is at most 253 characters), so nothing folds
PIPE_WIDTH = 1000


def tls_summary(lake: Lake, namespace: str | None = None, since: str | None = None) -> list[dict]:
    """One row per (workload, destination, version, cipher), with why it is weak if it is.

    ``since`` takes the forms of ``tree --since`` (an ISO time, UTC unless
    it names a zone, or a duration back from the newest handshake); one that
    is neither raises ValueError saying which forms work, before DuckDB
    would have failed to cast it in the middle of the query.
    """
    from tetrapipe.lake.views import run

    def summary(con: duckdb.DuckDBPyConnection) -> list[dict]:
        start = _since(con, since) if since else None
        return con.sql(SUMMARY_SQL, params={"namespace": namespace, "since": start}).to_arrow_table().to_pylist()

    rows = run(lake, summary)  # an unreadable data file is stepped over, and named on stderr
    for r in rows:
        r["weak"] = weak_reasons(r["tls_version"], r["tls_cipher"])
    return rows


def _since(con: duckdb.DuckDBPyConnection, text: str) -> dt.datetime:
    """``--since`` as a UTC time: parsed as ``tree`` and ``rules backtest`` read it (ValueError if it is not)."""
    from tetrapipe.tree.model import parse_time
    from tetrapipe.units import parse_duration

    try:
        parse_duration(text)
    except ValueError:
        return parse_time(text, None)  # a time: the history's newest handshake is not needed
    newest = con.sql("SELECT max(last_seen) FROM tls_stats").fetchall()[0][0]
    return parse_time(text, newest)


def _bar(n: int, total: int, width: int = 20) -> str:
    filled = round(width * n / total) if total else 0
    return "█" * filled + "·" * (width - filled)


def _seen(first: object, last: object) -> str:
    """``03-10 09:02:41`` (and ``-> 09:07:12`` when the last sighting differs): month-day is enough here."""
    a, b = str(first)[5:19], str(last)[5:19]
    if a == b:
        return a
    return f"{a}\n-> {b[6:] if a[:5] == b[:5] else b}"


def _show(value: object) -> str:
    """A value from the handshakes as markup-safe text: the SNI is whatever the client sent."""
    return escape(visible("" if value is None else str(value)))


def print_tls(console: Console, rows: list[dict]) -> None:
    """Per workload: version and cipher bars, then its destinations; weak in red, narrow terminals fold."""
    if not rows:
        console.print("[dim]no TLS handshakes in the history (see tracing-policies/tls-handshake.yaml)[/]")
        return
    by_workload: dict[tuple, list[dict]] = {}
    for r in rows:
        by_workload.setdefault((r["namespace"], r["workload"]), []).append(r)
    for (ns, wl), items in by_workload.items():
        total = sum(r["connections"] for r in items)
        console.print(f"\n[bold]{_show(ns or '(host)')}/{_show(wl)}[/]  {total} handshake{'s' if total != 1 else ''}")
        dist = Table.grid(padding=(0, 1), pad_edge=False)
        dist.add_column(style="dim", no_wrap=True)
        dist.add_column(overflow="fold")
        dist.add_column(no_wrap=True)
        dist.add_column(justify="right", no_wrap=True)
        for label, key in (("version", "tls_version"), ("cipher", "tls_cipher")):
            counts: dict[str, int] = {}
            for r in items:
                counts[r[key] or "?"] = counts.get(r[key] or "?", 0) + r["connections"]
            for value, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
                weak = weak_reasons(value, None) if key == "tls_version" else weak_reasons(None, value)
                shown = _show(value)
                dist.add_row(f"  {label}", f"[bold red]{shown}[/]" if weak else shown, _bar(n, total), str(n))
        console.print(dist)
        t = Table(box=None, header_style="bold cyan", pad_edge=False)
        t.add_column("destination / sni", no_wrap=True)
        t.add_column("version", no_wrap=True)
        t.add_column("cipher (why weak)", overflow="fold")
        t.add_column("n", justify="right", no_wrap=True)
        t.add_column("seen", no_wrap=True)
        for r in items:
            dest = _show(f"{r['daddr'] or '?'}:{r['dport'] or '?'}")
            if r["tls_sni"]:
                dest += f"\n[dim]{_show(r['tls_sni'])}[/]"
            cipher = _show(r["tls_cipher"] or "?")
            if r["weak"]:
                cipher = f"[bold red]{cipher}[/]\n[red]{_show(', '.join(r['weak']))}[/]"
            t.add_row(
                dest, _show(r["tls_version"]), cipher, str(r["connections"]), _seen(r["first_seen"], r["last_seen"])
            )
        console.print(t)


@click.command("tls")
@click.option("--namespace", "-n", help="Only this Kubernetes namespace.")
@click.option(
    "--since",
    help="Only handshakes at or after this time: 2026-03-10T09:00 (UTC), or a duration back from the newest "
    "handshake in the history (30m, 2h, 1d), as tree --since.",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@lake_option()
def tls_command(namespace: str | None, since: str | None, fmt: str, lake_dir: str) -> None:
    """TLS versions and cipher suites per workload and destination; weak ones in red."""
    try:
        rows = tls_summary(open_lake(lake_dir), namespace, since)
    except ValueError as exc:  # the same words as tree's --since
        raise click.BadParameter(str(exc), param_hint="--since") from None
    if fmt == "table":
        # :codes: in an SNI stay text. Not a terminal (a pipe, a file): never folded, since rich's 80 columns
        # cut a cipher suite in two and `tetrapipe tls | grep TLS_RSA_...` found nothing.
        width = None if sys.stdout.isatty() else PIPE_WIDTH
        print_tls(Console(highlight=False, emoji=False, width=width), rows)
        return
    import pyarrow as pa

    from tetrapipe.lake.query import to_csv, to_json

    table = pa.Table.from_pylist(rows) if rows else pa.table({})
    text = to_json(table).decode() if fmt == "json" else to_csv(table)
    click.echo(text.rstrip("\n"))


COMMANDS = [tls_command]
