"""The grouping's rows completed with their first events' columns and messages (split out of :mod:`.detect`).

The live grouping statement (:func:`tetrapipe.ruleset.plan.live_group_sql`)
names each group's first event by its position in the batch; its columns are
taken from the batch in Arrow and its message is built by a second, small
statement over those rows only (:func:`tetrapipe.ruleset.plan.live_message_sql`).
This puts them where the single statement used to, so that nothing after it
(thresholds, the open windows, the cast to ``ALERT_SCHEMA``) sees a difference.
"""

from __future__ import annotations

import pyarrow as pa

from tetrapipe.ruleset.plan import ALERT_EVENT_COLUMNS


def first_events(batch: pa.Table, grouped: pa.Table) -> pa.Table:
    """The first event of each grouping row (``_first``: its row in ``batch``) with the row's rule as ``_r``."""
    first = batch.take(grouped.column("_first"))
    return first.append_column("_r", grouped.column("_r").cast(pa.int64()))


def with_first_events(grouped: pa.Table, first: pa.Table, messages: pa.ChunkedArray) -> pa.Table:
    """``grouped`` with ``_first`` replaced by the first events' alert columns and then ``message``."""
    names: list[str] = []
    columns: list[pa.ChunkedArray] = []
    for name in grouped.schema.names:
        if name != "_first":
            names.append(name)
            columns.append(grouped.column(name))
            continue
        for c in ALERT_EVENT_COLUMNS:
            names.append(c)
            columns.append(first.column(c))
        names.append("message")
        columns.append(messages)
    return pa.Table.from_arrays(columns, names=names)


__all__ = ["first_events", "with_first_events"]
