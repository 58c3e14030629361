"""``tetrapipe forward`` (records -> SIEM sinks) and ``tetrapipe config check|show``.

``forward`` sends native alert / event rows to the sinks of a configuration
file, through the same router, formats and spools the processor uses:

* from standard input or files of JSON lines (one native row a line, as
  ``tetrapipe query --format json`` or the native format prints them), e.g.
  to replay an export into a SIEM, or to follow another tool's output;
* from the history lake (``--from-lake``), e.g. to backfill a new SIEM with
  the last week of alerts;
* from Kafka (``--from-kafka``): the alerts topic the processor writes, and
  its enriched-events topic (``kafka.events_topic``) when a sink wants events,
  as a long-running forwarder Deployment.

It serves ``/healthz``, ``/readyz`` and ``/metrics`` with ``--metrics-port``,
and exits non-zero when records were dropped or rejected, or remain in a spool
because a SIEM stayed down (they are sent first on the next run).
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from typing import Any

import click
import orjson
from rich.console import Console

from tetrapipe.commands.options import setup_logging
from tetrapipe.config import ENV_COMMANDS, ConfigError, command_env, load_config
from tetrapipe.redact import redact_text

err = Console(stderr=True, highlight=False, soft_wrap=True)  # one problem, one line: FILE:LINE:COL first
out = Console(highlight=False, soft_wrap=True)

CONFIG_ENV = "TETRAPIPE_CONFIG"


# --- tetrapipe config ----------------------------------------------------------------------


@click.group("config")
def config_group() -> None:
    """Validate and inspect a deployment configuration file (YAML or TOML)."""


@config_group.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--quiet", "-q", is_flag=True, envvar="TETRAPIPE_QUIET", help="Print errors only.")
def config_check(files: tuple[str, ...], quiet: bool) -> None:
    """Check FILES and report every error as FILE:LINE:COLUMN: KEY: PROBLEM (exit 1 if any).

    Environment variables the file references (${NAME}) must be set, as they
    will be where the file is deployed.
    """
    failed = False
    for path in files:
        try:
            cfg = load_config(path)
        except ConfigError as exc:
            failed = True
            for p in exc.problems:
                err.print(str(p), markup=False)
            continue
        if not quiet:
            sinks = ", ".join(f"{s.name} ({s.type}, {s.format}, {s.forward})" for s in cfg.sinks) or "none"
            kafka = redact_text(cfg.kafka["bootstrap"]) if cfg.kafka else "off"
            out.print(f"{path}: OK -- {len(cfg.sources)} source(s), kafka {kafka}, sinks: {sinks}", markup=False)
    if failed:
        sys.exit(1)


def _load_or_exit(path: str, code: int) -> Any:
    """The configuration, or every problem in it (file:line:col) on stderr and exit ``code``."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for p in exc.problems:
            err.print(str(p), markup=False)
        sys.exit(code)


@config_group.command("show")
@click.argument("file", type=click.Path(dir_okay=False), envvar=CONFIG_ENV)
def config_show(file: str) -> None:
    """Print FILE with environment variables expanded, defaults filled in and secrets masked (JSON)."""
    cfg = _load_or_exit(file, 1)
    sys.stdout.write(orjson.dumps(cfg.redacted(), option=orjson.OPT_INDENT_2).decode() + "\n")


@config_group.command("env")
@click.argument("file", type=click.Path(dir_okay=False), envvar=CONFIG_ENV)
@click.argument("command", type=click.Choice(ENV_COMMANDS))
def config_env(file: str, command: str) -> None:
    """Print the TETRAPIPE_* variables that give COMMAND the settings of FILE (KEY=VALUE lines).

    \b
    env $(tetrapipe config env deploy/tetrapipe.yaml process | xargs) tetrapipe process
    set -a; . <(tetrapipe config env deploy/tetrapipe.yaml collect); set +a
    """
    import shlex

    cfg = _load_or_exit(file, 1)
    for key, value in command_env(cfg, command).items():
        sys.stdout.write(f"{key}={shlex.quote(value)}\n")


# --- tetrapipe forward ---------------------------------------------------------------------


