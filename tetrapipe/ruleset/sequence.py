"""Sequence rules: ordered steps over several events, joined by a key, within a span.

A sequence rule's steps are ordinary rule conditions (the same SQL, lists,
macros and parameters), so each one is compiled by
:func:`tetrapipe.ruleset.compiler.compile_rule` as if it were a rule of its
own, and its errors point at its own lines. What joins the steps (the process
lineage, the container, the pod or the workload) and their order in time is
stateful, and is done by :mod:`tetrapipe.transforms.chains` over the few rows
that match a step: :func:`steps_sql` is the one scan that finds those rows,
live (per micro-batch), after a restart (over the recent history) and in a
backtest (over the whole history), which is why the three agree.

:func:`hunt_sql` is the same logic as one plain query for ``tetrapipe query``:
a self-join of the steps. It lists every combination of events that forms a
chain, where the engine keeps one partial chain per step and key (the newest)
and lets an event complete one chain only: a hunt can show more rows than the
alerts, never fewer.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

from tetrapipe.config import located
from tetrapipe.ruleset.model import Compiled, Dedup, Issue, Rule, Sequence, Step
from tetrapipe.sqltext import sql_string
from tetrapipe.units import duration_seconds

if TYPE_CHECKING:
    from tetrapipe.ruleset.compiler import Scope, Validator
    from tetrapipe.ruleset.parse import FileCheck

SEQUENCE_KEYS = {"by", "within", "steps", "until", "tolerance"}
STEP_KEYS = {"name", "event", "condition", "join", "first_seen"}
#: what ``by`` may say, and the event columns each key is made of (lineage: see the engine)
BY_KEYS: dict[str, tuple[str, ...]] = {
    "lineage": ("exec_id",),
    "container": ("container_id",),
    "pod": ("namespace", "pod"),
    "workload": ("namespace", "workload"),
}
#: most steps a rule may have (one bit each in the step mask, plus one for ``until``)
MAX_STEPS = 16
_STEP_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?\}")


def parse_sequence(ctx: FileCheck, doc: located.Located) -> Sequence | None:
    """The ``sequence:`` mapping of a rule, every mistake reported at its line."""
    raw = ctx.mapping(doc, "sequence")
    if raw is None:
        return None
    ctx.keys(raw, SEQUENCE_KEYS, "sequence")
    by = raw.get("by", "lineage")
    if by not in BY_KEYS:
        ctx.error(raw.line_of("by"), f"sequence by {by!r}: one of {', '.join(BY_KEYS)}")
        by = "lineage"
    within = _seconds(ctx, raw, "within", None)
    tolerance = _seconds(ctx, raw, "tolerance", 2.0)
    steps: list[Step] = []
    names: set[str] = set()
    raw_steps = raw.get("steps")
    if not isinstance(raw_steps, list) or len(raw_steps) < 2:
        ctx.error(raw.line_of("steps") if "steps" in raw else raw.line, "sequence needs steps: a list of two or more")
        return None
    if len(raw_steps) > MAX_STEPS:
        ctx.error(raw.line_of("steps"), f"sequence has {len(raw_steps)} steps; at most {MAX_STEPS}")
        return None
    for i, item in enumerate(raw_steps):
        line = raw_steps.line_of(i) if isinstance(raw_steps, located.LocatedList) else raw.line
        step = _parse_step(ctx, item, line, f"step {i + 1}", names)
        if step is not None:
            names.add(step.name)
            steps.append(step)
    until = None
    if raw.get("until") is not None:
        until = _parse_step(ctx, raw["until"], raw.line_of("until"), "until", None)
    if within is None or len(steps) != len(raw_steps):
        return None
    return Sequence(by, within, steps, until, tolerance if tolerance is not None else 2.0, raw.line)


def _seconds(ctx: FileCheck, raw: located.Located, key: str, default: float | None) -> float | None:
    if key not in raw:
        if default is None:
            ctx.error(raw.line, f"sequence needs {key}: the span its steps must fall in (e.g. 10m)")
        return default
    seconds = duration_seconds(raw[key])
    if seconds is None or seconds < 0 or (key == "within" and seconds == 0):
        ctx.error(raw.line_of(key), f"sequence {key} {raw[key]!r} is not a duration (e.g. 10m, 30s)")
        return default
    return float(seconds)


def _parse_step(ctx: FileCheck, item: Any, line: int, what: str, earlier: set[str] | None) -> Step | None:
    if not isinstance(item, dict):
        ctx.error(line, f"{what} must be a mapping with event and condition")
        return None
    ctx.keys(item, STEP_KEYS if earlier is not None else STEP_KEYS - {"name", "join", "first_seen"}, what)
    name = ctx.string(item, "name", required=earlier is not None) if earlier is not None else "until"
    if earlier is not None and name and not _STEP_NAME.match(name):
        ctx.error(item.line_of("name"), f"{what}: name {name!r}: lowercase letters, digits and '_'")
    if earlier is not None and name in earlier:
        ctx.error(item.line_of("name"), f"{what}: a step named {name!r} comes earlier")
    events = ctx.strings(item, "event")
    condition = ctx.string(item, "condition", required=True)
    if not events:
        ctx.error(item.line, f"{what} needs event: the event kind(s) it reads (process_exec, ...)")
    join: dict[str, tuple[str, str]] = {}
    for column, ref in (ctx.mapping(item, "join") or {}).items():
        step_name, _, other = str(ref).partition(".")
        if not other or earlier is None or step_name not in earlier:
            ctx.error(
                item["join"].line_of(column),
                f"{what}: join {column}: {ref!r} must be <earlier step>.<column> (steps before: "
                f"{', '.join(sorted(earlier or ())) or 'none'})",
            )
            continue
        join[str(column)] = (step_name, other)
    if not name or not condition or not events:
        return None
    lines = (located.content_line(item, "condition"), located.end_line(item, "condition"))
    return Step(name, events, condition, item.line, lines, join, ctx.strings(item, "first_seen"))


def combined_condition(seq: Sequence) -> str:
    """Any step's condition: what the rule as a whole matches (lint and column lists read it)."""
    return " OR ".join(f"({s.condition})" for s in seq.steps)


