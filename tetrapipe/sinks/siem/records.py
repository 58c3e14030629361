"""What a sink needs to know about a formatted record, whichever format made it.

Sinks receive records already mapped to native, OCSF or ECS. A few
transport headers (HEC ``time`` and ``host``, the syslog timestamp, severity
and MSGID, a Kafka key) are read back from the record here, so the sinks stay
format-agnostic and every format gets the same envelope.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from tetrapipe.formats.cef import CEF_KEY
from tetrapipe.formats.values import to_datetime
from tetrapipe.units import severity_rank


def record_payload(record: dict[str, Any]) -> dict[str, Any] | str:
    """What the SIEM receives: the document itself, or the line a text format (CEF) made."""
    line = record.get(CEF_KEY)
    return line if isinstance(line, str) else record


def record_body(record: dict[str, Any]) -> bytes:
    """The payload as bytes for a line- or message-oriented transport (syslog, file, stdout, Kafka)."""
    payload = record_payload(record)
    return payload.encode() if isinstance(payload, str) else orjson.dumps(payload)


def record_time(record: dict[str, Any]) -> datetime:
    ts = record.get("@timestamp") or record.get("time")
    return to_datetime(ts) or datetime.now(UTC)


def record_host(record: dict[str, Any]) -> str | None:
    host = record.get("host")
    if isinstance(host, dict):
        return host.get("name")
    device = record.get("device")
    if isinstance(device, dict) and device.get("hostname"):
        return device["hostname"]
    return record.get("node_name")


def is_alert_record(record: dict[str, Any]) -> bool:
    event = record.get("event")
    if isinstance(event, dict) and event.get("kind") == "alert":
        return True
    if record.get("class_uid") == 2004:
        return True
    return record.get("record_type") == "alert" or ("rule_id" in record and "kind" not in record)


def record_severity(record: dict[str, Any]) -> int:
    """0 (info) .. 4 (critical) for alerts, whatever the format; events are info."""
    if record.get("class_uid") == 2004:
        return max(min(int(record.get("severity_id") or 1) - 1, 4), 0)
    event = record.get("event")
    if isinstance(event, dict) and event.get("kind") == "alert":
        return max(min(int(event.get("severity") or 1) - 1, 4), 0)
    sev = record.get("severity")
    return severity_rank(sev) if isinstance(sev, str) else 0


def record_kind(record: dict[str, Any]) -> str:
    """``alert`` or the Tetragon event kind (process_exec ...): a short, stable label for MSGID / sourcetype."""
    if is_alert_record(record):
        return "alert"
    kind = record.get("kind")
    if kind:
        return str(kind)
    for parent in ("unmapped", None):
        holder = record.get(parent) if parent else record
        tet = (holder or {}).get("tetragon") if isinstance(holder, dict) else None
        if isinstance(tet, dict) and tet.get("kind"):
            return str(tet["kind"])
    return "event"


def record_key(record: dict[str, Any]) -> bytes | None:
    """A partition key: alerts by rule, events by node (the transport's partitioning)."""
    if is_alert_record(record):
        rule = (
            record.get("rule_id")
            or (record.get("rule") or {}).get("id")
            or ((record.get("finding_info") or {}).get("analytic") or {}).get("uid")
        )
        return str(rule).encode() if rule else None
    host = record_host(record)
    return host.encode() if host else None
