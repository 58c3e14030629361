"""Rule text -> DuckDB SQL, and the checks that make a bad rule fail at load.

A condition is a DuckDB boolean expression over the event schema, with two
additions that are plain text substitutions (so the expanded SQL can be pasted
into ``tetrapipe query`` unchanged):

* ``@name``: a list from a library file becomes a list literal
  (``process_name IN @shell_binaries``), a macro becomes its parenthesized
  expression (``@in_container AND ...``). Not expanded inside quotes.
* ``${name}``: a rule parameter. Durations (``5m``, ``90s``, ``1h``) become
  INTERVALs; per-namespace values become a ``CASE namespace ...``.

Validation binds each expression against an empty table of the event schema:
an unknown column, a wrong function or a non-boolean condition is an error
with the file and line of the text at fault.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from tetrapipe.ruleset.model import Compiled, ExceptionDef, Issue, ListDef, MacroDef, Rule
from tetrapipe.schema import EVENT_COLUMNS, EVENT_SCHEMA
from tetrapipe.sqltext import sql_string
from tetrapipe.units import duration_seconds, is_duration_text

COLUMNS = [c.name for c in EVENT_COLUMNS]
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: exception field -> the event column it tests
EXCEPTION_FIELDS = {
    "images": "image",
    "namespaces": "namespace",
    "pods": "pod",
    "containers": "container_name",
    "workloads": "workload",
    "binaries": "process_binary",
    "process_names": "process_name",
    "parent_binaries": "parent_binary",
    "ancestor_binaries": "ancestor_binaries",
    "nodes": "node_name",
}


class CompileError(Exception):
    """An expression that cannot be compiled; ``token`` is the text to point at, when known."""

    def __init__(
        self, reason: str, token: str | None = None, line: int | None = None, path: Path | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.token = token
        self.line = line
        self.path = path


def sql_literal(value: Any) -> str:
    """A Python/YAML value as a DuckDB literal: strings quoted, lists as list literals."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return sql_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(sql_literal(v) for v in value) + "]"
    raise CompileError(f"cannot use {type(value).__name__} {value!r} as a SQL value")


def param_literal(value: Any) -> str:
    """A parameter value: durations become INTERVALs, the rest plain literals."""
    if is_duration_text(value):
        seconds = duration_seconds(value)
        return f"INTERVAL '{int(seconds * 1_000_000)} microseconds'"
    return sql_literal(value)


@dataclass
class Scope:
    """What names an expression can use."""

    lists: dict[str, ListDef]
    macros: dict[str, MacroDef]
    params: dict[str, Any]
    params_by_namespace: dict[str, dict[str, Any]]
    #: (name, a close name was suggested) -> where lists and macros are looked for, said with an unknown ``@name``
    library_hint: Callable[[str, bool], str] | None = None


#: a quoted string or identifier (a doubled quote inside it is one; unterminated: to the end) or a -- comment
_NOT_CODE = re.compile(r"""'[^']*(?:''[^']*)*'?|"[^"]*(?:""[^"]*)*"?|--[^\n]*""")


def scan_sql(text: str) -> Iterator[tuple[str, str]]:
    """Yield (kind, chunk) where kind is 'code', 'string' or 'comment'; keeps text intact.

    A regular expression finds the strings and comments: a loop over the
    characters in Python took a fifth of loading 150 rules (SigmaHQ's are
    long lists of quoted patterns, scanned by every step of the compiler).
    """
    start = 0
    for m in _NOT_CODE.finditer(text):
        if m.start() > start:
            yield "code", text[start : m.start()]
        chunk = m.group()
        yield ("comment" if chunk[0] == "-" else "string"), chunk
        start = m.end()
    if start < len(text):
        yield "code", text[start:]


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def sql_words(text: str) -> set[str]:
    """The identifiers ``text`` names outside strings and comments ("quoted" ones too), lower-cased.

    What :func:`scan_sql`'s code and quoted chunks hold, in one substitution:
    the column scans of the detector read every rule's text, 100 KB for one
    SigmaHQ rule, and a Python loop over its chunks cost ~0.5 s.
    """
    code = _NOT_CODE.sub(lambda m: m.group() if m.group()[0] == '"' else " ", text)
    return {w.lower() for w in _IDENTIFIER.findall(code)}


_REF = re.compile(r"(?<![<@\w])@([A-Za-z_][A-Za-z0-9_]*)|\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")


