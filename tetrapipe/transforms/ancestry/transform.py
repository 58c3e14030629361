"""The ancestry step of the transform chain, and how it is restored after a restart.

See :mod:`tetrapipe.transforms.ancestry` and ``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import pyarrow as pa

from tetrapipe.transforms.ancestry.table import ProcessTable
from tetrapipe.transforms.base import RestoredState, StateRequest


class AncestryTransform:
    """The pipeline step (a :data:`~tetrapipe.transforms.base.BatchTransform`): enrich each batch's ancestor columns.

    ``AncestryTransform()`` starts empty. It is a stateful transform: after a
    restart (or when a stream processor is handed new partitions) a flow reads
    what :meth:`state_request` asks for from the history and calls
    :meth:`restore`, which rebuilds the table from the processes seen since
    ``restore_since`` (a time, or a duration back from the newest event; None:
    the last hour). It returns no extra tables.
    """

    def __init__(
        self,
        table: ProcessTable | None = None,
        *,
        restore_since: dt.datetime | dt.timedelta | None = None,
        **table_options: object,
    ) -> None:
        self._table_options = table_options
        self.restore_since = restore_since
        self.table = table if table is not None else ProcessTable(**table_options)  # type: ignore[arg-type]

    def state_request(self) -> StateRequest:
        """The recent processes and exits, which is all the table ever learned that still matters."""
        return StateRequest(processes=True, processes_since=self.restore_since)

    def restore(self, state: RestoredState) -> None:
        """Replace the table by one rebuilt from the history's recent processes."""
        table = ProcessTable(**self._table_options)  # type: ignore[arg-type]
        table.learn_history(state.processes)
        self.table = table

    def __call__(self, events: pa.Table) -> tuple[pa.Table, dict[str, pa.Table]]:
        return self.table.enrich(events), {}


def enrich_all(batches: Iterable[pa.Table], table: ProcessTable | None = None) -> list[pa.Table]:
    """Enrich batches in order with one table (tests, small tools)."""
    table = table or ProcessTable()
    return [table.enrich(b) for b in batches]
