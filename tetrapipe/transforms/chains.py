"""Sequence rules over a stream: partial chains kept across micro-batches, one alert per completed chain.

Each batch is scanned once for the rows matching any step of any sequence
rule (:func:`tetrapipe.ruleset.sequence.steps_sql`, a bit per step, in the
detector's DuckDB pass); only those few rows reach Python, in (time, event id)
order, and advance the partial chains here.

Semantics (the same live, after a restart and in a backtest, because all three
feed this class the same rows in the same order):

* A row matching step 0 starts a chain under its key: for ``by: lineage`` its
  own ``exec_id`` (the chain's root); otherwise the container, pod or workload.
* A row matching step ``k`` advances the chain of its key that has completed
  exactly ``k`` steps, when it falls within ``within`` of the chain's first
  step, is no earlier than the previous step minus ``tolerance``, and its
  ``join`` columns equal the named earlier steps'. Under ``lineage`` a row's
  keys are its own exec_id, its parent's and its ancestors', nearest first:
  its process is the root or a descendant of it. Higher steps are tried
  first, and a row advances one chain at most.
* One partial chain per (rule, key, steps done): a newer one replaces an
  older one (the newer is the one that can still complete within the span).
* A row of a later step that advanced nothing is kept for ``2 x tolerance``:
  if the step before it arrives late (Tetragon's per-CPU buffers reorder),
  the chain picks it up then.
* ``until`` drops the key's partial chains (for lineage, when the row's
  process is the root).
* The last step completes the chain: one alert row whose ``event_ids`` are
  the steps' events in order, ``count`` the number of steps, and whose id
  hashes the rule and those events (the same chain has the same id anywhere).

Memory: partial chains and held rows are bounded in total (``max_partials``);
the oldest are evicted first and counted (``evicted``); chains older than
their span are dropped as event time moves on.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from tetrapipe.ruleset.model import Rule
from tetrapipe.ruleset.plan import ALERT_EVENT_COLUMNS
from tetrapipe.ruleset.sequence import (
    BY_KEYS,
    output_columns,
    render_message,
    seen_sql,
    step_columns,
    steps_sql,
)
from tetrapipe.schema import ALERT_SCHEMA

#: columns every step row carries into the engine (keys, lineage, the alert's event columns)
BASE_COLUMNS = [
    "event_id",
    "time",
    "kind",
    "exec_id",
    "parent_exec_id",
    "ancestor_exec_ids",
    "container_id",
    "namespace",
    "pod",
    "workload",
    *ALERT_EVENT_COLUMNS,
]


def _us(t: Any) -> int:
    """Microseconds since the epoch of an Arrow timestamp read as a naive datetime (UTC)."""
    if t is None:
        return 0
    return (
        (t.toordinal() - 719163) * 86_400_000_000
        + (t.hour * 3600 + t.minute * 60 + t.second) * 1_000_000
        + (t.microsecond)
    )


@dataclass
class _Partial:
    start_us: int
    last_us: int
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ChainStats:
    """What the engine holds and has done (exported as metrics by the stream flows)."""

    partials: int = 0
    held: int = 0
    evicted: int = 0
    expired: int = 0
    completed: int = 0


class ChainEngine:
    """Partial chains of sequence rules across batches; :meth:`feed` turns step rows into alert rows."""

    def __init__(self, rules: list[Rule], *, max_partials: int = 100_000) -> None:
        self.rules = rules
        self.max_partials = max_partials
        self.stats = ChainStats()
        cols = set(BASE_COLUMNS)
        for r in rules:
            cols |= output_columns(r)
        self.columns = [c for c in dict.fromkeys([*BASE_COLUMNS, *sorted(cols)])]
        self._partials: OrderedDict[tuple[int, Any, int], _Partial] = OrderedDict()
        self._held: OrderedDict[tuple[int, str], tuple[int, dict[str, Any]]] = OrderedDict()
        # held rows by (rule, key) they could continue: a chain that moves looks up its key, never scans
        self._held_by_key: dict[tuple[int, Any], list[tuple[int, str]]] = {}
        self._watermark_us = 0
        self._steps = [len(r.sequence.steps) for r in rules]
        self._within = [int(r.sequence.within_seconds * 1_000_000) for r in rules]
        self._tol = [int(r.sequence.tolerance_seconds * 1_000_000) for r in rules]
        self._index = [{s.name: k for k, s in enumerate(r.sequence.steps)} for r in rules]
        self._by = [BY_KEYS[r.sequence.by] for r in rules]
        self._slim = [tuple(step_columns(r)) for r in rules]
        #: per rule, its steps with first_seen columns; and the values those steps have seen (bounded)
        self._fs = [{k: tuple(s.first_seen) for k, s in enumerate(r.sequence.steps) if s.first_seen} for r in rules]
        self._seen: OrderedDict[tuple[int, int, tuple], None] = OrderedDict()
        self.seen_capacity = 1_000_000

    # --- SQL ----------------------------------------------------------------------------------

    def batch_sql(self, source: str) -> str:
        """Which rows of a batch (``_i``) match which steps (``_q{r}``)."""
        return steps_sql(self.rules, source, ["_i"])

    def history_sql(self, where: str | None = None) -> str:
        """The step rows of the ``events`` view, in the order the engine reads them."""
        return steps_sql(self.rules, "events", self.columns, where) + "\nORDER BY time NULLS LAST, event_id"

    def seen_queries(self) -> list[tuple[int, int, str]]:
        """For each first-seen step: the values it saw before the lookback (see :meth:`remember_seen`)."""
        return [(r, k, seen_sql(rule, k)) for r, rule in enumerate(self.rules) for k in self._fs[r]]

    def lookback_seconds(self) -> float:
        """How much recent history rebuilds every partial chain that can still complete."""
        return max(r.sequence.within_seconds + 2 * r.sequence.tolerance_seconds for r in self.rules)

    # --- feeding ------------------------------------------------------------------------------

    def feed(self, rows: pa.Table, *, emit: bool = True) -> pa.Table:
        """Advance the chains with ``rows`` (step rows: :attr:`columns` and ``_q*``, any order).

        ``emit=False`` rebuilds state from history whose alerts are stored already.
        Returns the alert rows (ALERT_SCHEMA) of the chains completed.
        """
        if rows.num_rows == 0:
            return ALERT_SCHEMA.empty_table()
        rows = rows.sort_by([("time", "ascending"), ("event_id", "ascending")])
        out: list[dict[str, Any]] = []
        masks = [rows.column(f"_q{r}").to_pylist() for r in range(len(self.rules))]
        # column by column (Arrow converts a column at C speed; a table's to_pylist builds dicts cell by cell)
        names = [c for c in self.columns if c in rows.schema.names]
        values = [rows.column(c).to_pylist() for c in names]
        for i, cells in enumerate(zip(*values, strict=True)):
            row = dict(zip(names, cells, strict=True))
            t = _us(row["time"])
            row["_us"] = t
            for r, mask in enumerate(masks):
                bits = mask[i]
                if bits:
                    self._one(r, row, t, bits, out)
            if t > self._watermark_us:
                self._watermark_us = t
        self._expire()
        self.stats.partials = len(self._partials)
        self.stats.held = len(self._held)
        if not emit or not out:
            return ALERT_SCHEMA.empty_table()
        return pa.Table.from_pylist(out, schema=ALERT_SCHEMA)

    def _keys(self, r: int, row: dict[str, Any]) -> list[Any]:
        """The keys under which a row may continue a chain, nearest first."""
        by = self.rules[r].sequence.by
        if by == "lineage":
            keys = [row.get("exec_id"), row.get("parent_exec_id"), *(row.get("ancestor_exec_ids") or [])]
            return [k for k in dict.fromkeys(keys) if k]
        key = self._own_key(r, row)
        return [key] if key is not None else []

    def _own_key(self, r: int, row: dict[str, Any]) -> Any:
        columns = self._by[r]
        if len(columns) == 1:
            return row.get(columns[0]) or None
        values = [row.get(c) for c in columns]
        return None if not all(values) else "/".join(values)

    def remember_seen(self, r: int, k: int, values: list[tuple]) -> None:
        """Values step ``k`` of rule ``r`` saw before (read from the history after a restart)."""
        for v in values:
            self._seen[(r, k, tuple(v))] = None

    def _first_seen(self, r: int, row: dict[str, Any], bits: int) -> int:
        """``bits`` without the first-seen steps whose values this row does not see for the first time."""
        for k, columns in self._fs[r].items():
            if bits >> k & 1:
                key = (r, k, tuple(row.get(c) for c in columns))
                if key in self._seen:
                    self._seen.move_to_end(key)
                    bits &= ~(1 << k)
                else:
                    self._seen[key] = None
        while len(self._seen) > self.seen_capacity:
            self._seen.popitem(last=False)
        return bits

    def _one(self, r: int, row: dict[str, Any], t: int, bits: int, out: list[dict[str, Any]]) -> None:
        if self._fs[r]:
            bits = self._first_seen(r, row, bits)
            if not bits:
                return
        n = self._steps[r]
        if bits >> n & 1:  # until: the key's partial chains are over
            key = row.get("exec_id") if self.rules[r].sequence.by == "lineage" else self._own_key(r, row)
            for s in range(1, n):
                self._partials.pop((r, key, s), None)
        for s in range(n - 1, 0, -1):
            if not bits >> s & 1:
                continue
            for key in self._keys(r, row):
                chain = self._partials.get((r, key, s))
                if chain is not None and self._fits(r, chain, row, t, s):
                    self._advance(r, key, s, chain, row, t, out)
                    return
        if bits & 1:
            key = self._own_key(r, row)
            if key is not None:
                chain = _Partial(t, t, [self._slimmed(r, row)])
                self._put(r, key, 1, chain)
                self._catch_up(r, key, 1, chain, out)
                return
        if bits & ((1 << n) - 2):  # a later step that advanced nothing: held in case its predecessor is late
            hkey = (r, row["event_id"])
            self._held[hkey] = (bits, row)
            for key in self._keys(r, row):
                self._held_by_key.setdefault((r, key), []).append(hkey)
            self._bound()

    def _fits(self, r: int, chain: _Partial, row: dict[str, Any], t: int, s: int) -> bool:
        if t - chain.start_us > self._within[r] or t < chain.last_us - self._tol[r]:
            return False
        step = self.rules[r].sequence.steps[s]
        for column, (name, other) in step.join.items():
            value = row.get(column)
            if value is None or value != chain.rows[self._index[r][name]].get(other):
                return False
        return all(row["event_id"] != e["event_id"] for e in chain.rows)

    def _advance(
        self, r: int, key: Any, s: int, chain: _Partial, row: dict[str, Any], t: int, out: list[dict[str, Any]]
    ) -> None:
        del self._partials[(r, key, s)]
        if s + 1 == self._steps[r]:
            done = _Partial(chain.start_us, max(chain.last_us, t), [*chain.rows, row])
            out.append(self._alert(r, key, done))
            self.stats.completed += 1
            return
        grown = _Partial(chain.start_us, max(chain.last_us, t), [*chain.rows, self._slimmed(r, row)])
        self._put(r, key, s + 1, grown)
        self._catch_up(r, key, s + 1, grown, out)

    def _slimmed(self, r: int, row: dict[str, Any]) -> dict[str, Any]:
        """What a partial chain keeps of a step's event (see :func:`~tetrapipe.ruleset.sequence.step_columns`)."""
        return {c: row.get(c) for c in self._slim[r]}

    def _catch_up(self, r: int, key: Any, s: int, chain: _Partial, out: list[dict[str, Any]]) -> None:
        """A chain just moved to ``s`` steps done: a held row of step ``s`` (one that came early) may continue it."""
        waiting = self._held_by_key.get((r, key))
        if not waiting:
            return
        live = [h for h in waiting if h in self._held]
        if live:
            self._held_by_key[(r, key)] = live
        else:
            del self._held_by_key[(r, key)]
        for hkey in sorted(live, key=lambda h: (self._held[h][1]["_us"], h[1])):
            bits, row = self._held[hkey]
            if not bits >> s & 1:
                continue
            if self._fits(r, chain, row, row["_us"], s):
                del self._held[hkey]
                self._advance(r, key, s, chain, row, row["_us"], out)
                return

    def _put(self, r: int, key: Any, s: int, chain: _Partial) -> None:
        self._partials.pop((r, key, s), None)
        self._partials[(r, key, s)] = chain
        self._bound()

    def _bound(self) -> None:
        while len(self._partials) + len(self._held) > self.max_partials:
            victim = self._held if len(self._held) >= len(self._partials) else self._partials
            victim.popitem(last=False)
            self.stats.evicted += 1

    def _expire(self) -> None:
        """Drop what no later event can complete any more (event time, not wall time)."""
        w = self._watermark_us
        # oldest first, up to the first that can still complete: O(expired), not O(state), per batch (a chain
        # moved on is re-inserted at the end; one that outlives its span further back is dropped at the bound
        # or when it is next looked at, and can never match: the span is checked on every step)
        while self._partials:
            (r, _k, _s), c = next(iter(self._partials.items()))
            if c.start_us >= w - self._within[r] - self._tol[r]:
                break
            self._partials.popitem(last=False)
            self.stats.expired += 1
        while self._held:
            (r, _e), (_b, row) = next(iter(self._held.items()))
            if row["_us"] >= w - 2 * self._tol[r]:
                break
            self._held.popitem(last=False)
        if len(self._held_by_key) > 2 * len(self._held) + 1_000:  # entries of rows gone: rebuild the index
            index: dict[tuple[int, Any], list[tuple[int, str]]] = {}
            for hkey, (_b, row) in self._held.items():
                for key in self._keys(hkey[0], row):
                    index.setdefault((hkey[0], key), []).append(hkey)
            self._held_by_key = index

    def _alert(self, r: int, key: Any, chain: _Partial) -> dict[str, Any]:
        rule = self.rules[r]
        ids = [e["event_id"] for e in chain.rows]
        last = chain.rows[-1]
        named = {s.name: chain.rows[k] for k, s in enumerate(rule.sequence.steps)}
        alert: dict[str, Any] = {
            "alert_id": hashlib.md5("|".join([rule.id, *ids]).encode()).hexdigest()[:20],
            "rule_id": rule.id,
            "title": rule.title,
            "severity": rule.severity,
            "mitre": list(rule.mitre),
            "tags": list(rule.tags),
            "time": min(e["time"] for e in chain.rows),
            "last_time": max(e["time"] for e in chain.rows),
            "message": render_message(rule.output, named, last),
            "dedup_key": str(key),
            "count": len(chain.rows),
            "event_ids": ids,
        }
        for c in ALERT_EVENT_COLUMNS:
            alert[c] = last.get(c)
        return alert

    def nbytes(self) -> int:
        """A rough size of the state: the rows held by partial chains and held rows (for the bound's docs)."""
        rows = sum(len(c.rows) for c in self._partials.values()) + len(self._held)
        return rows * 1_200 + len(self._partials) * 200


__all__ = ["BASE_COLUMNS", "ChainEngine", "ChainStats"]
