"""One configuration file for a whole deployment: sources, Kafka, processor, rules, lake, sinks.

The file is YAML (``.yaml`` / ``.yml``) or TOML (``.toml``). Every problem is
reported with where it is -- ``tetrapipe.yaml:14:7: sinks[1].options: unknown
key 'tokne' (did you mean 'token'?)`` -- and all problems are reported at once,
so one ``tetrapipe config check`` run is enough to fix a file. TOML parsers
give no positions; for TOML the line is found by looking for the key.

Strings may use the environment: ``${NAME}`` (an error when NAME is not set),
``${NAME:-default}``, and ``$$`` for a literal ``$``. Secrets such as the HEC
token belong there, not in the file. Values are typed by the schema below
after expansion, so ``port: ${SYSLOG_PORT:-514}`` is an integer.

Precedence: command line > ``TETRAPIPE_*`` environment variables > this file >
built-in defaults. ``tetrapipe forward`` reads the file (``--config``);
``collect`` and ``process`` take every flag from a variable, and
:func:`command_env` turns the file into those variables (``tetrapipe config
env FILE process``).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tetrapipe.formats import FORMATS
from tetrapipe.redact import MASK, redact, redact_text, redact_url
from tetrapipe.units import SEVERITIES

# --- located values ---------------------------------------------------------------------


@dataclass
class Node:
    """A parsed value with where it came from (1-based line and column; None when unknown)."""

    value: Any
    line: int | None = None
    column: int | None = None
    keys: dict[str, Node] = field(default_factory=dict)  # mapping: key -> the key's own node


@dataclass
class Problem:
    file: str
    line: int | None
    column: int | None
    where: str
    message: str

    def __str__(self) -> str:
        loc = self.file
        if self.line is not None:
            loc += f":{self.line}"
            if self.column is not None:
                loc += f":{self.column}"
        # a value quoted back (a URL with its password, a name=value option) is masked like any output
        return f"{loc}: {self.where + ': ' if self.where else ''}{redact_text(self.message)}"


class ConfigError(Exception):
    """The file is not a valid configuration; ``problems`` lists every error found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _yaml_nodes(text: str) -> Node:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    finally:
        loader.dispose()
    if root is None:
        return Node({}, 1, 1)
    constructor = yaml.SafeLoader("")

    def walk(n: yaml.Node) -> Node:
        line, col = n.start_mark.line + 1, n.start_mark.column + 1
        if isinstance(n, yaml.MappingNode):
            out: dict[str, Node] = {}
            keys: dict[str, Node] = {}
            for k, v in n.value:
                key = constructor.construct_object(k)
                key = str(key) if not isinstance(key, str) else key
                if key in out:
                    raise _Located(k.start_mark.line + 1, k.start_mark.column + 1, f"duplicate key {key!r}")
                out[key] = walk(v)
                keys[key] = Node(key, k.start_mark.line + 1, k.start_mark.column + 1)
            return Node(out, line, col, keys)
        if isinstance(n, yaml.SequenceNode):
            return Node([walk(v) for v in n.value], line, col)
        return Node(constructor.construct_object(n), line, col)

    return walk(root)


def _toml_nodes(text: str) -> Node:
    data = tomllib.loads(text)
    lines = text.splitlines()

    def find(key: str, after: int) -> int | None:
        pat = re.compile(rf"^\s*(\[+\s*)?([\w.\"-]*\.)?\"?{re.escape(key)}\"?\s*(=|\]|\.)")
        for i in range(after, len(lines)):
            if pat.search(lines[i]):
                return i + 1
        return None

    def walk(value: Any, line: int | None) -> Node:
        if isinstance(value, dict):
            out, keys = {}, {}
            for k, v in value.items():
                kl = find(k, (line or 1) - 1) or line
                out[k] = walk(v, kl)
                keys[k] = Node(k, kl, None)
            return Node(out, line, None, keys)
        if isinstance(value, list):
            return Node([walk(v, line) for v in value], line, None)
        return Node(value, line, None)

    return walk(data, 1)