@click.command("forward")
@click.argument("inputs", nargs=-1, type=click.Path(allow_dash=True, dir_okay=False))
@click.option(
    "--config",
    "config_path",
    envvar=CONFIG_ENV,
    required=True,
    type=click.Path(dir_okay=False),
    help="Deployment configuration (its sinks: section).",
)
@click.option(
    "--sink",
    "sinks",
    multiple=True,
    envvar="TETRAPIPE_SINK",
    help="Only these sinks of the configuration (repeatable; default: all enabled).",
)
@click.option(
    "--from-lake",
    is_flag=True,
    envvar="TETRAPIPE_FROM_LAKE",
    help="Read alerts / events from the history lake instead of JSON lines.",
)
@click.option(
    "--from-kafka",
    is_flag=True,
    envvar="TETRAPIPE_FROM_KAFKA",
    help="Consume native rows from Kafka (default topics: the configuration's kafka.alerts_topic, plus "
    "kafka.events_topic when a sink has forward: events|all); offsets are committed once the sinks "
    "delivered or spooled the records.",
)
@click.option(
    "--kafka",
    envvar="TETRAPIPE_KAFKA",
    default=None,
    help="With --from-kafka: bootstrap servers (default: the configuration's kafka.bootstrap).",
)
@click.option(
    "--topic",
    "topics",
    multiple=True,
    envvar="TETRAPIPE_TOPIC",
    help="With --from-kafka: topic to consume (repeatable).",
)
@click.option(
    "--group",
    envvar="TETRAPIPE_GROUP",
    default="tetrapipe-forwarder",
    show_default=True,
    help="With --from-kafka: consumer group.",
)
@click.option(
    "--lake",
    "lake_dir",
    envvar="TETRAPIPE_LAKE",
    default=None,
    help="History lake (default: the configuration's lake).",
)
@click.option(
    "--table",
    type=click.Choice(["alerts", "events", "all"]),
    default="alerts",
    show_default=True,
    envvar="TETRAPIPE_TABLE",
    help="With --from-lake: which tables to read.",
)
@click.option("--since", envvar="TETRAPIPE_SINCE", help="With --from-lake: rows at or after this UTC time.")
@click.option("--until", envvar="TETRAPIPE_UNTIL", help="With --from-lake: rows before this UTC time.")
@click.option(
    "--spool-dir",
    envvar="TETRAPIPE_SPOOL_DIR",
    default=None,
    help="Where sinks spool while a SIEM is down (default: the configuration's spool_dir).",
)
@click.option(
    "--batch-size", envvar="TETRAPIPE_BATCH_SIZE", default=1000, show_default=True, help="Rows read per batch."
)
@click.option(
    "--drain-timeout",
    envvar="TETRAPIPE_DRAIN_TIMEOUT",
    default=30.0,
    show_default=True,
    help="At the end of the input, seconds to keep retrying a SIEM that is down before exiting "
    "(what is left stays in the spool for the next run).",
)
@click.option(
    "--exit-at-eof",
    is_flag=True,
    envvar="TETRAPIPE_EXIT_AT_EOF",
    help="With --from-kafka: stop once the topics are consumed to their end (tests, batch jobs).",
)
@click.option(
    "--metrics-port",
    envvar="TETRAPIPE_METRICS_PORT",
    type=int,
    default=0,
    show_default=True,
    help="Serve /metrics, /healthz and /readyz on this port (0: off; default: the configuration's metrics.port).",
)
@click.option(
    "--metrics-host",
    envvar="TETRAPIPE_METRICS_HOST",
    default=None,
    help="Address the metrics server binds to (default: the configuration's metrics.host, else 127.0.0.1).",
)
@click.option("--quiet", "-q", is_flag=True, envvar="TETRAPIPE_QUIET", help="No summary.")
def forward_command(
    inputs: tuple[str, ...],
    config_path: str,
    sinks: tuple[str, ...],
    from_lake: bool,
    from_kafka: bool,
    kafka: str | None,
    topics: tuple[str, ...],
    group: str,
    lake_dir: str | None,
    table: str,
    since: str | None,
    until: str | None,
    spool_dir: str | None,
    batch_size: int,
    drain_timeout: float,
    exit_at_eof: bool,
    metrics_port: int,
    metrics_host: str | None,
    quiet: bool,
) -> None:
    """Send alerts (and events) to the SIEM sinks of a configuration.

    \b
    tetrapipe forward --config deploy/tetrapipe.yaml alerts.jsonl
    tetrapipe forward --config deploy/tetrapipe.yaml --from-kafka          (the forwarder Deployment)
    tetrapipe forward --config deploy/tetrapipe.yaml --from-lake --table all --since 2026-03-10

    Exit status: 0 when everything was delivered; 1 when records were
    dropped or rejected, remain in a spool, or input lines were unreadable;
    2 for an invalid configuration.
    """
    from tetrapipe.metrics import Health, new_registry, serve_metrics
    from tetrapipe.sinks.siem import build_router
    from tetrapipe.sinks.siem.metrics import SinkCollector

    setup_logging()  # a client library's error may quote a sink's URL, password included: masked
    if sum((from_lake, from_kafka, bool(inputs))) > 1:
        raise click.UsageError("give input files, --from-lake or --from-kafka, not several")
    cfg = _load_or_exit(config_path, 2)
    if spool_dir:
        cfg.spool_dir = spool_dir
    unknown = [s for s in sinks if s not in {c.name for c in cfg.sinks}]
    if unknown:
        raise click.UsageError(f"no sink named {', '.join(unknown)} in {config_path}")
    try:
        router = build_router(cfg, only=list(sinks) or None)
    except ValueError as exc:  # a sink's option the schema cannot check (a URL that is not http(s), a mode)
        raise click.UsageError(f"{config_path}: {redact_text(str(exc))}") from exc
    if not router.routes:
        raise click.UsageError(f"{config_path} has no enabled sink")
    if from_kafka:
        kafka = kafka or (cfg.kafka or {}).get("bootstrap")
        topics = topics or default_topics(cfg.kafka or {}, router.routes)
        if not kafka or not topics:
            router.close()
            raise click.UsageError(
                "--from-kafka needs --kafka and --topic (or kafka.bootstrap and "
                "kafka.alerts_topic in the configuration)"
            )
    health = Health(stall_seconds=120.0)
    server = None
    port = metrics_port or (cfg.metrics or {}).get("port") or 0
    if port:
        registry = new_registry()
        registry.register(SinkCollector(router))
        host = metrics_host or (cfg.metrics or {}).get("host") or "127.0.0.1"
        server = serve_metrics(registry, health, host, port)
    reading = threading.Event()
    health.add_check("input", lambda: (reading.is_set(), "reading" if reading.is_set() else "not reading"))
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    router.start(interval=0.5)
    read = bad = 0
    try:
        reading.set()
        if from_lake:
            read = _from_lake(router, lake_dir or cfg.lake, table, since, until, batch_size, stop, health)
        elif from_kafka:
            read, bad = _from_kafka(
                router,
                kafka or "",
                list(topics),
                group,
                batch_size,
                exit_at_eof,
                stop,
                health,
                (cfg.kafka or {}).get("options") or {},
            )
        else:
            read, bad = _from_lines(router, list(inputs) or ["-"], batch_size, stop, health)
        reading.clear()
        _drain(router, drain_timeout, stop, health)
    finally:
        reading.clear()
        router.close()
        if server is not None:
            server.close()
    stats = router.stats()
    if not quiet:
        _summary(read, bad, stats)
    # after SIGTERM/SIGINT the spool is the hand-over to the next run (a pod being replaced), not a failure;
    # at the end of an input (--exit-at-eof, files) records still waiting mean the delivery is incomplete
    waiting = not stop.is_set() and any(s["spool_records"] for s in stats.values())
    trouble = waiting or any(s["dropped"] or s["rejected"] for s in stats.values())
    sys.exit(1 if trouble or bad else 0)


