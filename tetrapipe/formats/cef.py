"""CEF (ArcSight Common Event Format, version 0) mapping: one tetrapipe row -> one CEF line.

CEF is what ArcSight, QRadar, Microsoft Sentinel's CEF connector and most
syslog-fed SIEMs parse without a custom parser, so a team whose SIEM only
speaks CEF gets tetrapipe's alerts and enriched events with zero parsing work
on their side::

    CEF:0|tetrapipe|tetrapipe|0.1.0|late-shell-in-container|Late shell in a container|8|rt=... dvchost=...

Unlike the JSON formats, a CEF record is a line of text, not a document. The
mapping therefore returns a small envelope: the line under ``cef`` plus the
few native keys (time, node, kind or rule and severity, namespace, pod) from
which a sink reads its transport headers (syslog PRI and MSGID, HEC time and
host, the Kafka key) exactly as it does for the other formats. Sinks ship the
line itself (``tetrapipe.sinks.siem.records.record_body``).

Only the standard extension keys are used where one fits (``rt``, ``dvchost``,
``sproc``, ``spid``, ``suid``, ``src``/``dst``, ``fname``/``filePath``,
``msg``, ``cnt`` ...); the six custom strings carry the Kubernetes context, the
exec_id, the parent and the policy or MITRE ids, each with its label key so a
SmartConnector names them. ``tetrapipe/formats/README.md`` has the table.
"""

from __future__ import annotations

from typing import Any

from tetrapipe import __version__
from tetrapipe.formats.values import (
    basename,
    command_line,
    epoch_ms,
    event_time,
    ip_version,
    is_alert,
    iso8601,
    transport,
)