class _Located(Exception):
    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(message)
        self.line, self.column = line, column


# --- environment expansion -------------------------------------------------------------------

_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, env: dict[str, str] | None = None) -> str:
    """``${NAME}``, ``${NAME:-default}`` and ``$$``; KeyError(NAME) when NAME is unset without a default."""
    env = os.environ if env is None else env

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        raise KeyError(name)

    return _ENV.sub(sub, text)


# --- the schema ---------------------------------------------------------------------------

MISSING = object()


@dataclass
class Field:
    """One key: its type, default, allowed values and meaning (the ``doc`` is what ``config check`` cites)."""

    type: Any
    default: Any = MISSING
    required: bool = False
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    secret: bool = False
    doc: str = ""
    #: a value's own rule: returns what is wrong with it, or None
    validate: Callable[[Any], str | None] | None = None


def _duration_problem(value: Any) -> str | None:
    from tetrapipe.units import parse_duration

    try:
        ok = parse_duration(str(value)).total_seconds() > 0
    except ValueError:
        ok = False
    return None if ok else f"must be a positive duration (30s, 5m, 1h), not {value!r}"


@dataclass
class Section:
    fields: dict[str, Field]
    doc: str = ""


@dataclass
class ListOf:
    item: Any


@dataclass
class MapOf:
    """A free-form mapping of string keys to scalars (Kafka client settings, labels)."""

    value: Any = str


# sink options, one section per sink type; the keys are the sink classes' keyword arguments
SINK_OPTIONS: dict[str, Section] = {
    "hec": Section(
        {
            "url": Field(str, required=True, doc="HEC base URL, e.g. https://splunk:8088"),
            "token": Field(str, required=True, secret=True, doc="HEC token; use ${ENV}"),
            "index": Field(str, None),
            "source": Field(str, "tetrapipe"),
            "sourcetype": Field(str, None, doc="default _json; tetrapipe:cef with format: cef"),
            "host": Field(str, None, doc="fixed host field (default: the event's node)"),
            "gzip": Field(bool, True),
            "ack": Field(bool, False, doc="indexer acknowledgement"),
            "ack_timeout_seconds": Field(float, 60.0, minimum=0.1),
            "ack_poll_seconds": Field(float, 0.5, minimum=0.01),
            "max_pending_acks": Field(int, 16, minimum=1),
            "max_request_bytes": Field(int, 1_000_000, minimum=1024),
            "timeout_seconds": Field(float, 10.0, minimum=0.1),
            "verify_tls": Field(bool, True),
            "ca_file": Field(str, None),
            "channel": Field(str, None),
        },
        "Splunk HTTP Event Collector",
    ),
    "syslog": Section(
        {
            "host": Field(str, "127.0.0.1"),
            "port": Field(int, None, minimum=1),
            "protocol": Field(str, "tcp", choices=("udp", "tcp", "tls")),
            "facility": Field(
                str,
                "local0",
                choices=(
                    "kern",
                    "user",
                    "mail",
                    "daemon",
                    "auth",
                    "syslog",
                    "lpr",
                    "news",
                    "uucp",
                    "cron",
                    "authpriv",
                    "ftp",
                    "ntp",
                    "security",
                    "console",
                    "solaris-cron",
                    *(f"local{i}" for i in range(8)),
                ),
            ),
            "app_name": Field(str, "tetrapipe"),
            "hostname": Field(str, None),
            "framing": Field(str, "octet-counting", choices=("octet-counting", "lf")),
            "structured_data": Field(bool, True),
            "sd_id": Field(str, "tetrapipe@32473"),
            "max_message_bytes": Field(int, 65_000, minimum=480),
            "timeout_seconds": Field(float, 10.0, minimum=0.1),
            "ca_file": Field(str, None),
            "cert_file": Field(str, None),
            "key_file": Field(str, None),
            "verify_tls": Field(bool, True),
            "server_name": Field(str, None),
        },
        "syslog RFC 5424",
    ),
    "file": Section(
        {
            "path": Field(str, required=True),
            "max_bytes": Field(int, 100 * 1024 * 1024, minimum=1024),
            "backups": Field(int, 5, minimum=0),
            "fsync": Field(bool, False),
        },
        "rotating JSON-lines file",
    ),
    "stdout": Section({}, "standard output"),
    "webhook": Section(
        {
            "url": Field(str, required=True, secret=True, doc="endpoint (a Slack URL is a secret: use ${ENV})"),
            "mode": Field(
                str,
                "ndjson",
                choices=("ndjson", "array", "single"),
                doc="a batch as JSON lines or one JSON array per request, or one record per request",
            ),
            "headers": Field(MapOf(str), None, secret=True, doc="extra request headers (Authorization: ...)"),
            "method": Field(str, "POST", choices=("POST", "PUT")),
            "gzip": Field(bool, False),
            "timeout_seconds": Field(float, 10.0, minimum=0.1),
            "verify_tls": Field(bool, True),
            "ca_file": Field(str, None),
        },
        "HTTP webhook (SOAR, ticketing, Slack/Mattermost with format: slack)",
    ),
    "kafka": Section(
        {
            "bootstrap": Field(str, None, doc="default: kafka.bootstrap"),
            "topic": Field(str, required=True),
            "compression": Field(str, None, choices=("gzip", "snappy", "lz4", "zstd")),
            "timeout_seconds": Field(float, 30.0, minimum=0.1),
            "client_id": Field(str, "tetrapipe-siem"),
            "options": Field(MapOf(object), None, doc="kafka-python producer settings (TLS, SASL)"),
        },
        "Kafka topic",
    ),
}

