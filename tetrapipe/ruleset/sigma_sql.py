"""Sigma on Linux, mapped to the event schema: logsources, field names, and detections as DuckDB SQL.

:mod:`tetrapipe.ruleset.sigma` converts whole Sigma rules with these; every
construct that cannot be expressed faithfully is a :class:`SigmaError`, never
a silently weaker rule. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
