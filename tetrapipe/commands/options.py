"""Options and parameter types shared by several commands (kept apart from cli.py to avoid import cycles)."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from pathlib import Path
from types import EllipsisType
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from tetrapipe.lake import Lake


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


class Size(click.ParamType):
    """``64M``, ``1G``, ``512k`` or plain bytes: a number of bytes, or a usage error that shows the forms."""

    name = "size"

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        from tetrapipe.units import parse_size

        if isinstance(value, int):
            return value
        try:
            size = parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if size <= 0:
            self.fail(f"{value!r} is not a positive size", param, ctx)
        return size


chunk_bytes_option = click.option(
    "--chunk-bytes",
    type=Size(),
    default="24M",
    show_default=True,
    help="Lines read, normalized and committed as one batch. Peak memory grows with it (~14 MB per MB of "
    "chunk); each chunk also costs ~170 ms of CPU, so smaller ones take longer.",
)


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
    lake: str | Path | None = None,
    tls_window: dt.timedelta | None = None,
    *,
    long_running: bool,
) -> tuple[list, object | None]:
    """The transforms every ingesting command runs (ancestry, TLS, detection), and its detector.

    Detection never goes off without a word: with no rules found (and no
    explicit ``--rules none``), a one-shot command says so on stderr and goes
    on, while a long-running one (``run``, ``process``: a SIEM forwarder that
    would forward nothing for weeks) refuses to start. A directory that loads
    no rule at all (an empty ``--rules DIR``, one holding only ``lib/``) is
    no rules, not a detector that can never fire; an implicit ``./rules``
    holding no rule file is passed over for the shipped rules, with a note.
    """
    from tetrapipe.flows.transforms import restore_transforms
    from tetrapipe.ruleset.locate import choose_rules_dir, no_rules_message, rules_wanted
    from tetrapipe.transforms.chain import build_transforms

    choice = choose_rules_dir(rules_dir)
    if choice.note:
        click.echo(choice.note, err=True)
    transforms, detector = build_transforms(choice.root or "none", tls_window=tls_window)
    empty = detector is not None and not detector.rules and not detector.sequence_rules
    if empty:
        transforms.remove(detector)
        detector = None
    restore_transforms(transforms, lake)
    if detector is None and rules_wanted(rules_dir):
        message = no_rules_message(choice.root if empty else None)
        if long_running:
            raise click.UsageError(f"{message}; or --rules none to run without detection on purpose")
        click.echo(message, err=True)
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


# --- options several commands take, declared once ------------------------------------------------

F = Callable[..., Any]


def _apply(f: F, *decorators: Callable[[F], F]) -> F:
    """``decorators`` applied so that they show in --help in the order given."""
    for deco in reversed(decorators):
        f = deco(f)
    return f


#: delta-rs storage options from the environment: ``KEY=VALUE`` pairs separated by commas
LAKE_OPTIONS_ENV = "TETRAPIPE_LAKE_OPTIONS"
#: where the parsed ``--lake-option`` pairs wait for :func:`open_lake` (the root context's shared meta)
_LAKE_OPTIONS_META = "tetrapipe.lake_options"


#: what a storage option's name looks like (object_store's keys: ``azure_storage_account_key``, ``endpoint``)
_OPTION_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


class StorageOption(click.ParamType):
    """``KEY=VALUE``: one delta-rs storage option, as a (key, value) pair.

    The environment variable holds several, comma-separated (an account key
    or a SAS token has no comma, but may hold ``=`` and ``&``: only the first
    ``=`` splits). A key is a name (``account_key``, ``azure_client_id``):
    a base64 account key pasted without its name has ``=`` at its end but
    ``/`` or ``+`` inside, so it is refused, and reported without its text.
    """

    name = "key=value"
    envvar_list_splitter = ","

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        if isinstance(value, tuple):
            return value
        key, eq, val = str(value).partition("=")
        key = key.strip()
        if not eq or not _OPTION_KEY.fullmatch(key):
            self.fail(
                f"expected KEY=VALUE with KEY a delta-rs storage option name (account_name, sas_token, ...), "
                f"got {len(str(value))} characters that are not (not shown: it may be a secret)",
                param,
                ctx,
            )
        return key, val.strip()


def _keep_lake_options(ctx: click.Context, param: click.Parameter, value: tuple[tuple[str, str], ...]) -> None:
    ctx.meta[_LAKE_OPTIONS_META] = dict(pair for pair in value if pair[0])


def lake_storage_options() -> dict[str, str]:
    """The ``--lake-option`` pairs of the command being run (empty outside a command or when none given)."""
    ctx = click.get_current_context(silent=True)
    return dict(ctx.meta.get(_LAKE_OPTIONS_META) or {}) if ctx is not None else {}


def open_lake(root: str | Path, defaults: dict[str, str] | None = None) -> Lake:
    """The lake at ``root`` with this command's ``--lake-option`` pairs, over ``defaults`` (a file's).

    Every command that takes ``--lake`` opens its lake here, so an ``az://``
    lake reaches delta-rs with the same credentials whichever command reads
    or writes it.
    """
    from tetrapipe.lake import Lake

    return Lake(root, storage_options={**(defaults or {}), **lake_storage_options()})


def lake_storage_option() -> Callable[[F], F]:
    """``--lake-option KEY=VALUE`` (repeatable) / ``TETRAPIPE_LAKE_OPTIONS``; read back by :func:`open_lake`."""
    return click.option(
        "--lake-option",
        "lake_options",
        envvar=LAKE_OPTIONS_ENV,
        show_envvar=True,
        multiple=True,
        type=StorageOption(),
        metavar="KEY=VALUE",
        expose_value=False,
        callback=_keep_lake_options,
        help="delta-rs storage option for an object-store lake, repeatable (env: comma-separated): "
        "account_name=..., account_key=..., sas_token=..., use_azure_cli=true, endpoint=..., "
        "client_id=... Secrets are never printed.",
    )


def lake_option(*, from_config: bool = False) -> Callable[[F], F]:
    """``--lake DIR|URI`` / ``TETRAPIPE_LAKE``, passed as ``lake_dir``, and ``--lake-option`` (:func:`open_lake`).

    ``from_config``: no default of its own (None), the command takes the
    lake its configuration file names.
    """
    from tetrapipe.lake import DEFAULT_LAKE, LAKE_ENV

    where = "a directory or an object-store URI: az://CONTAINER/PATH, abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH, s3://, gs://"
    if from_config:
        lake = click.option(
            "--lake",
            "lake_dir",
            envvar=LAKE_ENV,
            show_envvar=True,
            default=None,
            metavar="DIR|URI",
            help=f"History lake, {where} (default: the configuration's lake).",
        )
    else:
        lake = click.option(
            "--lake",
            "lake_dir",
            envvar=LAKE_ENV,
            show_envvar=True,
            default=DEFAULT_LAKE,
            show_default=True,
            type=click.Path(file_okay=False),  # a URI never exists on disk: only a local file is refused
            metavar="DIR|URI",
            help=f"History lake, {where}.",
        )
    return lambda f: _apply(f, lake, lake_storage_option())


def rules_option(*, detection: bool = True) -> Callable[[F], F]:
    """``--rules DIR`` / ``TETRAPIPE_RULES``, passed as ``rules_dir``.

    ``detection``: the command runs the rules over events, where ``none``
    switches detection off; the ``rules`` commands read the rules themselves.
    """
    where = "./rules when it holds rule files, else the rules shipped with tetrapipe"
    return click.option(
        "--rules",
        "rules_dir",
        envvar="TETRAPIPE_RULES",
        show_envvar=True,
        default=None,
        type=click.Path() if detection else None,
        help=f"Rules directory (default: {where}; 'none' disables detection)."
        if detection
        else f"Rules directory (default: {where}).",
    )


def exit_at_eof_option(help: str) -> Callable[[F], F]:
    """``--exit-at-eof``: a command that follows a stream stops once its input is drained (``help`` says when)."""
    return click.option("--exit-at-eof", is_flag=True, envvar="TETRAPIPE_EXIT_AT_EOF", show_envvar=True, help=help)


def metrics_options(
    *, port: int = 0, host: str | None | EllipsisType = ..., port_help: str = "", host_help: str = ""
) -> Callable[[F], F]:
    """``--metrics-port`` and ``--metrics-host``: where /metrics, /healthz and /readyz are served.

    Port 0 is off everywhere; ``port`` is this command's default (the
    collector serves by default, being a DaemonSet the kubelet probes).
    ``host`` None: the command has a default of its own (a configuration's);
    ``...``: :data:`tetrapipe.metrics.DEFAULT_METRICS_HOST` (imported here, not
    at the top: ``tetrapipe query`` imports this module and never serves metrics).
    """
    if host is ...:
        from tetrapipe.metrics import DEFAULT_METRICS_HOST

        host = DEFAULT_METRICS_HOST
    return lambda f: _apply(
        f,
        click.option(
            "--metrics-port",
            envvar="TETRAPIPE_METRICS_PORT",
            show_envvar=True,
            type=int,
            default=port,
            show_default=True,
            help=f"Serve /metrics, /healthz and /readyz on this port (0: off{port_help}).",
        ),
        click.option(
            "--metrics-host",
            envvar="TETRAPIPE_METRICS_HOST",
            show_envvar=True,
            default=host,
            show_default=host is not None,
            help=host_help or "Address the metrics server binds to (0.0.0.0 to let the kubelet and Prometheus in).",
        ),
    )


def kafka_options(*, topic_help: str = "Kafka topic.") -> Callable[[F], F]:
    """``--kafka HOST:PORT[,HOST:PORT]`` (required) and ``--topic`` (default ``tetragon.events``)."""
    from tetrapipe.sinks.kafka import DEFAULT_TOPIC, KAFKA_ENV

    return lambda f: _apply(
        f,
        click.option(
            "--kafka",
            envvar=KAFKA_ENV,
            show_envvar=True,
            required=True,
            metavar="HOST:PORT[,HOST:PORT]",
            help="Kafka bootstrap servers.",
        ),
        click.option(
            "--topic",
            envvar="TETRAPIPE_TOPIC",
            show_envvar=True,
            default=DEFAULT_TOPIC,
            show_default=True,
            help=topic_help,
        ),
    )


def kafka_client_option(f: F) -> F:
    """``--kafka-client auto|kafka-python|confluent`` (``TETRAPIPE_KAFKA_CLIENT``), resolved and checked at parse time.

    ``auto`` takes confluent-kafka (librdkafka, the ``tetrapipe[fast]`` extra)
    when it imports; naming ``confluent`` without it is a usage error, not a
    quiet fall back to the slow client.
    """
    from tetrapipe.kafka_client import CLIENT_ENV, CLIENTS

    def resolve(ctx: click.Context, param: click.Parameter, value: str) -> str:
        from tetrapipe.kafka_client import KafkaClientError, resolve_client

        try:
            return resolve_client(value)
        except KafkaClientError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc

    return click.option(
        "--kafka-client",
        envvar=CLIENT_ENV,
        show_envvar=True,
        default="auto",
        show_default=True,
        type=click.Choice(CLIENTS),
        callback=resolve,
        help="Kafka client library: confluent-kafka (librdkafka: 1.7x the processor, 2.8x the collector; "
        "pip install 'tetrapipe[fast]'), kafka-python, or auto = confluent when installed. "
        "--kafka-option keeps kafka-python names with either.",
    )(f)


def checked_kafka_options(client: str, options: dict[str, Any], role: str) -> None:
    """Refuse, before connecting, ``--kafka-option`` settings the chosen client cannot take (a usage error)."""
    if client != "confluent":
        return
    from tetrapipe.kafka_client import KafkaClientError, librdkafka_config

    try:
        librdkafka_config(options, role=role)
    except KafkaClientError as exc:
        raise click.UsageError(str(exc)) from exc


def parse_kafka_options(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to kafka-python keyword arguments (``.`` -> ``_``; ints and booleans converted).

    How TLS, SASL and tuning reach the Kafka clients untouched:
    ``security_protocol=SASL_SSL``, ``sasl_mechanism=SCRAM-SHA-512``,
    ``ssl_cafile=/etc/kafka/ca.pem``, ``session_timeout_ms=6000`` ...
    Raises ValueError for a pair without ``=``.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        v: Any = value
        if value.lstrip("-").isdigit():
            v = int(value)
        elif value.lower() in ("true", "false"):
            v = value.lower() == "true"
        out[key.strip().replace(".", "_")] = v
    return out


def _kafka_settings(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, Any]:
    try:
        return parse_kafka_options(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


def kafka_settings_option(client: str) -> Callable[[F], F]:
    """``--kafka-option KEY=VALUE`` (repeatable), passed as ``kafka_options``: a dict for the ``client``."""
    return click.option(
        "--kafka-option",
        "kafka_options",
        envvar="TETRAPIPE_KAFKA_OPTION",
        show_envvar=True,
        multiple=True,
        metavar="KEY=VALUE",
        callback=_kafka_settings,
        help=f"kafka-python {client} setting, repeatable: security_protocol=SASL_SSL, sasl_mechanism=PLAIN, "
        "sasl_plain_username=..., sasl_plain_password=..., ssl_cafile=/ca.pem, ...",
    )
