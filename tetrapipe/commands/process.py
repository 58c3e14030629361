"""``tetrapipe process`` (Kafka -> lake, alerts) and ``tetrapipe status`` (how far behind)."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tetrapipe.commands.options import (
    checked_kafka_options,
    exit_at_eof_option,
    kafka_client_option,
    kafka_options,
    kafka_settings_option,
    lake_option,
    metrics_options,
    open_lake,
    rules_option,
    setup_logging,
    tls_window_option,
)
from tetrapipe.textsafe import visible

if TYPE_CHECKING:
    import pyarrow as pa


#: the processors' consumer group (``status`` reads its committed offsets)
group_option = click.option(
    "--group",
    envvar="TETRAPIPE_GROUP",
    default="tetrapipe-processor",
    show_default=True,
    help="Consumer group: replicas with the same group share the partitions.",
)


@click.command("process")
@kafka_options(topic_help="Topic the collectors write to.")
@group_option
@click.option(
    "--alerts-topic",
    envvar="TETRAPIPE_ALERTS_TOPIC",
    default="tetrapipe.alerts",
    show_default=True,
    help="Topic for alerts ('' to disable).",
)
@click.option(
    "--events-topic",
    envvar="TETRAPIPE_EVENTS_TOPIC",
    default="",
    show_default=False,
    help="Topic for the enriched events of every committed batch, keyed by node, for `forward "
    "--from-kafka` (default: '' = off).",
)
@click.option(
    "--dead-letter-topic",
    envvar="TETRAPIPE_DEAD_LETTER_TOPIC",
    default="tetragon.events.dlq",
    show_default=True,
    help="Topic for lines that are not Tetragon events ('' to disable).",
)
@click.option(
    "--batch-size",
    envvar="TETRAPIPE_BATCH_SIZE",
    default=20_000,
    show_default=True,
    help="Most records in one micro-batch.",
)
@click.option(
    "--batch-seconds",
    envvar="TETRAPIPE_BATCH_SECONDS",
    default=1.0,
    show_default=True,
    help="Longest wait before a micro-batch is transformed and its alerts sent.",
)
@click.option(
    "--commit-seconds",
    envvar="TETRAPIPE_COMMIT_SECONDS",
    default=10.0,
    show_default=True,
    help="Longest wait before transformed micro-batches are committed to the lake (at once when "
    "--batch-size records wait). Fewer commits keep the lake's log small; alerts do not wait.",
)
@rules_option()
@tls_window_option
@metrics_options()
@exit_at_eof_option("Stop once every assigned partition is fully written (tests, batch jobs).")
@click.option(
    "--on-offset-reset",
    envvar="TETRAPIPE_ON_OFFSET_RESET",
    default="fail",
    show_default=True,
    type=click.Choice(["fail", "earliest", "latest"]),
    help="When the lake holds a partition beyond the broker's end (topic recreated) or behind its "
    "retention: stop, or continue from the earliest or latest offset.",
)
@kafka_settings_option("consumer")
@kafka_client_option
@lake_option()
def process_command(
    kafka: str,
    topic: str,
    group: str,
    alerts_topic: str,
    events_topic: str,
    dead_letter_topic: str,
    batch_size: int,
    batch_seconds: float,
    commit_seconds: float,
    rules_dir: str | None,
    tls_window: dt.timedelta,
    metrics_port: int,
    metrics_host: str,
    exit_at_eof: bool,
    on_offset_reset: str,
    kafka_options: dict,
    kafka_client: str,
    lake_dir: str,
) -> None:
    """Consume Tetragon events from Kafka into the history, with detections, exactly once.

    Run N replicas with the same --group over a topic with at least N partitions.
    SIGTERM/SIGINT finish and write the batch in hand, then exit 0.
    """
    from tetrapipe.commands.options import pipeline_transforms
    from tetrapipe.flows.process import OffsetsMovedError, Processor, ProcessorConfig

    setup_logging()
    checked_kafka_options(kafka_client, kafka_options, "consumer")
    lake = open_lake(lake_dir)
    # the stream state starts empty: every assignment restores it from the lake (Processor restore)
    transforms, _ = pipeline_transforms(rules_dir, tls_window=tls_window, long_running=True)
    config = ProcessorConfig(
        bootstrap=kafka,
        topic=topic,
        group=group,
        alerts_topic=alerts_topic or None,
        events_topic=events_topic or None,
        dead_letter_topic=dead_letter_topic or None,
        batch_max_records=batch_size,
        batch_max_seconds=batch_seconds,
        commit_max_seconds=commit_seconds,
        exit_at_eof=exit_at_eof,
        on_offset_reset=on_offset_reset,
        kafka_options=kafka_options,
        kafka_client=kafka_client,
    )
    console = Console(stderr=True, highlight=False)
    show = functools.partial(show_alerts, console)
    processor = Processor(config, lake, transforms, on_alerts=show, restore=True)
    processor.install_signal_handlers()
    server = None
    if metrics_port:
        from tetrapipe.metrics import serve_process_metrics

        try:
            server = serve_process_metrics(processor, metrics_port, metrics_host)
        except OSError as exc:
            raise click.UsageError(f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc}") from exc
        logging.getLogger("tetrapipe.process").info("metrics on %s/metrics (health: /healthz, /readyz)", server.url)
    try:
        stats = processor.run()
    except OffsetsMovedError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if server is not None:
            server.close()
    if config.events_topic:
        console.print(
            f"streamed {stats.streamed:,} enriched events to {config.events_topic}"
            + (f" ({stats.oversized:,} too large for a record, in the lake only)" if stats.oversized else "")
        )
    console.print(
        f"processed {stats.records:,} records: {stats.events:,} events, {stats.rejects:,} rejects, "
        f"{stats.duplicates:,} events already in the lake, "
        f"{stats.alerts:,} alerts ({stats.records_per_second:,.0f} records/s from first record to last "
        f"commit); lake holds partitions {stats.by_partition}"
    )


def show_alerts(console: Console, alerts: pa.Table, most: int = 20) -> None:
    """Alerts on stderr for a human watching; a flood is summarized (the lake and the topic have them all)."""
    for row in alerts.slice(0, most).select(["severity", "rule_id", "namespace", "pod", "message"]).to_pylist():
        console.print(
            Text.assemble(
                (visible(row["severity"] or ""), "bold"),
                " ",
                visible(f"{row['rule_id']} {row['namespace'] or '(host)'}/{row['pod'] or ''}: {row['message']}"),
            )
        )
    if alerts.num_rows > most:
        console.print(f"... and {alerts.num_rows - most:,} more alerts in this batch")


@click.command("status")
@kafka_options(topic_help="Topic the collectors write to.")
@group_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@kafka_settings_option("consumer")
@kafka_client_option
@lake_option()
def status_command(
    kafka: str, topic: str, group: str, fmt: str, kafka_options: dict, kafka_client: str, lake_dir: str
) -> None:
    """How far behind the lake is, per partition: broker end offset vs what the lake holds."""
    from kafka.errors import KafkaError

    from tetrapipe.lake.positions import kafka_committed_offsets
    from tetrapipe.sources.kafka import partition_status

    checked_kafka_options(kafka_client, kafka_options, "consumer")
    lake = open_lake(lake_dir)
    try:
        rows = partition_status(
            kafka,
            topic,
            group,
            lambda parts: kafka_committed_offsets(lake, topic, parts),
            options=kafka_options,
            client=kafka_client,
        )
    except KafkaError as exc:  # a broker down or unreachable: one sentence, not a traceback (either client)
        raise click.ClickException(
            visible(f"cannot read the partitions of {topic} from Kafka at {kafka}: {exc}")
        ) from None
    if fmt == "json":
        import orjson

        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    t = Table(header_style="bold cyan")
    for col in ("partition", "end offset", "in lake up to", "lag (records)", "group committed"):
        t.add_column(col, justify="right")
    for r in rows:
        lag = r["lag"]
        if r["state"] == "lake ahead":  # the lag is not 0: the broker's offsets went backwards
            shown = f"[bold red]lake ahead by {r['lake_offset'] + 1 - r['end_offset']}[/] (topic recreated?)"
        elif r["state"] == "retention passed":
            shown = f"[bold red]{lag}, {r['begin_offset'] - r['lake_offset'] - 1} lost to retention[/]"
        else:
            shown = f"[{'red' if lag else 'green'}]{lag}[/]"
        t.add_row(str(r["partition"]), str(r["end_offset"]), str(r["lake_offset"]), shown, str(r["group_offset"]))
    Console(highlight=False).print(t)


COMMANDS = [process_command, status_command]
