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

import ipaddress
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tetrapipe.ruleset.compiler import sql_literal


class SigmaError(Exception):
    """A Sigma rule tetrapipe cannot convert faithfully; the message says where and why."""


class NotForLinux(SigmaError):
    """A rule for another platform (Windows, macOS, a cloud audit log): skipped, not an error."""


@dataclass(frozen=True)
class LogSource:
    events: tuple[str, ...]
    base: str | None  # SQL every event of this category satisfies
    policy: str | None  # the TracingPolicy in tracing-policies/ that makes Tetragon emit it


_FILE_KINDS = ("process_kprobe", "process_lsm")
LOGSOURCES: dict[str, LogSource] = {
    "process_creation": LogSource(("process_exec",), None, None),
    "file_event": LogSource(
        _FILE_KINDS, "file_path IS NOT NULL AND file_access IN ('write', 'truncate', 'rename')", "file-monitoring"
    ),
    "file_change": LogSource(
        _FILE_KINDS, "file_path IS NOT NULL AND file_access IN ('write', 'truncate')", "file-monitoring"
    ),
    "file_delete": LogSource(_FILE_KINDS, "file_path IS NOT NULL AND file_access = 'unlink'", "file-monitoring"),
    "file_access": LogSource(_FILE_KINDS, "file_path IS NOT NULL", "file-monitoring"),
    "network_connection": LogSource(("process_kprobe", "process_connect"), "daddr IS NOT NULL", "connect"),
}

_CONNECT = "(kind = 'process_connect' OR function_name IN ('tcp_connect', 'security_socket_connect'))"


@dataclass(frozen=True)
class FieldMap:
    sql: str
    numeric: bool = False
    boolean: bool = False  # sql is a condition: 'true' selects it, 'false' its negation


#: Sigma's Linux taxonomy -> the event schema (tetrapipe query --schema)
FIELDS: dict[str, FieldMap] = {
    "Image": FieldMap("process_binary"),
    "CommandLine": FieldMap("concat_ws(' ', process_binary, arguments)"),
    "ParentImage": FieldMap("parent_binary"),
    "ParentCommandLine": FieldMap("concat_ws(' ', parent_binary, parent_arguments)"),
    "CurrentDirectory": FieldMap("cwd"),
    "ProcessId": FieldMap("pid", numeric=True),
    "ParentProcessId": FieldMap("parent_pid", numeric=True),
    "LogonId": FieldMap("auid", numeric=True),
    "TargetFilename": FieldMap("file_path"),
    "DestinationIp": FieldMap("daddr"),
    "DestinationPort": FieldMap("dport", numeric=True),
    "DestinationHostname": FieldMap("tls_sni"),
    "SourceIp": FieldMap("saddr"),
    "SourcePort": FieldMap("sport", numeric=True),
    "Protocol": FieldMap("lower(replace(protocol, 'IPPROTO_', ''))"),
    "Initiated": FieldMap(_CONNECT, boolean=True),  # 'true': the process opened the connection
}
#: fields Sigma rules use that Tetragon does not report, and what to do instead
MISSING_FIELDS = {
    "User": "Tetragon reports uids, not user names: rewrite the selection on uid in the tetrapipe rule",
    "Hashes": "Tetragon does not hash binaries",
    "OriginalFileName": "a Windows PE field",
}

_LEVELS = {"informational": "info", "low": "low", "medium": "medium", "high": "high", "critical": "critical"}
_MITRE_TAG = re.compile(r"^attack\.(t\d{4}(?:\.\d{3})?)$", re.I)
_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_UNSUPPORTED_MODIFIERS = {"base64", "base64offset", "utf16", "utf16le", "utf16be", "wide", "windash", "expand"}


# --- values -----------------------------------------------------------------------------------


def like_pattern(value: str, prefix: bool = False, suffix: bool = False) -> str:
    """A Sigma string (``*``, ``?``, ``\\`` escapes) as a LIKE pattern with ``\\`` as its escape character."""
    out: list[str] = ["%"] if prefix else []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value) and value[i + 1] in "*?\\":
            literal = value[i + 1]
            out.append("\\\\" if literal == "\\" else literal)
            i += 2
            continue
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
        i += 1
    if suffix:
        out.append("%")
    return "".join(out)