VENDOR = "tetrapipe"
PRODUCT = "tetrapipe"
#: CEF severity is 0-10 (0-3 low, 4-6 medium, 7-8 high, 9-10 very high); events are informational
CEF_SEVERITY = {"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
EVENT_SEVERITY = 1
#: the key under which the envelope holds the CEF line
CEF_KEY = "cef"

_HOOK_NAMES = {
    "process_kprobe": "Kernel function",
    "process_tracepoint": "Tracepoint",
    "process_lsm": "LSM hook",
    "process_uprobe": "Uprobe",
    "process_usdt": "USDT probe",
}
_FIXED_NAMES = {
    "process_exec": "Process started",
    "process_exit": "Process exited",
    "process_connect": "Network connect",
    "process_close": "Network close",
    "process_listen": "Network listen",
    "process_loader": "Library loaded",
    "process_throttle": "Tetragon throttling",
    "rate_limit_info": "Tetragon export rate limit",
}


def header_escape(value: Any) -> str:
    """Header fields: backslash and pipe are escaped; a header can hold no line break."""
    text = str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\r", " ").replace("\n", " ")


def extension_escape(value: Any) -> str:
    """Extension values: backslash and equals are escaped, line breaks written as ``\\n`` / ``\\r``."""
    text = str(value)
    text = text.replace("\\", "\\\\").replace("=", "\\=")
    return text.replace("\r", "\\r").replace("\n", "\\n")


def to_cef(row: dict[str, Any], *, include_raw: bool = False) -> dict[str, Any]:
    alert = is_alert(row)
    if alert:
        severity = (row.get("severity") or "info").lower()
        signature, name = row.get("rule_id") or "alert", row.get("title") or row.get("rule_id") or "alert"
        cef_severity = CEF_SEVERITY.get(severity, EVENT_SEVERITY)
        ext = _alert_extension(row)
    else:
        kind = row.get("kind") or "unknown"
        fn = row.get("function_name")
        signature = f"{kind}:{fn}" if fn else kind
        name, cef_severity = _event_name(row, kind, fn), EVENT_SEVERITY
        ext = _event_extension(row)
    if include_raw and row.get("raw"):
        ext["rawEvent"] = row["raw"]
    header = "|".join(header_escape(v) for v in (VENDOR, PRODUCT, __version__, signature, name, cef_severity))
    line = f"CEF:0|{header}|" + " ".join(
        f"{k}={extension_escape(v)}" for k, v in ext.items() if v is not None and v != ""
    )
    envelope: dict[str, Any] = {
        CEF_KEY: line,
        "record_type": "alert" if alert else "event",
        "time": iso8601(event_time(row)),
        "node_name": row.get("node_name"),
        "namespace": row.get("namespace"),
        "pod": row.get("pod"),
    }
    if alert:
        envelope.update(rule_id=row.get("rule_id"), severity=row.get("severity"))
    else:
        envelope["kind"] = row.get("kind")
    return {k: v for k, v in envelope.items() if v is not None}


def _event_name(row: dict[str, Any], kind: str, fn: str | None) -> str:
    """A short, stable, human name: CEF's Name is shown in every SIEM list view, so no per-event values."""
    if row.get("file_path") and row.get("file_access"):
        return f"File {row['file_access']}"
    if kind in _FIXED_NAMES:
        return _FIXED_NAMES[kind]
    if kind in _HOOK_NAMES:
        return f"{_HOOK_NAMES[kind]} {fn}" if fn else _HOOK_NAMES[kind]
    return kind


def _custom(key: str, label: str, value: Any) -> dict[str, Any]:
    """A custom field (csN, cnN, c6aN, flexStringN) with its label key, or nothing when there is no value."""
    return {} if value is None or value == "" else {f"{key}Label": label, key: value}


def _context(row: dict[str, Any]) -> dict[str, Any]:
    """Keys alerts and events share: where, which process, its parent and ancestors."""
    ancestors = [a for a in [row.get("parent_binary"), *(row.get("ancestor_binaries") or [])] if a]
    return {
        "rt": epoch_ms(event_time(row)),
        "dvchost": row.get("node_name"),
        "sproc": row.get("process_binary"),
        "spid": row.get("pid"),
        "suid": row.get("uid"),
        **_custom("cs1", "k8sNamespace", row.get("namespace")),
        **_custom("cs2", "k8sPod", row.get("pod")),
        **_custom("cs3", "containerImage", row.get("image")),
        **_custom("cs4", "tetragonExecId", row.get("exec_id")),
        **_custom("cs5", "parentProcess", row.get("parent_binary")),
        **_custom("flexString1", "commandLine", command_line(row.get("process_binary"), row.get("arguments"))),
        **_custom("flexString2", "ancestors", " < ".join(ancestors)),
    }


def _alert_extension(row: dict[str, Any]) -> dict[str, Any]:
    mitre = ",".join(row.get("mitre") or [])
    return {
        **_context(row),
        "externalId": row.get("alert_id"),
        "cat": "alert",
        "msg": row.get("message"),
        "cnt": row.get("count"),
        "start": epoch_ms(row.get("time")),
        "end": epoch_ms(row.get("last_time")),
        **_custom("cs6", "mitreTechniques", mitre),
    }


def _event_extension(row: dict[str, Any]) -> dict[str, Any]:
    ext = {
        **_context(row),
        "externalId": row.get("event_id"),
        "cat": row.get("kind"),
        "msg": row.get("message"),
        "act": row.get("action"),
        **_custom("cs6", "tracingPolicy", row.get("policy_name")),
        "fname": basename(row.get("file_path")),
        "filePath": row.get("file_path"),
        "tetrapipeFileAccess": row.get("file_access"),
    }
    saddr, daddr = row.get("saddr"), row.get("daddr")
    if saddr:
        v6 = ip_version(saddr, row.get("sock_family")) == 6
        ext.update(_custom("c6a2", "sourceIPv6Address", saddr) if v6 else {"src": saddr})
    if daddr:
        v6 = ip_version(daddr, row.get("sock_family")) == 6
        ext.update(_custom("c6a3", "destinationIPv6Address", daddr) if v6 else {"dst": daddr})
    proto = transport(row.get("protocol"))
    ext.update(
        {
            "spt": row.get("sport"),
            "dpt": row.get("dport"),
            "proto": proto.upper() if proto else None,
            "dhost": row.get("tls_sni"),
            "app": row.get("tls_version"),
            "tetrapipeTlsCipher": row.get("tls_cipher"),
        }
    )
    if row.get("kind") == "process_exit":
        label, value = "exitStatus", row.get("exit_status") or 0  # Tetragon omits a zero status
    elif row.get("tls_cipher_code") is not None:
        label, value = "tlsCipherCode", row["tls_cipher_code"]
    else:
        label, value = "droppedEvents", row.get("dropped_events")
    ext.update(_custom("cn1", label, value))
    ext["reason"] = row.get("exit_signal")
    return ext


__all__ = ["CEF_KEY", "CEF_SEVERITY", "extension_escape", "header_escape", "to_cef"]
