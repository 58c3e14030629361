"""Long-running stream commands: ``tetrapipe collect`` (source -> Kafka).

Options follow the shared conventions (``--kafka`` / ``TETRAPIPE_KAFKA``,
``--topic`` default ``tetragon.events``, ``--exit-at-eof``, every option also
read from ``TETRAPIPE_<OPTION>``); the options several commands share are
declared once, in :mod:`tetrapipe.commands.options`.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

import click

from tetrapipe.commands.options import (
    checked_kafka_options,
    exit_at_eof_option,
    kafka_client_option,
    kafka_options,
    kafka_settings_option,
    metrics_options,
    setup_logging,
)
from tetrapipe.metrics import DEFAULT_METRICS_PORT
from tetrapipe.sinks.kafka import COMPRESSIONS

F = Callable[..., Any]


def _opt(*names: str, env: str, **kw: Any) -> Callable[[F], F]:
    """click.option with its TETRAPIPE_* variable shown in --help."""
    return click.option(*names, envvar=env, show_envvar=True, **kw)


def _size(text: str) -> int:
    """``64M``, ``1G``, ``512k`` or plain bytes (:func:`tetrapipe.units.parse_size`), as a usage error."""
    from tetrapipe.units import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("collect")
@click.argument("source", envvar="TETRAPIPE_SOURCE")
@kafka_options()
@_opt(
    "--client-id",
    env="TETRAPIPE_CLIENT_ID",
    default=None,
    help="Kafka client id (default: tetrapipe-collect-<node name>).",
)
@kafka_settings_option("producer")
@kafka_client_option
@_opt(
    "--from",
    "start",
    env="TETRAPIPE_FROM",
    type=click.Choice(["checkpoint", "beginning", "end"]),
    default="checkpoint",
    show_default=True,
    help="checkpoint: resume where the last run's acknowledged events end (no checkpoint: beginning); "
    "beginning: the backups still on disk, oldest first, then the live file; end: only new lines.",
)
@_opt(
    "--state-dir",
    env="TETRAPIPE_STATE_DIR",
    default=None,
    type=click.Path(file_okay=False),
    help="Checkpoints and the disk spool, owner-only (a hostPath in a DaemonSet). "
    "Default: $XDG_STATE_HOME/tetrapipe/collect, else ~/.local/state/tetrapipe/collect (never the current directory).",
)
@_opt(
    "--node-name",
    env="TETRAPIPE_NODE_NAME",
    default=None,
    help="Key for events that carry no node_name (default: this host's name).",
)
@_opt(
    "--compression",
    env="TETRAPIPE_COMPRESSION",
    type=click.Choice(COMPRESSIONS),
    default="auto",
    show_default=True,
    help="auto: lz4 if installed, else zstd, else gzip.",
)
@_opt(
    "--idempotence/--no-idempotence",
    env="TETRAPIPE_IDEMPOTENCE",
    default=True,
    show_default=True,
    help="Idempotent producer (no duplicates from the producer's own retries); off for brokers without it.",
)
@_opt(
    "--linger-ms",
    env="TETRAPIPE_LINGER_MS",
    type=int,
    default=20,
    show_default=True,
    help="How long the producer waits to fill a batch.",
)
@_opt(
    "--batch-bytes",
    env="TETRAPIPE_BATCH_BYTES",
    default="512K",
    show_default=True,
    help="Producer batch size per partition (below the broker's message.max.bytes).",
)
@_opt(
    "--headers/--no-headers",
    env="TETRAPIPE_HEADERS",
    default=False,
    show_default=True,
    help="Add source file and line number as record headers (costs ~15% throughput).",
)
@_opt(
    "--buffer-bytes",
    env="TETRAPIPE_BUFFER_BYTES",
    default="32M",
    show_default=True,
    help="Unacknowledged data held in memory before reading pauses (or spills to the spool).",
)
@_opt(
    "--spool-bytes",
    env="TETRAPIPE_SPOOL_BYTES",
    default="1G",
    show_default=True,
    help="Disk spool for when Kafka is unreachable (0: off; reading then pauses).",
)
@_opt(
    "--max-line-bytes",
    env="TETRAPIPE_MAX_LINE_BYTES",
    default="1000000",
    show_default=True,
    help="Longer lines are skipped and reported (Kafka refuses records over ~1 MB by default).",
)
@_opt(
    "--stats-interval",
    env="TETRAPIPE_STATS_INTERVAL",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds between one-line progress reports (0: only at exit).",
)
@_opt(
    "--poll-interval",
    env="TETRAPIPE_POLL_INTERVAL",
    type=float,
    default=0.1,
    show_default=True,
    help="Seconds between looks at an idle source.",
)
@_opt(
    "--stall-seconds",
    env="TETRAPIPE_STALL_SECONDS",
    type=float,
    default=5.0,
    show_default=True,
    hidden=True,
    help="Kafka counts as away (spool) after this long without an acknowledgement while data waits.",
)
@_opt(
    "--grpc-allow",
    env="TETRAPIPE_GRPC_ALLOW",
    default=None,
    help="gRPC source: Tetragon allow-list filters (JSON, as --export-allowlist).",
)
@_opt(
    "--grpc-deny",
    env="TETRAPIPE_GRPC_DENY",
    default=None,
    help="gRPC source: Tetragon deny-list filters (JSON, as --export-denylist).",
)
@metrics_options(
    port=DEFAULT_METRICS_PORT,
    host_help="Address the metrics server binds to (0.0.0.0 to let Prometheus scrape from outside).",
)
@exit_at_eof_option("Stop once the source has nothing new and everything read is acknowledged (tests, batch jobs).")
@_opt(
    "--log-level",
    env="TETRAPIPE_LOG_LEVEL",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def collect_command(
    source: str,
    kafka: str,
    topic: str,
    client_id: str | None,
    kafka_options: dict[str, Any],
    kafka_client: str,
    start: str,
    state_dir: str | None,
    node_name: str | None,
    compression: str,
    idempotence: bool,
    linger_ms: int,
    batch_bytes: str,
    headers: bool,
    buffer_bytes: str,
    spool_bytes: str,
    max_line_bytes: str,
    stats_interval: float,
    poll_interval: float,
    stall_seconds: float,
    grpc_allow: str | None,
    grpc_deny: str | None,
    metrics_port: int,
    metrics_host: str,
    exit_at_eof: bool,
    log_level: str,
) -> None:
    """Ship Tetragon events from SOURCE into Kafka: no loss, no duplicates, resumable.

    \b
    SOURCE is the export file (followed through rotation, gzip'd backups,
    truncation), standard input, or the agent's gRPC API:
      tetrapipe collect file:///var/run/cilium/tetragon/tetragon.log --kafka kafka:9092
      kubectl logs -f -n kube-system ds/tetragon -c export-stdout | tetrapipe collect - --kafka kafka:9092
      tetrapipe collect grpc://localhost:54321 --kafka kafka:9092

    Records: value = the export JSON line unchanged, key = its node_name.
    The file position is checkpointed in --state-dir only after Kafka
    acknowledged the events. SIGTERM/SIGINT: stop reading, wait (10 s at
    most) for acknowledgements, checkpoint, exit 0.
    \f

    (Not in --help.) Long only because a click command receives each of its options
    as a parameter; the work is done by the modules it calls.
    """
    from tetrapipe.flows.collect import CollectOptions, Collector, source_kind
    from tetrapipe.flows.collect_state import default_state_dir
    from tetrapipe.metrics import Health, new_registry, serve_metrics
    from tetrapipe.sinks.kafka import KafkaSettings, parse_bootstrap

    _setup_logging(log_level)
    log = logging.getLogger("tetrapipe.collect")
    try:
        kind, _ = source_kind(source)
        bootstrap = parse_bootstrap(kafka)
        checked_kafka_options(kafka_client, kafka_options, "producer")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    node = node_name or socket.gethostname()
    grpc_options: dict[str, Any] = {}
    if kind == "grpc":
        if grpc_allow:
            grpc_options["allow_list"] = grpc_allow
        if grpc_deny:
            grpc_options["deny_list"] = grpc_deny
    opts = CollectOptions(
        source=source,
        start=start,
        state_dir=state_dir or str(default_state_dir()),
        node_name=node,
        headers=headers,
        buffer_bytes=_size(buffer_bytes),
        spool_bytes=_size(spool_bytes),
        max_line_bytes=_size(max_line_bytes),
        stats_interval=stats_interval if stats_interval > 0 else float("inf"),
        poll_interval=poll_interval,
        stall_seconds=stall_seconds,
        exit_at_eof=exit_at_eof,
        grpc_options=grpc_options,
    )
    settings = KafkaSettings(
        bootstrap=bootstrap,
        topic=topic,
        client_id=client_id or f"tetrapipe-collect-{node}",
        compression=compression,
        idempotence=idempotence,
        linger_ms=linger_ms,
        batch_size=_size(batch_bytes),
        options=kafka_options,
        client=kafka_client,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    registry, health = new_registry(), Health()
    server = serve_metrics(registry, health, metrics_host, metrics_port)
    if server:
        log.info("metrics on %s/metrics (health: /healthz, /readyz)", server.url)
    try:
        collector = Collector(opts, settings, registry=registry, health=health, stop=stop, report=log.info)
        totals = collector.run()
    except (RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if server is not None:
            server.close()
    for warning in totals.lost_warnings:
        log.warning("%s", warning)


class _Throttle(logging.Filter):
    """kafka-python logs every failed reconnect (several a second while a broker is down): once a minute is enough."""

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self.every = every
        self._seen: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        import time

        if not record.name.startswith("kafka"):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        last = self._seen.get(key)
        if last is not None and now - last < self.every:
            return False
        self._seen[key] = now
        return True


def _setup_logging(level: str) -> None:
    setup_logging(level)
    kafka_log = logging.getLogger("kafka")
    if level != "debug":
        kafka_log.setLevel(logging.WARNING)
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, _Throttle) for f in handler.filters):
                handler.addFilter(_Throttle())


COMMANDS = [collect_command]
