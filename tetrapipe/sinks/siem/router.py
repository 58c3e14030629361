"""Which records go to which sink, in which format.

A route is a sink plus what it wants: ``forward`` (``alerts``, ``events`` or
``all``), filters, and a format. The router takes the tables of one batch --
alerts and enriched events, as the processor produces them -- selects each
route's rows with Arrow compute (no Python per event that is filtered out),
formats the rest and hands them to the sink.

Filters, all optional, combined with AND:

* ``kinds`` / ``exclude_kinds``: Tetragon event kinds; apply to events only.
* ``namespaces`` / ``exclude_namespaces``: glob patterns on the Kubernetes
  namespace, for events and alerts; ``(host)`` matches host processes (no
  namespace).
* ``min_severity``: info < low < medium < high < critical; alerts only.
* ``rules`` / ``exclude_rules``: glob patterns on the rule id; alerts only.

A sink that raises (a bug, not a delivery failure: those the sink absorbs)
does not stop the others; its records are counted as dropped and logged.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tetrapipe.formats import Formatter, get_formatter, is_alert
from tetrapipe.sinks.siem.base import Sink
from tetrapipe.units import SEVERITIES, severity_rank

log = logging.getLogger("tetrapipe.sinks.router")

HOST_NAMESPACE = "(host)"


@dataclass
class RouteFilter:
    kinds: list[str] | None = None
    exclude_kinds: list[str] | None = None
    namespaces: list[str] | None = None
    exclude_namespaces: list[str] | None = None
    min_severity: str | None = None
    rules: list[str] | None = None
    exclude_rules: list[str] | None = None

    @classmethod
    def from_config(cls, data: dict[str, Any] | None) -> RouteFilter:
        data = data or {}
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})

    # --- one record ----------------------------------------------------------------------

    def match(self, row: dict[str, Any]) -> bool:
        """The filter on one native row (records read back from JSON lines)."""
        alert = is_alert(row)
        if not alert:
            kind = row.get("kind")
            if self.kinds is not None and kind not in self.kinds:
                return False
            if self.exclude_kinds and kind in self.exclude_kinds:
                return False
        ns = row.get("namespace") or HOST_NAMESPACE
        if self.namespaces is not None and not _globs(ns, self.namespaces):
            return False
        if self.exclude_namespaces and _globs(ns, self.exclude_namespaces):
            return False
        if alert:
            if self.min_severity and severity_rank(row.get("severity")) < severity_rank(self.min_severity):
                return False
            rule = row.get("rule_id") or ""
            if self.rules is not None and not _globs(rule, self.rules):
                return False
            if self.exclude_rules and _globs(rule, self.exclude_rules):
                return False
        return True

    # --- a table ---------------------------------------------------------------------------

    def apply(self, table: pa.Table, alerts: bool) -> pa.Table:
        """The rows of ``table`` that pass, computed column-wise."""
        mask = pa.array([True] * table.num_rows, pa.bool_()) if table.num_rows else None
        if mask is None:
            return table

        def both(m: pa.Array) -> None:
            nonlocal mask
            mask = pc.and_(mask, pc.fill_null(m, False))

        if not alerts and "kind" in table.column_names:
            kind = table.column("kind")
            if self.kinds is not None:
                both(pc.is_in(kind, pa.array(self.kinds, pa.string())))
            if self.exclude_kinds:
                both(pc.invert(pc.fill_null(pc.is_in(kind, pa.array(self.exclude_kinds, pa.string())), False)))
        if (self.namespaces is not None or self.exclude_namespaces) and "namespace" in table.column_names:
            ns = pc.fill_null(table.column("namespace"), HOST_NAMESPACE)
            present = [v for v in pc.unique(ns).to_pylist() if v is not None]
            if self.namespaces is not None:
                both(pc.is_in(ns, pa.array([v for v in present if _globs(v, self.namespaces)], pa.string())))
            if self.exclude_namespaces:
                keep = [v for v in present if not _globs(v, self.exclude_namespaces)]
                both(pc.is_in(ns, pa.array(keep, pa.string())))
        if alerts and "severity" in table.column_names and self.min_severity:
            floor = severity_rank(self.min_severity)
            ok = [s for s in SEVERITIES if SEVERITIES.index(s) >= floor]
            both(pc.is_in(pc.utf8_lower(pc.fill_null(table.column("severity"), "info")), pa.array(ok, pa.string())))
        if alerts and "rule_id" in table.column_names and (self.rules is not None or self.exclude_rules):
            rules = pc.fill_null(table.column("rule_id"), "")
            present = [v for v in pc.unique(rules).to_pylist() if v is not None]
            keep = [
                v
                for v in present
                if (self.rules is None or _globs(v, self.rules))
                and not (self.exclude_rules and _globs(v, self.exclude_rules))
            ]
            both(pc.is_in(rules, pa.array(keep, pa.string())))
        return table.filter(mask)


def _globs(value: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


@dataclass
class RouteCounts:
    alerts: int = 0
    events: int = 0


@dataclass
class Route:
    name: str
    sink: Sink
    format: str = "native"
    forward: str = "alerts"
    filter: RouteFilter = field(default_factory=RouteFilter)
    include_raw: bool = False
    counts: RouteCounts = field(default_factory=RouteCounts)

    def __post_init__(self) -> None:
        if self.forward not in ("alerts", "events", "all"):
            raise ValueError(f"route {self.name}: forward must be alerts, events or all, not {self.forward!r}")
        self.formatter: Formatter = get_formatter(self.format, include_raw=self.include_raw)

    def wants(self, alerts: bool) -> bool:
        return self.forward == "all" or self.forward == ("alerts" if alerts else "events")


class Router:
    """Fans a batch out to every route's sink; thread-safe; one background pump optional."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self._pump: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def sinks(self) -> list[Sink]:
        return [r.sink for r in self.routes]

    # --- input ----------------------------------------------------------------------------

    def on_alerts(self, alerts: pa.Table) -> None:
        """Drop-in for :class:`tetrapipe.flows.process.Processor`'s ``on_alerts`` callback."""
        self.handle(alerts=alerts)

    def handle(self, alerts: pa.Table | None = None, events: pa.Table | None = None) -> None:
        for route in self.routes:
            for table, is_alerts in ((alerts, True), (events, False)):
                if table is None or table.num_rows == 0 or not route.wants(is_alerts):
                    continue
                selected = route.filter.apply(table, alerts=is_alerts)
                if not selected.num_rows:
                    continue
                if not route.include_raw and "raw" in selected.column_names:
                    selected = selected.drop_columns(["raw"])
                self._send(route, selected.to_pylist(), is_alerts)

    def handle_rows(self, rows: list[dict[str, Any]]) -> None:
        """Native rows as dicts (JSON lines on stdin, a replay); alerts and events told apart by their keys."""
        for route in self.routes:
            alerts = [r for r in rows if is_alert(r) and route.wants(True) and route.filter.match(r)]
            events = [r for r in rows if not is_alert(r) and route.wants(False) and route.filter.match(r)]
            if alerts:
                self._send(route, alerts, True)
            if events:
                self._send(route, events, False)

    def _send(self, route: Route, rows: list[dict[str, Any]], alerts: bool) -> None:
        if alerts:
            route.counts.alerts += len(rows)
        else:
            route.counts.events += len(rows)
        try:
            route.sink.send([route.formatter(r) for r in rows])
        except Exception:
            route.sink.stats.dropped += len(rows)
            log.exception("route %s: sink failed on %d record(s); they are DROPPED", route.name, len(rows))

    # --- lifecycle ---------------------------------------------------------------------------

    def flush(self) -> None:
        for sink in self.sinks:
            try:
                sink.flush()
            except Exception:
                log.exception("sink %s: flush failed", sink.name)

    def poll(self) -> None:
        for sink in self.sinks:
            poll = getattr(sink, "poll", None)
            if poll is not None:
                try:
                    poll()
                except Exception:
                    log.exception("sink %s: poll failed", sink.name)

    def start(self, interval: float = 1.0) -> None:
        """Background thread: ship lingering batches and replay spools even when no new record arrives."""
        if self._pump is not None:
            return
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(interval):
                self.poll()

        self._pump = threading.Thread(target=run, name="tetrapipe-sink-pump", daemon=True)
        self._pump.start()

    def close(self) -> None:
        self._stop.set()
        if self._pump is not None:
            self._pump.join(timeout=10)
            self._pump = None
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("sink %s: close failed", sink.name)

    def stats(self) -> dict[str, dict[str, Any]]:
        return {
            r.name: {**r.sink.stats.as_dict(), "routed_alerts": r.counts.alerts, "routed_events": r.counts.events}
            for r in self.routes
        }

    def backlog(self) -> int:
        return sum(getattr(s, "backlog", 0) for s in self.sinks)

    def unconfirmed(self) -> int:
        """Records the sinks shipped that their peers have not confirmed yet (HEC acks still outstanding)."""
        return sum(getattr(s, "unconfirmed", 0) for s in self.sinks)