def _string_match(expr: str, value: str, modifiers: set[str]) -> str:
    pattern = like_pattern(
        value,
        prefix="contains" in modifiers or "endswith" in modifiers,
        suffix="contains" in modifiers or "startswith" in modifiers,
    )
    op = "LIKE" if "cased" in modifiers else "ILIKE"
    return f"{expr} {op} {sql_literal(pattern)} ESCAPE '\\'"


def _ipv6_hex(expr: str) -> str:
    """An IPv6 address as its 32 lowercase hex digits (``::`` expanded, zone id dropped), in SQL.

    Fixed-width hex strings compare like the numbers they spell, so a CIDR
    range becomes a BETWEEN on text without DuckDB's inet extension (which
    would have to be downloaded at run time).
    """
    a = f"lower(split_part({expr}, '%', 1))"
    head = f"coalesce(string_split(nullif(split_part({a}, '::', 1), ''), ':'), [])"
    tail = f"coalesce(string_split(nullif(split_part({a}, '::', 2), ''), ':'), [])"
    zeros = f"list_transform(range(8 - len({head}) - len({tail})), lambda z: '0')"
    groups = f"CASE WHEN contains({a}, '::') THEN list_concat({head}, {zeros}, {tail}) ELSE string_split({a}, ':') END"
    return f"array_to_string(list_transform({groups}, lambda g: lpad(g, 4, '0')), '')"


def _cidr(expr: str, values: list[Any]) -> str:
    """CIDR ranges as intervals: IPv4 as integers, IPv6 as fixed-width hex; the address converted once per range."""
    v4: list[str] = []
    v6: list[str] = []
    for value in values:
        try:
            net = ipaddress.ip_network(str(value), strict=False)
        except ValueError as exc:
            raise SigmaError(f"|cidr: {value!r} is not a network ({exc})") from None
        if net.version == 4:
            v4.append(f"[{int(net.network_address)}, {int(net.broadcast_address)}]")
        else:
            lo, hi = (f"'{a.exploded.replace(':', '')}'" for a in (net.network_address, net.broadcast_address))
            v6.append(f"[{lo}, {hi}]")
    parts = []
    if v4:
        octets = " + ".join(
            f"TRY_CAST(split_part({expr}, '.', {i}) AS BIGINT)" + (f" * {256 ** (4 - i)}" if i < 4 else "")
            for i in range(1, 5)
        )
        parts.append(
            f"({expr} NOT LIKE '%:%' AND len(list_filter([{', '.join(v4)}], "
            f"lambda r: {octets} BETWEEN r[1] AND r[2])) > 0)"
        )
    if v6:
        parts.append(
            f"({expr} LIKE '%:%' AND len(list_filter([{', '.join(v6)}], "
            f"lambda r: {_ipv6_hex(expr)} BETWEEN r[1] AND r[2])) > 0)"
        )
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def _value_sql(fname: str, fmap: FieldMap, value: Any, modifiers: set[str]) -> str:
    expr = fmap.sql
    if fmap.boolean and not modifiers:
        return expr if str(value).lower() == "true" else f"NOT {expr}"
    if value is None:
        return f"{expr} IS NULL"
    if "exists" in modifiers:
        return f"{expr} IS NOT NULL" if value in (True, "true", "yes") else f"{expr} IS NULL"
    ops = modifiers & set(_OPS)
    if ops:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise SigmaError(f"{fname}|{ops.pop()}: {value!r} is not a number")
        return f"TRY_CAST({expr} AS DOUBLE) {_OPS[ops.pop()]} {value}"
    if "re" in modifiers:
        flags = "".join(f for m, f in (("i", "i"), ("m", "m"), ("s", "s")) if m in modifiers)
        return f"regexp_matches({expr}, {sql_literal(str(value))}" + (f", {sql_literal(flags)})" if flags else ")")
    if isinstance(value, bool):
        value = "true" if value else "false"
    if fmap.numeric and isinstance(value, int) and not modifiers & {"contains", "startswith", "endswith"}:
        return f"{expr} = {value}"
    text = str(value)
    if fmap.numeric:
        expr = f"CAST({expr} AS VARCHAR)"
    return _string_match(expr, text, modifiers)


