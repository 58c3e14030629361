"""The deployment file as ``TETRAPIPE_*`` variables, so one file drives every component.

Precedence: command line > ``TETRAPIPE_*`` environment variables > the file >
built-in defaults. ``collect`` and ``process`` take every flag from a
variable; :func:`command_env` turns the file into those variables
(``tetrapipe config env FILE process``). See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from typing import Any

from tetrapipe.config.load import Config

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
    if kafka.get("client") and command != "forward":  # forward reads kafka.client from the file itself
        env["TETRAPIPE_KAFKA_CLIENT"] = kafka["client"]
    options = " ".join(f"{k}={v}" for k, v in (kafka.get("options") or {}).items())
    if command == "collect":
        _collect_env(config, kafka, options, env)
    elif command == "process":
        _process_env(config, kafka, options, env)
    else:
        env["TETRAPIPE_CONFIG"] = config.path
    return env


def _collect_env(config: Config, kafka: dict[str, Any], options: str, env: dict[str, str]) -> None:
    """The collector's topic, Kafka settings and its source (the file's first)."""
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


def _process_env(config: Config, kafka: dict[str, Any], options: str, env: dict[str, str]) -> None:
    """The processor's lake, rules, topics and batch settings."""
    env["TETRAPIPE_LAKE"] = config.lake
    if config.lake_options:  # what --lake-option reads from the environment: KEY=VALUE pairs, comma-separated
        env["TETRAPIPE_LAKE_OPTIONS"] = ",".join(f"{k}={v}" for k, v in config.lake_options.items())
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
        ("commit_seconds", "TETRAPIPE_COMMIT_SECONDS"),
        ("tls_window", "TETRAPIPE_TLS_WINDOW"),
        ("on_offset_reset", "TETRAPIPE_ON_OFFSET_RESET"),
    ):
        if proc.get(key) is not None:
            env[var] = str(proc[key])