def default_topics(kafka: dict[str, Any], routes: list[Any]) -> tuple[str, ...]:
    """The topics ``--from-kafka`` reads when ``--topic`` is not given.

    The alerts topic, and the enriched-events topic only when one of the
    selected sinks takes events: consuming (and parsing) every event just to
    discard it would cost the forwarder far more than the alerts it sends.
    """
    topics = [kafka.get("alerts_topic")]
    if any(r.forward in ("events", "all") for r in routes):
        topics.append(kafka.get("events_topic"))
    return tuple(t for t in topics if t)


def _parse_row(line: bytes, where: str) -> dict[str, Any] | None:
    try:
        row = orjson.loads(line)
        if not isinstance(row, dict):
            raise ValueError("not a JSON object")
        return row
    except ValueError as exc:
        err.print(f"{where}: skipped, not a JSON object ({exc})", markup=False)
        return None


def _from_lines(router: Any, inputs: list[str], batch_size: int, stop: threading.Event, health: Any) -> tuple[int, int]:
    """JSON lines through a bounded queue, so a slow stdin producer still gets its rows sent promptly."""
    q: queue.Queue[tuple[str, int, bytes] | None] = queue.Queue(maxsize=batch_size * 4)

    def reader() -> None:
        try:
            for path in inputs:
                stream: Any = sys.stdin.buffer if path == "-" else open(path, "rb")
                try:
                    for n, line in enumerate(stream, start=1):
                        if stop.is_set():
                            return
                        q.put((path, n, line))
                finally:
                    if stream is not sys.stdin.buffer:
                        stream.close()
        finally:
            q.put(None)

    threading.Thread(target=reader, name="tetrapipe-forward-reader", daemon=True).start()
    rows: list[dict[str, Any]] = []
    read = bad = 0
    last = time.monotonic()
    done = False
    while not done and not stop.is_set():
        health.heartbeat()
        try:
            item = q.get(timeout=0.5)
        except queue.Empty:
            item = ()
        if item is None:
            done = True
        elif item:
            path, n, line = item
            if line.strip():
                row = _parse_row(line, f"{path}:{n}")
                if row is None:
                    bad += 1
                else:
                    rows.append(row)
                    read += 1
        if rows and (done or len(rows) >= batch_size or time.monotonic() - last >= 1.0):
            router.handle_rows(rows)
            rows, last = [], time.monotonic()
    if rows:
        router.handle_rows(rows)
    return read, bad