SEVERITY_CHOICES = SEVERITIES

FILTERS = Section(
    {
        "kinds": Field(ListOf(str), None, doc="event kinds to forward (events only)"),
        "exclude_kinds": Field(ListOf(str), None),
        "namespaces": Field(ListOf(str), None, doc="glob patterns; (host) matches host processes"),
        "exclude_namespaces": Field(ListOf(str), None),
        "min_severity": Field(str, None, choices=SEVERITY_CHOICES, doc="alerts only"),
        "rules": Field(ListOf(str), None, doc="rule id glob patterns (alerts only)"),
        "exclude_rules": Field(ListOf(str), None),
    }
)

DELIVERY = Section(
    {
        "batch_size": Field(int, 500, minimum=1),
        "linger_seconds": Field(float, 1.0, minimum=0),
        "max_attempts": Field(int, 3, minimum=1),
        "backoff_initial_seconds": Field(float, 0.5, minimum=0),
        "backoff_max_seconds": Field(float, 60.0, minimum=0),
        "spool_max_bytes": Field(int, 1 << 30, minimum=0),
        "spool_fsync": Field(bool, True),
    }
)

SINK = Section(
    {
        "name": Field(str, required=True),
        "type": Field(str, required=True, choices=tuple(SINK_OPTIONS)),
        "format": Field(str, "native", choices=tuple(FORMATS)),
        "forward": Field(str, "alerts", choices=("alerts", "events", "all")),
        "include_raw": Field(bool, False),
        "enabled": Field(bool, True),
        "filters": Field(FILTERS, None),
        "delivery": Field(DELIVERY, None),
        "options": Field("sink-options", None),
    }
)

SOURCE = Section(
    {
        "type": Field(str, required=True, choices=("file", "grpc", "stdin")),
        "path": Field(str, None, doc="file: Tetragon's export file or directory"),
        "address": Field(str, None, doc="grpc: Tetragon's gRPC address (unix:///... or host:port)"),
        "from": Field(str, "end", choices=("beginning", "end")),
        "checkpoint_dir": Field(str, None),
    }
)

