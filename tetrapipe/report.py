"""What ingesting commands show a person: progress while reading, a summary after."""

from __future__ import annotations

from rich.console import Console
from rich.padding import Padding
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from tetrapipe.ingest import IngestStats, ProgressSink
from tetrapipe.sinks.lake import Lake
from tetrapipe.sources.files import InputFile

SEVERITY_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan",
                  "info": "dim"}


class IngestProgress(ProgressSink):
    """A rich progress bar per input file (bytes), with a running event count."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TextColumn("{task.fields[events]:,} events"), TimeRemainingColumn(), console=console, transient=True,
        )
        self._task = None
        self._events = 0

    def __enter__(self) -> IngestProgress:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._progress.stop()

    def start_input(self, inp: InputFile, size: int | None) -> None:
        if self.enabled:
            name = inp.label if len(inp.label) < 40 else "..." + inp.label[-37:]
            self._task = self._progress.add_task(name, total=size, events=0)

    def advance(self, position: int) -> None:
        if self.enabled and self._task is not None:
            self._progress.update(self._task, completed=position)

    def batch(self, events, extra) -> None:  # noqa: ANN001
        self._events += events.num_rows
        if self.enabled and self._task is not None:
            self._progress.update(self._task, events=self._events)

    def end_input(self) -> None:
        if self.enabled and self._task is not None:
            task = self._progress.tasks[-1]
            self._progress.update(self._task, completed=task.total or task.completed)


def print_ingest_summary(console: Console, stats: IngestStats, lake: Lake) -> None:
    rate = f"{stats.events_per_second:,.0f} events/s" if stats.events else ""
    console.print(
        f"[bold]ingested[/] {stats.events:,} events from {stats.files} input{'s' if stats.files != 1 else ''} "
        f"into {lake.root} in {stats.seconds:.2f}s {rate}"
    )
    if stats.skipped_lines:
        console.print(f"[dim]skipped {stats.skipped_lines:,} lines already in the lake "
                      f"({stats.skipped_files} input{'s' if stats.skipped_files != 1 else ''} fully ingested before;"
                      " --force to ingest again)[/]")
    if stats.by_kind:
        t = Table(show_header=True, header_style="bold cyan", box=None, pad_edge=False)
        t.add_column("kind")
        t.add_column("events", justify="right")
        for kind, n in stats.by_kind.most_common():
            t.add_row(kind, f"{n:,}")
        console.print(t)
    if stats.rejects:
        console.print(f"[bold yellow]{stats.rejects:,} line{'s' if stats.rejects != 1 else ''} rejected[/] "
                      "(kept in the rejects table: tetrapipe query \"SELECT * FROM rejects\")")
        for note in stats.first_rejects:
            console.print(f"  [yellow]{note.source}:{note.line_no}[/]: {note.reason}")
        if stats.rejects > len(stats.first_rejects):
            console.print(f"  [dim]... and {stats.rejects - len(stats.first_rejects):,} more[/]")


def print_alerts(console: Console, lake: Lake, limit: int) -> None:
    """The alerts now in the history, most severe first."""
    from tetrapipe import history

    con = history.connect(lake)
    try:
        rows = con.execute(
            "SELECT severity, rule_id, time, namespace, pod, message, count FROM alerts "
            "ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 "
            "WHEN 'low' THEN 3 ELSE 4 END, time LIMIT ?", [limit]
        ).fetchall()
        total = con.execute("SELECT count(*) FROM alerts").fetchone()[0]
    finally:
        con.close()
    if not total:
        console.print("[green]no alerts[/]")
        return
    console.print(f"[bold]{total} alert{'s' if total != 1 else ''}[/], most severe first:")
    for sev, rule, when, ns, pod, msg, count in rows:
        # One header line and the message beneath it, like Falco's output: a table
        # folds long messages into unreadable slivers on an 80-column terminal.
        where = f"{ns}/{pod}" if pod else "(host)"
        times = f"  [dim]x{count}[/]" if count and count > 1 else ""
        console.print(f"[{SEVERITY_STYLE.get(sev, '')}]{sev.upper():<8}[/] [bold]{rule}[/]  "
                      f"[dim]{str(when)[:19]}[/]  {where}{times}", soft_wrap=True, highlight=False)
        console.print(Padding(Text(msg or ""), (0, 0, 0, 9), expand=False))
    if total > len(rows):
        console.print(f"[dim]... {total - len(rows)} more: tetrapipe query \"SELECT * FROM alerts\"[/]")
