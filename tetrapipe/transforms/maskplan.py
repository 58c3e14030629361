"""The detector's mask statement for many rules: one branch per event kind, shared sub-expressions computed once.

:func:`tetrapipe.ruleset.plan.mask_sql` writes every rule as one ``CASE`` over
every row of every kind any rule reads, each behind its own ``kind IN (...)``
test, and each ``ILIKE`` lower-cases its operand and its pattern again. With
the ~160 converted SigmaHQ rules that is ~1,800 ``concat_ws(' ',
process_binary, arguments) ILIKE '...'`` per exec event: 150 rules doubled the
ingest time. This plan gives the same bits with less work:

* **per kind**: a ``UNION ALL`` of one ``SELECT`` per event kind, each over
  that kind's rows only (``WHERE kind = 'K'``), testing only the rules that
  name ``K``, without their kind test (true on every row of the branch);
* **shared sub-expressions**: an operand used by two or more of a kind's
  rules (``lower(concat_ws(' ', process_binary, arguments))`` above all) is
  computed once per row, in a projection under the branch, and the rules
  read that column;
* **ILIKE as LIKE on a lowered operand**: ``x ILIKE p`` is
  ``lower(x) LIKE lower(p)`` in DuckDB (the same case mapping: checked by
  ``tests/test_detect_scale.py``), so with ``lower(x)`` computed once a
  pattern costs a ``LIKE``, and a pattern that is a plain prefix, suffix,
  substring or word becomes ``starts_with``, ``suffix``, ``contains`` or
  ``=``, which scan without a pattern matcher.

Rules are rewritten on DuckDB's own parse tree (``json_serialize_sql``), not
on their text, and put back as text by DuckDB (``json_deserialize_sql``), so a
rewrite cannot misread precedence, quoting or a lambda. Only operands made of
columns, constants and functions that cannot fail on a row (:data:`_SAFE`) are
hoisted: computed for every row of the kind, such an operand can never raise
where the rule's own short-circuit would have skipped it. Anything else in a
condition is left exactly as written. A rule whose text DuckDB cannot parse
this way keeps its original predicate (:func:`branch_predicates` falls back
per rule); the detector falls back to ``mask_sql`` altogether if the planned
statement does not bind.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from tetrapipe.ruleset.compiler import COLUMNS, scan_sql
from tetrapipe.ruleset.model import Rule
from tetrapipe.ruleset.plan import MASK_BITS

#: functions that return a value for every input row (no cast, no parse, no division): safe to compute on
#: rows a rule's short-circuit would have skipped
_SAFE = frozenset(
    {"concat_ws", "concat", "||", "lower", "upper", "lcase", "ucase", "split_part", "regexp_extract", "trim", "ltrim"}
    | {"rtrim", "replace", "left", "right", "strip_accents"}
)
_ILIKE = {"~~*": False, "!~~*": True, "ilike_escape": False, "not_ilike_escape": True}
_LOWER = ("lower", "lcase")
_WRAP_PREFIX = "SELECT "
_WRAP_SUFFIX = " AS _tp_x FROM _tp_t"
#: hoisted columns: a prefix no event column has
_HOIST = "_tp_h"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _canon(node: Any) -> str:
    """A node's identity for sharing: its JSON without source positions or aliases."""

    def strip(n: Any) -> Any:
        if isinstance(n, dict):
            return {k: strip(v) for k, v in n.items() if k not in ("query_location", "query_location_length", "alias")}
        if isinstance(n, list):
            return [strip(x) for x in n]
        return n

    return json.dumps(strip(node), sort_keys=True)


def _args(node: dict) -> list[dict]:
    return [a["expression"] for a in node.get("arguments", [])]


def _plain_function(node: dict) -> bool:
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


def _safe(node: dict) -> bool:
    """Columns, constants and :data:`_SAFE` calls of them: an operand that may be computed on any row."""
    cls = node.get("class")
    if cls == "COLUMN_REF":
        return len(node.get("column_names", [])) == 1
    if cls == "CONSTANT":
        return True
    if _plain_function(node) and node.get("function_name") in _SAFE:
        return all(_safe(a) for a in _args(node))
    return False


def _string_constant(node: dict) -> str | None:
    if node.get("class") == "CONSTANT" and node.get("literal", {}).get("kind") == "STRING":
        return node["literal"].get("text")
    return None


