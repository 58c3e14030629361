"""Options and parameter types shared by several commands (kept apart from cli.py to avoid import cycles)."""

from __future__ import annotations

import click


class Duration(click.ParamType):
    """``90s``, ``5m``, ``1h``: a timedelta, or a usage error that shows the forms."""

    name = "duration"

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        import datetime as dt

        from tetrapipe.tree.model import parse_duration

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
    "--tls-window", type=Duration(), default="1m", show_default=True, envvar="TETRAPIPE_TLS_WINDOW",
    show_envvar=True, help="Tumbling window of the tls_stats rows (e.g. 30s, 5m, 1h).",
)
