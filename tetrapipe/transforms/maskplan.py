"""The detector's mask statement for many rules: one branch per event kind, shared sub-expressions computed once.

:func:`tetrapipe.ruleset.plan.mask_sql` writes every rule as one ``CASE`` over
every row of every kind any rule reads, each behind its own ``kind IN (...)``
test, and each ``ILIKE`` lower-cases its operand and its pattern again. With
the ~160 converted SigmaHQ rules that is ~1,800 ``concat_ws(' ',
process_binary, arguments) ILIKE '...'`` per exec event: 150 rules doubled the
ingest time. This plan gives the same bits with less work:

* **per kind**: a ``UNION ALL`` of one ``SELECT`` per event kind, each over
  that kind's rows only (the detector registers each kind's rows apart,
  :func:`split_by_kind`), testing only the rules that name the kind, without
  their kind test (true on every row of the branch);
* **per distinct value**: a rule that reads no per-event column
  (:data:`UNIQUE_COLUMNS`) is tested once per distinct combination of the
  columns it reads (a ``DISTINCT``, joined back with ``IS NOT DISTINCT
  FROM``); a batch holds a few dozen distinct command lines per thousand execs;
* **shared sub-expressions**: an operand used by two or more of a kind's
  rules (``lower(concat_ws(' ', process_binary, arguments))`` above all) is
  computed once per row, in a projection under the branch, and the rules
  read that column;
* **ILIKE as LIKE on a lowered operand**: ``x ILIKE p`` is
  ``lower(x) LIKE lower(p)`` in DuckDB (the same case mapping: checked by
  ``tests/test_detect_scale.py``), so with ``lower(x)`` computed once a
  pattern costs a ``LIKE``, and a pattern that is a plain prefix, suffix,
  substring or word becomes ``starts_with``, ``suffix``, ``contains`` or
  ``=``, which scan without a pattern matcher; an OR of several of those on
  one operand becomes one ``regexp_matches`` (:func:`_merge_literal_tests`).

The measured cost is in ``bench/bench_rules.py`` and the README (Performance).

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

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tetrapipe.ruleset.compiler import COLUMNS, sql_words
from tetrapipe.ruleset.model import Rule
from tetrapipe.ruleset.plan import MASK_BITS
from tetrapipe.transforms.sqltree import (
    TREES,
    args_of,
    call_node,
    canon,
    column_node,
    plain_function,
    string_constant,
    string_node,
    template,
)

#: functions that return a value for every input row (no cast, no parse, no division): safe to compute on
#: rows a rule's short-circuit would have skipped
_SAFE = frozenset(
    {"concat_ws", "concat", "||", "lower", "upper", "lcase", "ucase", "split_part", "regexp_extract", "trim", "ltrim"}
    | {"rtrim", "replace", "left", "right", "strip_accents"}
)
_ILIKE = {"~~*": False, "!~~*": True, "ilike_escape": False, "not_ilike_escape": True}
_LOWER = ("lower", "lcase")
#: hoisted columns: a prefix no event column has
_HOIST = "_tp_h"


def _safe(node: dict) -> bool:
    """Columns, constants and :data:`_SAFE` calls of them: an operand that may be computed on any row."""
    cls = node.get("class")
    if cls == "COLUMN_REF":
        return len(node.get("column_names", [])) == 1
    if cls == "CONSTANT":
        return True
    if plain_function(node) and node.get("function_name") in _SAFE:
        return all(_safe(a) for a in args_of(node))
    return False


def _pattern_parts(pattern: str, escape: str | None) -> tuple[bool, str, bool] | None:
    """``(leading %, literal, trailing %)`` if ``pattern`` is a literal between optional ``%``s, else None.

    Without the escape character in it (nearly every pattern), string methods
    answer; a loop over the characters cost a tenth of planning 150 rules.
    """
    if not escape or escape not in pattern:
        if "_" in pattern:
            return None
        literal = pattern.strip("%")
        if not literal or "%" in literal:
            return None
        return pattern[0] == "%", literal, pattern[-1] == "%"
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


def _lower_of(node: dict) -> dict:
    return call_node("lower", [node])


def _ilike_parts(node: dict) -> tuple[dict, str, str | None, bool] | None:
    """``(operand, pattern, escape, negated)`` of an ILIKE with a safe operand and constant pattern."""
    if not plain_function(node) or node.get("function_name") not in _ILIKE:
        return None
    args = args_of(node)
    escaped = node["function_name"].endswith("_escape")
    if len(args) != (3 if escaped else 2) or not _safe(args[0]):
        return None
    pattern = string_constant(args[1])
    escape = string_constant(args[2]) if escaped else None
    if pattern is None or (escaped and (escape is None or len(escape) > 1)):
        return None
    return args[0], pattern, escape or None, _ILIKE[node["function_name"]]


#: nodes :func:`_walk` and :func:`_rewrite` do not enter: those that hold nothing to share, and leaves
_OPAQUE = frozenset({"LAMBDA", "WINDOW", "SUBQUERY", "CONSTANT", "COLUMN_REF"})


def _walk(node: Any) -> Iterator[tuple[str, dict]]:
    """The sharable operands of a condition: ``("lower", operand)`` for ILIKE/lower, ``("value", call)``."""
    if isinstance(node, list):
        for n in node:
            yield from _walk(n)
        return
    if not isinstance(node, dict):
        return
    if node.get("class") in _OPAQUE:
        return  # a lambda's names are its own; a window or subquery cannot be in a condition; a leaf holds none
    parts = _ilike_parts(node)
    if parts is not None:
        yield "lower", parts[0]
        yield "pattern", string_node(parts[1])
        return
    if plain_function(node) and node.get("function_name") in _LOWER and len(args_of(node)) == 1 and _safe(node):
        yield "lower", args_of(node)[0]
        return
    if node.get("class") == "FUNCTION" and _safe(node):
        yield "value", node
        return
    for value in node.values():
        yield from _walk(value)


@dataclass
class _Shared:
    """The hoisted operands of one kind's branch: canonical key -> column name, and their SQL.

    ``keys`` remembers the canonical key of each operand node :func:`_walk`
    found (by ``(what, id(node))``; the trees live as long as the plan is being
    written), so that :func:`_rewrite` does not serialize them again.
    """

    columns: dict[str, str]
    sql: list[str]
    keys: dict[tuple[str, int], str] = field(default_factory=dict)

    def key(self, what: str, node: dict) -> str:
        key = self.keys.get((what, id(node)))
        return key if key is not None else canon(_lower_of(node) if what == "lower" else node)


def _rewrite(node: Any, shared: _Shared) -> Any:
    """``node`` with shared operands read from their columns and ILIKE turned into LIKE on the lowered operand.

    A subtree with nothing to rewrite comes back as it is, not copied (no tree
    is changed in place: the parsed ones are shared by the branches of a plan).
    """
    if isinstance(node, list):
        out_list = [_rewrite(n, shared) for n in node]
        return node if all(a is b for a, b in zip(out_list, node, strict=True)) else out_list
    if not isinstance(node, dict) or node.get("class") in _OPAQUE:
        return node
    parts = _ilike_parts(node)
    if parts is not None:
        operand, pattern, escape, negated = parts
        lowered = shared.columns.get(shared.key("lower", operand))
        target = column_node(lowered) if lowered else _lower_of(_rewrite(operand, shared))
        out = _like(target, TREES.lower(pattern), escape)
        return {"class": "OPERATOR", "type": "OPERATOR_NOT", "alias": "", "children": [out]} if negated else out
    if plain_function(node) and node.get("function_name") in _LOWER and len(args_of(node)) == 1 and _safe(node):
        name = shared.columns.get(shared.key("lower", args_of(node)[0]))
        if name:
            return column_node(name)
    if node.get("class") == "FUNCTION" and _safe(node):
        name = shared.columns.get(shared.key("value", node))
        if name:
            return column_node(name)
        return node
    out = {k: _rewrite(v, shared) if isinstance(v, dict | list) else v for k, v in node.items()}
    if all(out[k] is v for k, v in node.items()):
        out = node
    return _merge_literal_tests(out) if out.get("type") == "CONJUNCTION_OR" else out


#: a literal test of a hoisted column -> the RE2 form of the same test (``\A``: start, ``\z``: end of the text)
_ANCHORS = {"contains": ("", ""), "starts_with": ("\\A", ""), "suffix": ("", "\\z"), "=": ("\\A", "\\z")}
#: fewer literal tests than this in one OR are left as they are
_MERGE_AT = 3


def _literal_test(node: dict) -> tuple[str, str, str] | None:
    """``(column, anchor kind, literal)`` of ``contains/starts_with/suffix(col, 'x')`` or ``col = 'x'``."""
    if node.get("type") == "COMPARE_EQUAL":
        col, lit = node.get("left", {}), string_constant(node.get("right", {}))
        how = "="
    elif plain_function(node) and node.get("function_name") in _ANCHORS and len(args_of(node)) == 2:
        col, lit = args_of(node)[0], string_constant(args_of(node)[1])
        how = node["function_name"]
    else:
        return None
    names = col.get("column_names", [])
    if col.get("class") != "COLUMN_REF" or len(names) != 1 or not names[0].startswith(_HOIST) or lit is None:
        return None
    return names[0], how, lit


#: the characters :func:`_re2_literal` escapes: ASCII but letters, digits and ``_``
_RE2_META = re.compile(r"[\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]")


def _re2_literal(text: str) -> str:
    """``text`` as an RE2 pattern matching exactly it (RE2's own QuoteMeta rule: ASCII but ``\\w`` escaped)."""
    return _RE2_META.sub(lambda m: "\\x00" if m.group() == "\0" else "\\" + m.group(), text)


def _merge_literal_tests(node: dict) -> dict:
    """An OR of many literal tests of one hoisted column as one ``regexp_matches`` (one pass, one expression).

    DuckDB sets up every expression of a statement at each execution (~15 us
    each, measured): the ~1,800 ``contains`` of the converted SigmaHQ rules
    cost more in that than in matching. The alternation matches where one of
    the tests is true, is NULL where the column is (as each test is), and
    cannot raise; the other children of the OR stay as they are.
    """
    by_column: dict[str, list[str]] = {}
    rest = []
    for child in node["children"]:
        test = _literal_test(child)
        if test is None:
            rest.append(child)
            continue
        column, how, literal = test
        start, end = _ANCHORS[how]
        by_column.setdefault(column, []).append(start + _re2_literal(literal) + end)
    merged = []
    for column, alternatives in by_column.items():
        if len(alternatives) < _MERGE_AT:
            rest += [c for c in node["children"] if (_literal_test(c) or ("",))[0] == column]
            continue
        pattern = "(?:" + "|".join(alternatives) + ")"
        merged.append(call_node("regexp_matches", [column_node(column), string_node(pattern)]))
    children = merged + rest
    if len(children) == 1:
        return children[0]
    return {**node, "children": children}


def _like(target: dict, pattern: str, escape: str | None) -> dict:
    """``target LIKE pattern`` as the cheapest call that means the same (pattern already lower-cased)."""
    parts = _pattern_parts(pattern, escape) if escape is None or len(escape) == 1 else None
    if parts is not None:
        lead, literal, trail = parts
        if lead and trail:
            return call_node("contains", [target, string_node(literal)])
        if trail:
            return call_node("starts_with", [target, string_node(literal)])
        if lead:
            return call_node("suffix", [target, string_node(literal)])
        return {
            "class": "COMPARISON",
            "type": "COMPARE_EQUAL",
            "alias": "",
            "left": target,
            "right": string_node(literal),
        }
    if escape is None:
        return call_node("~~", [target, string_node(pattern)], operator=True)
    return call_node("like_escape", [target, string_node(pattern), string_node(escape)], operator=True)


_TRUE = {"class": "CONSTANT", "type": "VALUE_CONSTANT", "alias": "", "literal": {"kind": "BOOLEAN", "text": "true"}}
_FALSE = {"class": "CONSTANT", "type": "VALUE_CONSTANT", "alias": "", "literal": {"kind": "BOOLEAN", "text": "false"}}


def _truth(node: dict) -> bool | None:
    """True or False for a boolean constant, None for anything else."""
    if node.get("class") == "CONSTANT" and node.get("literal", {}).get("kind") == "BOOLEAN":
        return {"true": True, "false": False}.get(str(node["literal"].get("text", "")).lower())
    return None


def _is_kind(node: dict) -> bool:
    return node.get("class") == "COLUMN_REF" and node.get("column_names") == ["kind"]


def _kind_test(node: dict, kind: str) -> bool | None:
    """The value of a test of the ``kind`` column against constants on a row of ``kind``, None if not one.

    ``kind = 'x'`` (either way round), ``kind <> 'x'``, ``kind [NOT] IN ('x', ...)`` and
    ``kind IN ['x', ...]`` (``contains(list_value(...), kind)``).
    """
    cls, typ = node.get("class"), node.get("type")
    if cls == "COMPARISON" and typ in ("COMPARE_EQUAL", "COMPARE_NOTEQUAL"):
        left, right = node.get("left", {}), node.get("right", {})
        value = string_constant(right) if _is_kind(left) else string_constant(left) if _is_kind(right) else None
        if value is None:
            return None
        return (value == kind) == (typ == "COMPARE_EQUAL")
    if cls == "OPERATOR" and typ in ("COMPARE_IN", "COMPARE_NOT_IN"):
        children = node.get("children", [])
        values = [string_constant(c) for c in children[1:]]
        if not children or not _is_kind(children[0]) or not values or None in values:
            return None
        return (kind in values) == (typ == "COMPARE_IN")
    if plain_function(node) and node.get("function_name") in ("contains", "list_contains", "list_has"):
        args = args_of(node)
        if len(args) != 2 or not _is_kind(args[1]) or not plain_function(args[0]):
            return None
        if args[0].get("function_name") not in ("list_value", "list_pack"):
            return None
        values = [string_constant(a) for a in args_of(args[0])]
        if not values or None in values:
            return None
        return kind in values
    return None


def _prefix_filter(node: dict) -> dict | None:
    """``len(list_filter([...], lambda d: starts_with(col, d))) > 0`` as ``coalesce(starts_with(col, ...) OR ..., false)``.

    The macros' "below one of these directories" test: DuckDB builds the list
    and runs the lambda on every row (~2x the ORs' cost on the exec rows, where
    three rules and two chain steps use it). The same value for every row: the
    original is never NULL (a NULL column gives an empty filtered list), and
    ``coalesce`` makes the ORs' NULL (a NULL column) false. Only a column, a
    list of string constants and that exact lambda are rewritten.
    """
    if node.get("class") != "COMPARISON" or node.get("type") != "COMPARE_GREATERTHAN":
        return None
    right, length = node.get("right", {}), node.get("left", {})
    if right.get("class") != "CONSTANT" or right.get("literal", {}) != {"kind": "INTEGER", "text": "0"}:
        return None
    if not plain_function(length) or length.get("function_name") not in ("len", "length", "array_length"):
        return None
    args = args_of(length)
    if len(args) != 1 or not plain_function(args[0]) or args[0].get("function_name") != "list_filter":
        return None
    filtered = args_of(args[0])
    if len(filtered) != 2:
        return None
    items, fn = filtered
    if not plain_function(items) or items.get("function_name") not in ("list_value", "list_pack"):
        return None
    prefixes = [string_constant(a) for a in args_of(items)]
    if not prefixes or None in prefixes or fn.get("class") != "LAMBDA":
        return None
    param, body = fn.get("lhs", {}), fn.get("expr", {})
    if param.get("class") != "COLUMN_REF" or len(param.get("column_names", [])) != 1:
        return None
    if not plain_function(body) or body.get("function_name") != "starts_with" or len(args_of(body)) != 2:
        return None
    column, arg = args_of(body)
    names = column.get("column_names", [])
    if column.get("class") != "COLUMN_REF" or len(names) != 1 or names == param["column_names"]:
        return None
    if arg.get("class") != "COLUMN_REF" or arg.get("column_names") != param["column_names"]:
        return None
    tests = [call_node("starts_with", [column_node(names[0]), string_node(str(p))]) for p in prefixes]
    either = (
        tests[0]
        if len(tests) == 1
        else {"class": "CONJUNCTION", "type": "CONJUNCTION_OR", "alias": "", "children": tests}
    )
    return {"class": "OPERATOR", "type": "OPERATOR_COALESCE", "alias": "", "children": [either, _FALSE]}


def _specialize(node: Any, kind: str) -> Any:
    """``node`` on rows of one ``kind``: its tests of the kind column made constants, and AND/OR/NOT folded.

    Every row of a kind's branch is of that kind (the slot holds those rows
    only, and no NULL kind), so ``kind = 'process_kprobe'`` is false there:
    the exec branch then neither sets up nor reads the kprobe half of a rule
    that covers both (DuckDB sets up every expression of a statement at each
    execution, and a slot holds the columns its statement names). Folding is
    exact in SQL's three-valued logic (``false AND x`` is false, ``true AND x``
    is ``x``, ...), and only removes what the short-circuit would have skipped.
    A lambda's ``kind`` may be its own parameter: lambdas are left alone.
    Unchanged subtrees come back as they are (the parsed trees are shared).
    """
    if isinstance(node, list):
        out_list = [_specialize(n, kind) for n in node]
        return node if all(a is b for a, b in zip(out_list, node, strict=True)) else out_list
    if not isinstance(node, dict) or node.get("class") in _OPAQUE:
        return node
    test = _kind_test(node, kind)
    if test is not None:
        return _TRUE if test else _FALSE
    unrolled = _prefix_filter(node)
    if unrolled is not None:
        return unrolled
    typ = node.get("type")
    if typ in ("CONJUNCTION_AND", "CONJUNCTION_OR"):
        absorbing = typ == "CONJUNCTION_OR"  # true absorbs an OR, false an AND
        children = [_specialize(c, kind) for c in node.get("children", [])]
        if any(_truth(c) is absorbing for c in children):
            return _TRUE if absorbing else _FALSE
        kept = [c for c in children if _truth(c) is None]
        if not kept:
            return _FALSE if absorbing else _TRUE
        if len(kept) == 1:
            return kept[0]
        if len(kept) == len(node["children"]) and all(a is b for a, b in zip(kept, node["children"], strict=True)):
            return node
        return {**node, "children": kept}
    if typ == "OPERATOR_NOT" and len(node.get("children", [])) == 1:
        child = _specialize(node["children"][0], kind)
        value = _truth(child)
        if value is not None:
            return _FALSE if value else _TRUE
        return node if child is node["children"][0] else {**node, "children": [child]}
    out = {k: _specialize(v, kind) if isinstance(v, dict | list) else v for k, v in node.items()}
    return node if all(out[k] is v for k, v in node.items()) else out


def _rule_sql(rule: Rule) -> str:
    """A rule's test on rows of one of its kinds: its condition, not excepted (the kind test is the branch's)."""
    c = rule.compiled
    return f"({c.condition})" + (f" AND ({c.exceptions}) IS NOT TRUE" if c.exceptions else "")


def branch_predicates(
    rules: list[Rule],
    trees: dict[Any, dict | None] | None = None,
    keys: dict[tuple[str, int], str] | None = None,
    kind: str | None = None,
) -> tuple[list[str], list[str]]:
    """Each rule's rewritten test over one kind's rows and the shared columns' ``expr AS name`` list.

    ``trees`` holds parse trees already read (rule text -> :meth:`SqlTrees.parse`), shared between the
    branches of one plan; they are not changed here. ``keys``: the canonical keys of their operands
    (see :class:`_Shared`), for the same trees only (by node identity), also shared by the branches.
    ``kind``: the branch's kind, whose rows alone the tests see (see :func:`_specialize`); the trees
    specialized to it are kept in ``trees`` too (under ``(kind, text)``), so that a node's identity,
    which ``keys`` goes by, stays its own while the plan is written.
    """
    if trees is None:
        trees, keys = {}, None  # the keys are of the nodes of these trees: new trees, new keys
    keys = keys if keys is not None else {}
    parsed = []
    for rule in rules:
        text = _rule_sql(rule)
        if text not in trees:
            trees[text] = TREES.parse(text)
        tree = trees[text]
        # (a text that names neither the kind column nor list_filter has nothing to specialize: most converted
        # SigmaHQ rules, whose trees are large, are not walked once per kind)
        if kind is not None and tree is not None and ("kind" in text or "list_filter" in text):
            if (kind, text) not in trees:
                trees[(kind, text)] = {"doc": tree["doc"], "expr": _specialize(tree["expr"], kind)}
            tree = trees[(kind, text)]
        parsed.append(tree)
    counts: Counter[str] = Counter()
    nodes: dict[str, dict] = {}
    patterns = []
    shared = _Shared({}, [], keys)
    for p in parsed:
        if p is None:
            continue
        for what, node in _walk(p["expr"]):
            if what == "pattern":
                patterns.append(node["literal"]["text"])
                continue
            target = _lower_of(node) if what == "lower" else node
            key = shared.keys.get((what, id(node)))
            if key is None:
                key = shared.keys[(what, id(node))] = canon(target)
            counts[key] += 1
            nodes.setdefault(key, target)
    TREES.lower_all(patterns)
    candidates = [key for key, n in counts.items() if n >= 2]
    doc = {"doc": template()}
    for key, text in zip(candidates, TREES.render_all([(doc, nodes[key]) for key in candidates]), strict=True):
        if text is None:
            continue
        name = f"{_HOIST}{len(shared.columns)}"
        shared.columns[key] = name
        shared.sql.append(f"{text} AS {name}")
    texts = iter(TREES.render_all([(p, _rewrite(p["expr"], shared)) for p in parsed if p is not None]))
    out = []
    for rule, p in zip(rules, parsed, strict=True):
        text = next(texts) if p is not None else None
        out.append(text if text is not None else _rule_sql(rule))
    return out, shared.sql


def predicate_columns(rules: list[Rule]) -> list[str]:
    """The event columns the rules' conditions and exceptions read (over-inclusive: any such word), schema order."""
    words: set[str] = set()
    for rule in rules:
        for text in (rule.compiled.condition, rule.compiled.exceptions or ""):
            words |= sql_words(text)
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
    """Each kind's mask statement and the slot its rows are read from (``{source}_{n}``), in ``kinds`` order.

    The detector runs only the branches of the kinds a batch holds: DuckDB sets
    up every expression of a statement at each execution, rows or not (~4 ms
    for the rules on ``process_connect``, a kind most batches lack).
    """

    branches: tuple[str, ...]
    kinds: tuple[str, ...]
    slots: tuple[str, ...]
    #: the columns each branch names (over-inclusive), ``_i`` included: its slot holds only those
    columns: tuple[frozenset[str], ...]
    #: per kind, the same bits with every rule tested row by row, where the branch tests some per distinct
    #: value (None where it does not): which is cheaper depends on the data (see :mod:`.branchpick`)
    by_row: tuple[str | None, ...] = ()

    @property
    def sql(self) -> str:
        """Every branch in one statement (same columns in each): all kinds' rows at once."""
        return "\nUNION ALL\n".join(self.branches)


def kind_mask_sql(rules: list[Rule], source: str, sequences: list[Rule] | None = None) -> KindMask:
    """:func:`tetrapipe.ruleset.plan.mask_sql`'s columns and bits, planned per kind over per-kind slots.

    The caller registers each kind's rows (with ``_i``) as ``slots[n]``. Only
    rows with at least one bit set come back, in no particular order. In a
    kind's branch, the rules that read no :data:`UNIQUE_COLUMNS` are tested
    once per distinct combination of the columns they read (a ``DISTINCT``,
    joined back to the rows with ``IS NOT DISTINCT FROM``, so NULLs match
    NULLs): exec events of one batch repeat a few hundred command lines.

    ``sequences``: sequence rules whose step bits (``_q{r}``, as
    :func:`tetrapipe.ruleset.sequence.steps_sql` gives them) each branch
    computes too, for its kind's rows (see :func:`_step_bits`); a row with a
    step bit and no rule bit comes back as well. Without them, none.
    """
    sequences = sequences or []
    TREES.parse_all([_rule_sql(r) for r in rules])  # one query for all (branch_predicates reads them)
    kinds = tuple(sorted({k for r in [*rules, *sequences] for k in r.compiled.kinds}))
    slots = tuple(f"{source}_{n}" for n in range(len(kinds)))
    groups = (len(rules) + MASK_BITS - 1) // MASK_BITS
    columns = [predicate_columns([r]) for r in rules]
    trees: dict[Any, dict | None] = {}  # parse trees read once for all branches (and specialized per kind)
    keys: dict[tuple[str, int], str] = {}  # and the canonical keys of their operands
    memo = (trees, keys)
    steps = _step_bits(sequences, kinds)
    branches = [
        _branch(rules, kind, slot, groups, columns, memo, steps=steps[kind])
        for kind, slot in zip(kinds, slots, strict=True)
    ]
    by_row = [
        _branch(rules, kind, slot, groups, columns, memo, by_value=False, steps=steps[kind])
        if _by_value(rules, kind, columns)  # (else the branch already tests every rule row by row)
        else None
        for kind, slot in zip(kinds, slots, strict=True)
    ]
    words = [sql_words(b) | (sql_words(r) if r else set()) for b, r in zip(branches, by_row, strict=True)]
    columns = tuple(frozenset(w.intersection([*COLUMNS, "_i"])) for w in words)
    return KindMask(tuple(branches), kinds, slots, columns, tuple(by_row))


def _step_bits(sequences: list[Rule], kinds: tuple[str, ...]) -> dict[str, list[str]]:
    """Per kind, per sequence rule ``r``, ``(...) AS _q{r}``: its step and ``until`` bits on rows of that kind.

    The same bits as :func:`tetrapipe.ruleset.sequence.steps_sql` (bit ``k``
    for step ``k``, bit ``len(steps)`` for ``until``), each predicate as it
    reads on that kind (:func:`_specialize`: a step of another kind is false
    and drops out), so that the batch is not scanned once more for them. A
    predicate DuckDB cannot parse this way is used as it is. Every predicate
    is parsed once and every kind's are rendered in one query.
    """
    preds = [[*r.compiled.steps, *([r.compiled.until] if r.compiled.until else [])] for r in sequences]
    TREES.parse_all([p for ps in preds for p in ps])
    parsed = [[TREES.parse(p) for p in ps] for ps in preds]
    plans: dict[str, list[list[tuple[int, int | str]]]] = {}  # kind -> rule -> (step, index into todo | text)
    todo: list[tuple[dict, dict]] = []
    for kind in kinds:
        per_rule = []
        for ps, trees in zip(preds, parsed, strict=True):
            mine: list[tuple[int, int | str]] = []
            for k, (p, tree) in enumerate(zip(ps, trees, strict=True)):
                if tree is None:
                    mine.append((k, p))
                    continue
                expr = _specialize(tree["expr"], kind)
                if _truth(expr) is False:
                    continue  # never on this kind's rows
                mine.append((k, len(todo)))
                todo.append((tree, expr))
            per_rule.append(mine)
        plans[kind] = per_rule
    rendered = TREES.render_all(todo) if todo else []
    out: dict[str, list[str]] = {}
    for kind, per_rule in plans.items():
        bits = []
        for r, mine in enumerate(per_rule):
            terms = []
            for k, ref in mine:
                text = ref if isinstance(ref, str) else rendered[ref] or preds[r][k]
                terms.append(f"CASE WHEN {text}\n  THEN {1 << k}::BIGINT ELSE 0::BIGINT END")
            bits.append(f"({' + '.join(terms) or '0::BIGINT'}) AS _q{r}")
        out[kind] = bits
    return out


def _by_value(rules: list[Rule], kind: str, columns: list[list[str]]) -> list[int]:
    """The rules of ``kind`` that can be tested once per distinct value: those reading no :data:`UNIQUE_COLUMNS`."""
    return [i for i, r in enumerate(rules) if kind in r.compiled.kinds and not UNIQUE_COLUMNS.intersection(columns[i])]


def _bits(tests: dict[int, str], group: int) -> str:
    terms = [
        f"CASE WHEN {t}\n  THEN {1 << (i % MASK_BITS)}::BIGINT ELSE 0::BIGINT END"
        for i, t in tests.items()
        if i // MASK_BITS == group and t != "false"  # (a rule's test folded away on this kind: see _specialize)
    ]
    return " + ".join(terms) if terms else "0::BIGINT"


def _value_groups(by_value: list[int], cols: dict[int, list[str]]) -> list[list[int]]:
    """The rules tested per distinct value, grouped so that most are keyed on few columns.

    One ``DISTINCT`` over every column any of a kind's rules reads has nearly
    as many rows as the batch once a few rules read ``container_id`` or
    ``namespace``; the SigmaHQ rules read ``process_binary`` and ``arguments``
    (a few dozen combinations per batch). So the rules whose columns are all
    among the two most read form one group, those within the four most read a
    second, the others a third; each group costs one ``DISTINCT`` and one join.
    """
    freq = Counter(c for i in by_value for c in cols[i])
    rank = {c: n for n, (c, _) in enumerate(sorted(freq.items(), key=lambda kv: (-kv[1], COLUMNS.index(kv[0]))))}
    buckets: dict[int, list[int]] = {}
    for i in by_value:
        level = max((rank[c] for c in cols[i]), default=0)
        buckets.setdefault(0 if level < 2 else 1 if level < 4 else 2, []).append(i)
    return [buckets[b] for b in sorted(buckets)]


def _value_join(
    rules: list[Rule],
    kind: str,
    members: list[int],
    slot: str,
    n: int,
    groups: int,
    memo: tuple[dict[Any, dict | None], dict[tuple[str, int], str]],
) -> str:
    """``JOIN (...) v{n} ON ...``: the bits of ``members`` per distinct combination of the columns they read.

    The columns are those their tests read on rows of ``kind`` (see :func:`_specialize`: a rule's part
    for another kind reads columns this one's rows never need to be told apart by).
    """
    tests, shared = branch_predicates([rules[i] for i in members], *memo, kind=kind)
    words = sql_words(" ".join([*tests, *shared]))
    keys = [c for c in COLUMNS if c in words] or ["kind"]  # no column: any row will do
    test = dict(zip(members, tests, strict=True))
    distinct = f"SELECT DISTINCT {', '.join(keys)} FROM {slot}"
    hoisted = f"SELECT *{''.join(', ' + x for x in shared)} FROM ({distinct})"
    renamed = ", ".join(f"{k} AS _tp_k{j}" for j, k in enumerate(keys))
    values = ", ".join(f"{_bits(test, g)} AS _tp_v{g}" for g in range(groups))
    on = " AND ".join(f"b.{k} IS NOT DISTINCT FROM v{n}._tp_k{j}" for j, k in enumerate(keys))
    return f"\nJOIN (SELECT {renamed}, {values} FROM ({hoisted})) v{n} ON {on}"


def _branch(
    rules: list[Rule],
    kind: str,
    slot: str,
    groups: int,
    columns: list[list[str]],
    memo: tuple[dict[Any, dict | None], dict[tuple[str, int], str]],
    *,
    by_value: bool = True,
    steps: list[str] | None = None,
) -> str:
    """One kind's ``SELECT``: its rules' bits for every row of ``slot`` with one set.

    ``columns``: each rule's; ``memo``: the plan's parse trees and operand keys (see :func:`branch_predicates`).
    ``by_value=False``: every rule tested row by row (no ``DISTINCT``, no join). ``steps``: the
    sequence rules' step bits (:func:`_step_bits`), computed alongside (a row with one comes back too).
    """
    steps = steps or []
    mine = [i for i, r in enumerate(rules) if kind in r.compiled.kinds]
    cols = {i: columns[i] for i in mine}
    by_value = _by_value(rules, kind, columns) if by_value else []
    by_row = [i for i in mine if i not in by_value]
    tests_r, shared_r = branch_predicates([rules[i] for i in by_row], *memo, kind=kind)
    row_test = dict(zip(by_row, tests_r, strict=True))
    rows = f"(SELECT *{''.join(', ' + x for x in shared_r)} FROM {slot})" if shared_r else slot
    value_groups = _value_groups(by_value, cols)
    frm = f"{rows} b" + "".join(
        _value_join(rules, kind, members, slot, n, groups, memo) for n, members in enumerate(value_groups)
    )
    masks = [
        " + ".join([*(f"v{n}._tp_v{g}" for n in range(len(value_groups))), _bits(row_test, g)]) + f" AS _m{g}"
        for g in range(groups)
    ]
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
    any_bit = " OR ".join([*(f"_m{g} <> 0" for g in range(groups)), *(f"_q{r} <> 0" for r in range(len(steps)))])
    inner = f"SELECT b.*, {', '.join([*masks, *steps])}\nFROM {frm}"
    outer = [*(f"_m{g}" for g in range(groups)), *extra, *(f"_q{r}" for r in range(len(steps)))]
    return f"SELECT _i, {', '.join(outer)}\nFROM ({inner})\nWHERE {any_bit}"


def slot_schemas(schema: pa.Schema, plan: KindMask) -> dict[str, pa.Schema]:
    """The columns of each kind's slot for a batch of ``schema``: those its branch names, in the batch's order.

    Filtering ~40 columns (lists, ``raw``) per kind was a tenth of the detector's
    time, and DuckDB converts every column of a scanned Arrow table.
    """
    return {
        slot: pa.schema([f for f in schema if f.name in wanted])
        for slot, wanted in zip(plan.slots, plan.columns, strict=True)
    }


def split_by_kind(batch: pa.Table, plan: KindMask) -> dict[str, pa.Table]:
    """Each kind's rows of ``batch``, with :func:`slot_schemas`' columns, under its slot name (empty if none)."""
    kinds = batch.column("kind")
    held = set(pc.unique(kinds).to_pylist())  # a batch holds a few of the kinds: the others cost no scan
    out = {}
    for (slot, schema), kind in zip(slot_schemas(batch.schema, plan).items(), plan.kinds, strict=True):
        out[slot] = batch.select(schema.names).filter(pc.equal(kinds, kind)) if kind in held else schema.empty_table()
    return out


__all__ = [
    "KindMask",
    "UNIQUE_COLUMNS",
    "branch_predicates",
    "kind_mask_sql",
    "predicate_columns",
    "slot_schemas",
    "split_by_kind",
]
