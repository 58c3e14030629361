"""``tetrapipe rules test``: every rule's tests, the way a CI job needs them.

A test names events (a sample log, or inline events in Tetragon's JSON export
format) and the alerts expected: how many, which source lines they stand for,
and some of their fields. The events go through the same chain as live
ingestion (normalize -> ancestry -> TLS -> detector with only that rule), so a
passing test means the rule fires in production on those events.

Each sample log is normalized and enriched once and shared by every test that
uses it. The report reads like pytest: one line per test, a diff of expected
vs actual alerts for each failure, then ``N passed, N failed``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tetrapipe.ruleset.compiler import Scope, Validator, compile_rule
from tetrapipe.ruleset.loader import library_hint
from tetrapipe.ruleset.model import Issue, Rule, RuleSet, RuleTest

_BATCH_LINES = 20_000


@dataclass
class TestResult:
    """The outcome of one rule test (or of one rule that could not load: ``status='error'``)."""

    rule_id: str
    name: str
    path: Path | None
    line: int | None
    status: str  # passed | failed | error
    seconds: float = 0.0
    reason: str = ""
    diff: list[str] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)

    @property
    def nodeid(self) -> str:
        return f"{self.path}::{self.rule_id}::{self.name}"


@dataclass
class TestReport:
    results: list[TestResult]
    seconds: float

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def ok(self) -> bool:
        return all(r.status == "passed" for r in self.results)

    def summary(self) -> str:
        text = f"{self.count('passed')} passed, {self.count('failed')} failed"
        if self.count("error"):
            text += f", {self.count('error')} error{'s' if self.count('error') != 1 else ''}"
        return f"{text} in {self.seconds:.2f}s"


class EventSource:
    """Normalized, ancestry- and TLS-enriched events of logs and inline lists, cached.

    Normalizing is one big DuckDB statement whose planning dominates small
    inputs, so :meth:`prepare` normalizes every input of a test run in one
    call and splits the result; ancestry and TLS state stay per input.
    """

    _STRIDE = 10_000_000  # offsets of input i are i * stride + line

    def __init__(self) -> None:
        self._cache: dict[Any, tuple[list[pa.Table], list[tuple[int, str]]]] = {}

    def prepare(self, inputs: list[tuple[Any, list[str], str]]) -> None:
        """Normalize ``(key, lines, label)`` inputs not cached yet; small ones in one batch."""
        from tetrapipe.transforms.normalize import Normalizer, normalize_lines

        todo = [(k, lines, label) for k, lines, label in inputs if k not in self._cache]
        small = [(k, lines, label) for k, lines, label in todo if len(lines) <= _BATCH_LINES]
        large = [(k, lines, label) for k, lines, label in todo if len(lines) > _BATCH_LINES]
        normalizer = Normalizer()
        try:
            if small:
                all_lines: list[str] = []
                offsets: list[int] = []
                for i, (_k, lines, _label) in enumerate(small):
                    all_lines += lines
                    offsets += [i * self._STRIDE + n for n in range(1, len(lines) + 1)]
                norm = normalize_lines(all_lines, source="<rule tests>", normalizer=normalizer, offsets=offsets)
                ev_part = pc.divide(norm.events.column("source_offset"), self._STRIDE)
                rj_part = pc.divide(norm.rejects.column("source_offset"), self._STRIDE)
                for i, (k, _lines, label) in enumerate(small):
                    events = norm.events.filter(pc.equal(ev_part, i))
                    events = events.set_column(
                        events.schema.get_field_index("source_offset"),
                        "source_offset",
                        pc.subtract(events.column("source_offset"), i * self._STRIDE),
                    )
                    events = events.set_column(
                        events.schema.get_field_index("source"),
                        "source",
                        pa.array([label] * events.num_rows, pa.string()),
                    )
                    rejects = norm.rejects.filter(pc.equal(rj_part, i))
                    rejected = [
                        (off - i * self._STRIDE, why)
                        for off, why in zip(
                            rejects.column("source_offset").to_pylist(),
                            rejects.column("reason").to_pylist(),
                            strict=True,
                        )
                    ]
                    self._cache[k] = ([self._chain(events)], rejected)
            for k, lines, label in large:
                out, rejected = [], []
                for start in range(0, len(lines), _BATCH_LINES):
                    norm = normalize_lines(
                        lines[start : start + _BATCH_LINES], source=label, first_offset=start + 1, normalizer=normalizer
                    )
                    rejected += list(
                        zip(
                            norm.rejects.column("source_offset").to_pylist(),
                            norm.rejects.column("reason").to_pylist(),
                            strict=True,
                        )
                    )
                    out.append(norm.events)
                self._cache[k] = (self._chain_many(out), rejected)
        finally:
            normalizer.close()

    def get(self, key: Any) -> tuple[list[pa.Table], list[tuple[int, str]]]:
        """(enriched batches, [(line, why rejected)]) of a prepared input."""
        return self._cache[key]

    @staticmethod
    def _chain(events: pa.Table) -> pa.Table:
        return EventSource._chain_many([events])[0]

    @staticmethod
    def _chain_many(batches: list[pa.Table]) -> list[pa.Table]:
        """Ancestry then TLS, with state across the batches of one input."""
        from tetrapipe.transforms.ancestry import AncestryTransform
        from tetrapipe.transforms.tls import TlsTransform

        chain = [AncestryTransform(), TlsTransform()]
        out = []
        for events in batches:
            for t in chain:
                events, _ = t(events)
            out.append(events)
        return out


def log_lines(path: Path) -> list[str]:
    """A test's log file as lines: cut at newlines only (``splitlines`` also cuts at U+0085, U+2028 and
    U+2029, which a JSON string may hold raw: a process argument with one broke its event in two)."""
    lines = [line.removesuffix("\r") for line in path.read_text(encoding="utf-8", errors="replace").split("\n")]
    if lines and not lines[-1]:
        lines.pop()  # the file's last newline ends its last line, it does not start another
    return lines


def resolve_log(log: str, rule: Rule, roots: list[Path]) -> Path | None:
    """A test's ``log:``: absolute, or relative to the rule file, a rules root or its parent, or the cwd.

    ``samples/...`` falls back to the sample logs shipped inside the package,
    so the shipped rules' tests pass from an installed wheel, anywhere.
    """
    from tetrapipe.ruleset.locate import shipped_samples

    p = Path(log)
    if p.is_absolute():
        return p if p.exists() else None
    candidates = [rule.path.parent / p]
    for root in roots:
        base = root if root.is_dir() else root.parent
        candidates += [base / p, base.parent / p]
    candidates.append(Path.cwd() / p)
    if p.parts[:1] == ("samples",) and (shipped := shipped_samples()):
        candidates.append(shipped.joinpath(*p.parts[1:]))
    return next((c for c in candidates if c.exists()), None)


def _fold(alerts: pa.Table) -> list[dict]:
    """Alert rows -> one dict per alert_id (follow-up rows summed), in time order."""
    out: dict[str, dict] = {}
    for row in alerts.to_pylist():
        cur = out.get(row["alert_id"])
        if cur is None:
            out[row["alert_id"]] = dict(row)
            continue
        cur["count"] += row["count"]
        cur["event_ids"] = cur["event_ids"] + row["event_ids"]
        if row["last_time"] is not None and (cur["last_time"] is None or row["last_time"] > cur["last_time"]):
            cur["last_time"] = row["last_time"]
    return list(out.values())


def _matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict) and set(expected) <= {"re", "contains"}:
        text = "" if actual is None else str(actual)
        if "re" in expected and not re.search(str(expected["re"]), text):
            return False
        return not ("contains" in expected and str(expected["contains"]) not in text)
    if hasattr(actual, "isoformat") and not hasattr(expected, "isoformat"):
        return str(actual).replace(" ", "T").startswith(str(expected).replace(" ", "T").rstrip("Z"))
    if hasattr(actual, "isoformat") and hasattr(expected, "isoformat"):
        return actual.replace(tzinfo=None) == expected.replace(tzinfo=None)
    return expected == actual


def _render(value: Any) -> str:
    if isinstance(value, dict) and set(value) <= {"re", "contains"}:
        return " ".join(f"{k}:{v!r}" for k, v in value.items())
    return str(value)


def _compare(test: RuleTest, alerts: list[dict]) -> tuple[bool, str, list[str]]:
    exp = test.expect
    actual_lines = sorted({ln for a in alerts for ln in a["lines"]})
    ok = True
    reasons = []
    if exp.count is not None and exp.count != len(alerts):
        ok = False
        reasons.append(f"expected {exp.count} alert{'s' if exp.count != 1 else ''}, got {len(alerts)}")
    if exp.lines is not None and sorted(exp.lines) != actual_lines:
        ok = False
        reasons.append(f"expected alerts on lines {sorted(exp.lines)}, got {actual_lines}")
    unmatched: list[int] = []
    pairing: dict[int, int] = {}
    if exp.alerts is not None:
        free = list(range(len(alerts)))
        for i, want in enumerate(exp.alerts):
            hit = next((j for j in free if all(_matches(v, alerts[j].get(k)) for k, v in want.items())), None)
            if hit is None:
                unmatched.append(i)
            else:
                pairing[i] = hit
                free.remove(hit)
        if unmatched:
            ok = False
            reasons.append(
                f"{len(unmatched)} expected alert{'s' if len(unmatched) != 1 else ''} "
                f"not found (#{', #'.join(str(u + 1) for u in unmatched)})"
            )
    if ok:
        return True, "", []
    keys = sorted({k for want in (exp.alerts or []) for k in want})
    expected_text = []
    if exp.count is not None:
        expected_text.append(f"count: {exp.count}")
    if exp.lines is not None:
        expected_text.append(f"lines: {sorted(exp.lines)}")
    for i, want in enumerate(exp.alerts or []):
        expected_text.append(f"alert {i + 1}:")
        for k in sorted(want):
            expected_text.append(f"  {k}: {_render(want[k])}")
    actual_text = []
    if exp.count is not None:
        actual_text.append(f"count: {len(alerts)}")
    if exp.lines is not None:
        actual_text.append(f"lines: {actual_lines}")
    order = [pairing.get(i) for i in range(len(exp.alerts or []))]
    order = [j for j in order if j is not None] + [j for j in range(len(alerts)) if j not in order]
    for n, j in enumerate(order):
        a = alerts[j]
        actual_text.append(f"alert {n + 1}:")
        for k in keys or ["process_binary", "message"]:
            want = next((w[k] for w in (exp.alerts or []) if k in w), None)
            shown = a.get(k)
            if isinstance(want, dict) and _matches(want, shown):
                shown = _render(want)  # matched a pattern: show the pattern so the diff stays quiet
            actual_text.append(f"  {k}: {shown}")
        actual_text.append(f"  (lines {a['lines']}, count {a['count']})")
    diff = list(difflib.unified_diff(expected_text, actual_text, "expected", "actual", lineterm="", n=50))
    return False, "; ".join(reasons), diff


def _with_params(rule: Rule, test: RuleTest, rs: RuleSet, validator: Validator) -> tuple[Rule | None, list[Issue]]:
    """The rule with the test's params (and per-namespace params) in place of its own."""
    params, by_ns = test.params, test.params_by_namespace
    unknown = [k for k in params if k not in rule.params]
    unknown += [k for values in by_ns.values() for k in values if k not in rule.params]
    if unknown:
        return None, [Issue(rule.path, test.line, f"test sets unknown parameter(s) {', '.join(unknown)}", rule.id)]
    merged_ns = {
        ns: {k: v for k, v in vals.items() if k not in params} for ns, vals in rule.params_by_namespace.items()
    }
    for ns, vals in by_ns.items():
        merged_ns.setdefault(ns, {}).update(vals)
    copy = dataclasses.replace(rule, params={**rule.params, **params}, compiled=None, params_by_namespace=merged_ns)
    lines = rule.path.read_text(encoding="utf-8").splitlines() if rule.path.exists() else []
    scope = Scope(rs.lists, rs.macros, copy.params, copy.params_by_namespace, library_hint(rs.roots))
    issues = compile_rule(copy, scope, validator, lines)
    return (copy if copy.compiled else None), issues


