"""YAML that remembers where things are.

A rule author who mistypes a column wants ``rules/late-shell.yaml:14``, not
"rule late-shell is invalid". PyYAML's composer knows the line of every node;
this loader keeps it: mappings come back as :class:`Located` dicts that know
their own line, the line of each key and the node of each value (so a block
scalar's first content line can be found too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class Located(dict):
    """A mapping from YAML with ``line`` (1-based) of itself and of each key."""

    line: int
    key_lines: dict[str, int]
    value_nodes: dict[str, yaml.Node]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LocatedList(list):
    """A sequence from YAML with the line of each item."""

    line: int
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences carry line numbers; duplicate keys are errors."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> Located:
    loader.flatten_mapping(node)
    out = Located()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    out.value_nodes = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            )
        if key in out:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
        out.value_nodes[key] = value_node
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LocatedList:
    out = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


@dataclass
class YamlError(Exception):
    """A file that is not valid YAML: where and why."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def load(path: Path, text: str | None = None) -> Any:
    """Parse one YAML document with line numbers; raises :class:`YamlError`."""
    if text is None:
        text = path.read_text(encoding="utf-8")
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        reason = exc.problem or str(exc)
        if exc.context:
            ctx_line = exc.context_mark.line + 1 if exc.context_mark is not None else None
            if ctx_line is not None and ctx_line != line:
                reason = f"{reason} ({exc.context} that starts on line {ctx_line})"
                if "end of stream" in reason:  # an unclosed quote or bracket: point where it opens
                    line = ctx_line
            else:
                reason = f"{reason} ({exc.context})"
        raise YamlError(path, line, f"invalid YAML: {reason}") from None
    except yaml.YAMLError as exc:
        raise YamlError(path, 1, f"invalid YAML: {exc}") from None


def content_line(mapping: Located, key: str) -> int:
    """First line of a value's content: the line after ``key: |`` for block scalars."""
    node = mapping.value_nodes.get(key)
    if node is None:
        return mapping.line_of(key)
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        line += 1
    return line


def end_line(mapping: Located, key: str) -> int:
    node = mapping.value_nodes.get(key)
    if node is None:
        return mapping.line_of(key)
    return max(node.end_mark.line + (0 if node.end_mark.column == 0 else 1), content_line(mapping, key))
