"""A LIKE pattern as the cheapest test that means the same: a prefix, suffix, substring or equality test,
and an OR of several such tests on one operand as one RE2 match.

Split out of :mod:`.maskplan`, which rewrites each rule's ``ILIKE`` into
``LIKE`` on a lowered operand computed once per row, and hands the pattern
here (see that module's docstring for why and what it measured).
"""

from __future__ import annotations

import re

from tetrapipe.transforms.sqltree import args_of, call_node, column_node, plain_function, string_constant, string_node


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


#: a literal test of a hoisted column -> the RE2 form of the same test (``\A``: start, ``\z``: end of the text)
_ANCHORS = {"contains": ("", ""), "starts_with": ("\\A", ""), "suffix": ("", "\\z"), "=": ("\\A", "\\z")}
#: fewer literal tests than this in one OR are left as they are
_MERGE_AT = 3


def _literal_test(node: dict, hoisted: str) -> tuple[str, str, str] | None:
    """``(column, anchor kind, literal)`` of ``contains/starts_with/suffix(col, 'x')`` or ``col = 'x'``, ``col``
    a hoisted column (its name starts with ``hoisted``)."""
    if node.get("type") == "COMPARE_EQUAL":
        col, lit = node.get("left", {}), string_constant(node.get("right", {}))
        how = "="
    elif plain_function(node) and node.get("function_name") in _ANCHORS and len(args_of(node)) == 2:
        col, lit = args_of(node)[0], string_constant(args_of(node)[1])
        how = node["function_name"]
    else:
        return None
    names = col.get("column_names", [])
    if col.get("class") != "COLUMN_REF" or len(names) != 1 or not names[0].startswith(hoisted) or lit is None:
        return None
    return names[0], how, lit


#: the characters :func:`_re2_literal` escapes: ASCII but letters, digits and ``_``
_RE2_META = re.compile(r"[\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]")


def _re2_literal(text: str) -> str:
    """``text`` as an RE2 pattern matching exactly it (RE2's own QuoteMeta rule: ASCII but ``\\w`` escaped)."""
    return _RE2_META.sub(lambda m: "\\x00" if m.group() == "\0" else "\\" + m.group(), text)


def merge_literal_tests(node: dict, hoisted: str) -> dict:
    """An OR of many literal tests of one hoisted column (named ``hoisted...``) as one ``regexp_matches``.

    DuckDB sets up every expression of a statement at each execution (~15 us
    each, measured): the ~1,800 ``contains`` of the converted SigmaHQ rules
    cost more in that than in matching. The alternation matches where one of
    the tests is true, is NULL where the column is (as each test is), and
    cannot raise; the other children of the OR stay as they are.
    """
    by_column: dict[str, list[str]] = {}
    rest = []
    for child in node["children"]:
        test = _literal_test(child, hoisted)
        if test is None:
            rest.append(child)
            continue
        column, how, literal = test
        start, end = _ANCHORS[how]
        by_column.setdefault(column, []).append(start + _re2_literal(literal) + end)
    merged = []
    for column, alternatives in by_column.items():
        if len(alternatives) < _MERGE_AT:
            rest += [c for c in node["children"] if (_literal_test(c, hoisted) or ("",))[0] == column]
            continue
        pattern = "(?:" + "|".join(alternatives) + ")"
        merged.append(call_node("regexp_matches", [column_node(column), string_node(pattern)]))
    children = merged + rest
    if len(children) == 1:
        return children[0]
    return {**node, "children": children}


def like_test(target: dict, pattern: str, escape: str | None) -> dict:
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


__all__ = ["like_test", "merge_literal_tests"]