def compile_sequence(rule: Rule, scope: Scope, validator: Validator, file_lines: list[str]) -> list[Issue]:
    """Compile every step (and ``until``) like a rule of its own; ``rule.compiled`` gets their predicates."""
    from tetrapipe.ruleset.compiler import COLUMNS, compile_rule

    seq = rule.sequence
    assert seq is not None
    issues: list[Issue] = []
    predicates: list[str] = []
    for step in [*seq.steps, *([seq.until] if seq.until else [])]:
        alone = dataclasses.replace(
            rule,
            sequence=None,
            condition=step.condition,
            events=list(step.events),
            condition_lines=step.condition_lines,
            output="",
            dedup=Dedup([], 3600),
            new_terms=None,
            compiled=None,
        )
        issues += compile_rule(alone, scope, validator, file_lines)
        if alone.compiled is not None:
            predicates.append(alone.compiled.predicate())
        for column, (_, other) in step.join.items():
            for name in (column, other):
                if name not in COLUMNS:
                    issues.append(Issue(rule.path, step.line, f"step {step.name}: join names unknown column {name}"))
        for name in step.first_seen:
            if name not in COLUMNS:
                issues.append(Issue(rule.path, step.line, f"step {step.name}: first_seen names unknown column {name}"))
    names = {s.name for s in seq.steps}
    for m in _PLACEHOLDER.finditer(rule.output):
        first, second = m.group(1), m.group(2)
        column = second if second else first
        if (second and first not in names) or column not in COLUMNS:
            issues.append(
                Issue(
                    rule.path,
                    rule.line_of("output"),
                    f"output {m.group(0)}: use {{column}} (the last step's event) or {{step.column}} "
                    f"(steps: {', '.join(s.name for s in seq.steps)})",
                    rule.id,
                )
            )
    if issues:
        return issues
    n = len(seq.steps)
    kinds = sorted({k for s in [*seq.steps, *([seq.until] if seq.until else [])] for k in s.events})
    rule.compiled = Compiled(
        condition=" OR ".join(f"({p})" for p in predicates[:n]),
        exceptions=None,
        kinds=kinds,
        message="''",
        dedup_key="''",
        term=None,
        steps=predicates[:n],
        until=predicates[n] if seq.until else None,
    )
    return issues


def output_columns(rule: Rule) -> set[str]:
    """Event columns the rule's message and joins read from the steps' events."""
    seq = rule.sequence
    assert seq is not None
    out = {m.group(2) or m.group(1) for m in _PLACEHOLDER.finditer(rule.output)}
    for s in seq.steps:
        for column, (_, other) in s.join.items():
            out |= {column, other}
        out |= set(s.first_seen)
    return out


def seen_sql(rule: Rule, k: int) -> str:
    """The values of step ``k``'s ``first_seen`` columns already seen before ``$since`` (a restart's memory)."""
    step, c = rule.sequence.steps[k], rule.compiled
    return f"SELECT DISTINCT {', '.join(step.first_seen)} FROM events WHERE ({c.steps[k]}) AND time < $since"


def step_columns(rule: Rule) -> set[str]:
    """Columns a partial chain keeps of a step's event: ids, lineage, and what the output and joins read.

    The alert's own event columns come from the step that completes the chain,
    so the earlier steps' events are kept small (100,000 partial chains must
    fit in a few hundred bytes each).
    """
    seq = rule.sequence
    assert seq is not None
    out = {
        "event_id",
        "time",
        "_us",
        "exec_id",
        *(m.group(2) for m in _PLACEHOLDER.finditer(rule.output) if m.group(2)),
    }
    for s in seq.steps:
        out |= {other for _, other in s.join.values()}
    return out