def _item_sql(key: str, values: Any, where: str) -> str:
    """One ``Field|mod|mod: value(s)`` of a selection."""
    name, *mods = key.split("|")
    modifiers = set(mods)
    if not name:
        raise SigmaError(f"{where}: keyword searches ({key!r} without a field) are not supported")
    bad = modifiers & _UNSUPPORTED_MODIFIERS
    if bad:
        raise SigmaError(f"{where}: modifier |{sorted(bad)[0]} is not supported (Tetragon reports decoded text)")
    known = {
        "contains",
        "startswith",
        "endswith",
        "all",
        "re",
        "i",
        "m",
        "s",
        "cidr",
        "cased",
        "exists",
        "fieldref",
        *_OPS,
    }
    unknown = modifiers - known
    if unknown:
        raise SigmaError(f"{where}: unknown modifier |{sorted(unknown)[0]}")
    if name in MISSING_FIELDS:
        raise SigmaError(f"{where}: field {name}: {MISSING_FIELDS[name]}")
    if name not in FIELDS:
        raise SigmaError(
            f"{where}: field {name} has no counterpart in Tetragon's events (supported: {', '.join(sorted(FIELDS))})"
        )
    fmap = FIELDS[name]
    items = values if isinstance(values, list) else [values]
    if not items:
        raise SigmaError(f"{where}: {key} has an empty list of values")
    if "cidr" in modifiers:
        return _cidr(fmap.sql, items)
    if "fieldref" in modifiers:
        parts = []
        for other in items:
            if other not in FIELDS:
                raise SigmaError(f"{where}: |fieldref to {other!r}, which has no counterpart in Tetragon's events")
            parts.append(f"{fmap.sql} = {FIELDS[other].sql}")
    else:
        parts = [_value_sql(name, fmap, v, modifiers) for v in items]
    joiner = " AND " if "all" in modifiers else " OR "
    return parts[0] if len(parts) == 1 else "(" + joiner.join(parts) + ")"


def _search_sql(name: str, search: Any) -> str:
    """A search identifier: a map (AND of its items) or a list of maps (OR)."""
    where = f"detection.{name}"
    if isinstance(search, dict):
        if not search:
            raise SigmaError(f"{where}: empty selection")
        parts = [_item_sql(str(k), v, where) for k, v in search.items()]
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"
    if isinstance(search, list) and search and all(isinstance(s, dict) for s in search):
        parts = [_search_sql(name, s) for s in search]
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"
    raise SigmaError(f"{where}: keyword searches (a list of bare values) are not supported: name a field")


# --- the condition ------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(\(|\)|\b1 of\b|\ball of\b|\bany of\b|\band\b|\bor\b|\bnot\b|[A-Za-z0-9_*]+|\S)", re.I)


class _Condition:
    """Recursive descent over Sigma's condition grammar: or < and < not, ``1 of`` / ``all of`` patterns."""

    def __init__(self, text: str, searches: dict[str, str]) -> None:
        if "|" in text:
            raise SigmaError(
                f"condition {text!r}: aggregations (| count() ...) are not supported; "
                "tetrapipe's dedup counts repeated alerts"
            )
        self.text = text
        self.tokens = [t for t in _TOKEN.findall(text) if t.strip()]
        self.pos = 0
        self.searches = searches

    def parse(self) -> str:
        sql = self._or()
        if self.pos != len(self.tokens):
            raise SigmaError(f"condition {self.text!r}: unexpected {self.tokens[self.pos]!r}")
        return sql

    def _peek(self) -> str | None:
        return self.tokens[self.pos].lower() if self.pos < len(self.tokens) else None

    def _take(self) -> str:
        if self.pos >= len(self.tokens):
            raise SigmaError(f"condition {self.text!r}: ends too early")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def _or(self) -> str:
        return self._chain("or", self._and)

    def _and(self) -> str:
        return self._chain("and", self._not)

    def _chain(self, op: str, operand: Callable[[], str]) -> str:
        parts = [operand()]
        while self._peek() == op:
            self._take()
            parts.append(operand())
        return parts[0] if len(parts) == 1 else "(" + f" {op.upper()} ".join(parts) + ")"

    def _not(self) -> str:
        if self._peek() == "not":
            self._take()
            return f"(NOT coalesce({self._not()}, FALSE))"
        return self._atom()

    def _atom(self) -> str:
        tok = self._take()
        low = re.sub(r"\s+", " ", tok.lower())
        if tok == "(":
            inner = self._or()
            if self._take() != ")":
                raise SigmaError(f"condition {self.text!r}: missing ')'")
            return inner
        if low in ("1 of", "any of", "all of"):
            pattern = self._take()
            names = self._matching(pattern)
            joiner = " AND " if low == "all of" else " OR "
            parts = [self.searches[n] for n in names]
            return parts[0] if len(parts) == 1 else "(" + joiner.join(parts) + ")"
        if tok not in self.searches:
            raise SigmaError(f"condition {self.text!r}: no search identifier {tok!r} in detection")
        return self.searches[tok]

    def _matching(self, pattern: str) -> list[str]:
        if pattern.lower() == "them":
            names = [n for n in self.searches if not n.startswith("_")]
        else:
            rx = re.compile("^" + re.escape(pattern).replace("\\*", ".*") + "$")
            names = [n for n in self.searches if rx.match(n)]
        if not names:
            raise SigmaError(f"condition {self.text!r}: {pattern!r} matches no search identifier")
        return names


