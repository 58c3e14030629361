"""``tetrapipe run``: follow export logs into the lake with detections, no Kafka."""

from __future__ import annotations

import datetime as dt
import threading

import click
from rich.console import Console
from rich.text import Text

from tetrapipe.commands.options import (
    exit_at_eof_option,
    lake_option,
    metrics_options,
    open_lake,
    rules_option,
    setup_logging,
    tls_window_option,
)
from tetrapipe.textsafe import visible


@click.command("run")
@click.argument("paths", nargs=-1, required=True)
@lake_option()
@rules_option()
@click.option(
    "--poll-seconds",
    envvar="TETRAPIPE_POLL_SECONDS",
    default=1.0,
    show_default=True,
    help="How often to look for new lines.",
)
@exit_at_eof_option("Stop when a poll finds nothing new (tests, batch jobs).")
@click.option("--chunk-bytes", default=24 * 1024 * 1024, hidden=True, help="Read size (one batch per chunk).")
@tls_window_option
@metrics_options(port_help="; same metric names as process")
def run_command(
    paths: tuple[str, ...],
    lake_dir: str,
    rules_dir: str | None,
    poll_seconds: float,
    exit_at_eof: bool,
    chunk_bytes: int,
    tls_window: dt.timedelta,
    metrics_port: int,
    metrics_host: str,
) -> None:
    """Follow Tetragon export logs (files, directories, or - for stdin) into the history.

    \b
    tetrapipe run /var/run/cilium/tetragon/tetragon.log
    kubectl logs -f -n kube-system ds/tetragon -c export-stdout | tetrapipe run -

    The embedded default: the stream processor's transforms without Kafka.
    A pipe's lines go in (and their alerts print) within --poll-seconds of arriving.
    SIGTERM/SIGINT finish the poll in hand (a pipe: commit what was read) and exit 0.
    """
    from tetrapipe.commands.options import pipeline_transforms
    from tetrapipe.flows.run import RunMetrics, install_stop_on_signals, run
    from tetrapipe.metrics import Health, PipelineMetrics, new_registry, serve_metrics
    from tetrapipe.sources.files import scan_inputs

    try:
        scan_inputs([p for p in paths if p != "-"])  # as ingest: a wrong path is a usage error, before any work
    except OSError as exc:  # missing, unreadable, a symlink loop
        raise click.UsageError(str(exc)) from exc

    setup_logging("warning")  # a watched file's name in a warning is shown safely, like everything else
    console = Console(stderr=True, highlight=False)
    from tetrapipe.transforms.detect import format_alert

    lake = open_lake(lake_dir)
    # a restarted run resumes each file where the lake ends: its process table and alert memory too
    transforms, detector = pipeline_transforms(rules_dir, lake, tls_window, long_running=True)
    if detector is not None:

        def print_alerts(alerts) -> None:  # noqa: ANN001
            """Alerts as they fire, on stdout (progress goes to stderr), one line each."""
            for row in alerts.slice(0, 50).to_pylist():
                click.echo(format_alert(row))  # control characters in the event made visible there
            if alerts.num_rows > 50:
                click.echo(f"... and {alerts.num_rows - 50:,} more alerts in this batch (tetrapipe query alerts)")

        detector.on_new_alerts = print_alerts
    stop = threading.Event()
    install_stop_on_signals(stop)

    def show(st) -> None:  # noqa: ANN001
        if st.events or st.rejects:
            alerts = st.extra_rows.get("alerts", 0)
            console.print(
                f"+{st.events:,} events, {st.rejects:,} rejects, {alerts:,} alerts "
                f"({st.events_per_second:,.0f} events/s)"
            )
            for note in st.first_rejects[:5]:  # the file name and the reason quote the input: shown, not obeyed
                note_line = Text.assemble(
                    "  ", (visible(f"{note.source}:{note.line_no}"), "yellow"), ": ", visible(note.reason)
                )
                console.print(note_line, soft_wrap=True)  # whole: an escape cut across two lines reads as two

    registry = new_registry()
    health = Health(stall_seconds=max(120.0, 10 * poll_seconds))
    metrics = RunMetrics(PipelineMetrics(registry), health, transforms)
    health.add_check("polling", metrics.ready)
    server = serve_metrics(registry, health, metrics_host, metrics_port)
    if server:
        console.print(f"metrics on {server.url}/metrics (health: /healthz, /readyz)")
    try:
        totals = run(
            list(paths),
            lake,
            transforms,
            poll_seconds=poll_seconds,
            exit_at_eof=exit_at_eof,
            stop=stop,
            on_poll=show,
            metrics=metrics,
            chunk_bytes=chunk_bytes,
        )
    finally:
        if server is not None:
            server.close()
    console.print(f"done: {totals.events:,} events, {totals.rejects:,} rejects in {totals.polls} poll(s)")


COMMANDS = [run_command]