def render_message(template: str, steps: dict[str, dict[str, Any]], last: dict[str, Any]) -> str:
    """The ``output`` text: ``{column}`` from the last step's event, ``{step.column}`` from that step's."""

    def sub(m: re.Match) -> str:
        row = steps.get(m.group(1), {}) if m.group(2) else last
        value = row.get(m.group(2) or m.group(1))
        if value is None:
            return ""
        if isinstance(value, list):
            return " ".join(str(v) for v in value)
        return str(value)

    return re.sub(r"\s+", " ", _PLACEHOLDER.sub(sub, template)).strip()


def steps_sql(rules: list[Rule], source: str, columns: list[str], where: str | None = None) -> str:
    """One scan of ``source``: ``columns`` and, per rule ``r``, ``_q{r}``: a bit per step it matches.

    Bit ``k`` is step ``k``; bit ``len(steps)`` is the ``until`` condition.
    Rows matching no step of any rule are dropped. Used live (over a batch,
    ``columns=['_i']``), to rebuild the partial chains after a restart and by
    the backtest (over the ``events`` view, ordered by time).
    """
    kinds = sorted({k for r in rules for k in r.compiled.kinds})
    masks = []
    for r, rule in enumerate(rules):
        c = rule.compiled
        preds = [*c.steps, *([c.until] if c.until else [])]
        terms = [f"CASE WHEN {p}\n  THEN {1 << k}::BIGINT ELSE 0::BIGINT END" for k, p in enumerate(preds)]
        masks.append("(" + " + ".join(terms) + f") AS _q{r}")
    filters = [f"kind IN ({', '.join(sql_string(k) for k in kinds)})"]
    if where:
        filters.append(f"({where})")
    inner = f"SELECT {', '.join(columns)}, {', '.join(masks)}\nFROM {source}\nWHERE {' AND '.join(filters)}"
    any_bit = " OR ".join(f"_q{r} <> 0" for r in range(len(rules)))
    return f"SELECT * FROM ({inner}) AS _s WHERE {any_bit}"


def hunt_sql(rule: Rule) -> str:
    """A query over ``events`` that lists the chains of a sequence rule (a self-join of its steps)."""
    seq, c = rule.sequence, rule.compiled
    assert seq is not None and c is not None and c.steps is not None
    within = f"INTERVAL '{int(seq.within_seconds * 1_000_000)} microseconds'"
    tolerance = f"INTERVAL '{int(seq.tolerance_seconds * 1_000_000)} microseconds'"
    ctes = []
    for k, p in enumerate(c.steps):
        cte = f"s{k} AS (SELECT * FROM events e WHERE {p}"
        if seq.steps[k].first_seen:  # only a first sighting of these values (the predicate inside reads p)
            same = " AND ".join(f"p.{col} IS NOT DISTINCT FROM e.{col}" for col in seq.steps[k].first_seen)
            cte += (
                f"\n  AND NOT EXISTS (SELECT 1 FROM events p WHERE {p} AND {same}"
                " AND (p.time < e.time OR (p.time = e.time AND p.event_id < e.event_id)))"
            )
        ctes.append(cte + ")")
    index = {s.name: k for k, s in enumerate(seq.steps)}
    joins = []
    for k in range(1, len(seq.steps)):
        conds = [
            f"s{k}.time BETWEEN s{k - 1}.time - {tolerance} AND s0.time + {within}",
            f"s{k}.event_id <> s{k - 1}.event_id",
        ]
        if seq.by == "lineage":
            conds.append(
                f"(s{k}.exec_id = s0.exec_id OR s{k}.parent_exec_id = s0.exec_id "
                f"OR list_contains(s{k}.ancestor_exec_ids, s0.exec_id))"
            )
        else:
            conds += [f"s{k}.{col} = s0.{col}" for col in BY_KEYS[seq.by]]
        for column, (step_name, other) in seq.steps[k].join.items():
            conds.append(f"s{k}.{column} = s{index[step_name]}.{other}")
        joins.append(f"JOIN s{k} ON " + "\n   AND ".join(conds))
    if seq.until is not None and c.until is not None:
        ctes.append(f"u AS (SELECT * FROM events WHERE {c.until})")
        key = "exec_id" if seq.by == "lineage" else None
        cols = [key] if key else list(BY_KEYS[seq.by])
        last = len(seq.steps) - 1
        on = " AND ".join(f"u.{col} = s0.{col}" for col in cols)
        joins.append(f"WHERE NOT EXISTS (SELECT 1 FROM u WHERE {on} AND u.time > s0.time AND u.time < s{last}.time)")
    names = ", ".join(f"s{k}.event_id AS {s.name}_event" for k, s in enumerate(seq.steps))
    last = len(seq.steps) - 1
    return (
        "WITH " + ",\n".join(ctes) + "\n"
        f"SELECT s0.time, s{last}.time AS last_time, s{last}.namespace, s{last}.pod, "
        f"s{last}.process_binary, {names}\n"
        "FROM s0\n" + "\n".join(joins) + "\nORDER BY s0.time;"
    )


__all__ = [
    "BY_KEYS",
    "combined_condition",
    "compile_sequence",
    "hunt_sql",
    "output_columns",
    "parse_sequence",
    "render_message",
    "seen_sql",
    "step_columns",
    "steps_sql",
]
