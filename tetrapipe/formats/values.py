"""Value helpers shared by the native, OCSF and ECS mappings.

Rows reach the mappings in two shapes: straight from Arrow (``Table.to_pylist``:
naive ``datetime`` in UTC, maps as lists of ``(key, value)`` pairs) or parsed
back from JSON lines (``tetrapipe forward`` reading stdin or a spool: ISO 8601
strings, maps as objects). Every helper here accepts both, so a record formats
the same whichever way it travelled.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shlex
from datetime import UTC, datetime
from typing import Any

_FRACTION = re.compile(r"(\.\d{6})\d+")


def is_alert(row: dict[str, Any]) -> bool:
    """Alerts carry the rule that fired; events carry the Tetragon kind."""
    return "rule_id" in row and "kind" not in row


def to_datetime(value: Any) -> datetime | None:
    """A timezone-aware UTC datetime from whatever the row holds (None stays None).

    Arrow gives naive datetimes that are UTC by the schema's contract; JSON gives
    RFC 3339 strings, possibly with Tetragon's nanoseconds, which Python's parser
    does not take, so the fraction is cut to microseconds first. Numbers are
    epoch seconds, milliseconds or nanoseconds, told apart by magnitude.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, int | float):
        v = float(value)
        if v > 1e17:
            v /= 1e9
        elif v > 1e14:
            v /= 1e6
        elif v > 1e11:
            v /= 1e3
        return datetime.fromtimestamp(v, UTC)
    if isinstance(value, str):
        text = _FRACTION.sub(r"\1", value.strip())
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return None


def iso8601(value: Any) -> str | None:
    """RFC 3339 UTC with microseconds and a ``Z``: what SIEMs parse without a format hint."""
    dt = to_datetime(value)
    if dt is None:
        return None
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch_ms(value: Any) -> int | None:
    dt = to_datetime(value)
    return None if dt is None else int(round(dt.timestamp() * 1000))


def event_time(row: dict[str, Any]) -> datetime:
    """When the event happened; a few real events have no ``time``, so fall back, never fail.

    The Star Wars demo events of the samples carry no ``time``: the process
    start is the best witness, and the moment of formatting the last resort
    (a SIEM rejects an event without a timestamp).
    """
    for key in ("time", "process_start_time"):
        dt = to_datetime(row.get(key))
        if dt is not None:
            return dt
    return datetime.now(UTC)


def exec_id_node(exec_id: str | None) -> str | None:
    """The node name inside a Tetragon exec_id (``base64("<node_name>:<ktime_ns>:<pid>")``), or None.

    Events of some sources carry no ``node_name``; their exec_id still says
    which node saw the process, and a format that must name the host (OCSF's
    ``device``) reads it from there rather than leave the host unnamed.
    """
    if not exec_id:
        return None
    try:
        text = base64.b64decode(exec_id + "=" * (-len(exec_id) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    node, sep, rest = text.rpartition(":")
    node, sep2, _ = node.rpartition(":")
    if not sep or not sep2 or not node or not rest.isdigit() or not node.isprintable():
        return None
    return node


def as_map(value: Any) -> dict[str, str]:
    """Pod labels as a dict, from an Arrow map (list of pairs) or a JSON object."""
    if not value:
        return {}
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    out: dict[str, str] = {}
    for item in value:
        if isinstance(item, list | tuple) and len(item) == 2:
            out[str(item[0])] = item[1]
        elif isinstance(item, dict) and "key" in item:
            out[str(item["key"])] = item.get("value")
    return out


def split_args(arguments: str | None) -> list[str]:
    """Tetragon's space-joined arguments back into argv, honouring its quoting when it parses.

    Tetragon quotes arguments that contain spaces (``-c "node crawler.js"``);
    shell-style splitting recovers them. A string that is not valid shell
    quoting (an odd quote inside an argument) falls back to a plain split
    rather than losing the arguments.
    """
    if not arguments:
        return []
    try:
        return shlex.split(arguments)
    except ValueError:
        return arguments.split()


def command_line(binary: str | None, arguments: str | None) -> str | None:
    if not binary:
        return arguments or None
    return f"{binary} {arguments}" if arguments else binary


def basename(path: str | None) -> str | None:
    if not path:
        return None
    name = os.path.basename(path.rstrip("/"))
    return name or path


def dirname(path: str | None) -> str | None:
    if not path or "/" not in path:
        return None
    return os.path.dirname(path.rstrip("/")) or "/"


def compact(obj: Any) -> Any:
    """Drop None values and empty containers, recursively: absent means "Tetragon did not say"."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            v = compact(v)
            if v is None or (isinstance(v, dict | list) and not v):
                continue
            out[k] = v
        return out
    if isinstance(obj, list):
        return [compact(v) for v in obj if v is not None]
    return obj


def ip_version(address: str | None, family: str | None = None) -> int | None:
    if family:
        if "INET6" in family.upper():
            return 6
        if "INET" in family.upper():
            return 4
    if not address:
        return None
    return 6 if ":" in address else 4


def transport(protocol: str | None) -> str | None:
    """``IPPROTO_TCP`` or ``TCP`` -> ``tcp`` (the IANA keyword both OCSF and ECS use)."""
    if not protocol:
        return None
    p = protocol.upper()
    if p.startswith("IPPROTO_"):
        p = p[len("IPPROTO_") :]
    return p.lower()


#: IANA protocol numbers for the transports Tetragon reports
PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132, "raw": 255}


def tls_version_number(version: str | None) -> str | None:
    """``TLS 1.3`` -> ``1.3``."""
    if not version:
        return None
    parts = version.replace("TLSv", "TLS ").split()
    return parts[-1] if parts else None
