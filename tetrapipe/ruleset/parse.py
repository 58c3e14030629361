"""One YAML document of a rules directory -> a rule (with its dedup, exceptions, params, tests).

Every shape and value is checked with the file and line at fault
(:class:`FileCheck`), and all mistakes of a file are reported at once: a rule
with errors is not loaded, the others are. :mod:`tetrapipe.ruleset.loader`
decides which kind a file is and puts the rule set together. See
docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tetrapipe.config import located
from tetrapipe.ruleset.compiler import (
    EXCEPTION_FIELDS,
)
from tetrapipe.ruleset.kinds import parse_first_seen, parse_threshold
from tetrapipe.ruleset.model import (
    SEVERITIES,
    Dedup,
    ExceptionDef,
    Expect,
    Issue,
    Rule,
    RuleTest,
)
from tetrapipe.schema import ENTERPRISE_KINDS, OSS_KINDS
from tetrapipe.units import duration_seconds

RULE_KEYS = {
    "id",
    "title",
    "description",
    "severity",
    "mitre",
    "tags",
    "event",
    "condition",
    "output",
    "dedup",
    "exceptions",
    "enabled",
    "tests",
    "params",
    "params_by_namespace",
    "requires",
    "new_terms",
    "references",
    "false_positives",
    "sigma",
    "sequence",
    "threshold",
    "first_seen",
}
LIBRARY_KEYS = {"lists", "macros", "description"}
OVERRIDE_KEYS = {
    "override",
    "enabled",
    "severity",
    "params",
    "params_by_namespace",
    "exceptions",
    "dedup",
    "tags",
    "description",
    "first_seen",
}
TEST_KEYS = {"name", "log", "events", "expect", "params", "params_by_namespace"}
EXPECT_KEYS = {"count", "lines", "alerts"}
DEFAULT_DEDUP = Dedup(fields=["node_name", "exec_id"], window_seconds=3600)
#: event kinds a rule may name: the open-source API, Isovalent Enterprise kinds seen in real exports, and
#: ``tls`` (the handshakes the TLS transform derives)
KNOWN_KINDS = set(OSS_KINDS) | set(ENTERPRISE_KINDS) | {"tls"}
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_MITRE = re.compile(r"^(T\d{4}(\.\d{3})?|TA\d{4})$")


class FileCheck:
    """Collects issues for one file, with helpers that check shapes and name lines."""

    def __init__(self, path: Path, issues: list[Issue], rule_id: str | None = None) -> None:
        self.path = path
        self.issues = issues
        self.rule_id = rule_id
        self.failed = False

    def error(self, line: int | None, reason: str) -> None:
        self.failed = True
        self.issues.append(Issue(self.path, line, reason, self.rule_id))

    def warn(self, line: int | None, reason: str) -> None:
        self.issues.append(Issue(self.path, line, reason, self.rule_id, level="warning"))

    def keys(self, mapping: located.Located, allowed: set[str], what: str) -> None:
        for key in mapping:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                self.error(
                    mapping.line_of(key),
                    f"unknown key {key!r} in {what}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else f"; allowed: {', '.join(sorted(allowed))}"),
                )

    def named_entries(
        self, doc: located.Located, key: str, allowed: set[str], shape: str, entry: str
    ) -> Iterator[tuple[Any, str]]:
        """Each well-formed ``- name: ...`` mapping under ``doc[key]``, with its name.

        Exceptions and tests are both lists of named mappings; a malformed
        entry is reported (``shape`` says what the list should look like) and
        skipped so that one file reports all its mistakes at once.
        """
        raw = doc.get(key)
        if raw is None:
            return
        if not isinstance(raw, list):
            self.error(doc.line_of(key), f"{key} must be a list{shape}")
            return
        for i, item in enumerate(raw):
            line = raw.line_of(i) if isinstance(raw, located.LocatedList) else doc.line_of(key)
            if not isinstance(item, dict):
                self.error(line, f"{entry} must be a mapping with a name")
                continue
            self.keys(item, allowed, entry)
            name = item.get("name")
            if not isinstance(name, str) or not name:
                self.error(item.line, f"{entry} needs a name")
                continue
            yield item, name

    def string(self, mapping: located.Located, key: str, required: bool = False, default: str = "") -> str:
        if key not in mapping or mapping[key] is None:
            if required:
                self.error(mapping.line, f"missing required key {key!r}")
            return default
        value = mapping[key]
        if not isinstance(value, str):
            self.error(mapping.line_of(key), f"{key} must be a string, not {type(value).__name__}")
            return default
        return value

    def strings(self, mapping: located.Located, key: str) -> list[str]:
        value = mapping.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.error(mapping.line_of(key), f"{key} must be a list of strings")
            return []
        return list(value)

    def mapping(self, mapping: located.Located, key: str) -> located.Located | None:
        value = mapping.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.error(mapping.line_of(key), f"{key} must be a mapping")
            return None
        return value


def parse_dedup(ctx: FileCheck, doc: located.Located) -> Dedup:
    d = ctx.mapping(doc, "dedup")
    if d is None:
        return Dedup(list(DEFAULT_DEDUP.fields), DEFAULT_DEDUP.window_seconds)
    ctx.keys(d, {"fields", "window"}, "dedup")
    fields = ctx.strings(d, "fields") or list(DEFAULT_DEDUP.fields)
    window = d.get("window", "1h")
    seconds = duration_seconds(window)
    if seconds is None or seconds <= 0:
        ctx.error(d.line_of("window"), f"dedup window {window!r} is not a duration (e.g. 10m, 1h, 30s)")
        seconds = DEFAULT_DEDUP.window_seconds
    return Dedup(fields, int(seconds))


def parse_exceptions(ctx: FileCheck, doc: located.Located) -> list[ExceptionDef]:
    out: list[ExceptionDef] = []
    allowed = set(EXCEPTION_FIELDS) | {"name", "when", "reason"}
    shape = (
        " of named allow-list entries "
        "(- name: ..., images: [...], namespaces: [...], binaries: [...], parent_binaries: [...])"
    )
    for entry, name in ctx.named_entries(doc, "exceptions", allowed, shape, "an exception entry"):
        fields: dict[str, list[Any]] = {}
        for key in EXCEPTION_FIELDS:
            if key in entry:
                value = entry[key]
                value = [value] if isinstance(value, str) else value
                if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
                    ctx.error(entry.line_of(key), f"exception {name}: {key} must be a list of values")
                    continue
                fields[key] = list(value)
        when = entry.get("when")
        if when is not None and not isinstance(when, str):
            ctx.error(entry.line_of("when"), f"exception {name}: when must be a SQL condition (string)")
            when = None
        if not fields and not when:
            ctx.error(
                entry.line,
                f"exception {name} lists nothing to allow (give one of {', '.join(EXCEPTION_FIELDS)} or when)",
            )
            continue
        out.append(ExceptionDef(name, fields, when, entry.line))
    return out


def _parse_params(ctx: FileCheck, doc: located.Located) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    params = ctx.mapping(doc, "params") or {}
    by_ns_raw = ctx.mapping(doc, "params_by_namespace") or {}
    by_ns: dict[str, dict[str, Any]] = {}
    for ns, values in by_ns_raw.items():
        if not isinstance(values, dict):
            ctx.error(by_ns_raw.line_of(ns), f"params_by_namespace.{ns} must map parameter names to values")
            continue
        for name in values:
            if name not in params:
                ctx.error(values.line_of(name), f"params_by_namespace.{ns}.{name}: no parameter {name} under params")
        by_ns[str(ns)] = dict(values)
    return dict(params), by_ns


def _parse_tests(ctx: FileCheck, doc: located.Located) -> list[RuleTest]:
    out: list[RuleTest] = []
    for t, name in ctx.named_entries(
        doc, "tests", TEST_KEYS, " of tests (- name: ..., log or events, expect)", "a test"
    ):
        log = t.get("log")
        events = t.get("events")
        if (log is None) == (events is None):
            ctx.error(t.line, f"test {name!r}: give exactly one of log (a sample file) or events (inline)")
            continue
        lines: list[str] | None = None
        if events is not None:
            lines = _inline_events(ctx, t, events, name)
            if lines is None:
                continue
        elif not isinstance(log, str):
            ctx.error(t.line_of("log"), f"test {name!r}: log must be a path")
            continue
        expect_raw = t.get("expect")
        if not isinstance(expect_raw, dict):
            ctx.error(
                t.line_of("expect") if "expect" in t else t.line,
                f"test {name!r}: expect must be a mapping (count, lines, alerts)",
            )
            continue
        ctx.keys(expect_raw, EXPECT_KEYS, "expect")
        count = expect_raw.get("count")
        exp_lines = expect_raw.get("lines")
        alerts = expect_raw.get("alerts")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
            ctx.error(expect_raw.line_of("count"), f"test {name!r}: count must be a number >= 0")
            continue
        if exp_lines is not None and (
            not isinstance(exp_lines, list) or not all(isinstance(x, int) for x in exp_lines)
        ):
            ctx.error(expect_raw.line_of("lines"), f"test {name!r}: lines must be a list of line numbers")
            continue
        if alerts is not None and (not isinstance(alerts, list) or not all(isinstance(a, dict) for a in alerts)):
            ctx.error(expect_raw.line_of("alerts"), f"test {name!r}: alerts must be a list of field mappings")
            continue
        if count is None and exp_lines is None and alerts is None:
            ctx.error(expect_raw.line, f"test {name!r}: expect needs count, lines or alerts")
            continue
        params = t.get("params") or {}
        if not isinstance(params, dict):
            ctx.error(t.line_of("params"), f"test {name!r}: params must be a mapping")
            continue
        by_ns = t.get("params_by_namespace") or {}
        if not isinstance(by_ns, dict) or not all(isinstance(v, dict) for v in by_ns.values()):
            ctx.error(
                t.line_of("params_by_namespace"),
                f"test {name!r}: params_by_namespace maps namespaces to parameter values",
            )
            continue
        out.append(
            RuleTest(
                name=name,
                line=t.line,
                log=log,
                events=lines,
                expect=Expect(
                    count=count,
                    lines=list(exp_lines) if exp_lines is not None else None,
                    alerts=[dict(a) for a in alerts] if alerts is not None else None,
                ),
                params=dict(params),
                params_by_namespace={str(k): dict(v) for k, v in by_ns.items()},
            )
        )
    return out


def _inline_events(ctx: FileCheck, t: located.Located, events: Any, name: str) -> list[str] | None:
    """Inline events: a list of mappings (YAML or JSON objects) or a block of JSON lines."""
    import json

    if isinstance(events, str):
        return [line for line in events.splitlines() if line.strip()]
    if isinstance(events, list):
        out = []
        for e in events:
            if isinstance(e, str):
                out.append(e)
            elif isinstance(e, dict):
                out.append(json.dumps(_plain(e), separators=(",", ":")))
            else:
                ctx.error(t.line_of("events"), f"test {name!r}: each event must be a Tetragon JSON object")
                return None
        return out
    ctx.error(t.line_of("events"), f"test {name!r}: events must be a list of Tetragon events")
    return None


def _plain(value: Any) -> Any:
    """YAML's line-aware containers as plain dicts/lists; datetimes as Tetragon's RFC 3339 strings."""
    import datetime as dt

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat() + "Z"
    return value


def parse_rule(ctx: FileCheck, doc: located.Located, text_lines: list[str]) -> Rule | None:
    """One rule document into a :class:`Rule`, every problem recorded in ``ctx`` with its line.

    Long because it reads the rule's keys in the order a rule file lists them,
    one or two lines each: a reader checks a key's rules here at a glance.
    """
    ctx.keys(doc, RULE_KEYS, "a rule")
    rid = ctx.string(doc, "id", required=True)
    ctx.rule_id = rid or None
    if rid and not _ID.match(rid):
        ctx.error(doc.line_of("id"), f"rule id {rid!r}: use lowercase letters, digits, '-', '.' or '_'")
    title = ctx.string(doc, "title", required=True)
    description = ctx.string(doc, "description", required=True).strip()
    severity = ctx.string(doc, "severity", required=True).lower()
    if severity and severity not in SEVERITIES:
        ctx.error(doc.line_of("severity"), f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    mitre = ctx.strings(doc, "mitre")
    for m in mitre:
        if not _MITRE.match(m):
            ctx.error(
                doc.line_of("mitre"), f"MITRE ATT&CK id {m!r} is not a technique (T1059, T1059.004) or tactic (TA0002)"
            )
    events = ctx.strings(doc, "event")
    if "event" in doc and not events:
        ctx.error(doc.line_of("event"), "event must name at least one event kind (process_exec, process_kprobe, ...)")
    for k in events:
        if k not in KNOWN_KINDS:
            hint = difflib.get_close_matches(k, sorted(KNOWN_KINDS), n=1)
            ctx.warn(
                doc.line_of("event"),
                f"event kind {k!r} is not a Tetragon kind tetrapipe knows"
                + (f" (did you mean {hint[0]!r}?)" if hint else ""),
            )
    sequence = None
    if "sequence" in doc:
        from tetrapipe.ruleset.sequence import combined_condition, parse_sequence

        for key in ("event", "condition", "new_terms"):
            if key in doc:
                ctx.error(doc.line_of(key), f"a sequence rule gives {key} per step (under sequence.steps)")
        sequence = parse_sequence(ctx, doc)
        if sequence is None:
            return None
        events = sorted({k for s in sequence.steps for k in s.events})
        condition = combined_condition(sequence)
    else:
        condition = ctx.string(doc, "condition", required=True)
    output = ctx.string(doc, "output", required=True).strip()
    enabled = doc.get("enabled", True)
    if not isinstance(enabled, bool):
        ctx.error(doc.line_of("enabled"), "enabled must be true or false")
        enabled = True
    params, by_ns = _parse_params(ctx, doc)
    requires = ctx.mapping(doc, "requires")
    policies: list[str] = []
    flags: list[str] = []
    if requires is not None:
        ctx.keys(requires, {"policies", "tetragon"}, "requires")
        policies = ctx.strings(requires, "policies")
        flags = ctx.strings(requires, "tetragon")
    new_terms = None
    if "new_terms" in doc:
        nt = doc["new_terms"]
        if isinstance(nt, dict):
            ctx.keys(nt, {"fields"}, "new_terms")
            new_terms = ctx.strings(nt, "fields")
        elif isinstance(nt, list):
            new_terms = ctx.strings(doc, "new_terms")
        if not new_terms:
            ctx.error(doc.line_of("new_terms"), "new_terms needs fields: the combination whose first sighting alerts")
            new_terms = None
    first_seen = parse_first_seen(ctx, doc)
    if first_seen is not None:
        if new_terms:
            ctx.error(doc.line_of("new_terms"), "give first_seen or new_terms, not both")
        new_terms = [*first_seen.key, *first_seen.value]
    dedup = parse_dedup(ctx, doc)
    if new_terms and "dedup" not in doc:
        dedup = Dedup(list(new_terms), DEFAULT_DEDUP.window_seconds)
    threshold = parse_threshold(ctx, doc)
    if threshold is not None:
        raw = doc["threshold"]
        if "dedup" in doc:
            ctx.error(doc.line_of("dedup"), "a threshold rule gives its key and window as threshold.by and .window")
        seconds = duration_seconds(raw.get("window", "1m"))
        if seconds is None or seconds <= 0:
            ctx.error(raw.line_of("window"), f"threshold window {raw.get('window')!r} is not a duration (e.g. 1m)")
            seconds = 60
        dedup = Dedup(ctx.strings(raw, "by") or ["node_name", "container_id"], int(seconds))
    exceptions = parse_exceptions(ctx, doc)
    tests = _parse_tests(ctx, doc)
    if not rid or not condition:
        return None
    return Rule(
        id=rid,
        title=title,
        description=description,
        severity=severity,
        mitre=mitre,
        tags=ctx.strings(doc, "tags"),
        events=events,
        condition=condition,
        output=output,
        dedup=dedup,
        exceptions=exceptions,
        enabled=enabled,
        tests=tests,
        params=params,
        params_by_namespace=by_ns,
        policies=policies,
        tetragon_flags=flags,
        new_terms=new_terms,
        path=ctx.path,
        line=doc.line,
        key_lines=dict(doc.key_lines),
        condition_lines=(
            (sequence.steps[0].condition_lines[0], sequence.steps[-1].condition_lines[1])
            if sequence is not None
            else (located.content_line(doc, "condition"), located.end_line(doc, "condition"))
        ),
        sequence=sequence,
        threshold=threshold,
        first_seen=first_seen,
        references=ctx.strings(doc, "references"),
        false_positives=ctx.strings(doc, "false_positives"),
        sigma=dict(ctx.mapping(doc, "sigma") or {}),
    )