def _from_kafka(
    router: Any,
    bootstrap: str,
    topics: list[str],
    group: str,
    batch_size: int,
    exit_at_eof: bool,
    stop: threading.Event,
    health: Any,
    options: dict[str, Any],
) -> tuple[int, int]:
    """Consume, route, flush (delivered or spooled: either way safe on disk), then commit: at least once."""
    from kafka import KafkaConsumer

    # the events topic may be created after the forwarder starts (by the processor's first batch, or an
    # operator): refresh metadata every 30 s instead of kafka-python's 5 min so it is joined soon after
    options = {"metadata_max_age_ms": 30_000, **options}
    consumer = KafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap.split(","),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=batch_size,
        **options,
    )
    read = bad = idle = 0
    try:
        while not stop.is_set():
            health.heartbeat()
            polled = consumer.poll(timeout_ms=500, max_records=batch_size)
            rows: list[dict[str, Any]] = []
            for tp, records in polled.items():
                for rec in records:
                    row = _parse_row(rec.value, f"{tp.topic}/{tp.partition}@{rec.offset}")
                    if row is None:
                        bad += 1
                    else:
                        rows.append(row)
            if rows:
                router.handle_rows(rows)
                read += len(rows)
            if polled:
                router.flush()
                consumer.commit()
                idle = 0
            else:
                idle += 1
                if exit_at_eof and idle >= 3 and _at_end(consumer):
                    break
    finally:
        consumer.close()
    return read, bad


def _at_end(consumer: Any) -> bool:
    parts = consumer.assignment()
    if not parts:
        return False
    ends = consumer.end_offsets(list(parts))
    return all(consumer.position(tp) >= ends[tp] for tp in parts)


def _from_lake(
    router: Any,
    lake_dir: str,
    table: str,
    since: str | None,
    until: str | None,
    batch_size: int,
    stop: threading.Event,
    health: Any,
) -> int:
    import pyarrow as pa

    from tetrapipe.lake import connect
    from tetrapipe.schema import TABLES

    con = connect(lake_dir)
    read = 0
    try:
        for name in ["alerts", "events"] if table == "all" else [table]:
            cols = ", ".join(f'"{c.name}"' for c in TABLES[name])
            sql = (
                f"SELECT {cols} FROM {name} WHERE ($since IS NULL OR time >= $since::TIMESTAMP) "
                "AND ($until IS NULL OR time < $until::TIMESTAMP) ORDER BY time"
            )
            reader = con.sql(sql, params={"since": since, "until": until}).to_arrow_reader(batch_size)
            for batch in reader:
                health.heartbeat()
                if stop.is_set():
                    return read
                tbl = pa.Table.from_batches([batch])
                read += tbl.num_rows
                router.handle(**{name: tbl})
    finally:
        con.close()
    return read


def _drain(router: Any, timeout: float, stop: threading.Event, health: Any) -> None:
    """Flush, then keep probing a SIEM that is down until the spools are empty or the time is up."""
    deadline = time.monotonic() + timeout
    router.flush()
    while router.backlog() and time.monotonic() < deadline and not stop.is_set():
        health.heartbeat()
        time.sleep(0.2)
        router.poll()
    router.flush()


def _summary(read: int, bad: int, stats: dict[str, dict[str, Any]]) -> None:
    err.print(f"read {read:,} record(s)" + (f", {bad:,} unreadable line(s) skipped" if bad else ""), markup=False)
    for name, s in stats.items():
        line = (
            f"  {name}: routed {s['routed_alerts']:,} alert(s), {s['routed_events']:,} event(s); "
            f"delivered {s['delivered']:,}, retried {s['retried']:,}, spooled {s['spooled']:,}, "
            f"dropped {s['dropped']:,}, rejected {s['rejected']:,}; in spool {s['spool_records']:,}"
        )
        err.print(line, markup=False)


COMMANDS = [config_group, forward_command]
