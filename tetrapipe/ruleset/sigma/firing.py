"""A firing test for a converted Sigma rule, built from its own selection and kept only when it fires.

The event is derived from the parsed (and field-mapped) condition: AND
takes every branch, OR the first branch that can be satisfied, ``not``
filters are left out (the event simply lacks what they exclude), a value
becomes its text with wildcards filled. That is a guess, so it is checked:
the rule runs on the generated Tetragon event in the real engine
(:func:`tetrapipe.ruleset.sigma.check.run_labelled`) and a test that does
not fire is dropped, never written. Regular expressions are not guessed.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from sigma.conditions import ConditionAND, ConditionFieldEqualsValueExpression, ConditionNOT, ConditionOR
from sigma.rule import SigmaRule
from sigma.types import (
    CompareOperators,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaNumber,
    SigmaString,
    SpecialChars,
)

from tetrapipe.ruleset.sigma.backend import COMMAND_LINES
from tetrapipe.ruleset.sigma.check import Labelled, run_labelled
from tetrapipe.ruleset.sigma.convert import Converted
from tetrapipe.ruleset.sigma.events import COLUMNS, tetragon_event

_PATHS = {"process_binary", "parent_binary", "cwd", "file_path"}


def _text(value: SigmaString) -> tuple[str, bool, bool]:
    """(the value with inner wildcards filled, anchored at the start, anchored at the end)."""
    parts = list(value.s)
    start = not (parts and parts[0] == SpecialChars.WILDCARD_MULTI)
    end = not (parts and parts[-1] == SpecialChars.WILDCARD_MULTI)
    inner = parts[(0 if start else 1) : (len(parts) if end else -1)]
    text = "".join(p if isinstance(p, str) else "x" for p in inner)
    return text, start, end


def _satisfy(node: Any, env: dict[str, list[tuple[str, bool]] | Any]) -> bool:
    if isinstance(node, ConditionAND):
        return all(_satisfy(a, env) for a in node.args)
    if isinstance(node, ConditionOR):
        for arg in node.args:
            trial = {k: list(v) if isinstance(v, list) else v for k, v in env.items()}
            if _satisfy(arg, trial):
                env.clear()
                env.update(trial)
                return True
        return False
    if isinstance(node, ConditionNOT):
        return True  # the generated event lacks what the filter names; the engine run checks it
    if not isinstance(node, ConditionFieldEqualsValueExpression):
        return False
    field, value = node.field, node.value
    if isinstance(value, SigmaString):
        text, start, _ = _text(value)
        if field == "initiated":
            return text.lower() == "true"
        if field == "user_name":
            env["uid"] = 0
            return True
        if field == "protocol_name":
            return text.lower() == "tcp"
        existing = env.setdefault(field, [])
        if not isinstance(existing, list):
            return False
        existing.append((text, start))
        return True
    if isinstance(value, SigmaNumber):
        env[field] = value.number
        return True
    if isinstance(value, SigmaCompareExpression):
        n = value.number.number
        env[field] = n + 1 if value.op in (CompareOperators.GT, CompareOperators.NEQ) else n - 1
        if value.op in (CompareOperators.GTE, CompareOperators.LTE):
            env[field] = n
        return True
    if isinstance(value, SigmaCIDRExpression):
        net = value.network
        env[field] = str(net.network_address + (1 if net.num_addresses > 1 else 0))
        return ipaddress.ip_address(env[field]).version == 4
    if isinstance(value, SigmaExists):
        if value.exists and field not in env:
            env[field] = [("/usr/bin/x", True)]
        return bool(value.exists)
    return False


def _path(fragments: list[tuple[str, bool]]) -> str:
    text = "".join(t for t, _ in fragments)
    anchored = fragments[0][1]
    if anchored and text.startswith("/"):
        return text
    return "/usr/bin" + text if text.startswith("/") else "/usr/bin/" + text


def columns_for(rule: SigmaRule) -> dict[str, Any] | None:
    """Event columns that should satisfy the rule's first condition, or None when none can be guessed."""
    env: dict[str, Any] = {}
    if not rule.detection.parsed_condition or not _satisfy(rule.detection.parsed_condition[0].parsed, env):
        return None
    out: dict[str, Any] = {}
    for field, value in env.items():
        if field in COMMAND_LINES:
            binary_col, args_col = (
                ("process_binary", "arguments") if field == "command_line" else ("parent_binary", "parent_arguments")
            )
            first, anchored = value[0]
            rest = [t for t, _ in value[1:]]  # spaces kept: " -l " must stay a word
            if anchored:
                head, _, tail = first.partition(" ")
                binary = head if head.startswith("/") else "/usr/bin/" + (head or "x")
                args = " ".join(x for x in [tail, *rest] if x).lstrip()
            else:
                binary = env.get(binary_col) and _path(env[binary_col])
                binary = binary or "/usr/bin/x"
                args = " ".join(x for x in [first, *rest] if x).lstrip()
            out.setdefault(binary_col, binary)
            if args:
                out[args_col] = args
        elif field in _PATHS:
            out[field] = _path(value)
        elif field in COLUMNS:
            out[field] = value if not isinstance(value, list) else "".join(t for t, _ in value)
        else:
            return None
    return out


def add_firing_tests(items: list[Converted]) -> list[Converted]:
    """Each converted rule, with a generated firing test where one fires in the real engine."""
    candidates: list[Labelled] = []
    for n, conv in enumerate(items):
        if conv.sigma_rule is None:
            continue
        cols = columns_for(conv.sigma_rule)
        if cols is None:
            continue
        try:
            line = tetragon_event(conv.document["sigma"]["category"], cols, n + 1)
        except (ValueError, TypeError):
            continue
        candidates.append(Labelled(conv, [line], []))
    if not candidates:
        return list(items)
    fired = {r.rule_id for r in run_labelled(candidates).results if r.status == "passed"}
    lines = {c.converted.rule_id: c.firing[0] for c in candidates if c.converted.rule_id in fired}
    out = []
    for conv in items:
        if conv.rule_id in lines:
            test = {
                "name": "generated from the Sigma selection: fires",
                "events": lines[conv.rule_id] + "\n",
                "expect": {"count": 1},
            }
            conv = Converted(conv.source, conv.rule_id, {**conv.document, "tests": [test]}, conv.sigma_rule)
        out.append(conv)
    return out


__all__ = ["add_firing_tests", "columns_for"]
