"""``tetrapipe rules lint``: everything wrong with a rules directory, before it ships.

Errors (the rule would not load or would be wrong): bad YAML, unknown keys,
unknown columns, non-boolean conditions, duplicate ids, broken macros, rules
requiring a TracingPolicy whose hooks do not give what the normalizer reads.
Warnings (the rule loads but deserves a look): a condition DuckDB proves can
never be true, a condition that never matches the sample data (nor its own
test events), rules without a firing and a non-firing test, unused lists and
macros, policies a rule requires that are missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from tetrapipe.ruleset.compiler import references
from tetrapipe.ruleset.lint_values import hook_name, value_issues
from tetrapipe.ruleset.model import HasIssues, Issue, RuleSet
from tetrapipe.ruleset.policies import check_rules_against_policies, load_policies
from tetrapipe.schema import EVENT_SCHEMA


@dataclass
class LintReport(HasIssues):
    issues: list[Issue] = field(default_factory=list)
    rules: int = 0
    sample_events: int = 0
    matches: dict[str, int] = field(default_factory=dict)


def sample_logs(samples: Path | None) -> list[Path]:
    if samples is None or not samples.exists():
        return []
    if samples.is_file():
        return [samples]
    return sorted(
        p
        for p in samples.rglob("*")
        if p.is_file()
        and p.suffix in (".log", ".jsonl", ".json")
        and not p.name.startswith(".")
        and p.name != "handshakes.json"
    )


def lint(rs: RuleSet, *, samples: Path | None = None, policies_dir: Path | None = None) -> LintReport:
    report = LintReport(issues=list(rs.issues), rules=len(rs.rules))
    policies, policy_issues = load_policies(policies_dir)
    report.issues += policy_issues
    report.issues += check_rules_against_policies(rs, policies)
    report.issues += value_issues(rs, {hook_name(h.call) for p in policies.values() for h in p.hooks} or None)
    _unused(rs, report)
    for rule in rs.rules:
        fires = [t for t in rule.tests if (t.expect.count or 0) > 0 or t.expect.lines or t.expect.alerts]
        quiet = [t for t in rule.tests if t.expect.count == 0]
        if not rule.tests:
            report.issues.append(
                Issue(rule.path, rule.line, "no tests: add one that fires and one that does not", rule.id, "warning")
            )
        elif not fires or not quiet:
            missing = "fires" if not fires else "does not fire (expect: {count: 0})"
            report.issues.append(Issue(rule.path, rule.line_of("tests"), f"no test that {missing}", rule.id, "warning"))
    _never_true(rs, report)
    _sample_matches(rs, report, samples)
    report.issues.sort(key=lambda i: (str(i.path), i.line or 0, i.level))
    return report


def _unused(rs: RuleSet, report: LintReport) -> None:
    used: set[str] = set()
    texts = [r.condition for r in rs.rules] + [r.output for r in rs.rules] + [m.sql for m in rs.macros.values()]
    texts += [str(v) for r in rs.rules for e in r.exceptions for vals in e.fields.values() for v in vals]
    texts += [e.when for r in rs.rules for e in r.exceptions if e.when]
    texts += [f for r in rs.rules for f in r.dedup.fields + (r.new_terms or [])]
    for text in texts:
        names, _ = references(text)
        used |= names
        used |= {w[1:] for w in text.replace("{", " ").replace("}", " ").split() if w.startswith("@")}
    for name, d in {**rs.lists, **rs.macros}.items():
        if name not in used:
            report.issues.append(Issue(d.path, d.line, f"@{name} is defined but no rule uses it", level="warning"))


def _never_true(rs: RuleSet, report: LintReport) -> None:
    """Conditions DuckDB's optimizer folds to a constant false (e.g. kind = 'a' AND kind = 'b')."""
    con = duckdb.connect(":memory:")
    try:
        # an Arrow scan has no statistics: only a contradiction in the condition itself empties the plan
        con.register("events", EVENT_SCHEMA.empty_table())
        for rule in rs.rules:
            plan = con.sql(f"EXPLAIN SELECT event_id FROM events WHERE {rule.compiled.predicate()}").fetchall()
            text = " ".join(str(p[1]) for p in plan)
            if "EMPTY_RESULT" in text or "EMPTY RESULT" in text.upper():
                report.issues.append(
                    Issue(
                        rule.path,
                        rule.condition_lines[0],
                        "condition can never be true (DuckDB folds it to false)",
                        rule.id,
                    )
                )
    finally:
        con.close()


def _sample_matches(rs: RuleSet, report: LintReport, samples: Path | None) -> None:
    """Rules whose condition matches none of the sample events (nor their own test events)."""
    from tetrapipe.ruleset.plan import match_sql
    from tetrapipe.ruleset.testing import EventSource, log_lines, test_input

    logs = sample_logs(samples)
    source = EventSource()
    inputs = [(("log", str(p.resolve())), log_lines(p), str(p)) for p in logs]
    own: dict[str, list] = {}
    for rule in rs.rules:
        for test in rule.tests:
            key, lines, label, error = test_input(rule, test, rs.roots)
            if error:
                continue
            if lines is None:
                lines = log_lines(Path(key[1]))
            inputs.append((key, lines, label))
            own.setdefault(rule.id, []).append(key)
    if not rs.rules:
        return
    source.prepare(list({k: (k, lines, label) for k, lines, label in inputs}.values()))
    con = duckdb.connect(":memory:")
    try:

        def count(keys: list) -> dict[int, int]:
            """Matches per rule over the events of ``keys``, in one statement (planning it is the cost)."""
            batches = [b for key in dict.fromkeys(keys) for b in source.get(key)[0] if b.num_rows]
            if not batches:
                return {}
            con.register("_batch", pa.concat_tables(batches))
            try:
                rows = con.sql(f"SELECT _r, count(*) FROM ({match_sql(rs.rules, '_batch')}) GROUP BY _r").fetchall()
            finally:
                con.unregister("_batch")
            return dict(rows)

        sample_keys = [("log", str(p.resolve())) for p in logs]
        report.sample_events = sum(b.num_rows for k in sample_keys for b in source.get(k)[0])
        on_samples = count(sample_keys)
        on_tests = count([k for keys in own.values() for k in keys])
        for i, rule in enumerate(rs.rules):
            report.matches[rule.id] = on_samples.get(i, 0)
            if logs and not on_samples.get(i) and rule.enabled:
                also = "" if on_tests.get(i) else ", nor on its own test events"
                level = "warning"
                report.issues.append(
                    Issue(
                        rule.path,
                        rule.condition_lines[0],
                        f"condition is never true on the sample data ({report.sample_events} "
                        f"events under {samples}){also}",
                        rule.id,
                        level,
                    )
                )
    finally:
        con.close()