def test_input(rule: Rule, test: RuleTest, roots: list[Path]) -> tuple[Any, list[str] | None, str, str | None]:
    """(cache key, lines or None if already known, label, error) of a test's events."""
    if test.events is not None:
        return ("inline", str(rule.path), test.line), test.events, f"{rule.path}:{test.line}", None
    path = resolve_log(test.log or "", rule, roots)
    if path is None:
        return None, None, str(test.log), f"sample log {test.log!r} not found"
    return ("log", str(path.resolve())), None, str(test.log), None


def run_rule_test(
    rule: Rule, test: RuleTest, rs: RuleSet, source: EventSource, validator: Validator, connection: Any = None
) -> TestResult:
    from tetrapipe.transforms.detect import Detector

    started = time.perf_counter()
    result = TestResult(rule.id, test.name, rule.path, test.line, "passed")
    key, lines, label, error = test_input(rule, test, rs.roots)
    if error:
        result.status, result.reason = "error", error
        return result
    if lines is None and key not in source._cache:
        lines = log_lines(Path(key[1]))
    if key not in source._cache:
        source.prepare([(key, lines or [], label)])
    batches, rejected = source.get(key)
    if rejected and test.events is not None:
        result.status = "error"
        result.reason = "; ".join(f"event {n} is not a Tetragon event ({why})" for n, why in rejected[:3])
        return result
    target = rule
    if test.params or test.params_by_namespace:
        target, issues = _with_params(rule, test, rs, validator)
        if target is None:
            result.status, result.reason = "error", "; ".join(i.reason for i in issues)
            return result
    detector = Detector([dataclasses.replace(target, enabled=True)], max_event_ids=None, connection=connection)
    try:
        tables = [detector.evaluate(b) for b in batches]
    finally:
        detector.close()
    offsets: dict[str, int] = {}
    for b in batches:
        for eid, off in zip(b.column("event_id").to_pylist(), b.column("source_offset").to_pylist(), strict=True):
            offsets.setdefault(eid, off)
    alerts = _fold(pa.concat_tables(tables)) if tables else []
    for a in alerts:
        a["lines"] = sorted({offsets[e] for e in a["event_ids"] if offsets.get(e) is not None})
    result.alerts = alerts
    ok, reason, diff = _compare(test, alerts)
    if not ok:
        result.status, result.reason, result.diff = "failed", reason, diff
    result.seconds = time.perf_counter() - started
    return result


