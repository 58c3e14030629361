"""Sigma rule files in, tetrapipe rule documents out: what ``tetrapipe rules import-sigma`` runs.

pySigma reads the files (one rule, or a collection with ``action: global``)
and applies the Tetragon pipeline; :class:`~tetrapipe.ruleset.sigma.backend.TetrapipeBackend`
writes the condition. This module decides which rules Tetragon can see at all
(log source), keeps the Sigma metadata a rule can be traced back by (``id``,
title, level, tags, references, status) and fills in the rest of a tetrapipe
rule: events, required TracingPolicy, output, dedup.

Every rule that cannot be converted faithfully is refused with its file and
the reason; rules for other platforms are counted, not refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule, SigmaRuleBase

from tetrapipe.ruleset.sigma.backend import TetrapipeBackend
from tetrapipe.ruleset.sigma.pipeline import LOGSOURCES

_LEVELS = {"informational": "info", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
_MITRE_TAG = re.compile(r"^attack\.(t\d{4}(?:\.\d{3})?)$", re.I)


class SigmaRefused(Exception):
    """A Sigma rule tetrapipe cannot convert faithfully; the message says why."""


class NotForLinux(SigmaRefused):
    """A rule for another platform (Windows, macOS, a cloud audit log): skipped, not an error."""


@dataclass
class Converted:
    source: Path
    rule_id: str
    document: dict[str, Any]
    #: the parsed, field-mapped Sigma rule it came from (for the generated firing test); not written
    sigma_rule: SigmaRule | None = field(default=None, compare=False, repr=False)


@dataclass
class ImportReport:
    converted: list[Converted] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)
    other_platforms: dict[str, int] = field(default_factory=dict)


def rule_id_for(title: str, sigma_id: str | None) -> str:
    """``sigma-<title slug>-<first group of the Sigma id>``: readable, and stable across re-imports.

    Both parts are reduced to ``[a-z0-9-]``: whatever a file says (``../../etc/x``,
    a NUL) must not reach a file name or a rule id the loader refuses.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:56].rstrip("-") or "rule"
    first = re.sub(r"[^a-z0-9]+", "", sigma_id.split("-")[0].lower())[:12] if sigma_id else ""
    return f"sigma-{slug}" + (f"-{first}" if first else "")


def _logsource(rule: SigmaRule) -> str:
    """The supported category of the rule, or why not (``NotForLinux`` for other platforms)."""
    ls = rule.logsource
    product = str(ls.product or "").lower()
    category = str(ls.category or "").lower()
    if product and product != "linux":
        raise NotForLinux(product)
    if ls.service:
        raise SigmaRefused(
            f"logsource service {ls.service!r}: Tetragon does not see service logs "
            f"(supported categories: {', '.join(LOGSOURCES)})"
        )
    if category not in LOGSOURCES:
        if not product:
            raise NotForLinux(category or "no product")
        if not category:
            raise SigmaRefused(
                "logsource names no category: a rule over Linux log files (keywords), which Tetragon does not see"
            )
        raise SigmaRefused(
            f"logsource category {category or '(none)'!r} is not one Tetragon observes "
            f"(supported: {', '.join(LOGSOURCES)})"
        )
    return category


def _pretty(sql: str) -> str:
    """One clause per line at the two outer levels, so a reviewer reads the rule file, not a wall of SQL."""
    out: list[str] = []
    depth, quoted, i = 0, False, 0
    while i < len(sql):
        ch = sql[i]
        if ch == "'":
            quoted = not quoted  # '' (an escaped quote) flips twice
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth <= 2:
            for op in (" AND ", " OR "):
                if sql.startswith(op, i):
                    out.append("\n" + "  " * max(depth - 1, 0) + op.strip() + " ")
                    i += len(op)
                    break
            else:
                out.append(ch)
                i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def metadata(rule: SigmaRuleBase, source: Path) -> dict[str, Any]:
    """What every converted rule carries from its Sigma rule, base or correlation alike.

    ``id`` and title (so it can be traced back and re-imported), severity from
    ``level``, MITRE ids from ``attack.t*`` tags, references, false positives,
    and the ``sigma:`` block; ``category`` is added by the caller that knows it.
    """
    title = str(rule.title or source.stem)
    sigma_id = str(rule.id) if rule.id else None
    tags = [str(t) for t in rule.tags]
    description = str(rule.description or title).strip()
    authors = rule.author if isinstance(rule.author, str) else ", ".join(rule.author or [])
    origin = f"Converted from Sigma rule {sigma_id or source.name}" + (f" by {authors}" if authors else "")
    level = str(rule.level.name).lower() if rule.level else "medium"
    status = str(rule.status.name).lower() if rule.status else ""
    out: dict[str, Any] = {
        "id": rule_id_for(title, sigma_id),
        "title": title,
        "description": f"{description}\n\n{origin} (tetrapipe rules import-sigma, from {source.name}).",
        "severity": _LEVELS.get(level, "medium"),
        "mitre": [m.group(1).upper() for t in tags if (m := _MITRE_TAG.match(t))],
        "tags": list(dict.fromkeys(["sigma", *[t.split(".", 1)[-1] for t in tags if not _MITRE_TAG.match(t)]])),
        "enabled": status not in ("deprecated", "unsupported"),
    }
    if rule.references:
        out["references"] = [str(r) for r in rule.references]
    if rule.falsepositives:
        out["false_positives"] = [str(f) for f in rule.falsepositives]
    out["sigma"] = {
        k: v
        for k, v in (("id", sigma_id), ("level", level), ("status", status or None), ("tags", tags or None))
        if v is not None
    }
    return out


