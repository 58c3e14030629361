"""Lint: condition values that can never equal what Tetragon emits, and hooks no TracingPolicy installs.

A condition can be valid SQL, load, and still never match: ``process_binary =
'bash'`` (Tetragon's binaries are always absolute paths), ``uid = 'root'``
(Tetragon reports numeric ids), a rule reading ``function_name = 'tcp_close'``
on a cluster whose TracingPolicies never hook ``tcp_close``. These are the
silent never-matches a Sigma import or a hand edit most easily produces;
``rules lint`` reports each with the rule's file and condition line. Read from
the compiled condition (lists and macros expanded), so ``IN @shells`` is
checked too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tetrapipe.ruleset.model import Issue, Rule, RuleSet

#: columns whose every value is an absolute path (Tetragon resolves the binary; cwd is absolute)
ABSOLUTE_PATH_COLUMNS = ("process_binary", "parent_binary", "cwd")
#: columns holding numeric user ids
UID_COLUMNS = ("uid", "euid", "auid")
_LITERAL = r"'(?:[^']|'')*'"
_VALUES = rf"(?:{_LITERAL}|\((?:\s*{_LITERAL}\s*,?)+\))"


def _literals(text: str) -> list[str]:
    return [m[1:-1].replace("''", "'") for m in re.findall(_LITERAL, text)]


def _compared(columns: Iterable[str], condition: str) -> list[tuple[str, str]]:
    """(column, literal) for every ``col = 'v'``, ``lower(col) = 'v'``, ``col [I]LIKE 'v'``, ``col IN ('v', ...)``."""
    cols = "|".join(columns)
    rx = re.compile(
        rf"(?:lower\(\s*)?\b({cols})\b\s*\)?\s*(=|<>|!=|NOT\s+IN|IN|I?LIKE|NOT\s+I?LIKE)\s*({_VALUES})", re.I
    )
    return [(m.group(1), v) for m in rx.finditer(condition) for v in _literals(m.group(3))]


def never_matching_values(rule: Rule) -> list[Issue]:
    """Values compared with a column that Tetragon never fills with anything like them."""
    if rule.compiled is None:
        return []
    issues: list[Issue] = []
    line = rule.condition_lines[0] or rule.line_of("condition")
    for col, value in _compared(ABSOLUTE_PATH_COLUMNS, rule.compiled.condition):
        if value and value[0] not in "/%_":
            issues.append(
                Issue(
                    rule.path,
                    line,
                    f"{col} is compared with {value!r}, which can never match: Tetragon reports {col} as an "
                    f"absolute path (use ends_with({col}, '/{value}'), or process_name for the binary's name)",
                    rule.id,
                    "warning",
                )
            )
    for col, value in _compared(UID_COLUMNS, rule.compiled.condition):
        if not re.fullmatch(r"-?\d+", value.strip()):
            issues.append(
                Issue(
                    rule.path,
                    line,
                    f"{col} is compared with {value!r}, which can never match: Tetragon reports numeric user ids "
                    f"(root is 0; other names need the node's uid for them)",
                    rule.id,
                    "warning",
                )
            )
    return issues


def hook_name(call: str) -> str:
    """sys_openat, __x64_sys_openat, __arm64_sys_openat -> sys_openat (how policies and events may spell it)."""
    return re.sub(r"^__(x64|arm64|ia32|s390x)_", "", call)


def hooks_read(rule: Rule) -> set[str]:
    """The kernel functions a rule's condition names (``function_name = 'x'`` / ``IN (...)``)."""
    if rule.compiled is None:
        return set()
    rx = re.compile(rf"\bfunction_name\b\s*(=|IN)\s*({_VALUES})", re.I)
    return {hook_name(v) for m in rx.finditer(rule.compiled.condition) for v in _literals(m.group(2))}


def unhooked(rule: Rule, hooked: set[str]) -> set[str] | None:
    """The functions a rule reads when none of them is hooked (it cannot fire), else None."""
    read = hooks_read(rule)
    if read and not read & hooked:
        return read
    return None


def value_issues(rs: RuleSet, hooked: set[str] | None) -> list[Issue]:
    """Every rule's never-matching values; with the hooked functions of the policies, rules that cannot fire."""
    issues: list[Issue] = []
    for rule in rs.rules:
        issues += never_matching_values(rule)
        missing = unhooked(rule, hooked) if hooked is not None else None
        if missing:
            issues.append(
                Issue(
                    rule.path,
                    rule.condition_lines[0] or rule.line,
                    f"reads {', '.join(sorted(missing))}, which no TracingPolicy in the policies directory hooks: "
                    "it cannot fire",
                    rule.id,
                    "warning",
                )
            )
    return issues


__all__ = [
    "ABSOLUTE_PATH_COLUMNS",
    "UID_COLUMNS",
    "hook_name",
    "hooks_read",
    "never_matching_values",
    "unhooked",
    "value_issues",
]
