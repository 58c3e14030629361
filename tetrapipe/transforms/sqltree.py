"""DuckDB's parse tree of a SQL expression, and back to text (for :mod:`tetrapipe.transforms.maskplan`).

``json_serialize_sql`` gives an expression's tree as JSON and
``json_deserialize_sql`` renders a tree as SQL, both by DuckDB itself: a
rewrite done on the tree cannot misread precedence, quoting or a lambda, and
the text that comes back binds as DuckDB parsed it.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import duckdb

WRAP_PREFIX = "SELECT "
WRAP_SUFFIX = " AS _tp_x FROM _tp_t"
#: a node's source position in DuckDB's JSON (``,"query_location":8``): dropped as the tree is read, so that
#: equal sub-expressions serialize alike (a ``"`` inside a JSON string is escaped: no literal can match)
_LOCATION = re.compile(r',"query_location(?:_length)?":\d+')
#: a node's alias in :func:`canon`'s JSON, its value blanked (every node has one, parsed or built here)
_ALIAS = re.compile(r'"alias":"(?:[^"\\]|\\.)*"')
#: ``json_serialize_sql`` of one text, without the fields left at their defaults (an empty schema, no
#: FILTER, ``distinct`` false...): a third less JSON to write and read back (SigmaHQ's largest rule is
#: 1.7 MB of it), and DuckDB reads a tree without them as it reads one with them. Readers of a tree use
#: ``.get`` with the default (see :func:`plain_function`, :func:`string_constant`).
SERIALIZE = "json_serialize_sql({}, skip_default := true)"
#: nodes a rewrite of a parse tree does not enter: those that hold nothing to share or fold, and leaves
OPAQUE = frozenset({"LAMBDA", "WINDOW", "SUBQUERY", "CONSTANT", "COLUMN_REF"})


def canon(node: Any) -> str:
    """A node's identity for sharing: its JSON without aliases (source positions are gone since :meth:`SqlTrees.parse`).

    A regular expression over the serialized text, not a walk of the tree:
    walking every node of every operand was a third of planning 150 rules.
    """
    return _ALIAS.sub('"alias":""', json.dumps(node, sort_keys=True, separators=(",", ":")))


def args_of(node: dict) -> list[dict]:
    return [a["expression"] for a in node.get("arguments", [])]


def plain_function(node: dict) -> bool:
    """A plain call: no FILTER, ORDER BY, DISTINCT, named argument or schema (an aggregate's trappings)."""
    return (
        node.get("class") == "FUNCTION"
        and not node.get("filter")
        and not node.get("order_bys", {}).get("orders")
        and not node.get("distinct")
        and not node.get("schema")
        and not node.get("catalog")
        and all(not a.get("name") for a in node.get("arguments", []))
    )


def string_constant(node: dict) -> str | None:
    """A string constant's text (``''`` has none in a tree serialized without defaults: see :data:`SERIALIZE`)."""
    if node.get("class") == "CONSTANT" and node.get("literal", {}).get("kind") == "STRING":
        return node["literal"].get("text", "")
    return None


class SqlTrees:
    """DuckDB's parse tree of an expression and back, with the lower-casing of constants, on one connection.

    Results are cached per text for the process: the rule test runner builds a
    detector per rule and the same conditions come back. The lock keeps two
    detectors on two threads from sharing the connection at once.
    """

    def __init__(self) -> None:
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        self._parsed: dict[str, str | None] = {}
        self._lowered: dict[str, str] = {}

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = duckdb.connect(":memory:")
        return self._con

    def _remember(self, expr: str, text: str | None) -> None:
        if len(self._parsed) > 10_000:
            self._parsed.clear()
        self._parsed[expr] = _LOCATION.sub("", text) if text is not None else None

    def parse_all(self, exprs: list[str]) -> None:
        """Parse many expressions in one query, for :meth:`parse` to find (a query each cost ~0.6 ms more).

        If one of them does not parse, the query fails as a whole and
        :meth:`parse` takes them one by one (and that one alone fails).
        """
        with self._lock:
            todo = [e for e in dict.fromkeys(exprs) if e not in self._parsed]
            if not todo:
                return
            try:
                out = self._connection().execute(
                    f"SELECT list_transform(?::VARCHAR[], lambda s: {SERIALIZE.format('s')})",
                    [[f"{WRAP_PREFIX}({e}){WRAP_SUFFIX}" for e in todo]],
                )
                texts = out.fetchone()[0]
            except duckdb.Error:
                return
            for expr, text in zip(todo, texts, strict=True):
                self._remember(expr, text)

    def parse(self, expr: str) -> dict | None:
        """The expression's node, or None if DuckDB's serializer cannot take it."""
        with self._lock:
            text = self._parsed.get(expr, "")
            if text == "":
                try:
                    out = self._connection().execute(
                        f"SELECT {SERIALIZE.format('?')}", [f"{WRAP_PREFIX}({expr}){WRAP_SUFFIX}"]
                    )
                    text = out.fetchone()[0]
                except duckdb.Error:
                    text = None
                self._remember(expr, text)
                text = self._parsed[expr]
        if text is None:
            return None
        doc = json.loads(text)
        if doc.get("error") or len(doc.get("statements", [])) != 1:
            return None
        node = doc["statements"][0]["node"]
        if node.get("type") != "SELECT_NODE" or len(node.get("select_list", [])) != 1:
            return None
        return {"doc": doc, "expr": node["select_list"][0]}

    def render(self, parsed: dict, expr: dict) -> str | None:
        """``expr`` as SQL text (DuckDB's own rendering), None if it will not render."""
        return self.render_all([(parsed, expr)])[0]

    def render_all(self, items: list[tuple[dict, dict]]) -> list[str | None]:
        """:meth:`render` of many ``(parsed, expr)`` in one query; one at a time if one will not render."""
        docs = []
        for parsed, expr in items:
            doc = parsed["doc"]
            doc["statements"][0]["node"]["select_list"][0] = {**expr, "alias": "_tp_x"}  # the alias is the root's
            docs.append(json.dumps(doc))
        con = self._connection()
        with self._lock:
            try:
                if len(docs) == 1:
                    texts = [con.execute("SELECT json_deserialize_sql(?)", docs).fetchone()[0]]
                else:
                    query = "SELECT list_transform(?::VARCHAR[], lambda d: json_deserialize_sql(d::JSON))"
                    texts = con.execute(query, [docs]).fetchone()[0]
            except duckdb.Error:
                texts = None
        if texts is None:
            if len(items) == 1:
                return [None]
            return [self.render_all([item])[0] for item in items]
        return [
            t[len(WRAP_PREFIX) : -len(WRAP_SUFFIX)] if t.startswith(WRAP_PREFIX) and t.endswith(WRAP_SUFFIX) else None
            for t in texts
        ]

    def lower_all(self, values: list[str]) -> None:
        """Lower-case many constants in one query (a query each costs more than all the lower-casing)."""
        todo = sorted({v for v in values if v not in self._lowered})
        if not todo:
            return
        with self._lock:
            out = self._connection().execute("SELECT list_transform(?::VARCHAR[], lambda v: lower(v))", [todo])
            lowered = out.fetchone()[0]
            if len(self._lowered) > 100_000:
                self._lowered.clear()
            self._lowered.update(zip(todo, lowered, strict=True))

    def lower(self, value: str) -> str:
        """DuckDB's ``lower`` of a constant: exactly what ILIKE does to its pattern."""
        with self._lock:
            out = self._lowered.get(value)
            if out is None:
                out = self._connection().execute("SELECT lower(?::VARCHAR)", [value]).fetchone()[0]
                if len(self._lowered) > 100_000:
                    self._lowered.clear()
                self._lowered[value] = out
        return out


TREES = SqlTrees()


def column_node(name: str) -> dict:
    return {"class": "COLUMN_REF", "type": "COLUMN_REF", "alias": "", "column_names": [name]}


def string_node(value: str) -> dict:
    return {"class": "CONSTANT", "type": "VALUE_CONSTANT", "alias": "", "literal": {"kind": "STRING", "text": value}}


def call_node(name: str, args: list[dict], *, operator: bool = False) -> dict:
    return {
        "class": "FUNCTION",
        "type": "FUNCTION",
        "alias": "",
        "function_name": name,
        "schema": "",
        "filter": None,
        "order_bys": {"type": "ORDER_MODIFIER", "orders": []},
        "distinct": False,
        "is_operator": operator,
        "export_state": False,
        "catalog": "",
        "arguments": [{"name": "", "expression": a} for a in args],
        "qualified_name": {"path": [name]},
        "is_legacy_function_call": False,
    }


def template() -> dict:
    parsed = TREES.parse("NULL")
    assert parsed is not None
    return parsed["doc"]


__all__ = [
    "OPAQUE",
    "TREES",
    "SqlTrees",
    "args_of",
    "call_node",
    "canon",
    "column_node",
    "plain_function",
    "string_constant",
    "string_node",
    "template",
]