def _pattern_parts(pattern: str, escape: str | None) -> tuple[bool, str, bool] | None:
    """``(leading %, literal, trailing %)`` if ``pattern`` is a literal between optional ``%``s, else None."""
    tokens: list[tuple[str, str]] = []  # ("%" | "lit", char)
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if escape and c == escape:
            if i + 1 >= len(pattern):
                return None  # a dangling escape: left to LIKE (and its error)
            tokens.append(("lit", pattern[i + 1]))
            i += 2
            continue
        if c == "_":
            return None
        tokens.append(("%", c) if c == "%" else ("lit", c))
        i += 1
    lead = trail = False
    while tokens and tokens[0][0] == "%":
        tokens.pop(0)
        lead = True
    while tokens and tokens[-1][0] == "%":
        tokens.pop()
        trail = True
    if not tokens or any(t == "%" for t, _ in tokens):
        return None
    return lead, "".join(c for _, c in tokens), trail


class _Parser:
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

    def parse(self, expr: str) -> dict | None:
        """The expression's node, or None if DuckDB's serializer cannot take it."""
        with self._lock:
            text = self._parsed.get(expr, "")
            if text == "":
                try:
                    out = self._connection().execute(
                        "SELECT json_serialize_sql(?)", [f"{_WRAP_PREFIX}({expr}){_WRAP_SUFFIX}"]
                    )
                    text = out.fetchone()[0]
                except duckdb.Error:
                    text = None
                if len(self._parsed) > 10_000:
                    self._parsed.clear()
                self._parsed[expr] = text
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
        doc = parsed["doc"]
        doc["statements"][0]["node"]["select_list"][0] = {**expr, "alias": "_tp_x"}  # the alias is the root's
        with self._lock:
            try:
                text = self._connection().execute("SELECT json_deserialize_sql(?)", [json.dumps(doc)]).fetchone()[0]
            except duckdb.Error:
                return None
        if not (text.startswith(_WRAP_PREFIX) and text.endswith(_WRAP_SUFFIX)):
            return None
        return text[len(_WRAP_PREFIX) : -len(_WRAP_SUFFIX)]

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


_PARSER = _Parser()


def _column(name: str) -> dict:
    return {"class": "COLUMN_REF", "type": "COLUMN_REF", "alias": "", "column_names": [name]}


def _constant(value: str) -> dict:
    return {"class": "CONSTANT", "type": "VALUE_CONSTANT", "alias": "", "literal": {"kind": "STRING", "text": value}}


def _call(name: str, args: list[dict], *, operator: bool = False) -> dict:
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


def _lower_of(node: dict) -> dict:
    return _call("lower", [node])


def _ilike_parts(node: dict) -> tuple[dict, str, str | None, bool] | None:
    """``(operand, pattern, escape, negated)`` of an ILIKE with a safe operand and constant pattern."""
    if not _plain_function(node) or node.get("function_name") not in _ILIKE:
        return None
    args = _args(node)
    escaped = node["function_name"].endswith("_escape")
    if len(args) != (3 if escaped else 2) or not _safe(args[0]):
        return None
    pattern = _string_constant(args[1])
    escape = _string_constant(args[2]) if escaped else None
    if pattern is None or (escaped and (escape is None or len(escape) > 1)):
        return None
    return args[0], pattern, escape or None, _ILIKE[node["function_name"]]


def _walk(node: Any) -> Iterator[tuple[str, dict]]:
    """The sharable operands of a condition: ``("lower", operand)`` for ILIKE/lower, ``("value", call)``."""
    if isinstance(node, list):
        for n in node:
            yield from _walk(n)
        return
    if not isinstance(node, dict):
        return
    if node.get("class") in ("LAMBDA", "WINDOW", "SUBQUERY"):
        return  # a lambda's names are its own; the others cannot be in a condition
    parts = _ilike_parts(node)
    if parts is not None:
        yield "lower", parts[0]
        yield "pattern", _constant(parts[1])
        return
    if _plain_function(node) and node.get("function_name") in _LOWER and len(_args(node)) == 1 and _safe(node):
        yield "lower", _args(node)[0]
        return
    if node.get("class") == "FUNCTION" and _safe(node):
        yield "value", node
        return
    for value in node.values():
        yield from _walk(value)


@dataclass
class _Shared:
    """The hoisted operands of one kind's branch: canonical key -> column name, and their SQL."""

    columns: dict[str, str]
    sql: list[str]


def _rewrite(node: Any, shared: _Shared) -> Any:
    """``node`` with shared operands read from their columns and ILIKE turned into LIKE on the lowered operand."""
    if isinstance(node, list):
        return [_rewrite(n, shared) for n in node]
    if not isinstance(node, dict) or node.get("class") in ("LAMBDA", "WINDOW", "SUBQUERY"):
        return node
    parts = _ilike_parts(node)
    if parts is not None:
        operand, pattern, escape, negated = parts
        lowered = shared.columns.get(_canon(_lower_of(operand)))
        target = _column(lowered) if lowered else _lower_of(_rewrite(operand, shared))
        out = _like(target, _PARSER.lower(pattern), escape)
        return {"class": "OPERATOR", "type": "OPERATOR_NOT", "alias": "", "children": [out]} if negated else out
    if _plain_function(node) and node.get("function_name") in _LOWER and len(_args(node)) == 1 and _safe(node):
        name = shared.columns.get(_canon(_lower_of(_args(node)[0])))
        if name:
            return _column(name)
    if node.get("class") == "FUNCTION" and _safe(node):
        name = shared.columns.get(_canon(node))
        if name:
            return _column(name)
        return node
    return {k: _rewrite(v, shared) for k, v in node.items()}


