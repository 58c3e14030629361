"""``tetrapipe config check|show|env``: validate and inspect a deployment configuration file.

Every problem is printed as ``FILE:LINE:COLUMN: KEY: PROBLEM``, one a line,
so an editor or CI jumps to it.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson
from rich.console import Console

from tetrapipe.config import ENV_COMMANDS, ConfigError, command_env, load_config
from tetrapipe.redact import redact_text

err = Console(stderr=True, highlight=False, soft_wrap=True)  # one problem, one line: FILE:LINE:COL first
out = Console(highlight=False, soft_wrap=True)

CONFIG_ENV = "TETRAPIPE_CONFIG"


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


def load_or_exit(path: str, code: int) -> Any:
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
    cfg = load_or_exit(file, 1)
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

    cfg = load_or_exit(file, 1)
    for key, value in command_env(cfg, command).items():
        sys.stdout.write(f"{key}={shlex.quote(value)}\n")


COMMANDS = [config_group]