ROOT = Section(
    {
        "version": Field(int, 1, choices=(1,)),
        "lake": Field(str, "./tetrapipe-lake"),
        "rules": Field(str, None, doc="rules directory, or none"),
        "spool_dir": Field(str, "./tetrapipe-spool", doc="where sinks keep what the SIEM could not take yet"),
        # no default host: a listener reaches beyond the machine only when the file says so (0.0.0.0 in a pod);
        # left out, every command binds 127.0.0.1 (metrics name nodes, pods and rules)
        "metrics": Field(
            Section(
                {
                    "host": Field(
                        str, None, doc="bind address (default 127.0.0.1; 0.0.0.0 for the kubelet and Prometheus)"
                    ),
                    "port": Field(int, None, minimum=1),
                }
            ),
            None,
        ),
        "sources": Field(ListOf(SOURCE), None),
        "kafka": Field(
            Section(
                {
                    "bootstrap": Field(str, required=True),
                    "topic": Field(str, "tetragon.events"),
                    "alerts_topic": Field(str, "tetrapipe.alerts"),
                    "dead_letter_topic": Field(str, "tetragon.events.dlq"),
                    "events_topic": Field(
                        str,
                        "",
                        doc="enriched events from the processor, for sinks with forward: "
                        "events|all ('' = not streamed)",
                    ),
                    "options": Field(MapOf(object), None),
                }
            ),
            None,
        ),
        "processor": Field(
            Section(
                {
                    "group": Field(str, "tetrapipe-processor"),
                    "batch_size": Field(int, 20_000, minimum=1),
                    "batch_seconds": Field(float, 1.0, minimum=0),
                    "compact_every_seconds": Field(float, 600.0, minimum=0),
                    "tls_window": Field(str, "1m", validate=_duration_problem, doc="tumbling window of tls_stats rows"),
                    "on_offset_reset": Field(
                        str,
                        "fail",
                        choices=("fail", "earliest", "latest"),
                        doc="the lake is ahead of the broker (topic recreated) or behind its retention",
                    ),
                }
            ),
            None,
        ),
        "sinks": Field(ListOf(SINK), None),
    }
)


class _Checker:
    def __init__(self, file: str, env: dict[str, str] | None) -> None:
        self.file = file
        self.env = env
        self.problems: list[Problem] = []

    def error(self, node: Node | None, where: str, message: str) -> None:
        self.problems.append(
            Problem(self.file, node.line if node else None, node.column if node else None, where, message)
        )

    def check(self, spec: Any, node: Node, where: str) -> Any:
        if isinstance(spec, Section):
            return self.section(spec, node, where)
        if isinstance(spec, ListOf):
            if node.value is None:
                return []
            if not isinstance(node.value, list):
                self.error(node, where, f"expected a list, got {_kind(node.value)}")
                return []
            return [self.check(spec.item, item, f"{where}[{i}]") for i, item in enumerate(node.value)]
        if isinstance(spec, MapOf):
            if node.value is None:
                return {}
            if not isinstance(node.value, dict):
                self.error(node, where, f"expected a mapping, got {_kind(node.value)}")
                return {}
            return {k: self.scalar(spec.value, v, f"{where}.{k}") for k, v in node.value.items()}
        return self.scalar(spec, node, where)

    def section(self, spec: Section, node: Node, where: str) -> dict[str, Any]:
        if node.value is None:
            node = Node({}, node.line, node.column)
        if not isinstance(node.value, dict):
            self.error(node, where, f"expected a mapping, got {_kind(node.value)}")
            return {}
        out: dict[str, Any] = {}
        for key, child in node.value.items():
            if key not in spec.fields:
                hint = difflib.get_close_matches(key, list(spec.fields), n=1)
                self.error(
                    node.keys.get(key, child),
                    where or "(top level)",
                    f"unknown key {key!r}"
                    + (
                        f" (did you mean {hint[0]!r}?)" if hint else f"; known keys: {', '.join(spec.fields) or 'none'}"
                    ),
                )
        for key, f in spec.fields.items():
            path = f"{where}.{key}" if where else key
            if key in node.value:
                child = node.value[key]
                if f.type == "sink-options":
                    out[key] = child  # checked once the sink's type is known
                    continue
                before = len(self.problems)
                value = self.check(f.type, child, path)
                if value is None and f.required and len(self.problems) == before:
                    self.error(child, path, "is required and may not be empty")
                out[key] = value
                if (
                    f.choices is not None
                    and value is not None
                    and not isinstance(f.type, ListOf)
                    and value not in f.choices
                ):
                    self.error(child, path, f"must be one of {', '.join(map(str, f.choices))}, not {value!r}")
                if (
                    f.minimum is not None
                    and isinstance(value, int | float)
                    and not isinstance(value, bool)
                    and value < f.minimum
                ):
                    self.error(child, path, f"must be at least {f.minimum:g}, not {value}")
                if f.validate is not None and value is not None and (problem := f.validate(value)):
                    self.error(child, path, problem)
            elif f.required:
                self.error(node, where or "(top level)", f"missing required key {key!r}")
                out[key] = None
            else:
                out[key] = f.default if f.default is not MISSING else None
        return out

    def scalar(self, typ: Any, node: Node, where: str) -> Any:
        value = node.value
        if isinstance(value, str):
            try:
                value = expand_env(value, self.env)
            except KeyError as exc:
                self.error(
                    node,
                    where,
                    f"environment variable {exc.args[0]} is not set (write ${{{exc.args[0]}:-default}} for a default)",
                )
                return None
        if value is None or typ is object:
            return value
        if isinstance(value, dict | list):
            self.error(node, where, f"expected {_type_name(typ)}, got {_kind(value)}")
            return None
        try:
            return _coerce(typ, value)
        except ValueError:
            self.error(node, where, f"expected {_type_name(typ)}, got {value!r}")
            return None


