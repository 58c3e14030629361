"""The baseline of a first-seen rule as a query: per key, each value, when first seen, and whether it was learned.

A first-seen rule keeps no baseline of its own: the history is the baseline
(:mod:`tetrapipe.ruleset.kinds`). This query reads it back for any first-seen
rule, with the rule's own condition (its ``since`` included, so after a
``rules relearn`` it shows the new baseline) and learning period, by the same
arithmetic as the live detector: a value is learned when first seen within
``learn`` of its key's first match. ``rules show`` prints it for
``tetrapipe query``; the saved hunt ``first-seen-binaries`` is the shipped
rule's, written out by hand.
"""

from __future__ import annotations

import re

from tetrapipe.ruleset.compiler import Scope, expand
from tetrapipe.ruleset.model import Rule, RuleSet


def _alias(name: str, taken: set[str]) -> str:
    """A column name for a field (``@workload_key`` -> ``workload_key``), unique in the result."""
    base = re.sub(r"\W+", "_", name.lstrip("@")).strip("_") or "field"
    alias, n = base, 2
    while alias in taken:
        alias, n = f"{base}_{n}", n + 1
    taken.add(alias)
    return alias


def baseline_sql(rule: Rule, rs: RuleSet) -> str:
    """The baseline query of a compiled first-seen ``rule`` (of ``rs``, whose lists and macros it uses)."""
    fs = rule.first_seen
    if fs is None or rule.compiled is None:
        raise ValueError(f"{rule.id} is not a compiled first-seen rule")
    scope = Scope(rs.lists, rs.macros, rule.params, rule.params_by_namespace)
    taken = {"time", "first_seen", "events", "learned", "key_first_seen"}
    keys = [(expand(n, scope) if n.startswith("@") else n, _alias(n, taken)) for n in fs.key]
    values = [(expand(n, scope) if n.startswith("@") else n, _alias(n, taken)) for n in fs.value]
    cols = ", ".join(f"{expr} AS {alias}" for expr, alias in keys + values)
    key_names = ", ".join(a for _, a in keys)
    join = " AND ".join(f"m.{a} IS NOT DISTINCT FROM k.{a}" for _, a in keys) or "true"
    shown = ", ".join(f"m.{a}" for _, a in keys + values)
    return (
        f"-- baseline of {rule.id}: per key, each value, first seen, and learned "
        f"(within {fs.learn_seconds} s of the key's first match)\n"
        f"WITH m AS (\n    SELECT time, {cols}\n    FROM events\n    WHERE {rule.compiled.predicate()}\n"
        f"), k AS (\n    SELECT {key_names + ', ' if key_names else ''}min(time) AS key_first_seen FROM m"
        f"{' GROUP BY ' + key_names if key_names else ''}\n)\n"
        f"SELECT {shown}, min(m.time) AS first_seen, count(*) AS events,\n"
        f"       min(m.time) < any_value(k.key_first_seen) + INTERVAL ({fs.learn_seconds}) SECOND AS learned\n"
        f"FROM m JOIN k ON {join}\nGROUP BY ALL\n"
        f"ORDER BY {key_names + ', ' if key_names else ''}first_seen"
    )


__all__ = ["baseline_sql"]