def references(text: str) -> tuple[set[str], set[str]]:
    """The ``@names`` and ``${params}`` an expression uses (outside strings and comments)."""
    names: set[str] = set()
    params: set[str] = set()
    for kind, chunk in scan_sql(text):
        if kind != "code":
            continue
        for m in _REF.finditer(chunk):
            if m.group(1):
                names.add(m.group(1))
            else:
                params.add(m.group(2))
    return names, params


def expand(text: str, scope: Scope, _stack: tuple[str, ...] = ()) -> str:
    """Replace ``@name`` and ``${param}`` in ``text``; comments are dropped."""
    out: list[str] = []
    for kind, chunk in scan_sql(text):
        if kind == "comment":
            continue
        if kind == "string":
            out.append(chunk)
            continue

        def sub(m: re.Match) -> str:
            if m.group(1):
                name = m.group(1)
                if name in scope.lists:
                    return sql_literal(scope.lists[name].items)
                if name in scope.macros:
                    if name in _stack:
                        raise CompileError(
                            f"macro @{name} refers to itself ({' -> '.join((*_stack, name))})", token="@" + name
                        )
                    macro = scope.macros[name]
                    try:
                        body = expand(macro.sql, scope, (*_stack, name))
                    except CompileError as exc:
                        if exc.path is None:
                            exc.path, exc.line = macro.path, macro.line
                        raise
                    return f"({body})"
                known = list(scope.lists) + list(scope.macros)
                hint = difflib.get_close_matches(name, known, n=1)
                where = scope.library_hint(name, bool(hint)) if scope.library_hint is not None else ""
                raise CompileError(
                    f"unknown list or macro @{name}"
                    + (f" (did you mean @{hint[0]}?)" if hint else "")
                    + (f": {where}" if where else ""),
                    token="@" + name,
                )
            name = m.group(2)
            if name not in scope.params:
                raise CompileError(f"unknown parameter ${{{name}}}: add it under params:", token="${" + name)
            default = param_literal(scope.params[name])
            cases = [(ns, values[name]) for ns, values in scope.params_by_namespace.items() if name in values]
            if not cases:
                return default
            whens = " ".join(f"WHEN {sql_literal(ns)} THEN {param_literal(v)}" for ns, v in cases)
            return f"(CASE namespace {whens} ELSE {default} END)"

        out.append(_REF.sub(sub, chunk))
    return "".join(out)