def _coerce(typ: Any, value: Any) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise ValueError(value)
    if typ is int:
        if isinstance(value, bool):
            raise ValueError(value)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(str(value).strip()) if isinstance(value, str) else int(value)
    if typ is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    if typ is str:
        if isinstance(value, bool | int | float):
            return str(value).lower() if isinstance(value, bool) else str(value)
        return str(value)
    return value


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", type(None): "nothing"}.get(type(value), f"{value!r}")


def _type_name(typ: Any) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(typ, str(typ))


# --- the loaded configuration -----------------------------------------------------------------


@dataclass
class SinkConfig:
    name: str
    type: str
    format: str = "native"
    forward: str = "alerts"
    include_raw: bool = False
    enabled: bool = True
    filters: dict[str, Any] = field(default_factory=dict)
    delivery: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    path: str
    version: int = 1
    lake: str = "./tetrapipe-lake"
    rules: str | None = None
    spool_dir: str = "./tetrapipe-spool"
    metrics: dict[str, Any] | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    kafka: dict[str, Any] | None = None
    processor: dict[str, Any] | None = None
    sinks: list[SinkConfig] = field(default_factory=list)

    def redacted(self) -> dict[str, Any]:
        """The configuration as plain data with secrets masked (for ``config show`` and logs).

        Options the schema marks ``secret`` are masked by name; everything else
        goes through :func:`tetrapipe.redact.redact`, because Kafka settings
        are a free map (``sasl_plain_password``) and any URL may carry a
        password (``https://user:pw@...``).
        """
        out = {k: v for k, v in self.__dict__.items() if k != "sinks"}
        out["sinks"] = []
        for s in self.sinks:
            d = dict(s.__dict__)
            spec = SINK_OPTIONS.get(s.type, Section({}))
            d["options"] = {k: _mask_option(spec.fields.get(k), v) for k, v in s.options.items()}
            out["sinks"].append(d)
        return redact(out)


