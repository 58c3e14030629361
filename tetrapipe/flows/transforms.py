"""A flow hands the stateful transforms their memory back from the history.

The process table and the detector's dedup windows and new terms live in
memory; after a restart, or when a stream processor is handed new partitions,
they are rebuilt from the lake. The transforms never read the lake: each says
what it wants (``state_request()``), this module reads it through
:mod:`tetrapipe.lake.state` and calls ``restore()``. One loop for every
stateful transform, whatever its type. See ``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tetrapipe.transforms.base import RestoredState, StatefulTransform, StateRequest

if TYPE_CHECKING:
    from tetrapipe.lake import Lake


def read_state(lake: Lake | str | Path, request: StateRequest) -> RestoredState:
    """Read from the history what ``request`` asks for (the processes lazily, in chunks)."""
    from tetrapipe.lake import state

    return RestoredState(
        processes=state.recent_processes(lake, request.processes_since) if request.processes else (),
        terms=state.seen_terms(lake, request.term_sql) if request.term_sql else [],
        key_first=state.key_first_seen(lake, request.term_sql) if request.term_sql and request.learn else [],
        open_alert_ids=state.newest_alert_ids(lake, request.open_alerts),
        chain_rows=state.chain_rows(lake, request.chain_sql, request.chain_lookback) if request.chain_sql else None,
        chain_seen=[
            (r, k, state.distinct_before(lake, sql, request.chain_lookback)) for r, k, sql in request.chain_seen_sql
        ],
        threshold_rows=(
            state.chain_rows(lake, request.threshold_sql, request.threshold_lookback) if request.threshold_sql else None
        ),
    )


def restore_transforms(transforms: Iterable[object], lake: Lake | str | Path | None) -> int:
    """Restore every stateful transform of ``transforms`` from ``lake``; returns how many were.

    Nothing happens without a lake directory (a first run has no history).
    """
    if lake is None:
        return 0
    from tetrapipe.lake.state import lake_exists

    if not lake_exists(lake):
        return 0
    restored = 0
    for t in transforms:
        if isinstance(t, StatefulTransform):
            t.restore(read_state(lake, t.state_request()))
            restored += 1
    return restored


__all__ = ["read_state", "restore_transforms"]
