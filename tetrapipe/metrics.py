"""Prometheus metrics and health endpoints for long-running commands (collect, process, run).

One registry per process (not prometheus-client's global one, so tests can
run several collectors side by side), served by a small threaded HTTP server:

* ``/metrics``: the Prometheus text format (process CPU/RSS collectors included);
* ``/healthz``: liveness, 200 while the main loop has beaten its heart within
  ``stall_seconds`` (a wedged loop gets the pod restarted), else 503;
* ``/readyz``: readiness, 200 when every registered check passes (e.g. "Kafka
  is acknowledging"), else 503 with the failing checks named.

It binds to 127.0.0.1 by default: metrics can reveal node and pod names, and
a DaemonSet that wants Prometheus to scrape it says so with ``--metrics
0.0.0.0:PORT``. Port 0 picks a free port (``server.port`` tells which).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)

DEFAULT_METRICS_ADDRESS = "127.0.0.1:9477"
METRICS_ENV = "TETRAPIPE_METRICS"


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
    """``HOST:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1)."""
    text = address.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
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
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
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


def serve_process_metrics(processor: object, port: int, host: str = "127.0.0.1") -> MetricsServer:
    """``/metrics`` for ``tetrapipe process``: its ``stats`` read at scrape time (no hot-path cost)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class _ProcessorCollector:
        def collect(self):  # noqa: ANN202 - prometheus-client's collector protocol
            st = processor.stats  # type: ignore[attr-defined]
            for name, doc in (("batches", "Micro-batches written"), ("records", "Kafka records consumed"),
                              ("events", "Events written to the lake"), ("rejects", "Lines rejected"),
                              ("alerts", "Alerts raised")):
                yield CounterMetricFamily(f"tetrapipe_process_{name}", doc, value=getattr(st, name, 0))
            yield GaugeMetricFamily("tetrapipe_process_last_batch_seconds", "Time the last micro-batch took",
                                    value=getattr(st, "last_batch_seconds", 0.0))

    registry = new_registry()
    registry.register(_ProcessorCollector())  # type: ignore[arg-type]
    return MetricsServer(registry, Health(stall_seconds=float("inf")), f"{host}:{port}")
