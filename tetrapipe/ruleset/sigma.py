"""Sigma rules in, tetrapipe rules out: ``tetrapipe rules import-sigma``.

Security teams keep their detections as Sigma rules. The Linux ones whose log
source Tetragon observes -- ``process_creation``, ``file_event`` /
``file_change`` / ``file_delete`` / ``file_access`` and
``network_connection`` -- become ordinary tetrapipe rule files: a DuckDB
condition over the event schema, run by the same vectorized engine, tested
by ``tetrapipe rules test`` once the team adds tests, tuned by overrides.

The conversion is strict rather than approximate. Sigma's matching semantics
are kept (string matches case-insensitive unless ``|cased``, ``*``/``?``
wildcards with ``\\`` escapes, lists OR'ed unless ``|all``); anything tetrapipe
cannot express faithfully -- a field Tetragon does not report (``User``: it
reports uids), keyword searches, encodings (``|base64``, ``|wide``),
aggregations -- refuses the rule with the file, the
selection and the reason, so no imported rule silently matches less or more
than its author meant. Rules for other platforms are counted and skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tetrapipe.ruleset.sigma_sql import LOGSOURCES, NotForLinux, SigmaError, condition_sql

_LEVELS = {"informational": "info", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
_MITRE_TAG = re.compile(r"^attack\.(t\d{4}(?:\.\d{3})?)$", re.I)


@dataclass
class Converted:
    source: Path
    rule_id: str
    document: dict[str, Any]


@dataclass
class ImportReport:
    converted: list[Converted] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)
    other_platforms: dict[str, int] = field(default_factory=dict)


def rule_id_for(title: str, sigma_id: str | None) -> str:
    """``sigma-<title slug>-<first group of the Sigma id>``: readable, and stable across re-imports.

    Both parts are reduced to ``[a-z0-9-]``: a Sigma ``id`` is only meant to
    be a UUID, but whatever a file says (``../../etc/x``, a NUL, a mapping)
    must not reach a file name or a rule id the loader refuses.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:56].rstrip("-") or "rule"
    first = re.sub(r"[^a-z0-9]+", "", sigma_id.split("-")[0].lower())[:12] if sigma_id else ""
    return f"sigma-{slug}" + (f"-{first}" if first else "")


def convert(doc: dict[str, Any], source: Path) -> Converted:
    """One Sigma rule document -> the tetrapipe rule document (a dict ready for YAML)."""
    if not isinstance(doc, dict) or "detection" not in doc:
        raise SigmaError("not a Sigma rule (no detection)")
    if doc.get("action"):
        raise SigmaError(f"action: {doc['action']}: Sigma rule collections are not supported; one rule per file")
    logsource = doc.get("logsource") or {}
    product = str(logsource.get("product") or "").lower()
    if product and product != "linux":
        raise NotForLinux(product)
    category = str(logsource.get("category") or "").lower()
    if logsource.get("service"):
        raise SigmaError(
            f"logsource service {logsource['service']!r}: Tetragon does not see service logs "
            f"(supported categories: {', '.join(LOGSOURCES)})"
        )
    if category not in LOGSOURCES:
        if not product:
            raise NotForLinux(category or "no product")
        raise SigmaError(
            f"logsource category {category or '(none)'!r} is not one Tetragon observes "
            f"(supported: {', '.join(LOGSOURCES)})"
        )
    src = LOGSOURCES[category]
    condition = condition_sql(doc["detection"])
    if src.base:
        condition = f"({src.base})\nAND {condition}"
    title = str(doc.get("title") or source.stem)
    sigma_id = str(doc["id"]) if doc.get("id") else None
    rid = rule_id_for(title, sigma_id)
    tags = [str(t) for t in doc.get("tags") or []]
    mitre = [m.group(1).upper() for t in tags if (m := _MITRE_TAG.match(t))]
    plain_tags = ["sigma", *[t.split(".", 1)[-1] for t in tags if not _MITRE_TAG.match(t)]]
    description = str(doc.get("description") or title).strip()
    origin = f"Converted from Sigma rule {sigma_id or source.name}" + (
        f" by {doc['author']}" if doc.get("author") else ""
    )
    out: dict[str, Any] = {
        "id": rid,
        "title": title,
        "description": f"{description}\n\n{origin} (tetrapipe rules import-sigma, from {source.name}).",
        "severity": _LEVELS.get(str(doc.get("level") or "medium").lower(), "medium"),
        "mitre": mitre,
        "tags": list(dict.fromkeys(plain_tags)),
        "event": list(src.events) if len(src.events) > 1 else src.events[0],
        "condition": condition,
        "output": (
            "{process_binary} {arguments} in {namespace}/{pod} on {node_name} (parent {parent_binary})"
            + (": {file_access} {file_path}" if src.policy == "file-monitoring" else "")
            + (": connect to {daddr}:{dport}" if src.policy == "connect" else "")
        ),
        "dedup": {"fields": ["node_name", "exec_id"], "window": "1h"},
        "enabled": str(doc.get("status") or "").lower() not in ("deprecated", "unsupported"),
    }
    if src.policy:
        out["requires"] = {"policies": [src.policy]}
    if doc.get("references"):
        out["references"] = [str(r) for r in doc["references"]]
    if doc.get("falsepositives"):
        out["false_positives"] = [str(f) for f in doc["falsepositives"]]
    out["tests"] = []
    return Converted(source, rid, out)


def sigma_files(paths: Iterable[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(x for x in p.rglob("*") if x.suffix in (".yml", ".yaml") and x.is_file())
        else:
            yield p


def import_sigma(paths: Iterable[Path]) -> ImportReport:
    report = ImportReport()
    for path in sigma_files(paths):
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            report.refused.append((path, f"cannot read: {exc}"))
            continue
        if len(docs) != 1:
            report.refused.append((path, f"{len(docs)} YAML documents: one Sigma rule per file is supported"))
            continue
        try:
            report.converted.append(convert(docs[0], path))
        except NotForLinux as exc:
            report.other_platforms[str(exc)] = report.other_platforms.get(str(exc), 0) + 1
        except SigmaError as exc:
            report.refused.append((path, str(exc)))
    return report


__all__ = ["ImportReport", "SigmaError", "condition_sql", "convert", "import_sigma", "sigma_files"]
