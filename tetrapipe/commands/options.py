"""Options and parameter types shared by several commands (kept apart from cli.py to avoid import cycles)."""

from __future__ import annotations

import logging

import click


class Duration(click.ParamType):
    """``90s``, ``5m``, ``1h``: a timedelta, or a usage error that shows the forms."""

    name = "duration"

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        import datetime as dt

        from tetrapipe.units import parse_duration

        if isinstance(value, dt.timedelta):
            return value
        try:
            d = parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if d <= dt.timedelta(0):
            self.fail(f"{value!r} is not a positive duration", param, ctx)
        return d


tls_window_option = click.option(
    "--tls-window",
    type=Duration(),
    default="1m",
    show_default=True,
    envvar="TETRAPIPE_TLS_WINDOW",
    show_envvar=True,
    help="Tumbling window of the tls_stats rows (e.g. 30s, 5m, 1h).",
)


def pipeline_transforms(
    rules_dir: str | None,
    lake=None,
    tls_window=None,
    *,  # noqa: ANN001
    long_running: bool,
) -> tuple[list, object | None]:
    """The transforms every ingesting command runs (ancestry, TLS, detection), and its detector.

    Detection never goes off without a word: with no rules found (and no
    explicit ``--rules none``), a one-shot command says so on stderr and goes
    on, while a long-running one (``run``, ``process``: a SIEM forwarder that
    would forward nothing for weeks) refuses to start.
    """
    from tetrapipe.flows.transforms import restore_transforms
    from tetrapipe.ruleset.locate import NO_RULES, rules_wanted
    from tetrapipe.transforms.chain import build_transforms

    transforms, detector = build_transforms(rules_dir, tls_window=tls_window)
    restore_transforms(transforms, lake)
    if detector is None and rules_wanted(rules_dir):
        if long_running:
            raise click.UsageError(f"{NO_RULES}; or --rules none to run without detection on purpose")
        click.echo(NO_RULES, err=True)
    return transforms, detector


def setup_logging(level: int | str = logging.INFO) -> None:
    """The one log format of the long-running commands; every record is masked and made safe to show.

    Secrets in URLs and options (a client library's error may quote them) are
    masked, and control characters from data (a watched file's name) are
    written as visible escapes before they reach a terminal.
    """
    from tetrapipe.redact import install_log_redaction

    if isinstance(level, str):
        level = getattr(logging, level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