def _like_pattern(glob: str) -> str:
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _values(values: list[Any], lists: dict[str, ListDef]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if isinstance(v, str) and v.startswith("@") and _NAME.fullmatch(v[1:]):
            if v[1:] not in lists:
                raise CompileError(f"unknown list {v}", token=v)
            out.extend(lists[v[1:]].items)
        else:
            out.append(v)
    return out


def exception_sql(exc: ExceptionDef, scope: Scope) -> str:
    """An exception entry as SQL: every field must match one of its values."""
    parts: list[str] = []
    for key, values in exc.fields.items():
        column = EXCEPTION_FIELDS[key]
        values = _values(values, scope.lists)
        exact = [v for v in values if not (isinstance(v, str) and ("*" in v or "?" in v))]
        globs = [v for v in values if isinstance(v, str) and ("*" in v or "?" in v)]
        if column == "ancestor_binaries":
            tests = []
            if exact:
                tests.append(f"list_has_any(ancestor_binaries, {sql_literal(exact)})")
            for g in globs:
                tests.append(
                    f"len(list_filter(ancestor_binaries, lambda a: a LIKE {sql_literal(_like_pattern(g))} "
                    "ESCAPE '\\')) > 0"
                )
        else:
            tests = [f"{column} IN {sql_literal(exact)}"] if exact else []
            tests += [f"{column} LIKE {sql_literal(_like_pattern(g))} ESCAPE '\\'" for g in globs]
        if not tests:
            tests = ["FALSE"]
        parts.append("(" + " OR ".join(tests) + ")")
    if exc.when:
        parts.append(f"({expand(exc.when, scope)})")
    return " AND ".join(parts) if parts else "FALSE"


_PLACEHOLDER = re.compile(r"\{(@?[A-Za-z_][A-Za-z0-9_]*)\}")


def message_sql(template: str, scope: Scope) -> str:
    """``output`` as a SQL string expression: ``{column}`` and ``{@macro}`` filled, NULL shown as nothing."""
    pieces: list[str] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        if m.start() > pos:
            pieces.append(sql_literal(template[pos : m.start()]))
        name = m.group(1)
        if name.startswith("@"):
            expr = expand(name, scope)
        else:
            if name not in COLUMNS:
                hint = difflib.get_close_matches(name, COLUMNS, n=1)
                raise CompileError(
                    f"output names unknown column {{{name}}}" + (f" (did you mean {hint[0]}?)" if hint else ""),
                    token="{" + name + "}",
                )
            expr = name
        pieces.append(f"coalesce(CAST({expr} AS VARCHAR), '')")
        pos = m.end()
    if pos < len(template):
        pieces.append(sql_literal(template[pos:]))
    if not pieces:
        return "''"
    # runs of spaces left by empty fields (``{arguments}`` of a command without any) are squeezed
    return "regexp_replace(trim(concat(" + ", ".join(pieces) + ")), '\\s+', ' ', 'g')"


def key_sql(fields: list[str]) -> str:
    if not fields:
        return "''"
    return "concat_ws('|', " + ", ".join(f"coalesce(CAST({f} AS VARCHAR), '')" for f in fields) + ")"


def term_sql(fields: list[str]) -> str:
    return "hash(" + ", ".join(fields) + ")"


class Validator:
    """Binds expressions against an empty event table in a private DuckDB connection."""

    def __init__(self) -> None:
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.register("_empty_events", EVENT_SCHEMA.empty_table())
        self.con.execute("CREATE TABLE events AS SELECT * FROM _empty_events")
        self.con.unregister("_empty_events")
        #: what :meth:`prime` learnt: the type of each expression bound, the conditions that filter
        self._types: dict[str, str] = {}
        self._filters: set[str] = set()

    def close(self) -> None:
        self.con.close()

    def prime(self, exprs: list[str], filters: list[str]) -> None:
        """Bind many expressions (and run ``filters`` as WHERE conditions) in a few statements, for later checks.

        A statement costs ~1 ms besides binding its text, and each rule took
        three: most of loading 150 rules. Here 64 expressions share one
        ``DESCRIBE SELECT (e0) AS _tp_v0, ... FROM events`` for their types, and the
        boolean ``filters`` of them one ``SELECT count(*) FROM events WHERE (f0)
        AND (f1) ...`` (bound and run on no rows, as :meth:`check_filter` does
        with one). A statement that fails teaches nothing: its expressions are
        checked one by one as before, and report their own errors. An
        expression that names ``_tp_v`` could read another one's alias, one
        with a subquery is refused by :meth:`type_of`: neither is primed.
        """
        todo = [e for e in dict.fromkeys([*exprs, *filters]) if e not in self._types and not _unprimable(e)]
        for start in range(0, len(todo), 64):
            chunk = todo[start : start + 64]
            try:  # DESCRIBE: bound in one call (a relation, con.sql, parses the text twice and tokenizes it)
                described = self.con.execute(
                    f"DESCRIBE SELECT {', '.join(f'({e}) AS _tp_v{i}' for i, e in enumerate(chunk))} FROM events"
                ).fetchall()
            except duckdb.Error:
                continue
            if len(described) == len(chunk):  # a star (COLUMNS(*)) makes more columns: left to one by one
                self._types.update(zip(chunk, (row[1] for row in described), strict=True))
        wanted = [f for f in dict.fromkeys(filters) if self._types.get(f) == "BOOLEAN" and f not in self._filters]
        for start in range(0, len(wanted), 64):
            chunk = wanted[start : start + 64]
            try:
                self.con.execute(
                    f"SELECT count(*) FROM events WHERE {' AND '.join(f'({f})' for f in chunk)}"
                ).fetchall()
            except duckdb.Error:
                continue
            self._filters.update(chunk)

    def type_of(self, expr: str) -> str:
        """The DuckDB type of ``expr`` over an event; raises CompileError with the offending token.

        A primed expression's type first: :meth:`prime` took none with a subquery (see :func:`_unprimable`).
        """
        known = self._types.get(expr)
        if known is not None:
            return known
        if re.search(r"(?i)\bselect\b", _code(expr)):
            raise CompileError(
                "a condition is an expression over one event: subqueries (SELECT) are not allowed", token="select"
            )
        try:
            rel = self.con.sql(f"SELECT ({expr}) AS v FROM events")
            return str(rel.types[0])
        except duckdb.Error as exc:
            raise self._explain(exc) from None

    def check_filter(self, expr: str) -> None:
        """Aggregates and window functions cannot run per event: the WHERE clause rejects them."""
        if expr in self._filters:
            return
        try:  # executed on the cursor: a relation (con.sql) would bind it once more to run it
            self.con.execute(f"SELECT count(*) FROM events WHERE ({expr})").fetchall()
        except duckdb.Error as exc:
            raise self._explain(exc) from None

    @staticmethod
    def _explain(exc: duckdb.Error) -> CompileError:
        text = str(exc)
        first = text.splitlines()[0] if text else type(exc).__name__
        m = re.search(r'Referenced column "([^"]+)" not found', text)
        if m:
            name = m.group(1)
            hint = difflib.get_close_matches(name, COLUMNS, n=1)
            return CompileError(
                f"unknown column {name}"
                + (f" (did you mean {hint[0]}?)" if hint else " (tetrapipe query --schema lists the columns)"),
                token=name,
            )
        m = re.search(r"at or near \"([^\"]+)\"", text)
        if m:
            return CompileError(f"SQL syntax error at or near {m.group(1)!r}", token=m.group(1))
        m = re.search(r"function (\w+)\(|name and argument types '(\w+)\(", text)
        token = (m.group(1) or m.group(2)) if m else None
        reason = first.split(": ", 1)[1] if ": " in first else first
        return CompileError(reason, token=token)


def _code(text: str, identifiers: bool = False) -> str:
    """:func:`scan_sql`'s code chunks of ``text`` joined (``identifiers``: its "quoted" names too), by one substitution."""
    return _NOT_CODE.sub(lambda m: m.group() if identifiers and m.group()[0] == '"' else "", text)


def _unprimable(expr: str) -> bool:
    """Left to one-by-one binding: a subquery (refused by type_of) or a name like :meth:`Validator.prime`'s aliases."""
    code = _code(expr, identifiers=True)
    return "_tp_v" in code.lower() or re.search(r"(?i)\bselect\b", code) is not None


def rule_condition(rule: Rule, scope: Scope) -> str:
    """The SQL of a rule's condition: macros, lists and params expanded; a re-learnt first-seen rule's start."""
    condition = expand(rule.condition, scope)
    if rule.first_seen is not None and rule.first_seen.since:  # a re-learn: the history before is not the baseline
        condition = f"({condition}) AND time >= TIMESTAMP {sql_literal(rule.first_seen.since)}"
    return condition


def prime_rules(rules: list[tuple[Rule, Scope]], validator: Validator) -> None:
    """Bind what :func:`compile_rule` will bind of ``rules`` in a few statements (see :meth:`Validator.prime`).

    Whatever does not expand here is skipped: :func:`compile_rule` finds and reports it.
    """
    exprs: list[str] = []
    conditions: list[str] = []
    for rule, scope in _with_steps(rules):
        try:
            conditions.append(rule_condition(rule, scope))
            conditions += [exception_sql(ex, scope) for ex in rule.exceptions]  # filters too
            exprs.append(message_sql(rule.output, scope))
        except CompileError:
            continue
    validator.prime(exprs, conditions)


def _with_steps(rules: list[tuple[Rule, Scope]]) -> Iterator[tuple[Rule, Scope]]:
    """The rules, a sequence rule as its steps: each is compiled as a rule of the step's condition (sequence.py)."""
    for rule, scope in rules:
        seq = rule.sequence
        if seq is None:
            yield rule, scope
            continue
        for step in [*seq.steps, *([seq.until] if seq.until else [])]:
            yield dataclasses.replace(rule, sequence=None, condition=step.condition, output=""), scope


def locate(token: str | None, lines: list[str], first: int, last: int) -> int:
    """The 1-based line in [first, last] whose text contains ``token`` (first line if not found)."""
    if token:
        pattern = re.compile(
            r"(?<![\w@$])" + re.escape(token) + (r"(?!\w)" if token[-1:].isalnum() else ""), re.IGNORECASE
        )
        for no in range(first, min(last, len(lines)) + 1):
            if pattern.search(lines[no - 1]):
                return no
    return first


def compile_rule(rule: Rule, scope: Scope, validator: Validator, file_lines: list[str]) -> list[Issue]:
    """Compile ``rule`` into ``rule.compiled``; return the problems, each with its line.

    Long because each step (params, condition, exceptions, output, dedup) reports
    through the two closures above it, which know the rule's file and the
    condition's lines; split apart, every step would take all of that again.
    """
    if rule.sequence is not None:  # each step is compiled like a rule of its own
        from tetrapipe.ruleset.sequence import compile_sequence

        return compile_sequence(rule, scope, validator, file_lines)
    issues: list[Issue] = []

    def err(reason: str, line: int, path: Path | None = None) -> None:
        issues.append(Issue(path or rule.path, line, reason, rule.id))

    first, last = rule.condition_lines

    def blame(exc: CompileError, default_line: int, lo: int, hi: int) -> None:
        if exc.path is not None:  # the fault is inside a macro
            err(f"{exc.reason} (in a macro used by rule {rule.id})", exc.line or 1, exc.path)
            return
        err(exc.reason, locate(exc.token, file_lines, lo, hi) if exc.token else default_line)

    try:
        condition = rule_condition(rule, scope)
    except CompileError as exc:
        blame(exc, first, first, last)
        return issues
    try:
        typ = validator.type_of(condition)
    except CompileError as exc:
        token = exc.token
        macro_hit = _blame_macro(token, rule.condition, scope) if token else None
        if macro_hit is not None:
            err(
                f"{exc.reason} (in macro @{macro_hit.name}, used by rule {rule.id})",
                locate(token, _file_lines(macro_hit.path), macro_hit.line, macro_hit.end_line),
                macro_hit.path,
            )
        else:
            blame(exc, first, first, last)
        return issues
    if typ != "BOOLEAN":
        err(f"condition is {typ}, not a boolean expression (compare it with something, e.g. ... = 'x')", first)
        return issues
    try:
        validator.check_filter(condition)
    except CompileError as exc:
        blame(exc, first, first, last)
        return issues

    exc_parts: list[str] = []
    for ex in rule.exceptions:
        try:
            sql = exception_sql(ex, scope)
            t = validator.type_of(sql)
            if t != "BOOLEAN":
                raise CompileError(f"exception {ex.name} is {t}, not a boolean expression")
            validator.check_filter(sql)  # tested per event, as the condition: no aggregate, no window
            exc_parts.append(sql)
        except CompileError as exc:
            err(f"exception {ex.name}: {exc.reason}", ex.line)
    try:
        message = message_sql(rule.output, scope)
        validator.type_of(message)
    except CompileError as exc:
        err(exc.reason, rule.line_of("output"))
        message = "''"

    def fields(names: list[str], key: str) -> list[str]:
        """Dedup / new-terms fields: columns, or ``@macro`` expressions."""
        out = []
        for fld in names:
            if fld.startswith("@"):
                try:
                    expr = expand(fld, scope)
                    validator.type_of(expr)
                    out.append(expr)
                except CompileError as exc:
                    err(f"{key}: {exc.reason}", locate(fld, file_lines, rule.line_of(key), rule.line_of(key) + 6))
            elif fld not in COLUMNS:
                hint = difflib.get_close_matches(fld, COLUMNS, n=1)
                err(
                    f"{key} names unknown column {fld}" + (f" (did you mean {hint[0]}?)" if hint else ""),
                    locate(fld, file_lines, rule.line_of(key), rule.line_of(key) + 6),
                )
            else:
                out.append(fld)
        return out

    dedup_exprs = fields(rule.dedup.fields, "threshold" if rule.threshold else "dedup")
    distinct = fields([rule.threshold.distinct], "threshold") if rule.threshold and rule.threshold.distinct else []
    learn_key = fields(rule.first_seen.key, "first_seen") if rule.first_seen and rule.first_seen.key else []
    term_exprs = fields(rule.new_terms, "new_terms") if rule.new_terms else []
    if issues:
        return issues
    rule.compiled = Compiled(
        condition=condition,
        exceptions=" OR ".join(f"({p})" for p in exc_parts) if exc_parts else None,
        kinds=list(rule.events),
        message=message,
        dedup_key=key_sql(dedup_exprs),
        term=term_sql(term_exprs) if term_exprs else None,
        min_count=rule.threshold.count if rule.threshold else 0,
        distinct=distinct[0] if distinct else None,
        learn_key=(term_sql(learn_key) if learn_key else "0") if rule.first_seen else None,
        learn_us=rule.first_seen.learn_seconds * 1_000_000 if rule.first_seen else 0,
    )
    return issues


def _file_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []


def _blame_macro(token: str, text: str, scope: Scope, _seen: frozenset[str] = frozenset()) -> MacroDef | None:
    """The macro (used by ``text``, directly or not) whose own text holds ``token``, if the rule's does not."""
    if re.search(r"(?<![\w@$])" + re.escape(token) + r"(?!\w)", text, re.IGNORECASE):
        return None
    names, _ = references(text)
    for name in sorted(names):
        macro = scope.macros.get(name)
        if macro is None or name in _seen:
            continue
        if re.search(r"(?<![\w@$])" + re.escape(token) + r"(?!\w)", macro.sql, re.IGNORECASE):
            inner = _blame_macro(token, macro.sql, scope, _seen | {name})
            return inner or macro
        inner = _blame_macro(token, macro.sql, scope, _seen | {name})
        if inner is not None:
            return inner
    return None
