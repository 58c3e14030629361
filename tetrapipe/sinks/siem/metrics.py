"""Prometheus view of the sinks, read at scrape time from their counters (no second set to keep in step).

Served by :class:`tetrapipe.metrics.MetricsServer` with every other long-running
command's metrics:

* ``tetrapipe_sink_records_total{sink, outcome}``: delivered, retried, spooled,
  dropped, rejected, replayed -- alert on ``dropped`` and ``rejected`` above 0;
* ``tetrapipe_sink_failures_total{sink}``: failed delivery attempts;
* ``tetrapipe_sink_spool_records{sink}``: records waiting on disk for the SIEM;
* ``tetrapipe_sink_up{sink}``: 1 when the SIEM took the last attempt;
* ``tetrapipe_sink_routed_total{sink, record_type}``: records routed after filters.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tetrapipe.sinks.siem.router import Router

OUTCOMES = ("delivered", "retried", "spooled", "dropped", "rejected", "replayed")


class SinkCollector(Collector):
    def __init__(self, router: Router) -> None:
        self.router = router

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        records = CounterMetricFamily(
            "tetrapipe_sink_records", "Records by sink and outcome", labels=["sink", "outcome"]
        )
        failures = CounterMetricFamily("tetrapipe_sink_failures", "Failed delivery attempts", labels=["sink"])
        spool = GaugeMetricFamily("tetrapipe_sink_spool_records", "Records waiting in the disk spool", labels=["sink"])
        up = GaugeMetricFamily("tetrapipe_sink_up", "1 when the sink's peer took the last attempt", labels=["sink"])
        routed = CounterMetricFamily(
            "tetrapipe_sink_routed", "Records routed to the sink (after filters)", labels=["sink", "record_type"]
        )
        for name, st in self.router.stats().items():
            for outcome in OUTCOMES:
                records.add_metric([name, outcome], st[outcome])
            failures.add_metric([name], st["failures"])
            spool.add_metric([name], st["spool_records"])
            up.add_metric([name], 1.0 if st["up"] else 0.0)
            routed.add_metric([name, "alert"], st["routed_alerts"])
            routed.add_metric([name, "event"], st["routed_events"])
        yield from (records, failures, spool, up, routed)
