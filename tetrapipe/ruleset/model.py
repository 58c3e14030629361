"""What a loaded rule set is made of: rules, lists, macros, tests, and what went wrong.

The YAML format is documented in ``rules/README.md``; these classes are its
parsed form. Every object remembers the file and line it came from, because
every message a rule author reads must point at the place to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tetrapipe.sqltext import sql_string
from tetrapipe.units import SEVERITIES, SEVERITY_RANK  # noqa: F401 - re-exported: the rule model's scale


@dataclass(frozen=True)
class Issue:
    """One problem found while loading or linting: ``path:line: reason``."""

    path: Path | None
    line: int | None
    reason: str
    rule_id: str | None = None
    level: str = "error"  # error | warning

    def where(self) -> str:
        if self.path is None:
            return "<rules>"
        return f"{self.path}:{self.line}" if self.line else str(self.path)

    def __str__(self) -> str:
        return f"{self.where()}: {self.reason}"


class HasIssues:
    """Errors and warnings of anything that collects ``issues`` (a rule set, a lint report)."""

    issues: list[Issue]

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "warning"]


@dataclass
class ListDef:
    """A named list of values (shell binaries, sensitive files), referenced as ``@name``."""

    name: str
    items: list[Any]
    path: Path
    line: int
    description: str = ""


@dataclass
class MacroDef:
    """A named SQL expression, referenced as ``@name`` inside conditions and outputs."""

    name: str
    sql: str
    path: Path
    line: int
    end_line: int
    description: str = ""


@dataclass
class ExceptionDef:
    """A named allow-list entry: an event matching every field given here does not alert.

    Each field lists values (exact, or glob with ``*``/``?``, or ``@list``);
    ``when`` is a free SQL condition for what the fields cannot say.
    """

    name: str
    fields: dict[str, list[Any]]
    when: str | None
    line: int


@dataclass
class Dedup:
    """One alert per distinct value of ``fields`` per tumbling window of ``window`` seconds."""

    fields: list[str]
    window_seconds: int


@dataclass
class Expect:
    """What a rule test expects: a number of alerts, the source lines they stand for, their fields."""

    count: int | None = None
    lines: list[int] | None = None
    alerts: list[dict[str, Any]] | None = None


@dataclass
class RuleTest:
    """Events in (a sample log or inline events), alerts expected."""

    name: str
    line: int
    log: str | None = None
    events: list[str] | None = None
    expect: Expect = field(default_factory=Expect)
    params: dict[str, Any] = field(default_factory=dict)
    params_by_namespace: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Compiled:
    """A rule turned into SQL over the event schema (all names and parameters expanded)."""

    condition: str  # the rule's condition, macros and params expanded
    exceptions: str | None  # OR of the exception entries, or None
    kinds: list[str]
    message: str  # SQL expression producing the alert message
    dedup_key: str  # SQL expression producing the dedup key
    term: str | None  # SQL expression hashing the new-terms fields, or None
    #: a sequence rule: each step's full predicate (kind prefilter, condition, not excepted), in order
    steps: list[str] | None = None
    #: a sequence rule's closing condition (full predicate), or None
    until: str | None = None
    #: a threshold rule: the alert needs this many events (or distinct values) per key and window; 0: any
    min_count: int = 0
    #: a distinct-count rule: the SQL expression whose distinct values are counted, or None
    distinct: str | None = None
    #: a first-seen rule: the hash of its key (whose first sighting starts the learning period), or None
    learn_key: str | None = None
    #: a first-seen rule's learning period per key, in microseconds (0: none)
    learn_us: int = 0

    def predicate(self) -> str:
        """The full boolean test: kind prefilter, condition, not excepted."""
        kinds = ", ".join(sql_string(k) for k in self.kinds)
        parts = [f"kind IN ({kinds})", f"({self.condition})"]
        if self.exceptions:
            parts.append(f"({self.exceptions}) IS NOT TRUE")
        return "\n  AND ".join(parts)


@dataclass
class Threshold:
    """N matching events, or N distinct values of ``distinct``, per key (``dedup.fields``) and window."""

    count: int
    distinct: str | None = None


@dataclass
class FirstSeen:
    """A ``value`` never seen before for a ``key``, once the key's first ``learn_seconds`` have passed.

    ``since``: learn from this time on (a re-learn: older events are not the baseline).
    """

    key: list[str]
    value: list[str]
    learn_seconds: int
    since: str | None = None


@dataclass
class Step:
    """One step of a sequence rule: an ordinary rule condition over one event.

    ``join`` ties a column of this step's event to a column of an earlier
    step's event (``{process_binary: [write, file_path]}``: the binary run is
    the file that step ``write`` wrote).
    """

    name: str
    events: list[str]
    condition: str
    line: int
    condition_lines: tuple[int, int]
    join: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: the step matches only the first event with these columns' values (its first sighting in the history)
    first_seen: list[str] = field(default_factory=list)


@dataclass
class Sequence:
    """Steps in order, joined ``by`` a key, all ``within`` a span; ``until`` closes the partial chains of a key.

    ``by``: ``lineage`` (every step's process is the first step's process or
    a descendant of it), ``container``, ``pod`` or ``workload``.
    ``tolerance_seconds``: how far a step's event may precede the previous
    step's (Tetragon's per-CPU buffers deliver events slightly out of order).
    """

    by: str
    within_seconds: float
    steps: list[Step]
    until: Step | None = None
    tolerance_seconds: float = 2.0
    line: int = 0


@dataclass
class Rule:
    id: str
    title: str
    description: str
    severity: str
    mitre: list[str]
    tags: list[str]
    events: list[str]
    condition: str
    output: str
    dedup: Dedup
    exceptions: list[ExceptionDef]
    enabled: bool
    tests: list[RuleTest]
    params: dict[str, Any]
    params_by_namespace: dict[str, dict[str, Any]]
    policies: list[str]
    tetragon_flags: list[str]
    new_terms: list[str] | None
    path: Path
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)
    condition_lines: tuple[int, int] = (0, 0)
    references: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)
    #: where an imported Sigma rule came from (its id, level, status, tags): traced back, re-imported
    sigma: dict[str, Any] = field(default_factory=dict)
    compiled: Compiled | None = None
    sequence: Sequence | None = None
    threshold: Threshold | None = None
    first_seen: FirstSeen | None = None

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


@dataclass
class RuleSet(HasIssues):
    """Every rule, list and macro loaded from one or more directories (or files)."""

    roots: list[Path]
    rules: list[Rule] = field(default_factory=list)
    lists: dict[str, ListDef] = field(default_factory=dict)
    macros: dict[str, MacroDef] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    overrides: list[Path] = field(default_factory=list)

    def enabled(self) -> list[Rule]:
        return [r for r in self.rules if r.enabled and r.compiled is not None]

    def get(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)
