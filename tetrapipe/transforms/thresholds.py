"""Threshold and distinct-count rules: a window's alert only once it holds N events (or N distinct values).

The detector's grouping already folds each batch's matches per (rule, key,
tumbling window) into one row with a count, the first event and the distinct
values of a ``distinct:`` rule. For a threshold rule those rows are held here,
added up across batches, until the window reaches the threshold: then one row
goes out with everything counted so far (count, first time and event, event
ids), and later batches' rows for that window are ordinary follow-ups (the
detector's open windows). ``SELECT alert_id, sum(count) ... GROUP BY alert_id``
is therefore the window's total, as the backtest computes it
(:func:`tetrapipe.ruleset.plan.group_sql` with ``_n >= _min``).

Memory: held windows are bounded (LRU, ``capacity``) and dropped once their
window has ended (event time) plus a grace; the distinct values of one
window are capped at the threshold (more cannot change the outcome).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from tetrapipe.ruleset.model import Rule


@dataclass
class _Window:
    end_us: int
    count: int = 0
    values: set[str] = field(default_factory=set)
    #: the earliest row so far, as (grouped table, row): turned into a dict only when the window fires
    first: tuple[pa.Table, int] | None = None
    time: Any = None
    last_time: Any = None
    event_ids: list[str] = field(default_factory=list)


#: the columns of a grouping row that adding it up reads (the rest is read from the first row, on firing)
_READ = ("alert_id", "count", "_bucket_end_us", "time", "last_time", "event_ids")


class ThresholdState:
    """Held windows of the threshold rules of a detector (``rules``: the detector's rule list)."""

    def __init__(self, rules: list[Rule], *, capacity: int, max_event_ids: int | None) -> None:
        self.need = {i: (r.compiled.min_count, r.compiled.distinct is not None) for i, r in enumerate(rules)}
        self.need = {i: v for i, v in self.need.items() if v[0] > 0}
        self.capacity = capacity
        self.max_event_ids = max_event_ids
        self._held: OrderedDict[str, _Window] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def filter(self, grouped: pa.Table, fired: dict[str, int] | set[str], *, emit: bool = True) -> pa.Table:
        """``grouped`` (live grouping rows) with the threshold rules' rows held back until they fire.

        ``fired``: alert ids already alerted (the detector's open windows):
        their rows pass as follow-ups. ``emit=False`` only adds up (restore).
        Only the threshold rules' rows are read into Python, and of those only
        what adding up needs (every exec of a container is in such a row).
        """
        if not self.need or not grouped.num_rows:
            return grouped
        rules = np.asarray(grouped.column("_r").fill_null(-1), dtype=np.int64)
        candidates = np.nonzero(np.isin(rules, list(self.need)))[0]
        if not len(candidates):
            return grouped
        sub = grouped.select(["_distinct", *_READ]).take(pa.array(candidates))
        values = {c: sub.column(c).to_pylist() for c in _READ}
        distinct = sub.column("_distinct").to_pylist() if any(d for _n, d in self.need.values()) else None
        keep = np.ones(grouped.num_rows, dtype=bool)
        out: list[dict[str, Any]] = []
        for j, (p, aid) in enumerate(zip(candidates.tolist(), values["alert_id"], strict=True)):
            if aid in fired:
                continue
            keep[p] = False
            row = {c: values[c][j] for c in _READ}
            merged = self._add(int(rules[p]), row, distinct[j] if distinct is not None else None, (grouped, p))
            if merged is not None:
                out.append(merged)
        if not emit:
            return grouped.slice(0, 0)
        passed = grouped if keep.all() else grouped.filter(pa.array(keep))
        if not out:
            return passed
        return pa.concat_tables([passed, pa.Table.from_pylist(out, schema=grouped.schema)])

    def _add(
        self, r: int, row: dict[str, Any], distinct: list[str] | None, ref: tuple[pa.Table, int]
    ) -> dict[str, Any] | None:
        """Add one batch's row to its window; the merged row when the window reaches the threshold."""
        aid = row["alert_id"]
        w = self._held.pop(aid, None) or _Window(row["_bucket_end_us"] or 0)
        self._held[aid] = w
        need, by_distinct = self.need[r]
        w.count += row["count"]
        if by_distinct:
            for v in distinct or ():
                if len(w.values) < need:
                    w.values.add(v)
        if w.first is None:
            w.first, w.time, w.last_time, w.event_ids = ref, row["time"], row["last_time"], list(row["event_ids"])
        else:
            if row["time"] is not None and (w.time is None or row["time"] < w.time):
                ids, last = w.event_ids, w.last_time
                w.first, w.time = ref, row["time"]
                w.event_ids = list(row["event_ids"]) + list(ids)
                w.last_time = max(t for t in (last, row["last_time"]) if t is not None)
            else:
                w.event_ids = list(w.event_ids) + list(row["event_ids"])
                if row["last_time"] is not None and (w.last_time is None or row["last_time"] > w.last_time):
                    w.last_time = row["last_time"]
            if self.max_event_ids:
                w.event_ids = w.event_ids[: self.max_event_ids]
        while len(self._held) > self.capacity:
            self._held.popitem(last=False)
        if (len(w.values) if by_distinct else w.count) < need:
            return None
        del self._held[aid]
        table, p = w.first
        merged = table.slice(p, 1).to_pylist()[0]
        merged.update(count=w.count, event_ids=w.event_ids, last_time=w.last_time, time=w.time)
        return merged

    def expire(self, watermark_us: int, grace_us: int) -> None:
        """Drop held windows that ended before ``watermark_us - grace_us`` (they can no longer fire)."""
        for aid in [a for a, w in self._held.items() if w.end_us and w.end_us < watermark_us - grace_us]:
            del self._held[aid]


__all__ = ["ThresholdState"]
