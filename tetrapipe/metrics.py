"""Prometheus metrics and health endpoints for long-running commands (collect, process, run).

One registry per process (not prometheus-client's global one, so tests can
run several collectors side by side), served by a small threaded HTTP server:

* ``/metrics``: the Prometheus text format (process CPU/RSS collectors included);
* ``/healthz``: liveness, 200 while the main loop has beaten its heart within
  ``stall_seconds`` (a wedged loop gets the pod restarted), else 503;
* ``/readyz``: readiness, 200 when every registered check passes (e.g. "Kafka
  is acknowledging"), else 503 with the failing checks named.

It binds to 127.0.0.1 unless told otherwise: metrics can reveal node, pod and
rule names, so every way of starting a listener (flag, environment, the
configuration's ``metrics:`` section without a ``host``, an empty host)
ends up on loopback, and a DaemonSet that wants Prometheus to scrape it says
so explicitly (``--metrics-host 0.0.0.0``, ``metrics.host: 0.0.0.0``). Port
0 picks a free port (``server.port`` tells which).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)

DEFAULT_METRICS_HOST = "127.0.0.1"
#: the collector's port (it serves by default: a DaemonSet the kubelet probes); the other commands serve on request
DEFAULT_METRICS_PORT = 9477
DEFAULT_METRICS_ADDRESS = f"{DEFAULT_METRICS_HOST}:{DEFAULT_METRICS_PORT}"


def new_registry() -> CollectorRegistry:
    """A registry with the process, platform and GC collectors (RSS and CPU matter for a DaemonSet)."""
    reg = CollectorRegistry(auto_describe=True)
    process_collector.ProcessCollector(registry=reg)
    platform_collector.PlatformCollector(registry=reg)
    gc_collector.GCCollector(registry=reg)
    return reg


class Health:
    """Liveness heartbeat and named readiness checks, read by the HTTP handler thread."""

    def __init__(self, stall_seconds: float = 60.0) -> None:
        self.stall_seconds = stall_seconds
        self._beat = time.monotonic()
        self._checks: dict[str, Callable[[], tuple[bool, str]]] = {}

    def heartbeat(self) -> None:
        self._beat = time.monotonic()

    def add_check(self, name: str, check: Callable[[], tuple[bool, str]]) -> None:
        """``check`` returns (ok, detail); it runs in the HTTP thread, so it must only read state."""
        self._checks[name] = check

    def live(self) -> tuple[bool, str]:
        age = time.monotonic() - self._beat
        return age <= self.stall_seconds, f"main loop beat {age:.1f}s ago"

    def ready(self) -> tuple[bool, str]:
        lines, ok = [], True
        for name, check in self._checks.items():
            try:
                good, detail = check()
            except Exception as exc:  # noqa: BLE001 - a broken check reads as not ready
                good, detail = False, f"check failed: {exc}"
            ok &= good
            lines.append(f"{name}: {'ok' if good else 'FAIL'} {detail}".rstrip())
        return ok, "\n".join(lines)


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1: an empty host is loopback, never "all")."""
    text = address.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = DEFAULT_METRICS_HOST, text
    host = host.strip("[]") or DEFAULT_METRICS_HOST
    try:
        num = int(port)
    except ValueError:
        raise ValueError(f"metrics address {address!r}: expected HOST:PORT or PORT") from None
    if not 0 <= num <= 65535:
        raise ValueError(f"metrics address {address!r}: port out of range")
    return host, num


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on a daemon thread."""

    def __init__(self, registry: CollectorRegistry, health: Health, address: str = DEFAULT_METRICS_ADDRESS) -> None:
        host, port = parse_address(address)
        reg, hl = registry, health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(reg), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/livez"):
                    ok, detail = hl.live()
                    self._send(200 if ok else 503, f"{'ok' if ok else 'stalled'}: {detail}\n".encode())
                elif path == "/readyz":
                    ok, detail = hl.ready()
                    self._send(200 if ok else 503, f"{'ready' if ok else 'not ready'}\n{detail}\n".encode())
                else:
                    self._send(404, b"try /metrics, /healthz or /readyz\n")

            def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # scrapes every 15 s would flood stderr
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.host = host
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="tetrapipe-metrics", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_metrics(
    registry: CollectorRegistry, health: Health, host: str | None, port: int | None
) -> MetricsServer | None:
    """Start the endpoints a command was asked for (``port`` 0 or None: none; ``host`` None: 127.0.0.1).

    A port that is taken is the user's mistake, not a crash: it comes back as
    a usage error naming the address.
    """
    if not port:
        return None
    host = host or DEFAULT_METRICS_HOST
    from tetrapipe.errors import UsageProblem

    try:
        return MetricsServer(registry, health, f"{host}:{port}")
    except OSError as exc:
        raise UsageProblem(f"cannot serve metrics on {host}:{port}: {exc}") from exc


class RateMeter:
    """Events per second over a sliding window, for a gauge a dashboard can show without PromQL.

    ``rate(..._events_total[1m])`` is the Prometheus way; the gauge is for a
    human with ``curl /metrics`` and for ``tetrapipe status``-like tools.
    """

    def __init__(self, window_seconds: float = 10.0) -> None:
        self.window = window_seconds
        self._points: deque[tuple[float, float]] = deque()
        self._total = 0.0

    def add(self, n: float, now: float | None = None) -> float:
        """Count ``n`` more events (0 on an idle beat, so the rate decays); returns the current rate."""
        now = time.monotonic() if now is None else now
        self._total += n
        self._points.append((now, self._total))
        while len(self._points) > 2 and now - self._points[1][0] >= self.window:
            self._points.popleft()
        t0, c0 = self._points[0]
        return (self._total - c0) / (now - t0) if now > t0 else 0.0


class PipelineMetrics:
    """What the stream processor exports; ``tetrapipe process`` and ``tetrapipe run`` share the names.

    Updated once per micro-batch from columnar results (never per event), so
    the hot path pays a few dictionary updates per batch. Names (counters get
    ``_total``):

    * ``tetrapipe_process_records_total`` Kafka records (or lines) consumed;
    * ``tetrapipe_process_events_total`` events committed to the lake, and
      ``tetrapipe_process_events_per_second`` over the last 10 s;
    * ``tetrapipe_process_rejects_total`` lines that are not Tetragon events
      (rejects table and dead-letter topic);
    * ``tetrapipe_process_alerts_total{rule_id, severity}``;
    * ``tetrapipe_process_batch_seconds`` histogram: normalize + transforms +
      commit of one micro-batch; ``tetrapipe_process_batch_events`` its size;
    * ``tetrapipe_process_delay_seconds`` histogram: the oldest record of a
      batch, from its Kafka timestamp (when the collector sent it) to the
      commit: the event-to-alert delay including any backlog;
    * ``tetrapipe_process_consumer_lag{topic, partition}`` records in the
      partition not yet in the lake; ``tetrapipe_process_lake_offset`` the last
      offset the lake holds; ``tetrapipe_process_assigned_partitions``;
    * ``tetrapipe_process_offset_resets_total{topic, partition, reason}``:
      the broker's offsets were not where the lake left off (``lake_ahead``:
      topic recreated; ``retention_passed``: records lost before the lake had
      them), whatever the ``--on-offset-reset`` policy then did;
    * ``tetrapipe_process_table_processes`` / ``_table_bytes``: the ancestry
      process table's size (bounded; watch it against the memory limit);
    * ``tetrapipe_process_chain_partials``: partial chains of sequence rules
      held (bounded by the detector's ``max_partial_chains``), and
      ``tetrapipe_process_chain_evictions_total``: those dropped to stay in that
      bound (a chain evicted cannot complete: raise the bound if this grows).
    """

    def __init__(self, registry: CollectorRegistry, prefix: str = "tetrapipe_process_") -> None:
        p = prefix
        self.records = Counter(p + "records", "Kafka records or log lines consumed", registry=registry)
        self.events = Counter(p + "events", "Events committed to the lake", registry=registry)
        self.rejects = Counter(
            p + "rejects", "Lines that are not Tetragon events (rejects table, dead-letter topic)", registry=registry
        )
        self.alerts = Counter(
            p + "alerts", "Alerts raised, by rule and severity", ["rule_id", "severity"], registry=registry
        )
        self.batches = Counter(p + "batches", "Micro-batches committed", registry=registry)
        self.batch_seconds = Histogram(
            p + "batch_seconds",
            "Normalize, transform and commit one micro-batch",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.batch_events = Histogram(
            p + "batch_events",
            "Events in one micro-batch",
            buckets=(10, 100, 1000, 5000, 10_000, 20_000, 50_000, 100_000),
            registry=registry,
        )
        self.delay = Histogram(
            p + "delay_seconds",
            "Oldest record of a batch: Kafka timestamp to commit (event-to-alert delay)",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800),
            registry=registry,
        )
        self.events_per_second = Gauge(
            p + "events_per_second", "Events committed per second over the last 10 s", registry=registry
        )
        self.lag = Gauge(
            p + "consumer_lag",
            "Records in the partition not yet in the lake",
            ["topic", "partition"],
            registry=registry,
        )
        self.lake_offset = Gauge(
            p + "lake_offset", "Last offset of the partition the lake holds", ["topic", "partition"], registry=registry
        )
        self.assigned = Gauge(p + "assigned_partitions", "Partitions this replica owns", registry=registry)
        self.offset_resets = Counter(
            p + "offset_resets",
            "Broker offsets not where the lake left off, by reason",
            ["topic", "partition", "reason"],
            registry=registry,
        )
        self.table_processes = Gauge(
            p + "table_processes", "Processes in the ancestry process table", registry=registry
        )
        self.table_bytes = Gauge(p + "table_bytes", "Memory of the ancestry process table", registry=registry)
        self.chain_partials = Gauge(
            p + "chain_partials", "Partial chains of sequence rules held (and early steps)", registry=registry
        )
        self.chain_evictions = Counter(
            p + "chain_evictions", "Partial chains dropped to stay within the bound", registry=registry
        )
        self._chain_evicted = 0
        self.last_commit = Gauge(
            p + "last_commit_timestamp_seconds", "When the last micro-batch was committed", registry=registry
        )
        self._rate = RateMeter()

    def batch(
        self,
        *,
        records: int,
        events: int,
        rejects: int,
        seconds: float,
        alerts: object = None,
        oldest_timestamp: float | None = None,
    ) -> None:
        """One committed micro-batch. ``alerts``: its alerts table (pyarrow), counted by rule and severity."""
        self.records.inc(records)
        self.events.inc(events)
        self.rejects.inc(rejects)
        self.batches.inc()
        self.batch_seconds.observe(seconds)
        self.batch_events.observe(events)
        now = time.time()
        self.last_commit.set(now)
        if oldest_timestamp is not None:
            self.delay.observe(max(0.0, now - oldest_timestamp))
        self.count_alerts(alerts)
        self.events_per_second.set(self._rate.add(events))

    def count_alerts(self, alerts: object) -> None:
        if alerts is None or not getattr(alerts, "num_rows", 0):
            return
        grouped = alerts.group_by(["rule_id", "severity"]).aggregate([("rule_id", "count")])  # type: ignore[attr-defined]
        for row in grouped.to_pylist():
            self.alerts.labels(row["rule_id"] or "", row["severity"] or "").inc(row["rule_id_count"])

    def idle(self) -> None:
        """A beat without data, so events_per_second falls to 0 when the stream stops."""
        self.events_per_second.set(self._rate.add(0))

    def process_table(self, transforms: list) -> None:
        """Size of the ancestry table and of the chain state, found among the transforms (replaced on a rebalance)."""
        for t in transforms:
            chains = getattr(getattr(t, "chains", None), "stats", None)
            if chains is not None:
                self.chain_partials.set(chains.partials + chains.held)
                if chains.evicted < self._chain_evicted:  # a new detector (rebalance): count from its start
                    self._chain_evicted = 0
                self.chain_evictions.inc(chains.evicted - self._chain_evicted)
                self._chain_evicted = chains.evicted
        for t in transforms:
            table = getattr(t, "table", None)
            if table is not None and hasattr(table, "nbytes") and hasattr(table, "__len__"):
                self.table_processes.set(len(table))
                size = table.nbytes
                self.table_bytes.set(size() if callable(size) else size)
                return


def serve_process_metrics(processor: object, port: int, host: str | None = DEFAULT_METRICS_HOST) -> MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` for a :class:`tetrapipe.flows.process.Processor`.

    The processor owns its registry and health (updated by its loop); this
    only puts them on the network.
    """
    return MetricsServer(
        processor.registry,
        processor.health,  # type: ignore[attr-defined]
        f"{host or DEFAULT_METRICS_HOST}:{port}",
    )
