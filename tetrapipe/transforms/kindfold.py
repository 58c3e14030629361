"""A rule's predicate as it reads on the rows of one event kind: its kind tests made constants, then folded.

Split out of :mod:`.maskplan`, whose per-kind branches use it: each branch
holds the rows of one kind only, so a rule's ``kind = '...'`` tests are known
there, and what they make unreachable need not be set up at all. See
:func:`specialize`.
"""

from __future__ import annotations

from typing import Any

from tetrapipe.transforms.sqltree import (
    OPAQUE,
    args_of,
    call_node,
    column_node,
    plain_function,
    string_constant,
    string_node,
)

_TRUE = {"class": "CONSTANT", "type": "VALUE_CONSTANT", "alias": "", "literal": {"kind": "BOOLEAN", "text": "true"}}
_FALSE = {"class": "CONSTANT", "type": "VALUE_CONSTANT", "alias": "", "literal": {"kind": "BOOLEAN", "text": "false"}}


def truth(node: dict) -> bool | None:
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


def specialize(node: Any, kind: str) -> Any:
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
        out_list = [specialize(n, kind) for n in node]
        return node if all(a is b for a, b in zip(out_list, node, strict=True)) else out_list
    if not isinstance(node, dict) or node.get("class") in OPAQUE:
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
        children = [specialize(c, kind) for c in node.get("children", [])]
        if any(truth(c) is absorbing for c in children):
            return _TRUE if absorbing else _FALSE
        kept = [c for c in children if truth(c) is None]
        if not kept:
            return _FALSE if absorbing else _TRUE
        if len(kept) == 1:
            return kept[0]
        if len(kept) == len(node["children"]) and all(a is b for a, b in zip(kept, node["children"], strict=True)):
            return node
        return {**node, "children": kept}
    if typ == "OPERATOR_NOT" and len(node.get("children", [])) == 1:
        child = specialize(node["children"][0], kind)
        value = truth(child)
        if value is not None:
            return _FALSE if value else _TRUE
        return node if child is node["children"][0] else {**node, "children": [child]}
    out = {k: specialize(v, kind) if isinstance(v, dict | list) else v for k, v in node.items()}
    return node if all(out[k] is v for k, v in node.items()) else out


__all__ = ["specialize", "truth"]