def _mask_option(spec: Field | None, value: Any) -> Any:
    """A schema-secret option for display: a URL keeps its host (not its path, the secret of a chat
    webhook, nor its password), a mapping of headers keeps its names, anything else is ``***``."""
    if spec is None or not spec.secret or value in (None, "", {}):
        return value
    if isinstance(value, dict):
        return {k: MASK for k in value}
    if isinstance(value, str) and "://" in value:
        return redact_url(value, keep_path=False)
    return MASK


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> Config:
    """Parse, expand and validate a configuration file; raise :class:`ConfigError` listing every problem."""
    p = Path(path)
    name = str(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError([Problem(name, None, None, "", f"cannot read the file: {exc.strerror or exc}")]) from exc
    return parse_config(text, name, env=env, toml=p.suffix.lower() == ".toml")


def parse_config(text: str, name: str = "<config>", env: dict[str, str] | None = None, toml: bool = False) -> Config:
    try:
        root = _toml_nodes(text) if toml else _yaml_nodes(text)
    except _Located as exc:
        raise ConfigError([Problem(name, exc.line, exc.column, "", str(exc))]) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = exc.problem or str(exc)
        raise ConfigError(
            [
                Problem(
                    name,
                    mark.line + 1 if mark else None,
                    mark.column + 1 if mark else None,
                    "",
                    f"not valid YAML: {msg}",
                )
            ]
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(name, None, None, "", f"not valid YAML: {exc}")]) from exc
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+), column (\d+)", str(exc))
        raise ConfigError(
            [
                Problem(
                    name, int(m.group(1)) if m else None, int(m.group(2)) if m else None, "", f"not valid TOML: {exc}"
                )
            ]
        ) from exc
    checker = _Checker(name, env)
    data = checker.section(ROOT, root, "")
    sinks: list[SinkConfig] = []
    seen: dict[str, int] = {}
    sink_nodes = root.value.get("sinks").value if isinstance(root.value, dict) and root.value.get("sinks") else []
    for i, raw in enumerate(data.get("sinks") or []):
        if not raw:
            continue
        node = sink_nodes[i] if i < len(sink_nodes) else None
        where = f"sinks[{i}]"
        opts_node = raw.get("options")
        options: dict[str, Any] = {}
        typ = raw.get("type")
        if typ in SINK_OPTIONS:
            options = checker.section(
                SINK_OPTIONS[typ],
                opts_node or Node({}, node.line if node else None, node.column if node else None),
                f"{where}.options",
            )
            if typ == "kafka" and not options.get("bootstrap"):
                if data.get("kafka") and data["kafka"].get("bootstrap"):
                    options["bootstrap"] = data["kafka"]["bootstrap"]
                else:
                    checker.error(
                        opts_node or node,
                        f"{where}.options",
                        "missing 'bootstrap' (and no top-level kafka.bootstrap to default to)",
                    )
        if raw.get("name"):
            name_node = node.value.get("name") if node is not None and isinstance(node.value, dict) else node
            if raw["name"] in seen:
                checker.error(
                    name_node, f"{where}.name", f"duplicate sink name {raw['name']!r} (also sinks[{seen[raw['name']]}])"
                )
            elif not re.fullmatch(r"[A-Za-z0-9_.-]+", raw["name"]):
                checker.error(
                    name_node,
                    f"{where}.name",
                    "use letters, digits, '.', '_' and '-' only (it names the spool directory and the metrics label)",
                )
            seen.setdefault(raw["name"], i)
        sinks.append(
            SinkConfig(
                name=raw.get("name") or f"sink{i}",
                type=typ or "",
                format=raw.get("format") or "native",
                forward=raw.get("forward") or "alerts",
                include_raw=bool(raw.get("include_raw")),
                enabled=raw.get("enabled", True) is not False,
                filters=raw.get("filters") or {},
                delivery=raw.get("delivery") or {},
                options=options,
            )
        )
    if checker.problems:
        raise ConfigError(sorted(checker.problems, key=lambda p: (p.line or 0, p.column or 0)))
    return Config(
        path=name,
        version=data.get("version") or 1,
        lake=data["lake"],
        rules=data.get("rules"),
        spool_dir=data["spool_dir"],
        metrics=data.get("metrics"),
        sources=data.get("sources") or [],
        kafka=data.get("kafka"),
        processor=data.get("processor"),
        sinks=sinks,
    )


