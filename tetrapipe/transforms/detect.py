"""Detection: every enabled rule over each micro-batch at once, alerts out.

Why one DuckDB statement per batch: a rule engine that calls Python per
event per rule costs microseconds times rules times events; here the batch's
Arrow data is scanned once by DuckDB (zero copy), every rule is a ``CASE``
in that one scan behind a cheap ``kind`` prefilter, and only matching rows
come back (see :mod:`tetrapipe.ruleset.plan`). Python only touches matches.

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
  ``new_terms_capacity`` hashes; :meth:`Detector.seed_from_lake` reloads it
  from the history so a restart does not re-alert on everything.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tetrapipe.ruleset.model import Rule, RuleSet
from tetrapipe.ruleset.plan import DEFAULT_MAX_EVENT_IDS, group_sql, match_sql, rules_table_sql
from tetrapipe.schema import ALERT_SCHEMA

#: how long after its window ends an alert id is still remembered (late events)
_GRACE_US = 5 * 60 * 1_000_000


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
    """A :data:`~tetrapipe.ingest.BatchTransform` that returns ``(events, {"alerts": alerts})``.

    ``on_new_alerts`` is called with the rows of alerts seen for the first time
    in a batch (not their follow-ups), for commands that print alerts as they fire.
    """

    def __init__(self, rules: RuleSet | Iterable[Rule], *, max_event_ids: int | None = DEFAULT_MAX_EVENT_IDS,
                 max_open_alerts: int = 200_000, new_terms_capacity: int = 1_000_000,
                 on_new_alerts: Callable[[pa.Table], None] | None = None, threads: int | None = None,
                 connection: duckdb.DuckDBPyConnection | None = None) -> None:
        if isinstance(rules, RuleSet):
            rules = rules.enabled()
        self.rules: list[Rule] = [r for r in rules if r.enabled and r.compiled is not None]
        self.on_new_alerts = on_new_alerts
        self.stats = DetectorStats()
        self._max_open = max_open_alerts
        self._terms_capacity = new_terms_capacity
        self._open: OrderedDict[str, int] = OrderedDict()  # alert_id -> window end (us)
        self._seen_terms: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._watermark_us = 0
        self._has_terms = any(r.compiled.term for r in self.rules)
        # one private in-memory connection for the detector's life: planning is done once per
        # statement shape, and the batch is registered, never copied (``connection`` lets the rule
        # test runner share one between many short-lived detectors)
        self._own_con = connection is None
        self._con = connection if connection is not None else duckdb.connect(":memory:")
        self._con.execute("SET TimeZone = 'UTC'")
        if threads:
            self._con.execute(f"SET threads = {int(threads)}")
        if self.rules:
            self._match = match_sql(self.rules, "_batch")
            self._group = group_sql("_matches", rules_table_sql(self.rules), max_event_ids)

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
        """The alert rows (ALERT_SCHEMA) for one batch; updates dedup and new-terms state."""
        if not self.rules or events.num_rows == 0:
            return ALERT_SCHEMA.empty_table()
        self._con.register("_batch", events)
        try:
            matches = self._con.sql(self._match).to_arrow_table()
        finally:
            self._con.unregister("_batch")
        if matches.num_rows == 0:
            return ALERT_SCHEMA.empty_table()
        if self._has_terms:
            matches = self._first_terms(matches)
            if matches.num_rows == 0:
                return ALERT_SCHEMA.empty_table()
        self.stats.matches += matches.num_rows
        self._con.register("_matches", matches)
        try:
            grouped = self._con.sql(self._group).to_arrow_table()
        finally:
            self._con.unregister("_matches")
        return self._fold(grouped)

    def _first_terms(self, matches: pa.Table) -> pa.Table:
        """Drop new-terms matches whose combination was seen before (in this batch or earlier ones)."""
        term = matches.column("_term")
        has = pc.is_valid(term)
        if not pc.any(has).as_py():
            return matches
        idx = pc.indices_nonzero(has)
        cand = matches.select(["_r", "_term", "time", "event_id"]).take(idx)
        order = pc.sort_indices(cand, sort_keys=[("time", "ascending", "at_end"), ("event_id", "ascending", "at_end")])
        rs = cand.column("_r").take(order).to_numpy(zero_copy_only=False)
        terms = cand.column("_term").take(order).to_numpy(zero_copy_only=False)
        rows = idx.to_numpy()[order.to_numpy()]
        keep = np.ones(matches.num_rows, dtype=bool)
        keep[rows] = False
        seen = self._seen_terms
        for r, t, row in zip(rs.tolist(), terms.tolist(), rows.tolist(), strict=True):
            key = (r, t)
            if key in seen:
                seen.move_to_end(key)
                continue
            seen[key] = None
            keep[row] = True
        while len(seen) > self._terms_capacity:
            seen.popitem(last=False)
        return matches if keep.all() else matches.filter(pa.array(keep))

    def _fold(self, grouped: pa.Table) -> pa.Table:
        """Tell first sightings from follow-ups, remember open windows, return ALERT_SCHEMA rows."""
        ids = grouped.column("alert_id").to_pylist()
        ends = grouped.column("_bucket_end_us").to_pylist()
        new = np.zeros(len(ids), dtype=bool)
        for i, (aid, end) in enumerate(zip(ids, ends, strict=True)):
            if aid in self._open:
                self._open.move_to_end(aid)
            else:
                new[i] = True
                self._open[aid] = end if end is not None else 0
        last = grouped.column("last_time")
        mx = pc.max(last).as_py()
        if mx is not None:
            self._watermark_us = max(self._watermark_us, int(mx.replace(tzinfo=None).timestamp() * 1_000_000)
                                     if isinstance(mx, dt.datetime) else 0)
        self._evict()
        alerts = grouped.drop_columns(["_r", "_bucket_end_us"]).cast(ALERT_SCHEMA)
        self.stats.alert_rows += alerts.num_rows
        n_new = int(new.sum())
        self.stats.new_alerts += n_new
        for rid, n in zip(*np.unique(np.asarray(alerts.column("rule_id").to_pylist(), dtype=object),
                                     return_counts=True), strict=True):
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

    def seed_from_lake(self, lake, since: dt.datetime | dt.timedelta | None = None) -> int:  # noqa: ANN001
        """Remember the new terms and open alert windows already in ``lake``; returns terms loaded.

        Without this, a restarted ``tetrapipe process`` or a second ``tetrapipe
        ingest`` would announce every workload's first connection again.
        """
        from tetrapipe import history

        con = history.connect(lake)
        try:
            loaded = 0
            term_rules = [r for r in self.rules if r.compiled.term]
            if term_rules:
                where = None
                if since is not None:
                    cutoff = dt.datetime.now(dt.UTC).replace(tzinfo=None) - since if isinstance(since, dt.timedelta) \
                        else since
                    where = f"time >= TIMESTAMP '{cutoff.isoformat(sep=' ')}'"
                sql = match_sql(term_rules, "events", where)
                rows = con.sql(f"SELECT DISTINCT _r, _term FROM ({sql}) WHERE _term IS NOT NULL").fetchall()
                index = {id(r): i for i, r in enumerate(self.rules)}
                for r, t in rows:
                    self._seen_terms[(index[id(term_rules[r])], t)] = None
                    loaded += 1
            open_rows = con.sql("SELECT alert_id, max(last_time) FROM alerts GROUP BY alert_id "
                                "ORDER BY 2 NULLS FIRST").fetchall()
            for aid, _last in open_rows[-self._max_open:]:
                self._open[aid] = 0
            return loaded
        finally:
            con.close()


def format_alert(row: dict) -> str:
    """One line for a terminal: severity, rule, where, message."""
    where = f"{row.get('namespace')}/{row.get('pod')}" if row.get("pod") else (row.get("node_name") or "(host)")
    when = str(row.get("time") or "")[:23]
    count = f" x{row['count']}" if row.get("count", 1) and row.get("count", 1) > 1 else ""
    return f"{when} {row.get('severity', '').upper():8s} {row.get('rule_id')} {where}: {row.get('message')}{count}"


__all__ = ["Detector", "DetectorStats", "format_alert"]
