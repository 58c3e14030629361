"""Detection: every enabled rule over each micro-batch at once, alerts out.

Why one DuckDB statement per batch: a rule engine that calls Python per
event per rule costs microseconds times rules times events; here the batch's
Arrow data is scanned by DuckDB (zero copy), each kind's rows against the
rules that name that kind only, sub-expressions the rules share computed once
(see :mod:`tetrapipe.transforms.maskplan`), and only matching rows come back
(see :mod:`tetrapipe.ruleset.plan`). Python only touches matches.

State kept across batches (bounded):

* **dedup**: alerts are folded per (rule, dedup key, tumbling window). The
  first batch that sees an alert emits a row with its ``alert_id``; a later
  batch with more events of the same alert emits a *follow-up row* with the
  same ``alert_id`` and the count of the new events only. Counts therefore
  add up: ``SELECT alert_id, sum(count) FROM alerts GROUP BY alert_id`` is
  one row per alert (the backtest computes exactly that). The open windows
  are remembered so that follow-ups are not announced as new alerts.
* **new terms** (``new_terms:`` rules, e.g. first outbound connection of a
  binary in a workload): the set of combinations already seen, an LRU of
  ``new_terms_capacity`` hashes; :meth:`Detector.restore` reloads it from
  the history a flow reads for it (see :mod:`tetrapipe.transforms.base`), so
  a restart does not re-alert on everything.
* **chains** (``sequence:`` rules): the partial chains of
  :class:`~tetrapipe.transforms.chains.ChainEngine`, advanced by the rows the
  same batch scan finds matching a step; rebuilt after a restart by replaying
  the recent history's step rows (their alerts are stored already).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tetrapipe.ruleset.compiler import COLUMNS, sql_words
from tetrapipe.ruleset.model import Rule, RuleSet
from tetrapipe.ruleset.plan import (
    ALERT_EVENT_COLUMNS,
    DEFAULT_MAX_EVENT_IDS,
    LIVE_GROUP_ORDER,
    MASK_BITS,
    group_sql,
    live_group_sql,
    live_message_sql,
    mask_sql,
    match_sql,
    rule_columns,
    rules_table_sql,
)
from tetrapipe.schema import ALERT_SCHEMA
from tetrapipe.textsafe import visible
from tetrapipe.transforms.alertrows import first_events, with_first_events
from tetrapipe.transforms.base import RestoredState, StateRequest
from tetrapipe.transforms.branchpick import BranchPick
from tetrapipe.transforms.chains import ChainEngine
from tetrapipe.transforms.duckslot import PreparedSlots, quiet_arrow_copy_warning, set_bits
from tetrapipe.transforms.maskplan import KindMask, kind_mask_sql, slot_schemas, split_by_kind
from tetrapipe.transforms.newterms import drop_seen_terms
from tetrapipe.transforms.planthread import in_background, planned
from tetrapipe.transforms.thresholds import ThresholdState

#: how long after its window ends an alert id is still remembered (late events)
_GRACE_US = 5 * 60 * 1_000_000
_EPOCH = dt.datetime(1970, 1, 1)
_US = dt.timedelta(microseconds=1)

log = logging.getLogger("tetrapipe.detect")


@dataclass
class DetectorStats:
    batches: int = 0
    events: int = 0
    matches: int = 0
    alert_rows: int = 0
    new_alerts: int = 0
    seconds: float = 0.0
    by_rule: dict[str, int] = field(default_factory=dict)


class Detector:
    """A :data:`~tetrapipe.transforms.base.BatchTransform` that returns ``(events, {"alerts": alerts})``.

    ``on_new_alerts`` is called with the rows of alerts seen for the first time
    in a batch (not their follow-ups), for commands that print alerts as they fire.
    ``per_kind=False`` tests every rule in one flat statement
    (:func:`~tetrapipe.ruleset.plan.mask_sql`) instead of the per-kind plan of
    :mod:`tetrapipe.transforms.maskplan`: the same alerts, slower; the reference
    the tests compare the plan with.
    """

    def __init__(
        self,
        rules: RuleSet | Iterable[Rule],
        *,
        max_event_ids: int | None = DEFAULT_MAX_EVENT_IDS,
        max_open_alerts: int = 200_000,
        new_terms_capacity: int = 1_000_000,
        max_partial_chains: int = 100_000,
        on_new_alerts: Callable[[pa.Table], None] | None = None,
        threads: int | None = None,
        connection: duckdb.DuckDBPyConnection | None = None,
        per_kind: bool = True,
    ) -> None:
        if isinstance(rules, RuleSet):
            rules = rules.enabled()
        rules = [r for r in rules if r.enabled and r.compiled is not None]
        self.rules: list[Rule] = [r for r in rules if r.sequence is None]
        #: sequence rules, evaluated by :attr:`chains` (None without any)
        self.sequence_rules: list[Rule] = [r for r in rules if r.sequence is not None]
        self.chains = ChainEngine(self.sequence_rules, max_partials=max_partial_chains) if self.sequence_rules else None
        #: the chains' step statement reads only the columns it names (DuckDB converts every column it is given)
        self._chain_sql = self.chains.batch_sql("_chain_rows") if self.chains is not None else ""
        self._chain_columns = sql_words(self._chain_sql) | {"_i"}
        quiet_arrow_copy_warning()
        self.on_new_alerts = on_new_alerts
        self.stats = DetectorStats()
        self._max_open = max_open_alerts
        self._terms_capacity = new_terms_capacity
        self._open: OrderedDict[str, int] = OrderedDict()  # alert_id -> window end (us)
        self._seen_terms: OrderedDict[tuple[int, int], None] = OrderedDict()
        #: first-seen rules: when each key was first matched (its learning period starts there), microseconds
        self._key_first: OrderedDict[tuple[int, int], int] = OrderedDict()
        self._watermark_us = 0
        # one private in-memory connection for the detector's life: statements are prepared once and
        # the batch is registered, never copied (``connection`` lets the rule test runner share one
        # between many short-lived detectors)
        self._own_con = connection is None
        self._con = connection if connection is not None else duckdb.connect(":memory:")
        self._con.execute("SET TimeZone = 'UTC'")
        if threads or self._own_con:
            # one thread unless told otherwise: a micro-batch is a few thousand rows, too few for
            # DuckDB's parallelism to pay for its coordination (measured ~10% slower with two)
            self._con.execute(f"SET threads = {int(threads or 1)}")
        if self._own_con:
            # the detector's statements are a scan and a projection each (the grouping: of a few
            # thousand rows at most), for which DuckDB's optimizer only adds planning time; the batch is
            # narrowed to the rules' columns in Python instead of by its projection pushdown
            self._con.execute("PRAGMA disable_optimizer")
        # On its own connection the detector prepares its statements once and registers, once, slots
        # whose content changes per batch: DuckDB then plans nothing per batch (planning was a third of
        # the detector's time). A shared connection (the rule test runner's) gets plain statements.
        self._prepared = self._own_con
        self._statements = PreparedSlots(self._con, "_tetrapipe_detect_")
        self._schema: pa.Schema | None = None
        self._group_rules: tuple[int, ...] = ()
        self._thresholds: ThresholdState | None = None
        wanted = set(rule_columns(self.rules + self.sequence_rules)) | set(self.chains.columns if self.chains else ())
        self._columns: list[str] | None = [c for c in COLUMNS if c in wanted]
        #: the mask statement per kind (see maskplan); None without it or after it failed to bind: mask_sql then
        self._plan: KindMask | None = None
        #: the plan being written on a thread of its own (see :meth:`_kind_mask`)
        self._plan_pending: Future[KindMask | None] | None = None
        #: the plan the branch choice is for, and the choice (see _kind_masks)
        self._pick: tuple[KindMask, BranchPick] | None = None
        #: the step bits of the sequence rules, when the batch's per-kind statements found them (see _masks)
        self._steps_found: dict[str, np.ndarray] | None = None
        if self.rules:
            # the per-kind statements compute the sequence rules' step bits too: the batch is not scanned again
            plan = lambda: kind_mask_sql(self.rules, "_batch", self.sequence_rules)  # noqa: E731
            if per_kind and self._own_con:
                self._plan_pending = in_background(plan)
            elif per_kind:
                self._kind_mask = planned(plan)
            self._mask: str | None = None
            self._max_event_ids = max_event_ids
            self._term_rules = [i for i, r in enumerate(self.rules) if r.compiled.term]
            self._learn = {i: r.compiled.learn_us for i, r in enumerate(self.rules) if r.compiled.learn_us}
            if any(r.compiled.min_count for r in self.rules):
                self._thresholds = ThresholdState(self.rules, capacity=max_open_alerts, max_event_ids=max_event_ids)
            # grouping statements per set of rules that matched in a batch (few distinct sets in practice)
            self._live: dict[tuple[int, ...], tuple[str, str]] = {}
            # what the grouping reads of the matching rows (keys, counted values) and the messages of the first
            # events (over-inclusive: any word of their text): taking and scanning only those is a third of the work
            c = [r.compiled for r in self.rules]
            self._hit_words = {"_i", "time", "event_id"}.union(*(sql_words(f"{x.dedup_key} {x.distinct}") for x in c))
            self._first_words = {"_i", *ALERT_EVENT_COLUMNS}.union(*(sql_words(x.message) for x in c))

    @property
    def _kind_mask(self) -> KindMask | None:
        """The per-kind plan, once written (waits for the thread that writes it, see ``__init__``).

        Writing the plan of 189 rules takes ~0.3 s, half of it in DuckDB (which
        lets other threads run): on a thread of its own it is written while the
        command reads and normalizes its first events. Nothing in it can fail a
        rule (that is the loader's work, done before): a plan that cannot be
        written costs speed only (:func:`_planned`).
        """
        if self._plan_pending is not None:
            pending, self._plan_pending = self._plan_pending, None
            self._plan = pending.result()
        return self._plan

    @_kind_mask.setter
    def _kind_mask(self, plan: KindMask | None) -> None:
        self._plan_pending = None
        self._plan = plan

    def close(self) -> None:
        if self._own_con:
            self._con.close()

    # --- the transform -------------------------------------------------------------------

    def __call__(self, events: pa.Table) -> tuple[pa.Table, dict[str, pa.Table]]:
        started = time.perf_counter()
        self.stats.batches += 1
        self.stats.events += events.num_rows
        try:
            alerts = self.evaluate(events)
        finally:
            self.stats.seconds += time.perf_counter() - started
        return events, ({"alerts": alerts} if alerts.num_rows else {})

    def evaluate(self, events: pa.Table) -> pa.Table:
        """The alert rows (ALERT_SCHEMA) for one batch; updates dedup and new-terms state.

        Two statements (:mod:`tetrapipe.ruleset.plan`'s live path): a bit mask
        of the rules each row matches (predicates only), then, over the matching
        rows and for the rules that matched, keys, grouping and one message per
        alert row. Why not the backtest's statements: planning all rules'
        messages and keys cost DuckDB ~0.1 s a batch, however few rows match,
        and a message costs microseconds per row while an alert row shows one.
        Both statements are prepared once (see ``_run``). The predicates, keys
        and ordering are the same as the backtest's, so the alerts are the same.
        """
        if (not self.rules and self.chains is None) or events.num_rows == 0:
            return ALERT_SCHEMA.empty_table()
        try:
            return self._evaluate(events)
        except duckdb.BinderException:
            if self._columns is None:
                raise
            self._columns = None  # a rule reads a column rule_columns() missed: register them all
            return self._evaluate(events)

    def _evaluate(self, events: pa.Table) -> pa.Table:
        con = self._con
        # one chunk per column: the batch's rows are split by kind, then taken from (hits, first events, chain
        # steps) several times, and a take or filter over two chunks costs more than concatenating them once
        batch = self._narrow(events).combine_chunks()
        batch = batch.append_column("_i", pa.array(np.arange(batch.num_rows, dtype=np.int64)))
        if self._prepared and (self._schema is None or not batch.schema.equals(self._schema)):
            # every source registered before any statement is prepared: each is then prepared once
            self._statements.reset()
            self._statements.register(self._sources(batch.schema))
            self._schema = batch.schema
        if not self._own_con:
            con.execute("PRAGMA disable_optimizer")  # see __init__; restored below for the other users
        self._steps_found = None
        try:
            alerts = self._single(batch) if self.rules else ALERT_SCHEMA.empty_table()
            chained = self._chain_step(batch) if self.chains is not None else None
        finally:
            if not self._own_con:
                con.execute("PRAGMA enable_optimizer")
        if chained is not None and chained.num_rows:
            chained = self._unseen(chained)
        if chained is not None and chained.num_rows:
            self._announce(chained)
            alerts = pa.concat_tables([alerts, chained]) if alerts.num_rows else chained
        return alerts

    def _chain_step(self, batch: pa.Table) -> pa.Table | None:
        """The batch's rows that match a sequence step, fed to the chain engine: its completed chains."""
        assert self.chains is not None
        found = self._steps_found
        if found is None:  # no per-kind statement ran (no single-event rule, or the plan failed): a scan of its own
            steps = batch.select([c for c in batch.schema.names if c in self._chain_columns])
            found = self._run("chains", self._chain_sql, {"_chain_rows": steps}, numpy=True)
        idx = np.asarray(found["_i"], dtype=np.int64)
        if not len(idx):
            return None
        # only the columns the engine reads (a restart feeds it the same, see ChainEngine.history_sql): a
        # step row set is a third of a batch, and taking every column (lists among them) cost more than the scan
        rows = batch.select([c for c in self.chains.columns if c in batch.schema.names]).take(pa.array(idx))
        for r in range(len(self.sequence_rules)):
            rows = rows.append_column(f"_q{r}", pa.array(np.asarray(found[f"_q{r}"], dtype=np.int64)))
        return self.chains.feed(rows)

    def _unseen(self, alerts: pa.Table) -> pa.Table:
        """Chain alerts not stored or sent before: the same events again (a redelivered batch, a re-read
        after a restart) complete the same chain, with the same id, which the history already holds."""
        keep = []
        for aid, last in zip(
            alerts.column("alert_id").to_pylist(), alerts.column("last_time").to_pylist(), strict=True
        ):
            keep.append(aid not in self._open)
            if keep[-1]:
                self._open[aid] = (last - _EPOCH) // _US if isinstance(last, dt.datetime) else 0
        self._evict()
        return alerts if all(keep) else alerts.filter(pa.array(keep))

    def _announce(self, alerts: pa.Table) -> None:
        """Chain alerts are new by construction (one row per completed chain): count them and call back."""
        self.stats.alert_rows += alerts.num_rows
        self.stats.new_alerts += alerts.num_rows
        for rid in alerts.column("rule_id").to_pylist():
            self.stats.by_rule[rid] = self.stats.by_rule.get(rid, 0) + 1
        if self.on_new_alerts is not None:
            self.on_new_alerts(alerts)

    def _single(self, batch: pa.Table) -> pa.Table:
        """The single-event rules over one batch (the mask, then the grouping of the matching rows)."""
        masks = self._masks(batch)
        rows = np.asarray(masks["_i"], dtype=np.int64)
        arrays = [
            np.array(masks[f"_m{k}"], dtype=np.int64) for k in range((len(self.rules) + MASK_BITS - 1) // MASK_BITS)
        ]
        if self._term_rules:
            drop_seen_terms(
                batch, rows, arrays, masks, self._term_rules, self._seen_terms, self._key_first, self._learn
            )
            for memory in (self._seen_terms, self._key_first):
                while len(memory) > self._terms_capacity:
                    memory.popitem(last=False)
        hit = np.zeros(len(rows), dtype=bool)
        for a in arrays:
            hit |= a != 0
        if not hit.any():
            return ALERT_SCHEMA.empty_table()
        arrays = [a[hit] for a in arrays]
        which = tuple(
            k * MASK_BITS + bit for k, a in enumerate(arrays) for bit in set_bits(int(np.bitwise_or.reduce(a)))
        )
        self.stats.matches += sum(int(np.count_nonzero(arrays[i // MASK_BITS] & (1 << (i % MASK_BITS)))) for i in which)
        hits = batch.select(self._only(batch.schema.names, self._hit_words)).take(pa.array(rows[hit]))
        for k, a in enumerate(arrays):
            hits = hits.append_column(f"_m{k}", pa.array(a))
        # Prepared, the grouping covers every rule that has matched so far, so that the few
        # statements prepared early serve every later batch (a rule without a match in a batch
        # costs a bit test per row); planned per batch, only the rules that matched (planning
        # grows with the text).
        group = which
        if self._prepared:
            group = self._group_rules = tuple(sorted(set(self._group_rules) | set(which)))
        grouping, messages = self._group_statements(group)
        grouped = self._run(group, grouping, {"_hits": hits}, numpy=False)
        first = first_events(batch.select(self._only(batch.schema.names, self._first_words)), grouped)
        said = self._run(("message", group), messages, {"_first": first}, numpy=False).column("message")
        grouped = with_first_events(grouped, first, said)
        order = pc.sort_indices(grouped, [(c, "ascending") for c in LIVE_GROUP_ORDER])  # NULLs last: the default
        return self._fold(grouped.take(order))

    def _masks(self, batch: pa.Table) -> dict[str, np.ndarray]:
        """The mask columns (``_i``, ``_m*``, ``_t*``, ``_k*``) of the rows with a bit set, in batch order.

        From the per-kind plan, rows with only a sequence step's bit come too (their ``_m*`` are 0), and
        the step bits themselves go to :meth:`_chain_step` (:meth:`_split_steps`).
        """
        plan = self._kind_mask
        if plan is not None:
            try:
                masks = self._kind_masks(plan, split_by_kind(batch, plan))
            except duckdb.Error as exc:
                # a rewritten condition DuckDB will not bind (e.g. lower() of a non-text column an ILIKE took):
                # the plain statement from now on, which fails the same way only if the rule itself does
                log.warning("the per-kind rule plan failed (%s): one statement tests every rule from now on", exc)
                self._kind_mask = None
            else:
                order = np.argsort(np.asarray(masks["_i"], dtype=np.int64), kind="stable")
                masks = {k: v[order] for k, v in masks.items()}
                return self._split_steps(masks) if self.chains is not None else masks
        if self._mask is None:
            self._mask = mask_sql(self.rules, "_batch")
        return self._run("mask", self._mask, {"_batch": batch}, numpy=True)

    def _split_steps(self, masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Keep the rows with a sequence step's bit (and those bits) for :meth:`_chain_step`; return the rest.

        The same rows, bits and order (batch order) the chains' own statement gives.
        """
        names = [f"_q{r}" for r in range(len(self.sequence_rules))]
        q = [np.asarray(masks[n], dtype=np.int64) for n in names]
        step = np.zeros(len(masks["_i"]), dtype=bool)
        for a in q:
            step |= a != 0
        self._steps_found = {"_i": np.asarray(masks["_i"], dtype=np.int64)[step]}
        self._steps_found.update((n, a[step]) for n, a in zip(names, q, strict=True))
        return {k: v for k, v in masks.items() if k not in names}

    def _kind_masks(self, plan: KindMask, parts: dict[str, pa.Table]) -> dict[str, np.ndarray]:
        """The mask columns of the kinds the batch holds, one statement each (see KindMask), unordered.

        A kind whose branch tests rules per distinct value also has a row-by-row
        statement giving the same bits: :class:`BranchPick` runs the cheaper.
        """
        if self._pick is None or self._pick[0] is not plan:
            self._pick = (plan, BranchPick([b is not None for b in plan.by_row] or [False] * len(plan.slots)))
        pick = self._pick[1]
        present = [n for n, slot in enumerate(plan.slots) if parts[slot].num_rows] or [0]  # none: an empty result
        results = []
        for n in present:
            slot, rows = plan.slots[n], parts[plan.slots[n]].num_rows
            v = pick.variant(n, rows)
            key, sql = ("kind", slot, v), plan.by_row[n] if v else plan.branches[n]
            if self._prepared:
                self._statements.prepare(key, sql)  # a one-off: not part of what the choice compares
            started = time.thread_time()
            results.append(self._run(key, sql, {slot: parts[slot]}, numpy=True))
            pick.record(n, v, rows, time.thread_time() - started)
        if len(results) == 1:
            return results[0]
        return {
            k: (np.ma.concatenate if any(np.ma.isMaskedArray(r[k]) for r in results) else np.concatenate)(
                [r[k] for r in results]
            )
            for k in results[0]
        }

    def _run(self, key: object, sql: str, sources: dict[str, pa.Table], *, numpy: bool) -> Any:
        """Run ``sql`` over ``sources`` (name -> table): numpy arrays (``numpy``) or an Arrow table.

        Results come straight from the cursor (``con.execute``): ``con.sql(...)`` would bind the
        statement once more to learn its schema.
        """
        con = self._con
        if not self._prepared:
            for source, table in sources.items():
                con.register(source, table)
            try:
                cur = con.execute(sql)
                return cur.fetchnumpy() if numpy else cur.to_arrow_table()
            finally:
                for source in sources:
                    con.unregister(source)
        return self._statements.run(
            key, sql, sources, (lambda cur: cur.fetchnumpy()) if numpy else (lambda cur: cur.to_arrow_table())
        )

    def _sources(self, schema: pa.Schema) -> dict[str, pa.Schema]:
        """Every source the statements read, with its columns, for a batch of ``schema`` (see PreparedSlots)."""
        out = {"_batch": schema}  # the flat mask
        if self.chains is not None:
            out["_chain_rows"] = pa.schema([f for f in schema if f.name in self._chain_columns])
        if self.rules:
            if self._kind_mask is not None:
                out.update(slot_schemas(schema, self._kind_mask))
            groups = (len(self.rules) + MASK_BITS - 1) // MASK_BITS
            hits = pa.schema([schema.field(n) for n in self._only(schema.names, self._hit_words)])
            for k in range(groups):
                hits = hits.append(pa.field(f"_m{k}", pa.int64()))
            out["_hits"] = hits  # the matching rows and their masks (see _single)
            first = pa.schema([schema.field(n) for n in self._only(schema.names, self._first_words)])
            out["_first"] = first.append(pa.field("_r", pa.int64()))  # each alert row's first event (alertrows)
        return out

    def _group_statements(self, which: tuple[int, ...]) -> tuple[str, str]:
        """The grouping and message statements for the rules ``which`` (indices), built once per set."""
        sql = self._live.get(which)
        if sql is None:
            if len(self._live) > 256:
                self._live.clear()
            sql = self._live[which] = (
                live_group_sql(
                    "_hits", rules_table_sql(self.rules, which), self.rules, list(which), self._max_event_ids
                ),
                live_message_sql("_first", self.rules, list(which)),
            )
        return sql

    def _only(self, names: list[str], words: set[str]) -> list[str]:
        """The ``names`` among ``words`` (all of them once a rule was found to read a column no scan saw)."""
        return names if self._columns is None else [n for n in names if n in words]

    def _narrow(self, events: pa.Table) -> pa.Table:
        """Only the columns the rules read (all of them if the batch lacks one, e.g. an older schema)."""
        names = set(events.schema.names)
        if self._columns is None or not all(c in names for c in self._columns):
            return events
        return events.select(self._columns)

    def _fold(self, grouped: pa.Table) -> pa.Table:
        """Tell first sightings from follow-ups, remember open windows, return ALERT_SCHEMA rows."""
        mx = pc.max(grouped.column("last_time")).as_py()
        if mx is not None and isinstance(mx, dt.datetime):
            self._watermark_us = max(self._watermark_us, (mx.replace(tzinfo=None) - _EPOCH) // _US)
        if self._thresholds is not None:  # a threshold rule's window alerts once it holds enough
            grouped = self._thresholds.filter(grouped, self._open)
            self._thresholds.expire(self._watermark_us, _GRACE_US)
        ids = grouped.column("alert_id").to_pylist()
        ends = grouped.column("_bucket_end_us").to_pylist()
        new = np.zeros(len(ids), dtype=bool)
        for i, (aid, end) in enumerate(zip(ids, ends, strict=True)):
            if aid in self._open:
                self._open.move_to_end(aid)
            else:
                new[i] = True
                self._open[aid] = end if end is not None else 0
        self._evict()
        alerts = grouped.drop_columns(["_r", "_bucket_end_us", "_distinct"]).cast(ALERT_SCHEMA)
        self.stats.alert_rows += alerts.num_rows
        n_new = int(new.sum())
        self.stats.new_alerts += n_new
        for rid, n in zip(
            *np.unique(np.asarray(alerts.column("rule_id").to_pylist(), dtype=object), return_counts=True), strict=True
        ):
            self.stats.by_rule[rid] = self.stats.by_rule.get(rid, 0) + int(n)
        if self.on_new_alerts is not None and n_new:
            self.on_new_alerts(alerts.filter(pa.array(new)))
        return alerts

    def _evict(self) -> None:
        limit = self._watermark_us - _GRACE_US
        while self._open:
            aid, end = next(iter(self._open.items()))
            if len(self._open) > self._max_open or (end and end < limit):
                self._open.popitem(last=False)
            else:
                break

    # --- state from the history ------------------------------------------------------------

    def state_request(self) -> StateRequest:
        """The new terms already seen (for ``new_terms:`` rules) and the open alert windows.

        Without them, a restarted ``tetrapipe process`` or a second ``tetrapipe
        ingest`` would announce every workload's first connection again.
        """
        term_rules = [r for r in self.rules if r.compiled.term]
        term_sql = match_sql(term_rules, "events", None) if term_rules else None
        chains = self.chains
        return StateRequest(
            term_sql=term_sql,
            learn=any(r.compiled.learn_us for r in term_rules),
            open_alerts=self._max_open,
            chain_sql=chains.history_sql("time >= $since") if chains else None,
            chain_lookback=dt.timedelta(seconds=chains.lookback_seconds()) if chains else None,
            chain_seen_sql=chains.seen_queries() if chains else [],
            threshold_sql=self._threshold_sql(),
            threshold_lookback=dt.timedelta(
                seconds=max((r.dedup.window_seconds for r in self.rules if r.compiled.min_count), default=0)
            ),
        )

    def _threshold_sql(self) -> str | None:
        """Every window of the threshold rules since ``$since``, counted as the live grouping counts it."""
        rules = [r for r in self.rules if r.compiled.min_count]
        if not rules:
            return None
        matches = f"({match_sql(rules, 'events', 'time >= $since')})"
        return group_sql(matches, rules_table_sql(rules), self._max_event_ids, having=False)

    def restore(self, state: RestoredState) -> None:
        """Remember the new terms and open alert windows the history holds (see :meth:`state_request`)."""
        term_rules = [r for r in self.rules if r.compiled.term]
        index = {id(r): i for i, r in enumerate(self.rules)}
        for r, t in state.terms:
            self._seen_terms[(index[id(term_rules[r])], t)] = None
        for r, k, us in state.key_first:
            self._key_first[(index[id(term_rules[r])], k)] = us
        for aid in state.open_alert_ids:
            self._open[aid] = 0
        if self._thresholds is not None and state.threshold_rows is not None and state.threshold_rows.num_rows:
            # windows still open at the restart: their counts so far (fired ones are among the open alerts)
            mine = [i for i, r in enumerate(self.rules) if r.compiled.min_count]
            rows = state.threshold_rows
            rows = rows.set_column(
                rows.schema.get_field_index("_r"), "_r", pa.array([mine[r] for r in rows.column("_r").to_pylist()])
            )
            self._thresholds.filter(rows, self._open, emit=False)
        for r, k, values in state.chain_seen if self.chains is not None else ():
            self.chains.remember_seen(r, k, values)
        if self.chains is not None and state.chain_rows is not None:
            # the chains these rows completed were alerted (and stored) before the restart: not again
            self.chains.feed(state.chain_rows, emit=False)


def format_alert(row: dict) -> str:
    """One line for a terminal: severity, rule, where, message.

    The message quotes the event (arguments, paths, pod names): it is made
    visible, so the line cannot carry a terminal escape or a forged second line.
    """
    where = f"{row.get('namespace')}/{row.get('pod')}" if row.get("pod") else (row.get("node_name") or "(host)")
    when = str(row.get("time") or "")[:23]
    count = f" x{row['count']}" if row.get("count", 1) and row.get("count", 1) > 1 else ""
    line = f"{when} {(row.get('severity') or '').upper():8s} {row.get('rule_id')} {where}: {row.get('message')}{count}"
    return visible(line)


__all__ = ["Detector", "DetectorStats", "format_alert"]