#: which commands ``command_env`` knows, and the flag of each environment variable it sets
ENV_COMMANDS = ("collect", "process", "forward")


def command_env(config: Config, command: str) -> dict[str, str]:
    """The ``TETRAPIPE_*`` variables that give ``command`` this file's settings.

    ``collect`` and ``process`` take every flag from an environment variable;
    this turns the file into those variables (``tetrapipe config env FILE
    process``), so one file drives every component while flags given on the
    command line still win. ``forward`` reads the file itself (``--config``).
    """
    if command not in ENV_COMMANDS:
        raise ValueError(f"no environment mapping for {command!r}; choose one of {', '.join(ENV_COMMANDS)}")
    env: dict[str, str] = {}
    metrics = config.metrics or {}
    if metrics.get("port"):
        env["TETRAPIPE_METRICS_PORT"] = str(metrics["port"])
    if metrics.get("host"):
        env["TETRAPIPE_METRICS_HOST"] = str(metrics["host"])
    kafka = config.kafka or {}
    if kafka.get("bootstrap"):
        env["TETRAPIPE_KAFKA"] = kafka["bootstrap"]
    options = " ".join(f"{k}={v}" for k, v in (kafka.get("options") or {}).items())
    if command == "collect":
        if kafka.get("topic"):
            env["TETRAPIPE_TOPIC"] = kafka["topic"]
        if options:
            env["TETRAPIPE_KAFKA_OPTION"] = options
        if config.sources:
            src = config.sources[0]
            if src.get("type") == "file" and src.get("path"):
                path = src["path"]
                env["TETRAPIPE_SOURCE"] = f"file://{path}" if path.startswith("/") else path
            elif src.get("type") == "grpc" and src.get("address"):
                addr = src["address"]
                env["TETRAPIPE_SOURCE"] = addr if "://" in addr or addr.startswith("unix:") else f"grpc://{addr}"
            elif src.get("type") == "stdin":
                env["TETRAPIPE_SOURCE"] = "-"
            if src.get("from"):
                env["TETRAPIPE_FROM"] = src["from"]
            if src.get("checkpoint_dir"):
                env["TETRAPIPE_STATE_DIR"] = src["checkpoint_dir"]
    elif command == "process":
        env["TETRAPIPE_LAKE"] = config.lake
        if config.rules:
            env["TETRAPIPE_RULES"] = config.rules
        if kafka:
            env.update(
                TETRAPIPE_TOPIC=kafka.get("topic") or "",
                TETRAPIPE_ALERTS_TOPIC=kafka.get("alerts_topic") or "",
                TETRAPIPE_DEAD_LETTER_TOPIC=kafka.get("dead_letter_topic") or "",
            )
            if kafka.get("events_topic"):
                env["TETRAPIPE_EVENTS_TOPIC"] = kafka["events_topic"]
        if options:
            env["TETRAPIPE_KAFKA_OPTION"] = options
        proc = config.processor or {}
        for key, var in (
            ("group", "TETRAPIPE_GROUP"),
            ("batch_size", "TETRAPIPE_BATCH_SIZE"),
            ("batch_seconds", "TETRAPIPE_BATCH_SECONDS"),
            ("tls_window", "TETRAPIPE_TLS_WINDOW"),
            ("on_offset_reset", "TETRAPIPE_ON_OFFSET_RESET"),
        ):
            if proc.get(key) is not None:
                env[var] = str(proc[key])
    else:
        env["TETRAPIPE_CONFIG"] = config.path
    return env


__all__ = [
    "Config",
    "ConfigError",
    "ENV_COMMANDS",
    "Problem",
    "SinkConfig",
    "command_env",
    "expand_env",
    "load_config",
    "parse_config",
    "SINK_OPTIONS",
]
