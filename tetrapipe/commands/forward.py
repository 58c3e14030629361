"""``tetrapipe forward``: records -> the SIEM sinks of a configuration (the flow: :mod:`tetrapipe.flows.forward`).

Sends native alert / event rows through the same router, formats and spools
the processor uses: from standard input or files of JSON lines (one native
row a line, as ``tetrapipe query --format json`` prints them), from the
history lake (``--from-lake``, a backfill), or from Kafka (``--from-kafka``:
the alerts topic the processor writes, and its enriched-events topic when a
sink wants events, as a long-running forwarder Deployment).

It serves ``/healthz``, ``/readyz`` and ``/metrics`` with ``--metrics-port``,
and exits non-zero when records were dropped or rejected, or remain in a spool
because a SIEM stayed down (they are sent first on the next run).
"""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console

from tetrapipe.commands.config import CONFIG_ENV, load_or_exit
from tetrapipe.commands.options import (
    exit_at_eof_option,
    kafka_client_option,
    lake_option,
    metrics_options,
    open_lake,
    setup_logging,
)
from tetrapipe.redact import redact_text

err = Console(stderr=True, highlight=False, soft_wrap=True)


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
@kafka_client_option
@lake_option(from_config=True)
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
@exit_at_eof_option("With --from-kafka: stop once the topics are consumed to their end (tests, batch jobs).")
@metrics_options(
    host=None,
    port_help="; default: the configuration's metrics.port",
    host_help="Address the metrics server binds to (default: the configuration's metrics.host, else 127.0.0.1).",
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
    kafka_client: str,
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
    from tetrapipe.flows import forward as flow
    from tetrapipe.metrics import Health, new_registry, serve_metrics
    from tetrapipe.sinks.siem.metrics import SinkCollector

    setup_logging()  # a client library's error may quote a sink's URL, password included: masked
    if sum((from_lake, from_kafka, bool(inputs))) > 1:
        raise click.UsageError("give input files, --from-lake or --from-kafka, not several")
    cfg = load_or_exit(config_path, 2)
    _check_inputs(inputs)
    if spool_dir:
        cfg.spool_dir = spool_dir
    router = _router(cfg, config_path, sinks)
    if click.get_current_context().get_parameter_source("kafka_client") is click.core.ParameterSource.DEFAULT:
        kafka_client = _client_from(cfg, kafka_client)
    source = _source(
        cfg,
        router,
        inputs,
        from_lake,
        from_kafka,
        kafka,
        topics,
        group,
        kafka_client,
        lake_dir,
        table,
        since,
        until,
        batch_size,
        exit_at_eof,
    )
    health = Health(stall_seconds=120.0)
    server = None
    port = metrics_port or (cfg.metrics or {}).get("port") or 0
    if port:
        registry = new_registry()
        registry.register(SinkCollector(router))
        host = metrics_host or (cfg.metrics or {}).get("host") or "127.0.0.1"
        server = serve_metrics(registry, health, host, port)
    try:
        result = flow.forward(router, source, drain_timeout=drain_timeout, health=health)
    finally:
        if server is not None:
            server.close()
    if not quiet:
        _summary(result.read, result.bad, result.stats)
    sys.exit(0 if result.ok else 1)


def _check_inputs(inputs: tuple[str, ...]) -> None:
    """Exit 1 with one line naming the first input file that cannot be opened, before any sink starts.

    The lines are read on a thread once the sinks run; a missing file found
    there was a thread's traceback, then "read 0 record(s)" and exit 0.
    """
    from tetrapipe.textsafe import visible

    for path in inputs:
        if path == "-":
            continue
        try:
            open(path, "rb").close()  # opened only to learn that it can be: read on a thread later
        except OSError as exc:
            raise click.ClickException(f"cannot read {visible(path)}: {exc.strerror or exc}") from exc


def _client_from(cfg: Any, default: str) -> str:
    """The configuration's ``kafka.client`` when the command line and environment name none."""
    from tetrapipe.kafka_client import KafkaClientError, resolve_client

    try:
        return resolve_client((cfg.kafka or {}).get("client") or default)
    except KafkaClientError as exc:
        raise click.UsageError(f"kafka.client: {exc}") from exc


def _router(cfg: Any, config_path: str, sinks: tuple[str, ...]) -> Any:
    """The router over the chosen sinks of the configuration; a usage error for a sink it cannot build."""
    from tetrapipe.sinks.siem import build_router

    unknown = [s for s in sinks if s not in {c.name for c in cfg.sinks}]
    if unknown:
        raise click.UsageError(f"no sink named {', '.join(unknown)} in {config_path}")
    try:
        router = build_router(cfg, only=list(sinks) or None)
    except ValueError as exc:  # a sink's option the schema cannot check (a URL that is not http(s), a mode)
        raise click.UsageError(f"{config_path}: {redact_text(str(exc))}") from exc
    if not router.routes:
        raise click.UsageError(f"{config_path} has no enabled sink")
    return router


def _source(
    cfg: Any,
    router: Any,
    inputs: tuple[str, ...],
    from_lake: bool,
    from_kafka: bool,
    kafka: str | None,
    topics: tuple[str, ...],
    group: str,
    kafka_client: str,
    lake_dir: str | None,
    table: str,
    since: str | None,
    until: str | None,
    batch_size: int,
    exit_at_eof: bool,
) -> Any:
    """The flow's source the options ask for (lines by default); a usage error when Kafka is not said."""
    from tetrapipe.flows import forward as flow

    def skipped(where: str, why: str) -> None:
        err.print(f"{where}: skipped, not a JSON object ({why})", markup=False)

    if from_lake:
        lake = open_lake(lake_dir or cfg.lake, cfg.lake_options)
        source = flow.from_lake(lake, ["alerts", "events"] if table == "all" else [table], since, until, batch_size)
    elif from_kafka:
        kafka = kafka or (cfg.kafka or {}).get("bootstrap")
        topics = topics or flow.default_topics(cfg.kafka or {}, router.routes)
        if not kafka or not topics:
            router.close()
            raise click.UsageError(
                "--from-kafka needs --kafka and --topic (or kafka.bootstrap and "
                "kafka.alerts_topic in the configuration)"
            )
        options = (cfg.kafka or {}).get("options") or {}
        source = flow.from_kafka(
            kafka,
            list(topics),
            group,
            batch_size,
            exit_at_eof=exit_at_eof,
            options=options,
            on_bad=skipped,
            client=kafka_client,
        )
    else:
        source = flow.from_lines(list(inputs) or ["-"], batch_size, skipped)
    return source


def _summary(read: int, bad: int, stats: dict[str, dict[str, Any]]) -> None:
    err.print(f"read {read:,} record(s)" + (f", {bad:,} unreadable line(s) skipped" if bad else ""), markup=False)
    for name, s in stats.items():
        line = (
            f"  {name}: routed {s['routed_alerts']:,} alert(s), {s['routed_events']:,} event(s); "
            f"delivered {s['delivered']:,}, retried {s['retried']:,}, spooled {s['spooled']:,}, "
            f"dropped {s['dropped']:,}, rejected {s['rejected']:,}; in spool {s['spool_records']:,}"
        )
        err.print(line, markup=False)


COMMANDS = [forward_command]