def _like(target: dict, pattern: str, escape: str | None) -> dict:
    """``target LIKE pattern`` as the cheapest call that means the same (pattern already lower-cased)."""
    parts = _pattern_parts(pattern, escape) if escape is None or len(escape) == 1 else None
    if parts is not None:
        lead, literal, trail = parts
        if lead and trail:
            return _call("contains", [target, _constant(literal)])
        if trail:
            return _call("starts_with", [target, _constant(literal)])
        if lead:
            return _call("suffix", [target, _constant(literal)])
        return {
            "class": "COMPARISON",
            "type": "COMPARE_EQUAL",
            "alias": "",
            "left": target,
            "right": _constant(literal),
        }
    if escape is None:
        return _call("~~", [target, _constant(pattern)], operator=True)
    return _call("like_escape", [target, _constant(pattern), _constant(escape)], operator=True)


def _rule_sql(rule: Rule) -> str:
    """A rule's test on rows of one of its kinds: its condition, not excepted (the kind test is the branch's)."""
    c = rule.compiled
    return f"({c.condition})" + (f" AND ({c.exceptions}) IS NOT TRUE" if c.exceptions else "")


def branch_predicates(rules: list[Rule]) -> tuple[list[str], list[str]]:
    """Each rule's rewritten test over one kind's rows and the shared columns' ``expr AS name`` list."""
    parsed = [_PARSER.parse(_rule_sql(r)) for r in rules]
    counts: Counter[str] = Counter()
    nodes: dict[str, dict] = {}
    patterns = []
    for p in parsed:
        if p is None:
            continue
        for what, node in _walk(p["expr"]):
            if what == "pattern":
                patterns.append(node["literal"]["text"])
                continue
            target = _lower_of(node) if what == "lower" else node
            key = _canon(target)
            counts[key] += 1
            nodes.setdefault(key, target)
    _PARSER.lower_all(patterns)
    shared = _Shared({}, [])
    for key, n in counts.items():
        if n < 2:
            continue
        name = f"{_HOIST}{len(shared.columns)}"
        text = _PARSER.render({"doc": _template()}, nodes[key])
        if text is None:
            continue
        shared.columns[key] = name
        shared.sql.append(f"{text} AS {name}")
    out = []
    for rule, p in zip(rules, parsed, strict=True):
        text = _PARSER.render(p, _rewrite(p["expr"], shared)) if p is not None else None
        out.append(text if text is not None else _rule_sql(rule))
    return out, shared.sql


def _template() -> dict:
    parsed = _PARSER.parse("NULL")
    assert parsed is not None
    return parsed["doc"]


def predicate_columns(rules: list[Rule]) -> list[str]:
    """The event columns the rules' conditions and exceptions read (over-inclusive: any such word), schema order."""
    words: set[str] = set()
    for rule in rules:
        for text in (rule.compiled.condition, rule.compiled.exceptions or ""):
            for what, chunk in scan_sql(text):
                if what == "code" or chunk.startswith('"'):
                    words.update(w.lower() for w in _IDENT.findall(chunk))
    return [c for c in COLUMNS if c in words]


#: columns that differ on nearly every event (ids, times, pids, raw text): a rule that reads one is tested row by
#: row, not once per distinct combination (which would be as many as the rows, plus the grouping's cost)
UNIQUE_COLUMNS = frozenset(
    {"event_id", "time", "time_ns", "exec_id", "parent_exec_id", "pid", "tid", "process_start_time"}
    | {"container_start_time", "parent_pid", "parent_start_time", "ancestor_exec_ids", "container_pid", "sport"}
    | {"source_offset", "raw", "args", "return_value", "message", "pod_uid"}
)


@dataclass(frozen=True)
class KindMask:
    """The mask statement and the slot each kind's rows are read from (``{source}_{n}``, in ``kinds`` order)."""

    sql: str
    kinds: tuple[str, ...]
    slots: tuple[str, ...]


