"""Load a rules directory: rule files, library files (lists, macros), override files.

Kinds of YAML file, told apart by their top-level keys:

* a **rule** has ``id`` (one rule per file);
* a **library** has ``lists`` and/or ``macros``;
* an **override** has ``override: <rule id>`` and changes a shipped rule
  without editing it (enable/disable, severity, params, per-namespace params,
  more exceptions, dedup, a first-seen rule's ``since``), so upgrades do not
  fight local tuning.

Anything else, an unknown key (a typo), a bad value or a condition that does
not compile is an :class:`~tetrapipe.ruleset.model.Issue` with file and line.
A rule with errors is not loaded; the others are.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tetrapipe.config import located
from tetrapipe.ruleset.compiler import (
    CompileError,
    Scope,
    Validator,
    compile_rule,
    expand,
    prime_rules,
    references,
)
from tetrapipe.ruleset.kinds import parse_first_seen_override
from tetrapipe.ruleset.model import (
    SEVERITIES,
    Issue,
    ListDef,
    MacroDef,
    Rule,
    RuleSet,
)
from tetrapipe.ruleset.parse import LIBRARY_KEYS, OVERRIDE_KEYS, FileCheck, parse_dedup, parse_exceptions, parse_rule


def rule_files(root: Path) -> list[Path]:
    """YAML files under ``root`` (or ``root`` itself), sorted, hidden ones skipped."""
    if root.is_file():
        return [root]
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.is_file() and p.suffix in (".yaml", ".yml"):
            out.append(p)
    return out


def _parse_library(ctx: FileCheck, doc: located.Located, rs: RuleSet, where: dict[str, tuple[Path, int]]) -> None:
    ctx.keys(doc, LIBRARY_KEYS, "a library file")
    for section in ("lists", "macros"):
        block = ctx.mapping(doc, section)
        if block is None:
            continue
        for name, value in block.items():
            line = block.line_of(name)
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                ctx.error(line, f"{section[:-1]} name {name!r}: use letters, digits and _")
                continue
            if name in where:
                p, ln = where[name]
                ctx.error(line, f"@{name} is already defined at {p}:{ln}")
                continue
            description = ""
            if isinstance(value, dict):
                ctx.keys(
                    value,
                    {"items", "description"} if section == "lists" else {"condition", "description"},
                    f"{section[:-1]} {name}",
                )
                description = str(value.get("description", ""))
                node_owner, node_key = value, ("items" if section == "lists" else "condition")
                value = value.get(node_key)
            else:
                node_owner, node_key = block, name
            if section == "lists":
                if not isinstance(value, list) or not value or not all(isinstance(v, str | int | float) for v in value):
                    ctx.error(line, f"list {name} must be a non-empty list of strings or numbers")
                    continue
                if len({type(v) for v in value}) > 1 and not all(isinstance(v, int | float) for v in value):
                    ctx.error(line, f"list {name} mixes strings and numbers")
                    continue
                rs.lists[name] = ListDef(name, list(value), ctx.path, line, description)
            else:
                if not isinstance(value, str) or not value.strip():
                    ctx.error(line, f"macro {name} must be a SQL expression (string)")
                    continue
                rs.macros[name] = MacroDef(
                    name,
                    value,
                    ctx.path,
                    located.content_line(node_owner, node_key),
                    located.end_line(node_owner, node_key),
                    description,
                )
            where[name] = (ctx.path, line)


def _apply_override(ctx: FileCheck, doc: located.Located, rs: RuleSet, raw: dict[str, located.Located]) -> None:
    ctx.keys(doc, OVERRIDE_KEYS, "an override")
    rid = doc.get("override")
    rule = rs.get(rid) if isinstance(rid, str) else None
    if rule is None:
        known = [r.id for r in rs.rules]
        hint = difflib.get_close_matches(str(rid), known, n=1)
        ctx.error(
            doc.line_of("override"),
            f"override of unknown rule {rid!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""),
        )
        return
    ctx.rule_id = rule.id
    if "enabled" in doc:
        if not isinstance(doc["enabled"], bool):
            ctx.error(doc.line_of("enabled"), "enabled must be true or false")
        else:
            rule.enabled = doc["enabled"]
    if "severity" in doc:
        sev = str(doc["severity"]).lower()
        if sev not in SEVERITIES:
            ctx.error(doc.line_of("severity"), f"severity {sev!r} is not one of {', '.join(SEVERITIES)}")
        else:
            rule.severity = sev
    if "tags" in doc:
        rule.tags = sorted(set(rule.tags) | set(ctx.strings(doc, "tags")))
    params = ctx.mapping(doc, "params") or {}
    for name, value in params.items():
        if name not in rule.params:
            ctx.error(
                params.line_of(name),
                f"rule {rule.id} has no parameter {name} (it has: {', '.join(rule.params) or 'none'})",
            )
        else:
            rule.params[name] = value
    by_ns = ctx.mapping(doc, "params_by_namespace") or {}
    for ns, values in by_ns.items():
        if not isinstance(values, dict):
            ctx.error(by_ns.line_of(ns), f"params_by_namespace.{ns} must map parameter names to values")
            continue
        for name in values:
            if name not in rule.params:
                ctx.error(values.line_of(name), f"rule {rule.id} has no parameter {name}")
        rule.params_by_namespace.setdefault(str(ns), {}).update(values)
    if "dedup" in doc:
        rule.dedup = parse_dedup(ctx, doc)
    rule.exceptions = rule.exceptions + parse_exceptions(ctx, doc)
    parse_first_seen_override(ctx, doc, rule.first_seen, rule.id)
    rs.overrides.append(ctx.path)


def load_ruleset(paths: Iterable[str | Path], *, compile_rules: bool = True) -> RuleSet:
    """Load every rule, list, macro and override under ``paths``; problems are in ``.issues``."""
    roots = [Path(p) for p in paths]
    rs = RuleSet(roots=roots)
    docs: list[tuple[Path, Any, list[str]]] = []
    for root in roots:
        if not root.exists():
            rs.issues.append(Issue(root, None, "no such file or directory"))
            continue
        for path in rule_files(root):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                rs.issues.append(Issue(path, None, f"cannot read: {exc}"))
                continue
            try:
                doc = located.load_yaml(path, text)
            except located.YamlError as exc:
                rs.issues.append(Issue(exc.path, exc.line, exc.reason))
                continue
            docs.append((path, doc, text.splitlines()))
    where: dict[str, tuple[Path, int]] = {}
    overrides: list[tuple[Path, located.Located]] = []
    rule_docs: dict[str, located.Located] = {}
    seen_ids: dict[str, Rule] = {}
    file_lines: dict[Path, list[str]] = {}
    for path, doc, text_lines in docs:
        file_lines[path] = text_lines
        if doc is None:
            rs.issues.append(
                Issue(
                    path, 1, "empty file (a rule needs id, title, severity, event, condition, output)", level="warning"
                )
            )
            continue
        if not isinstance(doc, dict):
            rs.issues.append(Issue(path, 1, "a rules file must be a YAML mapping (a rule, a library or an override)"))
            continue
        ctx = FileCheck(path, rs.issues)
        if "id" in doc:
            rule = parse_rule(ctx, doc, text_lines)
            if rule is None or ctx.failed:
                continue
            if rule.id in seen_ids:
                other = seen_ids[rule.id]
                rs.issues.append(
                    Issue(
                        path,
                        doc.line_of("id"),
                        f"duplicate rule id {rule.id!r} (also {other.path}:{other.line_of('id')})",
                        rule.id,
                    )
                )
                continue
            seen_ids[rule.id] = rule
            rule_docs[rule.id] = doc
            rs.rules.append(rule)
        elif "override" in doc:
            overrides.append((path, doc))
        elif "lists" in doc or "macros" in doc:
            _parse_library(ctx, doc, rs, where)
        else:
            rs.issues.append(
                Issue(
                    path,
                    doc.line,
                    "not a rule (no id:), a library (lists:/macros:) or an override (override: <rule id>)",
                )
            )
    for path, doc in overrides:
        _apply_override(FileCheck(path, rs.issues), doc, rs, rule_docs)
    if compile_rules:
        compile_all(rs, file_lines)
    return rs


def library_hint(roots: list[Path]) -> Callable[[str, bool], str]:
    """What an unknown ``@name`` error adds: where lists and macros are looked for, and where the shipped ones are.

    A rule copied out of the shipped rules into a directory of one's own
    (``rules test my-rules/``) loses the shipped ``lib/``; the bare "unknown
    @in_container" left the user guessing where it should come from. When a
    close name was suggested (a typo, most likely) only the shipped definition
    of the very name is added, if there is one.
    """

    def hint(name: str, suggested: bool) -> str:
        where = ", ".join(str(r) for r in roots) or "the rules loaded"
        parts = (
            []
            if suggested
            else [
                f"lists and macros are read from the library files (top-level lists: or macros:, lib/ in the shipped rules) under {where}"
            ]
        )
        shipped = _shipped_definition(name, roots)
        if shipped is not None:
            target = roots[0] if roots and roots[0].is_dir() else "your rules directory"
            parts.append(f"the shipped rules define @{name} in {shipped}: copy that lib/ into {target}")
        return "; ".join(parts)

    return hint


def _shipped_definition(name: str, roots: list[Path]) -> Path | None:
    """The shipped library file defining ``@name``, unless the shipped rules are among ``roots``."""
    from tetrapipe.ruleset.locate import bundled_dir

    shipped = bundled_dir("tetrapipe.bundled_rules", "rules")
    if shipped is None or any(shipped.resolve() == r.resolve() for r in roots):
        return None
    for path in rule_files(shipped):
        try:
            doc = located.load_yaml(path)
        except (OSError, UnicodeDecodeError, located.YamlError):
            continue
        if isinstance(doc, dict) and any(isinstance(doc.get(s), dict) and name in doc[s] for s in ("lists", "macros")):
            return path
    return None


def compile_all(rs: RuleSet, file_lines: dict[Path, list[str]] | None = None) -> None:
    """Compile macros (alone, to blame their own line) and then every rule."""
    file_lines = file_lines or {}
    validator = Validator()
    try:
        hint = library_hint(rs.roots)
        bad_macros = _check_macros(rs, validator, hint)
        scopes = [Scope(rs.lists, rs.macros, rule.params, rule.params_by_namespace, hint) for rule in rs.rules]
        prime_rules(list(zip(rs.rules, scopes, strict=True)), validator)  # a few statements bind them all
        kept: list[Rule] = []
        for rule, scope in zip(rs.rules, scopes, strict=True):
            lines = file_lines.get(rule.path)
            if lines is None:
                lines = rule.path.read_text(encoding="utf-8").splitlines() if rule.path.exists() else []
            names, _ = references(rule.condition)
            if names & bad_macros:
                rs.issues.append(
                    Issue(
                        rule.path,
                        rule.condition_lines[0],
                        f"uses broken macro(s) {', '.join('@' + n for n in sorted(names & bad_macros))}",
                        rule.id,
                    )
                )
                continue
            problems = compile_rule(rule, scope, validator, lines)
            rs.issues.extend(problems)
            if rule.compiled is not None:
                kept.append(rule)
        rs.rules = kept
    finally:
        validator.close()


def _check_macros(rs: RuleSet, validator: Validator, hint: Callable[[str, bool], str] | None = None) -> set[str]:
    """Each macro must compile on its own (params aside); the broken ones are reported at their line."""
    bad: set[str] = set()
    for macro in rs.macros.values():
        _, params = references(macro.sql)
        scope = Scope(rs.lists, rs.macros, {p: 0 for p in params}, {}, hint)
        try:
            sql = expand(macro.sql, scope, ())
            if params:
                continue  # typed by the rule that gives the parameter
            validator.type_of(sql)
        except CompileError as exc:
            from tetrapipe.ruleset.compiler import locate

            lines = macro.path.read_text(encoding="utf-8").splitlines()
            path = exc.path or macro.path
            line = exc.line or locate(exc.token, lines, macro.line, macro.end_line)
            rs.issues.append(Issue(path, line, f"macro @{macro.name}: {exc.reason}"))
            bad.add(macro.name)
    return bad
