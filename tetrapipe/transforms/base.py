"""What a transform is, and how a stateful one gets its memory back after a restart.

A transform takes one normalized batch and returns it (possibly enriched) with
extra tables for the lake (``alerts``, ``tls_stats``). Some transforms remember
across batches (the process table, the detector's dedup windows and new
terms); after a restart or a rebalance that memory is rebuilt from the
history. Transforms never read the lake themselves: each says what it wants
(:class:`StateRequest`), a flow reads it (``tetrapipe.flows.transforms.restore_transforms``)
and hands it over (:class:`RestoredState`). That keeps the transforms usable on
a batch in a test, and keeps the lake's layout out of them.
See ``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import pyarrow as pa

#: A transform over one normalized batch: gets the events, returns the events
#: (possibly enriched) and extra tables for the lake (e.g. ``alerts``).
BatchTransform = Callable[[pa.Table], tuple[pa.Table, dict[str, pa.Table]]]


@dataclass(frozen=True)
class StateRequest:
    """What a stateful transform wants read from the history before it runs on.

    ``processes``: the rows the process table learns from, one per process seen
    since ``processes_since`` (a time, or a duration back from the newest event
    in the lake; None: one hour) plus the exits, in time order.
    ``term_sql``: a query over the ``events`` view whose ``(_r, _term)`` rows are
    the new-terms combinations already seen. ``open_alerts``: how many of the
    newest alert ids to remember as open windows (0: none). ``chain_sql``: a
    query over the ``events`` view, with a ``$since`` parameter, whose rows
    rebuild the partial chains of sequence rules; ``chain_lookback``: how far
    back from the newest event ``$since`` lies.
    """

    processes: bool = False
    processes_since: dt.datetime | dt.timedelta | None = None
    term_sql: str | None = None
    #: first-seen rules: also when each key of ``term_sql``'s rows was first matched (``_kterm``)
    learn: bool = False
    open_alerts: int = 0
    chain_sql: str | None = None
    chain_lookback: dt.timedelta | None = None
    #: windows of threshold rules still open: a query with ``$since`` and how far back it lies
    threshold_sql: str | None = None
    #: sequence steps with first_seen: ``(rule, step, query with $since)``, values seen before the lookback
    chain_seen_sql: list[tuple[int, int, str]] = field(default_factory=list)
    threshold_lookback: dt.timedelta | None = None


@dataclass
class RestoredState:
    """What the history says, as :class:`StateRequest` asked for it.

    ``processes`` is an iterable of Arrow tables (read in chunks, so a large
    history is never held at once): consume it once.
    """

    processes: Iterable[pa.Table] = ()
    terms: list[tuple[int, str]] = field(default_factory=list)
    #: ``(_r, _kterm, first match in microseconds)`` of first-seen rules' keys
    key_first: list[tuple[int, int, int]] = field(default_factory=list)
    open_alert_ids: list[str] = field(default_factory=list)
    chain_rows: pa.Table | None = None
    threshold_rows: pa.Table | None = None
    chain_seen: list[tuple[int, int, list[tuple]]] = field(default_factory=list)


@runtime_checkable
class StatefulTransform(Protocol):
    """A transform whose memory outlives a batch and is rebuilt from the history after a restart."""

    def __call__(self, events: pa.Table) -> tuple[pa.Table, dict[str, pa.Table]]: ...

    def state_request(self) -> StateRequest:
        """What to read from the history for :meth:`restore`."""
        ...

    def restore(self, state: RestoredState) -> None:
        """Take back the memory the history holds (``state`` answers :meth:`state_request`)."""
        ...


__all__ = ["BatchTransform", "RestoredState", "StateRequest", "StatefulTransform"]