def kind_mask_sql(rules: list[Rule], source: str) -> KindMask:
    """:func:`tetrapipe.ruleset.plan.mask_sql`'s columns and bits, planned per kind over per-kind slots.

    The caller registers each kind's rows (with ``_i``) as ``slots[n]``. Only
    rows with at least one bit set come back, in no particular order. In a
    kind's branch, the rules that read no :data:`UNIQUE_COLUMNS` are tested
    once per distinct combination of the columns they read (a ``DISTINCT``,
    joined back to the rows with ``IS NOT DISTINCT FROM``, so NULLs match
    NULLs): exec events of one batch repeat a few hundred command lines.
    """
    kinds = tuple(sorted({k for r in rules for k in r.compiled.kinds}))
    slots = tuple(f"{source}_{n}" for n in range(len(kinds)))
    groups = (len(rules) + MASK_BITS - 1) // MASK_BITS
    branches = [_branch(rules, kind, slot, groups) for kind, slot in zip(kinds, slots, strict=True)]
    return KindMask("\nUNION ALL\n".join(branches), kinds, slots)


def _bits(tests: dict[int, str], group: int) -> str:
    terms = [
        f"CASE WHEN {t}\n  THEN {1 << (i % MASK_BITS)}::BIGINT ELSE 0::BIGINT END"
        for i, t in tests.items()
        if i // MASK_BITS == group
    ]
    return " + ".join(terms) if terms else "0::BIGINT"


def _branch(rules: list[Rule], kind: str, slot: str, groups: int) -> str:
    """One kind's ``SELECT``: its rules' bits for every row of ``slot`` with one set."""
    mine = [i for i, r in enumerate(rules) if kind in r.compiled.kinds]
    cols = {i: predicate_columns([rules[i]]) for i in mine}
    by_value = [i for i in mine if not UNIQUE_COLUMNS.intersection(cols[i])]
    by_row = [i for i in mine if i not in by_value]
    keys = sorted({c for i in by_value for c in cols[i]}, key=COLUMNS.index) if by_value else []
    if by_value and not keys:  # rules that read no column at all: one row is as good as any
        keys = ["kind"]
    tests_v, shared_v = branch_predicates([rules[i] for i in by_value])
    tests_r, shared_r = branch_predicates([rules[i] for i in by_row])
    value_test = dict(zip(by_value, tests_v, strict=True))
    row_test = dict(zip(by_row, tests_r, strict=True))
    rows = f"(SELECT *{''.join(', ' + x for x in shared_r)} FROM {slot})" if shared_r else slot
    if by_value:
        distinct = f"SELECT DISTINCT {', '.join(keys)} FROM {slot}"
        hoisted = f"SELECT *{''.join(', ' + x for x in shared_v)} FROM ({distinct})"
        renamed = ", ".join(f"{k} AS _tp_k{n}" for n, k in enumerate(keys))
        values = ", ".join(f"{_bits(value_test, g)} AS _tp_v{g}" for g in range(groups))
        on = " AND ".join(f"b.{k} IS NOT DISTINCT FROM v._tp_k{n}" for n, k in enumerate(keys))
        frm = f"{rows} b\nJOIN (SELECT {renamed}, {values} FROM ({hoisted})) v ON {on}"
        masks = [f"v._tp_v{g} + {_bits(row_test, g)} AS _m{g}" for g in range(groups)]
    else:
        frm = f"{rows} b"
        masks = [f"{_bits(row_test, g)} AS _m{g}" for g in range(groups)]
    extra = []
    for i, rule in enumerate(rules):
        c = rule.compiled
        bit = f"(_m{i // MASK_BITS} & {1 << (i % MASK_BITS)}::BIGINT) <> 0"
        if c.term:
            extra.append(
                f"CASE WHEN {bit} THEN CAST({c.term} AS UBIGINT) END AS _t{i}"
                if i in cols
                else f"NULL::UBIGINT AS _t{i}"
            )
        if c.learn_key:
            extra.append(
                f"CASE WHEN {bit} THEN CAST({c.learn_key} AS UBIGINT) END AS _k{i}"
                if i in cols
                else f"NULL::UBIGINT AS _k{i}"
            )
    any_bit = " OR ".join(f"_m{g} <> 0" for g in range(groups))
    inner = f"SELECT b.*, {', '.join(masks)}\nFROM {frm}"
    return f"SELECT _i, {', '.join(f'_m{g}' for g in range(groups))}{''.join(', ' + e for e in extra)}\nFROM ({inner})\nWHERE {any_bit}"


def split_by_kind(batch: pa.Table, plan: KindMask) -> dict[str, pa.Table]:
    """Each kind's rows of ``batch`` under its slot name (an empty table for a kind the batch lacks)."""
    kinds = batch.column("kind")
    return {slot: batch.filter(pc.equal(kinds, kind)) for kind, slot in zip(plan.kinds, plan.slots, strict=True)}


__all__ = ["KindMask", "UNIQUE_COLUMNS", "branch_predicates", "kind_mask_sql", "predicate_columns", "split_by_kind"]
