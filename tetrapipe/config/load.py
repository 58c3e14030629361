"""Reading a deployment file: parse (YAML or TOML), check against the schema, build a :class:`Config`.

Every problem is reported with where it is -- ``tetrapipe.yaml:14:7:
sinks[1].options: unknown key 'tokne' (did you mean 'token'?)`` -- and all
problems at once. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tetrapipe.config.check import Checker
from tetrapipe.config.located import ConfigError, DuplicateKeyError, Node, Problem, toml_nodes, yaml_nodes
from tetrapipe.config.schema import ROOT, SINK_OPTIONS, Field, Section, sink_section
from tetrapipe.lake.store import DEFAULT_LAKE
from tetrapipe.redact import MASK, redact, redact_url


@dataclass
class SinkConfig:
    """One entry of ``sinks:``, checked; ``options`` are the sink class's keyword arguments."""

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
    """A checked deployment file: plain data the commands read (defaults filled in)."""

    path: str
    version: int = 1
    lake: str = DEFAULT_LAKE
    #: delta-rs storage options of an object-store lake (``--lake-option`` pairs win over them)
    lake_options: dict[str, str] = field(default_factory=dict)
    rules: str | None = None
    spool_dir: str | None = None  # None: tetrapipe.sinks.spool.default_spool_dir()
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


def _parse(text: str, name: str, toml: bool) -> Node:
    """The document as located nodes, or a :class:`ConfigError` saying where the syntax breaks."""
    try:
        return toml_nodes(text) if toml else yaml_nodes(text)
    except DuplicateKeyError as exc:
        raise ConfigError([Problem(name, exc.line, exc.column, "", exc.problem or str(exc))]) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = exc.problem or str(exc)
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise ConfigError([Problem(name, line, column, "", f"not valid YAML: {msg}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(name, None, None, "", f"not valid YAML: {exc}")]) from exc
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+), column (\d+)", str(exc))
        line, column = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        raise ConfigError([Problem(name, line, column, "", f"not valid TOML: {exc}")]) from exc


def _sink_options(checker: Checker, data: dict[str, Any], raw: dict[str, Any], node: Node | None, where: str) -> dict:
    """A sink's options checked against its type's section; a Kafka sink defaults to the file's broker."""
    typ = raw.get("type")
    if typ not in SINK_OPTIONS:
        return {}
    opts_node = raw.get("options")
    fallback = Node({}, node.line if node else None, node.column if node else None)
    options = checker.section(sink_section(typ), opts_node or fallback, f"{where}.options")
    if typ == "kafka" and not options.get("bootstrap"):
        if data.get("kafka") and data["kafka"].get("bootstrap"):
            options["bootstrap"] = data["kafka"]["bootstrap"]
        else:
            checker.error(
                opts_node or node,
                f"{where}.options",
                "missing 'bootstrap' (and no top-level kafka.bootstrap to default to)",
            )
    if typ == "kafka" and not options.get("client") and data.get("kafka") and data["kafka"].get("client"):
        options["client"] = data["kafka"]["client"]  # one deployment, one client library, unless a sink says
    return options


def _check_sink_name(checker: Checker, raw: dict[str, Any], node: Node | None, i: int, seen: dict) -> None:
    """Sink names are unique and safe as a directory name and a metrics label."""
    name_node = node.value.get("name") if node is not None and isinstance(node.value, dict) else node
    where = f"sinks[{i}]"
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


def _sinks(checker: Checker, data: dict[str, Any], root: Node) -> list[SinkConfig]:
    sinks: list[SinkConfig] = []
    seen: dict[str, int] = {}
    sink_nodes = root.value.get("sinks").value if isinstance(root.value, dict) and root.value.get("sinks") else []
    for i, raw in enumerate(data.get("sinks") or []):
        if not raw:
            continue
        node = sink_nodes[i] if i < len(sink_nodes) else None
        where = f"sinks[{i}]"
        options = _sink_options(checker, data, raw, node, where)
        if raw.get("name"):
            _check_sink_name(checker, raw, node, i, seen)
        sinks.append(
            SinkConfig(
                name=raw.get("name") or f"sink{i}",
                type=raw.get("type") or "",
                format=raw.get("format") or "native",
                forward=raw.get("forward") or "alerts",
                include_raw=bool(raw.get("include_raw")),
                enabled=raw.get("enabled", True) is not False,
                filters=raw.get("filters") or {},
                delivery=raw.get("delivery") or {},
                options=options,
            )
        )
    return sinks


def _option_text(value: Any) -> str:
    """A storage option as delta-rs takes it: text, YAML's booleans as ``true``/``false``."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def parse_config(text: str, name: str = "<config>", env: dict[str, str] | None = None, toml: bool = False) -> Config:
    """Parse, expand and check a configuration text; raise :class:`ConfigError` listing every problem."""
    root = _parse(text, name, toml)
    checker = Checker(name, env)
    data = checker.section(ROOT, root, "")
    sinks = _sinks(checker, data, root)
    if checker.problems:
        raise ConfigError(sorted(checker.problems, key=lambda p: (p.line or 0, p.column or 0)))
    return Config(
        path=name,
        version=data.get("version") or 1,
        lake=data["lake"],
        lake_options={str(k): _option_text(v) for k, v in (data.get("lake_options") or {}).items()},
        rules=data.get("rules"),
        spool_dir=data["spool_dir"],
        metrics=data.get("metrics"),
        sources=data.get("sources") or [],
        kafka=data.get("kafka"),
        processor=data.get("processor"),
        sinks=sinks,
    )
