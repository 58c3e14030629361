"""``tetrapipe rules coverage``: the ATT&CK matrix of the rules in use, and what a cluster's policies let fire.

The matrix is tactic x technique: every enabled rule counts under each
technique of its ``mitre`` list, in each tactic the technique belongs to
(:mod:`tetrapipe.ruleset.attack`; a technique tetrapipe does not know is
placed by the rule's tactic tags). Given the TracingPolicies of a cluster (a
directory, or ``kubectl get tracingpolicies -A -o yaml``), it also says which
rules cannot fire there -- they require a policy none of whose hooks the
cluster installs, or read ``function_name`` values nothing hooks -- and which
hooked functions no rule reads (events paid for and never looked at).
Rendering is elsewhere: the terminal in ``commands/``, the HTML page in
:mod:`tetrapipe.ruleset.coverage_html`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tetrapipe.ruleset.attack import TACTICS, TAG_TACTIC, technique
from tetrapipe.ruleset.lint_values import hook_name, hooks_read
from tetrapipe.ruleset.model import Issue, Rule
from tetrapipe.ruleset.policies import Policy, load_policies, load_policy_file

OTHER = "other"  # the column of techniques no tactic is known for


@dataclass
class Coverage:
    """The matrix, plus (with policies) what cannot fire and what is hooked for nothing."""

    #: (tactic id, technique id) -> ids of the rules covering it
    cells: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    #: technique id -> its name (None when tetrapipe's table does not know it)
    names: dict[str, str | None] = field(default_factory=dict)
    #: enabled rules without any ATT&CK technique
    unmapped: list[str] = field(default_factory=list)
    rules: int = 0
    #: with policies: (rule id, why it cannot fire)
    cannot_fire: list[tuple[str, str]] = field(default_factory=list)
    #: with policies: (policy name, hooked function) no rule reads
    unread_hooks: list[tuple[str, str]] = field(default_factory=list)
    policies: list[str] | None = None
    issues: list[Issue] = field(default_factory=list)

    def tactics(self) -> list[tuple[str, str]]:
        """(tactic id, name) of the columns with at least one technique, in kill-chain order."""
        used = {t for t, _ in self.cells}
        cols = [(tid, name) for tid, (name, _) in TACTICS.items() if tid in used]
        return cols + ([(OTHER, "Other")] if OTHER in used else [])

    def techniques(self) -> list[str]:
        """Every technique id covered, sorted."""
        return sorted({t for _, t in self.cells})


def matrix(rules: list[Rule]) -> Coverage:
    cov = Coverage(rules=len(rules))
    for rule in rules:
        if not rule.mitre:
            cov.unmapped.append(rule.id)
        tag_tactics = [TAG_TACTIC[t] for t in rule.tags if t in TAG_TACTIC]
        for tid in rule.mitre:
            if tid.startswith("TA"):
                continue  # a tactic id alone names no technique
            name, tactics = technique(tid)
            cov.names[tid] = name
            for tactic in tactics or tag_tactics or (OTHER,):
                cov.cells.setdefault((tactic, tid), []).append(rule.id)
    return cov


def load_cluster_policies(path: Path) -> tuple[dict[str, Policy], list[Issue]]:
    """TracingPolicies from a directory, one policy file, or ``kubectl get tracingpolicies -A -o yaml``."""
    if path.is_dir():
        return load_policies(path)
    found, issues = load_policy_file(path)
    return {policy.name: policy for policy in found}, issues


def hooked(policies: dict[str, Policy]) -> dict[str, set[str]]:
    """Policy name -> the functions it hooks (``__x64_`` prefixes dropped)."""
    return {name: {hook_name(h.call) for h in p.hooks} for name, p in policies.items()}


def against_policies(cov: Coverage, rules: list[Rule], cluster: dict[str, Policy], shipped: dict[str, Policy]) -> None:
    """Fill ``cannot_fire`` and ``unread_hooks`` for a cluster's policies.

    A rule's ``requires: policies`` names tetrapipe's policies; a cluster may
    run the same hooks under another name, so a required policy counts as
    present when the cluster has it by name or hooks one of the functions the
    shipped policy of that name hooks.
    """
    cov.policies = sorted(cluster)
    on_cluster = hooked(cluster)
    all_hooked = set().union(*on_cluster.values()) if on_cluster else set()
    shipped_hooks = hooked(shipped)
    read: set[str] = set()
    for rule in rules:
        reasons = []
        for name in rule.policies:
            wants = shipped_hooks.get(name, set())
            if name in cluster:
                read |= on_cluster[name]
            elif wants & all_hooked:
                read |= wants & all_hooked
            else:
                reasons.append(
                    f"requires policy {name!r}"
                    + (f" (hooks {', '.join(sorted(wants))})" if wants else "")
                    + ", which no policy on the cluster provides"
                )
        fns = hooks_read(rule)
        read |= fns
        if fns and not fns & all_hooked:
            reasons.append(f"reads {', '.join(sorted(fns))}, which no policy hooks")
        if reasons:
            cov.cannot_fire.append((rule.id, "; ".join(reasons)))
    for name, fns in sorted(on_cluster.items()):
        cov.unread_hooks += [(name, fn) for fn in sorted(fns - read)]


__all__ = ["OTHER", "Coverage", "against_policies", "load_cluster_policies", "matrix"]
