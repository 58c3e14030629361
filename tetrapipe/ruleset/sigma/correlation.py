"""Sigma correlation rules -> tetrapipe threshold and sequence rules, base rules converted alongside.

pySigma resolves a correlation's ``rules:`` references within the file's
collection; each base rule goes through the same pipeline and backend as any
Sigma rule (:func:`tetrapipe.ruleset.sigma.convert.convert_rule`), and its
condition becomes part of the correlation's tetrapipe rule:

* ``event_count`` -> ``threshold: {count: N, by, window}`` over the OR of the base rules;
* ``value_count`` -> the same with ``distinct: <field>``;
* ``temporal_ordered`` -> ``sequence:`` with one step per base rule, in order,
  ``within`` the timespan, ``by`` the key the group-by fields name.

Only what keeps Sigma's meaning converts. A condition other than "at least
N" (``gte``; ``gt`` N is ``gte`` N+1 for counts) has no tetrapipe
equivalent: tetrapipe alerts when a count is reached, never on a count
staying low. ``temporal`` (any order) is refused: sequence rules are ordered,
and the two orders as two rules would alert twice on one chain. A sequence
joins its steps by container, pod or workload (or process lineage, which no
Sigma field expresses), so a group-by naming anything else is refused with
the keys that exist. One known difference is documented, not hidden: Sigma's
windows slide, tetrapipe's threshold windows are tumbling (aligned on the
epoch), see README.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sigma.correlations import (
    SigmaCorrelationConditionOperator,
    SigmaCorrelationRule,
    SigmaCorrelationType,
)
from sigma.rule import SigmaRule

from tetrapipe.ruleset.sigma.backend import TetrapipeBackend
from tetrapipe.ruleset.sigma.convert import Converted, SigmaRefused, convert_rule, metadata
from tetrapipe.ruleset.sigma.pipeline import FIELD_MAP
from tetrapipe.schema import EVENT_SCHEMA

#: Sigma fields the backend computes (not columns): they cannot be a grouping key or a counted field
_VIRTUAL = {"command_line", "parent_command_line", "initiated", "user_name", "protocol_name"}
#: a sequence's ``by`` key by the set of event columns a Sigma group-by names
_SEQUENCE_KEYS = {
    frozenset({"container_id"}): "container",
    frozenset({"namespace", "pod"}): "pod",
    frozenset({"namespace", "workload"}): "workload",
}
#: Sigma timespan units the rule files' durations spell the same way (``M`` would read as minutes)
_SAME_UNITS = set("smhdw")


def column_of(field: str, what: str) -> str:
    """A Sigma field name (``DestinationIp``) or an event column (``container_id``) -> the event column."""
    column = FIELD_MAP.get(field, field)
    if column in _VIRTUAL:
        raise SigmaRefused(f"{what} {field}: a value tetrapipe computes from several columns, not one column")
    if column not in EVENT_SCHEMA.names:
        raise SigmaRefused(
            f"{what} {field}: neither a Sigma field tetrapipe maps ({', '.join(sorted(FIELD_MAP))}) "
            "nor a column of the event schema (tetrapipe query --schema)"
        )
    return column


def _window(rule: SigmaCorrelationRule) -> str:
    span = rule.timespan
    return span.spec if span.unit in _SAME_UNITS else f"{span.seconds}s"


def _at_least(rule: SigmaCorrelationRule) -> int:
    """The count the condition asks for, as "at least N"; anything else is refused."""
    cond = rule.condition
    op = getattr(cond, "op", None)
    count = getattr(cond, "count", None)
    if op is SigmaCorrelationConditionOperator.GTE and count is not None:
        n = int(count) if float(count).is_integer() else int(count) + 1
    elif op is SigmaCorrelationConditionOperator.GT and count is not None:
        n = int(count) + 1
    else:
        name = op.name.lower() if op is not None else "an extended condition"
        raise SigmaRefused(
            f"correlation condition {name} {count if count is not None else ''}".rstrip()
            + ": tetrapipe alerts when a count is reached (gte, gt), not on a count staying low or in a range"
        )
    return max(n, 1)


def _bases(rule: SigmaCorrelationRule, source: Path, backend: TetrapipeBackend) -> list[tuple[str, Converted]]:
    """Each referenced base rule converted (with the name it is referenced by), or the reason why not."""
    out: list[tuple[str, Converted]] = []
    for ref in rule.rules or []:
        base = ref.rule
        if not isinstance(base, SigmaRule):
            raise SigmaRefused(f"base rule {ref.reference!r} is itself a correlation rule: not converted")
        try:
            out.append((ref.reference, convert_rule(base, source, backend)))
        except SigmaRefused as exc:
            if type(exc) is not SigmaRefused:  # NotForLinux: the correlation is for another platform too
                raise
            raise SigmaRefused(f"base rule {ref.reference!r}: {exc}") from None
    if not out:
        raise SigmaRefused("the correlation references no rules")
    return out


def _step_name(reference: str, taken: set[str]) -> str:
    name = "".join(c if c.isalnum() else "_" for c in reference.lower()).strip("_")
    name = name if name[:1].isalpha() else f"r_{name}"
    base, n = name[:40], 1
    while name in taken or not name:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def _one_condition(bases: list[Converted]) -> tuple[list[str], str]:
    """The events and condition of "any of the base rules": each condition limited to its own event kinds."""
    events: list[str] = []
    for conv in bases:
        events += [e for e in _events(conv) if e not in events]
    if len(bases) == 1:
        return events, bases[0].document["condition"]
    parts = []
    for conv in bases:
        kinds = ", ".join(f"'{e}'" for e in _events(conv))
        parts.append(f"(kind IN ({kinds}) AND ({conv.document['condition']}))")
    return events, "\nOR ".join(parts)


def _events(conv: Converted) -> list[str]:
    ev = conv.document["event"]
    return list(ev) if isinstance(ev, list) else [ev]


def convert_correlation(rule: SigmaCorrelationRule, source: Path, backend: TetrapipeBackend) -> Converted:
    """One Sigma correlation rule -> one tetrapipe threshold or sequence rule; :class:`SigmaRefused` if it
    cannot keep the rule's meaning."""
    kind = rule.type
    if kind not in (
        SigmaCorrelationType.EVENT_COUNT,
        SigmaCorrelationType.VALUE_COUNT,
        SigmaCorrelationType.TEMPORAL_ORDERED,
    ):
        why = {
            SigmaCorrelationType.TEMPORAL: "the base rules in any order: tetrapipe's sequence rules are ordered, "
            "and one rule per order would alert twice on one set of events",
        }.get(kind, "tetrapipe has no sums, averages, medians or percentiles over events")
        raise SigmaRefused(f"correlation rule ({kind.name.lower()}): {why}")
    group_by = [str(g) for g in rule.group_by or []]
    if not group_by:
        raise SigmaRefused(
            f"correlation rule ({kind.name.lower()}) without group-by: tetrapipe counts and joins events per key "
            "(a container, a pod, ...), never over the whole cluster at once"
        )
    if rule.aliases.aliases:
        raise SigmaRefused("correlation field aliases: not converted (name the same field in every base rule)")
    named = _bases(rule, source, backend)
    bases = [conv for _, conv in named]
    meta = metadata(rule, source)
    mitre = list(dict.fromkeys([*meta["mitre"], *(m for c in bases for m in c.document["mitre"])]))
    policies = list(dict.fromkeys(p for c in bases for p in c.document.get("requires", {}).get("policies", [])))
    columns = [column_of(g, "group-by") for g in group_by]
    doc: dict[str, Any] = {k: meta[k] for k in ("id", "title", "description", "severity")}
    doc["mitre"] = mitre
    doc["tags"] = list(dict.fromkeys([*meta["tags"], "correlation"]))
    sigma = {**meta["sigma"], "correlation": kind.name.lower(), "rules": [ref for ref, _ in named]}
    where = "{namespace}/{pod} on {node_name}"
    if kind is SigmaCorrelationType.TEMPORAL_ORDERED:
        by = _SEQUENCE_KEYS.get(frozenset(columns))
        if by is None:
            raise SigmaRefused(
                f"temporal_ordered group-by {', '.join(group_by)}: tetrapipe's sequence rules join their steps "
                "by container (container_id), pod (namespace, pod) or workload (namespace, workload)"
            )
        n = _at_least(rule)
        if n != len(bases):
            raise SigmaRefused(
                f"temporal_ordered condition gte {n} of {len(bases)} rules: a sequence needs every step, in order"
            )
        if len(bases) < 2:
            raise SigmaRefused("temporal_ordered of one rule: a sequence needs two or more steps")
        taken: set[str] = set()
        steps = []
        for ref, conv in named:
            ev = _events(conv)
            steps.append(
                {"name": _step_name(ref, taken), "event": ev if len(ev) > 1 else ev[0],
                 "condition": conv.document["condition"]}
            )  # fmt: skip
        doc["sequence"] = {"by": by, "within": _window(rule), "steps": steps}
        doc["output"] = (
            f"{{{steps[0]['name']}.process_binary}} then {{process_binary}} {{arguments}} in {where}, "
            f"{len(steps)} Sigma rules in order within {rule.timespan.spec}"
        )
    else:
        events, condition = _one_condition(bases)
        threshold: dict[str, Any] = {"count": _at_least(rule)}
        counted = "events"
        if kind is SigmaCorrelationType.VALUE_COUNT:
            field = getattr(rule.condition, "fieldref", None)
            if not isinstance(field, str):
                raise SigmaRefused("value_count names no single field to count distinct values of")
            threshold["distinct"] = column_of(field, "value_count field")
            counted = f"distinct {field} values"
        threshold["by"] = columns
        threshold["window"] = _window(rule)
        doc["event"] = events if len(events) > 1 else events[0]
        doc["condition"] = condition
        doc["threshold"] = threshold
        doc["output"] = (
            f"{threshold['count']} or more {counted} within {threshold['window']} for "
            + ", ".join(f"{{{c}}}" for c in columns)
            + f"; the first {{process_binary}} {{arguments}} in {where}"
        )
    if policies:
        doc["requires"] = {"policies": policies}
    doc["enabled"] = meta["enabled"]
    doc.update({k: meta[k] for k in ("references", "false_positives") if k in meta})
    doc["sigma"] = sigma
    doc["tests"] = []
    return Converted(source, meta["id"], doc)


__all__ = ["column_of", "convert_correlation"]
