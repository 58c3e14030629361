"""YAML and TOML that remember where things are: the one located reader of configs and rules.

A person who mistypes a key wants ``tetrapipe.yaml:14:7`` or
``rules/late-shell.yaml:14``, not "the file is invalid". PyYAML's composer
knows the line and column of every node; the loader here keeps them, for the
deployment file and the rule files alike: mappings come back as
:class:`Located` dicts that know their own position, the position of each key
and the node of each value (so a block scalar's first content line can be
found too), sequences as :class:`LocatedList`. Duplicate keys are errors.

The configuration checker walks a tree of :class:`Node` instead (value plus
position at every level, TOML included); :func:`yaml_nodes` builds it from
the same loaded document. See docs/ARCHITECTURE.md.

Speed: PyYAML's pure-Python scanner took ~0.6 s for the ~190 files of the
shipped and converted SigmaHQ rules, most of loading them. PyYAML's wheels
carry libyaml, whose parser keeps every node's marks too, ten times faster;
a document it rejects is parsed again by the pure-Python loader, whose
messages name more (the bad escape, the undefined alias) and whose verdict
is the reference, so what a person reads about a broken file is the same
with or without libyaml.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tetrapipe.redact import redact_text

# --- the located YAML loader ------------------------------------------------------------------


class Located(dict):
    """A mapping from YAML with ``line``/``column`` (1-based) of itself and of each key."""

    line: int
    column: int
    key_lines: dict[Any, int]
    key_columns: dict[Any, int]
    value_nodes: dict[Any, yaml.Node]

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class LocatedList(list):
    """A sequence from YAML with the position of each item."""

    line: int
    column: int
    item_lines: list[int]
    item_columns: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one mapping (YAML allows it and keeps the last; a person meant one)."""

    def __init__(self, key: Any, mark: yaml.Mark) -> None:
        super().__init__(None, None, f"duplicate key {key!r}", mark)
        self.line, self.column = mark.line + 1, mark.column + 1


class PureLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences carry positions; duplicate keys are errors (pure Python)."""


#: libyaml's parser with the same constructors (None where PyYAML was built without libyaml)
CLoader: type | None = None
if getattr(yaml, "__with_libyaml__", False):

    class CLoader(yaml.CSafeLoader):  # type: ignore[no-redef]
        """:class:`PureLoader` with libyaml's scanner and parser: the same documents, ~10x faster."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Located:
    loader.flatten_mapping(node)
    out = Located()
    out.line, out.column = node.start_mark.line + 1, node.start_mark.column + 1
    out.key_lines, out.key_columns, out.value_nodes = {}, {}, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            )
        if key in out:
            raise DuplicateKeyError(key, key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
        out.key_columns[key] = key_node.start_mark.column + 1
        out.value_nodes[key] = value_node
    return out


def _construct_sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> LocatedList:
    out = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
    out.line, out.column = node.start_mark.line + 1, node.start_mark.column + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    out.item_columns = [child.start_mark.column + 1 for child in node.value]
    return out


for _loader in (PureLoader, CLoader):
    if _loader is not None:
        _loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
        _loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def parse_yaml(text: str, *, pure: bool = False) -> Any:
    """One YAML document with positions; PyYAML's own errors (with their marks) propagate.

    libyaml parses when present (``pure`` forces the pure-Python loader); a
    document libyaml rejects, or cannot take (a lone surrogate it cannot
    encode), is parsed again in pure Python, which raises its own, more
    specific error, or returns the document where libyaml was stricter.
    """
    if CLoader is not None and not pure:
        try:
            return yaml.load(text, Loader=CLoader)  # noqa: S506 - CLoader is a CSafeLoader
        except (yaml.YAMLError, UnicodeError):
            pass
    return yaml.load(text, Loader=PureLoader)  # noqa: S506 - PureLoader is a SafeLoader


@dataclass
class YamlError(Exception):
    """A file that is not valid YAML: where and why."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def load_yaml(path: Path, text: str | None = None) -> Any:
    """Parse one YAML document with positions; raises :class:`YamlError` naming the line at fault."""
    if text is None:
        text = path.read_text(encoding="utf-8")
    try:
        return parse_yaml(text)
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
    """Last line of a value (a condition spanning lines), never before its first content line."""
    node = mapping.value_nodes.get(key)
    if node is None:
        return mapping.line_of(key)
    return max(node.end_mark.line + (0 if node.end_mark.column == 0 else 1), content_line(mapping, key))


# --- the node tree the configuration checker walks ----------------------------------------------


@dataclass
class Node:
    """A parsed value with where it came from (1-based line and column; None when unknown)."""

    value: Any
    line: int | None = None
    column: int | None = None
    keys: dict[str, Node] = field(default_factory=dict)  # mapping: key -> the key's own node


@dataclass
class Problem:
    """One thing wrong with a configuration file, printed as ``file:line:column: where: message``."""

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


def _node(value: Any, line: int | None, column: int | None) -> Node:
    if isinstance(value, Located):
        out: dict[str, Node] = {}
        keys: dict[str, Node] = {}
        for k, v in value.items():
            key = k if isinstance(k, str) else str(k)
            child = value.value_nodes[k].start_mark
            out[key] = _node(v, child.line + 1, child.column + 1)
            keys[key] = Node(key, value.key_lines[k], value.key_columns[k])
        return Node(out, value.line, value.column, keys)
    if isinstance(value, LocatedList):
        items = zip(value, value.item_lines, value.item_columns, strict=True)
        return Node([_node(v, ln, col) for v, ln, col in items], value.line, value.column)
    return Node(value, line, column)


def yaml_nodes(text: str) -> Node:
    """The document as a :class:`Node` tree (an empty file is an empty mapping)."""
    data = parse_yaml(text)
    if data is None:
        return Node({}, 1, 1)
    return _node(data, 1, 1)


def toml_nodes(text: str) -> Node:
    """A TOML document as a :class:`Node` tree; TOML parsers give no positions, so a key's line is searched for."""
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


__all__ = [
    "CLoader",
    "ConfigError",
    "DuplicateKeyError",
    "Located",
    "LocatedList",
    "Node",
    "Problem",
    "PureLoader",
    "YamlError",
    "content_line",
    "end_line",
    "load_yaml",
    "parse_yaml",
    "toml_nodes",
    "yaml_nodes",
]
