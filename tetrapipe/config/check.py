"""Checking a located document against the schema: types, choices, limits, ``${ENV}`` expansion.

Strings may use the environment: ``${NAME}`` (an error when NAME is not set),
``${NAME:-default}``, and ``$$`` for a literal ``$``. Values are typed after
expansion, so ``port: ${SYSLOG_PORT:-514}`` is an integer. See
docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any

from tetrapipe.config.located import Node, Problem
from tetrapipe.config.schema import MISSING, ListOf, MapOf, Section

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


class Checker:
    """Walks a located document against a schema section, typing values and collecting every problem.

    It never stops at the first mistake: one ``config check`` run should be
    enough to fix a whole file.
    """

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
