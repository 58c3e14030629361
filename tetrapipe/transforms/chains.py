"""Sequence rules over a stream: partial chains kept across micro-batches, one alert per completed chain.

Each batch is scanned once for the rows matching any step of any sequence
rule (:func:`tetrapipe.ruleset.sequence.steps_sql`, a bit per step, in the
detector's DuckDB pass). Those can be many (every exec below /usr/bin is a
step of ``chain-bindir-write-exec``), so they are sorted out as Arrow first:
a later step's row whose keys have no chain is parked
(:mod:`tetrapipe.transforms.chain_park`); the rest reach Python, in (time,
event id) order, and advance the partial chains here.

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
* A row of a later step that advanced nothing is kept for ``2 x tolerance``
  (event time: until the newest event is that much later): if the step before
  it arrives late (Tetragon's per-CPU buffers reorder), the chain picks it up
  then. Parked or held in Python, the same rows are kept and found.
* ``until`` drops the key's partial chains (for lineage, when the row's
  process is the root).
* The last step completes the chain: one alert row whose ``event_ids`` are
  the steps' events in order, ``count`` the number of steps, and whose id
  hashes the rule and those events (the same chain has the same id anywhere).

Memory: partial chains and held rows are bounded in total (``max_partials``);
the oldest are evicted first and counted (``evicted``), parked rows before
held ones; chains older than their span are dropped as event time moves on.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
from tetrapipe.transforms.chain_park import Parked, key_columns, own_keys, present, row_keys_touch

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


def _micros(times: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Microseconds since the epoch of a timestamp column (0 where NULL), as numpy."""
    unit = pa.timestamp("us", tz=getattr(times.type, "tz", None))
    return np.asarray(pc.fill_null(times.cast(unit).cast(pa.int64()), 0), dtype=np.int64)


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
    #: of ``held``, rows kept as Arrow (:mod:`~tetrapipe.transforms.chain_park`)
    parked: int = 0
    evicted: int = 0
    expired: int = 0
    completed: int = 0