def condition_sql(detection: dict[str, Any]) -> str:
    """The Sigma ``detection`` block as one DuckDB boolean expression."""
    if not isinstance(detection, dict) or "condition" not in detection:
        raise SigmaError("detection: no condition")
    if "timeframe" in detection:
        raise SigmaError("detection.timeframe: windowed aggregations are not supported")
    searches = {str(k): _search_sql(str(k), v) for k, v in detection.items() if k != "condition"}
    cond = detection["condition"]
    conds = cond if isinstance(cond, list) else [cond]
    parts = [_Condition(str(c), searches).parse() for c in conds]
    return _pretty(parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")")


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


# --- whole rules --------------------------------------------------------------------------------


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


class _RuleDumper(yaml.SafeDumper):
    """Multi-line strings (conditions, descriptions) as block literals, as a person would write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_RuleDumper.add_representer(str, _str)


def to_yaml(converted: Converted) -> str:
    return yaml.dump(converted.document, Dumper=_RuleDumper, sort_keys=False, allow_unicode=True, width=110)


# --- writing the converted rules: safe names, all files or none ---------------------------------------
#
# Kept apart from the conversion on purpose: whatever turns Sigma into rule documents (the parser above,
# or pySigma one day), the rule files are named and written here, from the rule id alone.

#: longest file name stem (and rule id) an import writes; far below any file system's limit
SAFE_NAME_MAX = 100
_TMP_PREFIX = ".import-sigma-"


class SigmaImportError(Exception):
    """The converted rules could not be written; nothing new was left in the output directory."""


def safe_name(text: str, fallback: str = "rule", max_len: int = SAFE_NAME_MAX) -> str:
    """A file name stem that is also a valid rule id, from any text.

    Lowercase ``[a-z0-9._-]`` only (no ``/``, NUL, spaces or control
    characters), no ``..``, never starting with a dot (hidden, skipped by the
    loader) or a dash (read as an option), at most ``max_len`` characters;
    ``fallback`` when nothing is left.
    """
    name = re.sub(r"[^a-z0-9._-]+", "-", str(text).lower())
    name = re.sub(r"\.{2,}", ".", name)
    name = name.lstrip("._-")[:max_len].rstrip("._-")
    return name or fallback


def plan_names(converted: Iterable[Converted]) -> list[tuple[Converted, str]]:
    """Each converted rule with its file name, in a deterministic order (by source file).

    The rule id is made safe (:func:`safe_name`) and unique within the import:
    two Sigma rules that give the same id (same title, ids with the same first
    group, or no id) become ``<id>``, ``<id>-2``, ... in source-file order, id
    and file name alike, so the loader never sees a duplicate. The same Sigma
    file imported again gets the same name, which is how ``--force`` finds
    the file it replaces.
    """
    taken: set[str] = set()
    planned: list[tuple[Converted, str]] = []
    for conv in sorted(converted, key=lambda c: (str(c.source), c.rule_id)):
        base = safe_name(conv.rule_id)
        rid, n = base, 1
        while rid in taken:
            n += 1
            rid = f"{base[: SAFE_NAME_MAX - len(str(n)) - 1].rstrip('._-')}-{n}"
        taken.add(rid)
        if rid != conv.rule_id or conv.document.get("id") != rid:
            conv = Converted(conv.source, rid, {**conv.document, "id": rid})
        planned.append((conv, f"{rid}.yaml"))
    return planned


@dataclass
class WriteResult:
    """What :func:`write_rules` did: files written (all, or none), rules refused, load errors."""

    written: list[tuple[Converted, Path]] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)
    #: problems the ``validate`` callback found in the new files (then nothing was written)
    broken: list[Any] = field(default_factory=list)


def _make_dirs(path: Path) -> list[Path]:
    """``mkdir -p``; the directories it created, deepest first (to remove them again)."""
    missing: list[Path] = []
    p = path
    while not p.exists() and not p.is_symlink() and p.parent != p:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
    return missing


def write_rules(
    converted: Iterable[Converted],
    out_dir: Path,
    *,
    force: bool = False,
    validate: Callable[[list[Path]], list[Any]] | None = None,
) -> WriteResult:
    """Write converted rules into ``out_dir``, every file or none.

    A rule whose file already exists is refused unless ``force``. Everything
    else is first written into a hidden staging directory inside ``out_dir``
    (same file system, skipped by the rules loader), then renamed into place;
    a file replaced under ``force`` is moved aside, not deleted. ``validate``
    gets the new files once they are in place (e.g. load the directory and
    return the problems in them): any problem, or any error on the way,
    removes the new files, puts the replaced ones back and removes the
    directories this call created -- ``out_dir`` is as it was -- and errors
    are raised as :class:`SigmaImportError`. A file name never leaves
    ``out_dir``: names are :func:`safe_name` slugs, and checked again here.
    """
    out_dir = Path(out_dir)
    result = WriteResult()
    todo: list[tuple[Converted, Path]] = []
    for conv, name in plan_names(converted):
        target = out_dir / name
        if target.parent != out_dir or name in (".", "..") or "/" in name or "\0" in name:
            raise SigmaImportError(f"refusing to write {name!r}: not a plain file name inside {out_dir}")
        if (target.exists() or target.is_symlink()) and not force:
            result.refused.append((conv.source, f"{target} exists (--force to overwrite)"))
            continue
        todo.append((conv, target))
    if not todo:
        return result
    created: list[Path] = []
    staging: Path | None = None
    moved: list[tuple[Path, Path | None]] = []  # (target, where the file it replaced waits)
    try:
        created = _make_dirs(out_dir)
        staging = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=out_dir))
        for conv, target in todo:
            (staging / target.name).write_text(to_yaml(conv), encoding="utf-8")
        replaced = staging / ".replaced"
        replaced.mkdir()
        for _, target in todo:
            backup = None
            if target.exists() or target.is_symlink():
                backup = replaced / target.name
                os.replace(target, backup)  # moves a symlink itself: nothing is written through it
            moved.append((target, backup))
            os.replace(staging / target.name, target)
        if validate is not None:
            result.broken = list(validate([t for _, t in todo]))
    except BaseException as exc:  # noqa: BLE001 - undone below, then raised again
        _roll_back(moved, staging, created)
        if isinstance(exc, OSError | ValueError | yaml.YAMLError):
            raise SigmaImportError(
                f"cannot write the converted rules to {out_dir}: {exc}; nothing was written"
            ) from exc
        raise
    if result.broken:
        _roll_back(moved, staging, created)
        return result
    shutil.rmtree(staging, ignore_errors=True)
    result.written = todo
    return result


def _roll_back(moved: list[tuple[Path, Path | None]], staging: Path | None, created: list[Path]) -> None:
    """Remove the files put in place, restore those they replaced, then the staging and new directories.

    A file that cannot be put back stays in the staging directory, which is
    then kept and named in the error rather than deleted with it.
    """
    lost: list[Path] = []
    for target, backup in reversed(moved):
        try:
            target.unlink(missing_ok=True)
            if backup is not None:
                os.replace(backup, target)
        except OSError:
            if backup is not None:
                lost.append(target)
    if lost and staging is not None:
        raise SigmaImportError(
            f"could not put back {', '.join(map(str, lost))}: the original files are in {staging / '.replaced'}"
        )
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)
    for d in created:  # deepest first; a directory someone else filled meanwhile stays
        try:
            d.rmdir()
        except OSError:
            pass


__all__ = [
    "FIELDS",
    "LOGSOURCES",
    "ImportReport",
    "SAFE_NAME_MAX",
    "SigmaError",
    "SigmaImportError",
    "WriteResult",
    "condition_sql",
    "convert",
    "import_sigma",
    "like_pattern",
    "plan_names",
    "safe_name",
    "to_yaml",
    "write_rules",
]
