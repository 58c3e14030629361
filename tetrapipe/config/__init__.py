"""One configuration file for a whole deployment: sources, Kafka, processor, rules, lake, sinks.

The file is YAML (``.yaml`` / ``.yml``) or TOML (``.toml``). Every problem is
reported with where it is and all at once (:mod:`tetrapipe.config.load`);
secrets such as the HEC token come from ``${ENV}`` (:mod:`tetrapipe.config.check`);
``tetrapipe forward`` reads the file (``--config``) while ``collect`` and
``process`` get it as ``TETRAPIPE_*`` variables (:mod:`tetrapipe.config.env`).
The located YAML reader (:mod:`tetrapipe.config.located`) is the rule
loader's too. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from tetrapipe.config.check import expand_env
from tetrapipe.config.env import ENV_COMMANDS, command_env
from tetrapipe.config.load import Config, SinkConfig, load_config, parse_config
from tetrapipe.config.located import ConfigError, Problem
from tetrapipe.config.schema import SINK_OPTIONS

__all__ = [
    "Config",
    "ConfigError",
    "ENV_COMMANDS",
    "Problem",
    "SINK_OPTIONS",
    "SinkConfig",
    "command_env",
    "expand_env",
    "load_config",
    "parse_config",
]