class ChainEngine:
    """Partial chains of sequence rules across batches; :meth:`feed` turns step rows into alert rows."""

    def __init__(self, rules: list[Rule], *, max_partials: int = 100_000, park: bool = True) -> None:
        """``park=False`` visits every step row in Python, each as a whole row through :meth:`_one`: the plain
        path the tests hold the parking and the first steps' shortcut (:meth:`_visit`) to."""
        self.rules = rules
        self.max_partials = max_partials
        self.park = park
        self.stats = ChainStats()
        cols = set(BASE_COLUMNS)
        for r in rules:
            cols |= output_columns(r)
        self.columns = [c for c in dict.fromkeys([*BASE_COLUMNS, *sorted(cols)])]
        self._partials: OrderedDict[tuple[int, Any, int], _Partial] = OrderedDict()
        #: per rule, how many partial chains each key has (which keys a later step's row may find a chain under)
        self._open: list[dict[Any, int]] = [{} for _ in rules]
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
        #: rows of later steps no chain could use yet, kept as Arrow (see chain_park)
        self._parked = Parked(len(rules))

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

        Vectorized first (see :mod:`~tetrapipe.transforms.chain_park`): the
        first-seen steps, then, per rule, which rows of a later step have a key
        a chain could be under; the others are parked as Arrow. Only the rows
        left (first steps, and later steps with a chance) become Python dicts,
        visited one by one in (time, event id) order.
        """
        if rows.num_rows == 0:
            return ALERT_SCHEMA.empty_table()
        order = np.asarray(
            pc.sort_indices(
                rows.select(["time", "event_id"]), sort_keys=[("time", "ascending"), ("event_id", "ascending")]
            ),
            dtype=np.int64,
        )
        us = _micros(rows.column("time"))[order]
        masks = [np.asarray(rows.column(f"_q{r}").fill_null(0), dtype=np.int64)[order] for r in range(len(self.rules))]
        self._first_seen(rows, order, masks)
        keep = np.zeros(len(order), dtype=bool)
        for r, q in enumerate(masks):
            n = self._steps[r]
            later_only = ((q & ((1 << n) - 2)) != 0) & ((q & 1) == 0) & (((q >> n) & 1) == 0)
            if self.park and (later_only.any() or self._parked.has(r)):
                by, columns = self.rules[r].sequence.by, self._by[r]
                starts = pa.array(order[(q & 1) != 0])
                firsts = set(
                    own_keys(rows.select(present(rows, columns)).take(starts), columns).drop_null().to_pylist()
                )
                # a parked row's keys had no chain when it was parked: only a first step since can have opened one
                self._unpark(r, pa.array(list(firsts), pa.string()))
                later = np.nonzero(later_only)[0]
                if len(later):
                    keyed = rows.select(present(rows, key_columns(by, columns))).take(pa.array(order[later]))
                    keys = pa.array(list(firsts.union(self._open[r])), pa.string())
                    touch = row_keys_touch(keyed, by, columns, keys) if len(keys) else np.zeros(len(later), bool)
                    if not touch.all():
                        park = later[~touch]
                        self._parked.add(r, rows, order[park], us[park], q[park], keyed.filter(pa.array(~touch)))
                        q[park] = 0
            keep |= q != 0
        self._bound()
        out: list[dict[str, Any]] = []
        positions = np.nonzero(keep)[0]
        if len(positions):
            self._visit(rows, order[positions], us[positions], [m[positions] for m in masks], out)
        self._watermark_us = max(self._watermark_us, int(us.max()))
        self._expire()
        self.stats.partials = len(self._partials)
        self.stats.held = len(self._held) + self._parked.rows
        self.stats.parked = self._parked.rows
        if not emit or not out:
            return ALERT_SCHEMA.empty_table()
        return pa.Table.from_pylist(out, schema=ALERT_SCHEMA)

    def _visit(
        self, rows: pa.Table, idx: np.ndarray, us: np.ndarray, masks: list[np.ndarray], out: list[dict[str, Any]]
    ) -> None:
        """Visit rows ``idx`` of ``rows`` (in event order; ``us``, ``masks``: theirs) one by one, as :meth:`_one`.

        Most such rows only start a chain: their sole bit is the first step of
        one rule (every outbound connection of a container is the first step of
        ``chain-reverse-shell``). Of those, a partial chain keeps only the
        slimmed columns (:func:`~tetrapipe.ruleset.sequence.step_columns`), and
        :meth:`_one` reads nothing else but the key: they are read as exactly
        those columns, not as whole rows (the lists of ancestors above all),
        and go the way :meth:`_one` sends a first step, in the same order
        among the others. The other rows are whole dicts, as before.
        """
        n = len(idx)
        rules = np.zeros(n, dtype=np.int64)
        first = np.full(n, -1, dtype=np.int64)
        for r, m in enumerate(masks):
            rules += m != 0
            first[m == 1] = r
        first[rules != 1] = -1
        if not self.park:
            first[:] = -1  # the plain path (the tests' reference): every row whole, through _one
        whole = np.nonzero(first < 0)[0]
        visits: list[Any] = [None] * n
        if len(whole):
            for j, row in zip(whole.tolist(), self._dicts(rows.take(pa.array(idx[whole])), us[whole]), strict=True):
                visits[j] = row
        for r in range(len(self.rules)):
            at = np.nonzero(first == r)[0]
            if len(at):
                for j, start in zip(at.tolist(), self._starts(r, rows.take(pa.array(idx[at])), us[at]), strict=True):
                    visits[j] = start
        bits = [m.tolist() for m in masks]
        for j, (r, visit) in enumerate(zip(first.tolist(), visits, strict=True)):
            if r < 0:
                for q, b in enumerate(bits):
                    if b[j]:
                        self._one(q, visit, visit["_us"], b[j], out)
                continue
            key, slim = visit
            if key is not None:  # as _one does with a row whose only bit is the first step
                chain = _Partial(slim["_us"], slim["_us"], [slim])
                self._put(r, key, 1, chain)
                self._catch_up(r, key, 1, chain, out)

    def _starts(self, r: int, table: pa.Table, us: np.ndarray) -> list[tuple[Any, dict[str, Any]]]:
        """Per row of ``table`` (first steps of rule ``r`` only): its key and its slimmed dict (see :meth:`_visit`)."""
        slim, by = self._slim[r], self._by[r]
        names = list(dict.fromkeys([*slim, *by]))
        read = set(self.columns).intersection(table.schema.names)  # what _dicts would have read
        values = [
            us.tolist() if c == "_us" else table.column(c).to_pylist() if c in read else [None] * len(us) for c in names
        ]
        rows = [dict(zip(names, cells, strict=True)) for cells in zip(*values, strict=True)]
        if len(names) == len(slim):  # the key's columns are among the kept ones (always so by lineage)
            return [(self._own_key(r, row), row) for row in rows]
        return [(self._own_key(r, row), {c: row[c] for c in slim}) for row in rows]

    def _dicts(self, table: pa.Table, us: np.ndarray) -> list[dict[str, Any]]:
        """Rows as dicts of the engine's columns plus ``_us`` (column by column: Arrow converts at C speed)."""
        names = [c for c in self.columns if c in table.schema.names]
        values = [table.column(c).to_pylist() for c in names]
        names.append("_us")
        values.append(us.tolist())
        return [dict(zip(names, cells, strict=True)) for cells in zip(*values, strict=True)]

    def _drop(self, pkey: tuple[int, Any, int]) -> None:
        """Forget a partial chain's key once no other partial chain of its rule is under it."""
        r, key, _s = pkey
        left = self._open[r][key] - 1
        if left:
            self._open[r][key] = left
        else:
            del self._open[r][key]

    def _unpark(self, r: int, keys: pa.Array) -> None:
        """Parked rows of rule ``r`` under one of ``keys`` become held rows again (before the batch runs)."""
        if not len(keys) or not self._parked.has(r):
            return
        for table, idx, us, bits in self._parked.take_touching(r, self.rules[r].sequence.by, self._by[r], keys):
            for row, b in zip(self._dicts(table.take(pa.array(idx)), us), bits.tolist(), strict=True):
                self._hold(r, row, b)

    def _hold(self, r: int, row: dict[str, Any], bits: int) -> None:
        hkey = (r, row["event_id"])
        self._held[hkey] = (bits, row)
        for key in self._keys(r, row):
            self._held_by_key.setdefault((r, key), []).append(hkey)
        self._bound()

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

    def _first_seen(self, rows: pa.Table, order: np.ndarray, masks: list[np.ndarray]) -> None:
        """Clear, in ``masks``, the first-seen steps of rows whose values were seen before (and remember them).

        In (time, event id) order, row by row, every rule in turn: the same
        values, LRU order and trimming as if each row were taken alone.
        """
        rules = [r for r in range(len(self.rules)) if self._fs[r]]
        if not rules:
            return
        wanted = {r: sum(1 << k for k in self._fs[r]) for r in rules}
        hit = np.zeros(len(order), dtype=bool)
        for r in rules:
            hit |= (masks[r] & wanted[r]) != 0
        positions = np.nonzero(hit)[0]
        if not len(positions):
            return
        names = sorted({c for r in rules for cs in self._fs[r].values() for c in cs})
        # only the columns the steps are first seen by (the rows' others, lists among them, are not read)
        sub = rows.select([c for c in names if c in rows.schema.names]).take(pa.array(order[positions]))
        values = {c: sub.column(c).to_pylist() if c in sub.schema.names else [None] * len(sub) for c in names}
        seen = self._seen
        bits_of = {r: masks[r][positions].tolist() for r in rules}  # Python ints: no numpy scalar per look-up
        for j in range(len(positions)):
            for r in rules:
                bits = bits_of[r][j]
                if not bits & wanted[r]:
                    continue
                for k, columns in self._fs[r].items():
                    if bits >> k & 1:
                        key = (r, k, tuple(values[c][j] for c in columns))
                        if key in seen:
                            seen.move_to_end(key)
                            bits &= ~(1 << k)
                        else:
                            seen[key] = None
                while len(seen) > self.seen_capacity:
                    seen.popitem(last=False)
                bits_of[r][j] = bits
        for r in rules:
            masks[r][positions] = bits_of[r]

    def _one(self, r: int, row: dict[str, Any], t: int, bits: int, out: list[dict[str, Any]]) -> None:
        """One row of rule ``r`` (``bits``: its steps, first-seen ones already checked) in event order."""
        n = self._steps[r]
        if bits >> n & 1:  # until: the key's partial chains are over
            key = row.get("exec_id") if self.rules[r].sequence.by == "lineage" else self._own_key(r, row)
            for s in range(1, n):
                if self._partials.pop((r, key, s), None) is not None:
                    self._drop((r, key, s))
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
            self._hold(r, row, bits)

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
        self._drop((r, key, s))
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
        if self._partials.pop((r, key, s), None) is None:
            self._open[r][key] = self._open[r].get(key, 0) + 1
        self._partials[(r, key, s)] = chain
        self._bound()

    def _bound(self) -> None:
        """At most ``max_partials`` partial chains and held rows (parked ones count as held, and go first)."""
        while True:
            held = len(self._held) + self._parked.rows
            excess = len(self._partials) + held - self.max_partials
            if excess <= 0:
                return
            if held < len(self._partials):
                self._drop(self._partials.popitem(last=False)[0])
                self.stats.evicted += 1
            elif self._parked.rows:
                k = min(excess, self._parked.rows, held - len(self._partials) + 1)
                self._parked.drop_oldest(k)
                self.stats.evicted += k
            else:
                self._held.popitem(last=False)
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
            self._drop(self._partials.popitem(last=False)[0])
            self.stats.expired += 1
        # held rows: every one older than twice its tolerance (few: the rest is parked, and expires alike)
        for hkey in [h for h, (_b, row) in self._held.items() if row["_us"] < w - 2 * self._tol[h[0]]]:
            del self._held[hkey]
        for r in range(len(self.rules)):
            self._parked.expire(r, w - 2 * self._tol[r])
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
        return rows * 1_200 + len(self._partials) * 200 + self._parked.nbytes()


__all__ = ["BASE_COLUMNS", "ChainEngine", "ChainStats"]