def run_tests(rs: RuleSet, *, files: Iterable[Path] | None = None, keyword: str | None = None) -> TestReport:
    """Run the tests of every rule (of ``files`` only, when given); load errors are ``error`` results."""
    started = time.perf_counter()
    wanted = {p.resolve() for p in files} if files else None
    results: list[TestResult] = []
    for issue in rs.errors:
        if wanted is not None and (issue.path is None or issue.path.resolve() not in wanted):
            continue
        results.append(
            TestResult(issue.rule_id or "<load>", "load", issue.path, issue.line, "error", reason=issue.reason)
        )
    import duckdb

    selected = [
        (rule, test)
        for rule in rs.rules
        if wanted is None or rule.path.resolve() in wanted
        for test in rule.tests
        if not keyword or keyword.lower() in f"{rule.id}::{test.name}".lower()
    ]
    source = EventSource()
    inputs = []
    for rule, test in selected:
        key, lines, label, error = test_input(rule, test, rs.roots)
        if error is None:
            if lines is None:
                lines = log_lines(Path(key[1]))
            inputs.append((key, lines, label))
    source.prepare(list({k: (k, lines, label) for k, lines, label in inputs}.values()))
    validator = Validator()
    con = duckdb.connect(":memory:")
    try:
        for rule, test in selected:
            try:
                results.append(run_rule_test(rule, test, rs, source, validator, connection=con))
            except Exception as exc:  # noqa: BLE001 - one broken test must not hide the others
                results.append(
                    TestResult(rule.id, test.name, rule.path, test.line, "error", reason=f"{type(exc).__name__}: {exc}")
                )
    finally:
        validator.close()
        con.close()
    return TestReport(results, time.perf_counter() - started)
