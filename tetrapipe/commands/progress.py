"""The progress bar of ``tetrapipe ingest``.

Apart from :mod:`tetrapipe.commands.report` because it subclasses the
pipeline's :class:`~tetrapipe.flows.batch.ProgressSink`: importing it loads
the normalizer, which ``tetrapipe query`` and ``tetrapipe tree`` (readers of
the lake, that share the report's tables) never need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from tetrapipe.flows.batch import ProgressSink
from tetrapipe.textsafe import visible

if TYPE_CHECKING:
    from tetrapipe.sources.files import InputFile


class IngestProgress(ProgressSink):
    """A rich progress bar per input file (bytes), with a running event count."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[events]:,} events"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
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
            label = visible(inp.label)  # a file name is data too, and the description column reads markup
            name = label if len(label) < 40 else "..." + label[-37:]
            self._task = self._progress.add_task(escape(name), total=size, events=0)

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