def convert_rule(rule: SigmaRule, source: Path, backend: TetrapipeBackend | None = None) -> Converted:
    """One parsed Sigma rule -> the tetrapipe rule document (a dict ready for YAML)."""
    category = _logsource(rule)
    src = LOGSOURCES[category]
    try:
        condition = (backend or TetrapipeBackend()).condition_sql(rule)
    except SigmaError as exc:
        raise SigmaRefused(_reason(exc)) from None
    if src.base:
        condition = f"({src.base})\nAND {condition}"
    meta = metadata(rule, source)
    sigma = {"id": meta["sigma"].get("id"), "category": category, **meta.pop("sigma")}
    out: dict[str, Any] = {
        **{k: meta[k] for k in ("id", "title", "description", "severity", "mitre", "tags")},
        "event": list(src.events) if len(src.events) > 1 else src.events[0],
        "condition": _pretty(condition),
        "output": (
            "{process_binary} {arguments} in {namespace}/{pod} on {node_name} (parent {parent_binary})"
            + (": {file_access} {file_path}" if src.policy == "file-monitoring" else "")
            + (": connect to {daddr}:{dport}" if src.policy == "connect" else "")
        ),
        "dedup": {"fields": ["node_name", "exec_id"], "window": "1h"},
        "enabled": meta["enabled"],
    }
    if src.policy:
        out["requires"] = {"policies": [src.policy]}
    out.update({k: meta[k] for k in ("references", "false_positives") if k in meta})
    out["sigma"] = {k: v for k, v in sigma.items() if v is not None}
    out["tests"] = []
    return Converted(source, meta["id"], out, rule)


def convert_document(doc: dict[str, Any], source: Path) -> Converted:
    """One Sigma rule as a parsed YAML mapping -> the tetrapipe rule document; refusals as :class:`SigmaRefused`."""
    try:
        rule = SigmaRule.from_dict(doc)
    except SigmaError as exc:
        raise SigmaRefused(f"not a valid Sigma rule: {_reason(exc)}") from None
    return convert_rule(rule, source)


def _reason(exc: SigmaError) -> str:
    """pySigma's message without the absolute file path it appends (the report names the file already)."""
    return str(exc.args[0]) if exc.args else type(exc).__name__


def sigma_files(paths: Iterable[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(x for x in p.rglob("*") if x.suffix in (".yml", ".yaml") and x.is_file())
        else:
            yield p


def convert_file(path: Path, report: ImportReport, backend: TetrapipeBackend) -> None:
    """Every rule of one Sigma file into ``report``: converted, refused with the reason, or another platform."""
    try:
        text = path.read_text(encoding="utf-8")
        collection = SigmaCollection.from_yaml(text)
    except (OSError, UnicodeDecodeError) as exc:
        report.refused.append((path, f"cannot read: {exc}"))
        return
    except SigmaError as exc:
        report.refused.append((path, f"not a valid Sigma rule: {_reason(exc)}"))
        return
    except Exception as exc:  # noqa: BLE001 - pySigma raises plain errors on malformed shapes; the file is at fault
        report.refused.append((path, f"not a valid Sigma rule: {type(exc).__name__}: {exc}"))
        return
    from tetrapipe.ruleset.sigma.correlation import convert_correlation

    output = {id(r) for r in collection.get_output_rules()}
    for rule in collection.rules:
        if id(rule) not in output:  # a correlation's base rule without generate: true: converted inside it
            continue
        try:
            if isinstance(rule, SigmaCorrelationRule):
                report.converted.append(convert_correlation(rule, path, backend))
            else:
                report.converted.append(convert_rule(rule, path, backend))
        except NotForLinux as exc:
            report.other_platforms[str(exc)] = report.other_platforms.get(str(exc), 0) + 1
        except SigmaRefused as exc:
            report.refused.append(
                (path, f"{rule.title}: {exc}" if isinstance(rule, SigmaCorrelationRule) else str(exc))
            )


def import_sigma(paths: Iterable[Path], *, firing_tests: bool = True) -> ImportReport:
    """Convert every Sigma file under ``paths``; with ``firing_tests``, each rule gets a generated firing
    test where one can be built and fires (:mod:`tetrapipe.ruleset.sigma.firing`)."""
    report = ImportReport()
    backend = TetrapipeBackend()
    for path in sigma_files(paths):
        convert_file(path, report, backend)
    if firing_tests and report.converted:
        from tetrapipe.ruleset.sigma.firing import add_firing_tests

        report.converted = add_firing_tests(report.converted)
    return report


__all__ = [
    "Converted",
    "ImportReport",
    "NotForLinux",
    "SigmaRefused",
    "convert_document",
    "convert_file",
    "convert_rule",
    "import_sigma",
    "rule_id_for",
    "sigma_files",
]
