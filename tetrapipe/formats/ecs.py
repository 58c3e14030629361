"""ECS (Elastic Common Schema) mapping: one tetrapipe row -> one ECS document.

Events are ``event.kind: event``; alerts are ``event.kind: alert`` with
``rule.*``, ``threat.*`` (MITRE ATT&CK) and a numeric ``event.severity``.
``event.category`` / ``event.type`` use only ECS's allowed values:

============================  ==================  =================================
row                           event.category      event.type
============================  ==================  =================================
process_exec                  process             start
process_exit                  process             end
file hook (file_path)         file                access / change / deletion / creation
socket (daddr, connect/close) network             connection + start / end
other hook on a process       process             info (change for setuid/setns)
throttle, rate limit, other   host                info
alert                         intrusion_detection info (+ process when it names one)
============================  ==================  =================================

Fields ECS does not define live under ``tetragon.*`` (Tetragon's own context:
policy, hook, action, flags) and ``tetrapipe.*`` (the pipeline's: alert count,
dedup key, provenance), as ECS advises for custom fields. The field-by-field
table is in ``tetrapipe/formats/README.md``.
"""

from __future__ import annotations

from typing import Any

from tetrapipe import __version__
from tetrapipe.formats.values import (
    as_map,
    basename,
    command_line,
    compact,
    dirname,
    event_time,
    ip_version,
    is_alert,
    iso8601,
    split_args,
    tls_version_number,
    transport,
)

ECS_VERSION = "8.11.0"

#: alert severity -> event.severity (ordinal, higher is worse) and the 0-100 risk score Elastic uses
EVENT_SEVERITY = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
RISK_SCORE = {"info": 0, "low": 21, "medium": 47, "high": 73, "critical": 99}

FILE_TYPES = {
    "read": "access",
    "open": "access",
    "exec": "access",
    "mmap": "access",
    "write": "change",
    "truncate": "change",
    "rename": "change",
    "chmod": "change",
    "chown": "change",
    "unlink": "deletion",
    "create": "creation",
}


def to_ecs(row: dict[str, Any], *, include_raw: bool = False) -> dict[str, Any]:
    doc = _alert(row) if is_alert(row) else _event(row)
    if include_raw and row.get("raw"):
        doc["event"]["original"] = row["raw"]
    return compact(doc)


def _common(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "@timestamp": iso8601(event_time(row)),
        "ecs": {"version": ECS_VERSION},
        "host": {"name": row.get("node_name"), "hostname": row.get("node_name")},
        "observer": {"product": "tetrapipe", "vendor": "tetrapipe", "version": __version__, "type": "sensor"},
        "agent": {"type": "tetragon"},
        "container": _container(row),
        "orchestrator": _orchestrator(row),
        "labels": _labels(row),
    }


def _container(row: dict[str, Any]) -> dict[str, Any] | None:
    cid = row.get("container_id")
    if not cid and not row.get("container_name"):
        return None
    runtime, _, bare = (cid or "").partition("://")
    image_id = row.get("image_id") or ""
    digest = image_id.split("@", 1)[1] if "@" in image_id else None
    return {
        "id": bare or cid,
        "name": row.get("container_name"),
        "runtime": runtime if bare else None,
        "image": {"name": row.get("image"), "hash": {"all": [digest]} if digest else None},
        "security_context": {"privileged": row.get("privileged")},
    }


def _orchestrator(row: dict[str, Any]) -> dict[str, Any] | None:
    if not row.get("namespace") and not row.get("pod"):
        return None
    parent = None
    if row.get("workload_kind"):
        parent = {"type": row["workload_kind"].lower()}
    return {
        "type": "kubernetes",
        "namespace": row.get("namespace"),
        "cluster": {"name": row.get("cluster_name")},
        "resource": {"type": "pod", "name": row.get("pod"), "id": row.get("pod_uid"), "parent": parent},
    }


def _labels(row: dict[str, Any]) -> dict[str, str] | None:
    """Pod labels as ECS ``labels`` (keyword values; dots in keys would nest in Elasticsearch)."""
    labels = as_map(row.get("pod_labels"))
    return {k.replace(".", "_"): str(v) for k, v in labels.items()} or None


def _process(row: dict[str, Any]) -> dict[str, Any] | None:
    if not row.get("exec_id") and not row.get("process_binary"):
        return None
    args = split_args(row.get("arguments"))
    argv = [row["process_binary"], *args] if row.get("process_binary") else args
    parent = None
    if row.get("parent_binary") or row.get("parent_exec_id"):
        pargs = split_args(row.get("parent_arguments"))
        parent = {
            "entity_id": row.get("parent_exec_id"),
            "pid": row.get("parent_pid"),
            "executable": row.get("parent_binary"),
            "name": basename(row.get("parent_binary")),
            "args": [row["parent_binary"], *pargs] if row.get("parent_binary") else pargs,
            "command_line": command_line(row.get("parent_binary"), row.get("parent_arguments")),
            "start": iso8601(row.get("parent_start_time")),
        }
    out: dict[str, Any] = {
        "entity_id": row.get("exec_id"),
        "pid": row.get("pid"),
        "thread": {"id": row.get("tid")},
        "executable": row.get("process_binary"),
        "name": row.get("process_name") or basename(row.get("process_binary")),
        "args": argv or None,
        "args_count": len(argv) if argv else None,
        "command_line": command_line(row.get("process_binary"), row.get("arguments")),
        "working_directory": row.get("cwd"),
        "start": iso8601(row.get("process_start_time")),
        "parent": parent,
        "real_user": {"id": _str(row.get("uid"))},
        "user": {"id": _str(row.get("euid") if row.get("euid") is not None else row.get("uid"))},
    }
    if row.get("kind") == "process_exit":
        out["exit_code"] = row.get("exit_status") or 0  # Tetragon omits a zero status
        out["end"] = iso8601(row.get("time"))
    return out


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _tetragon(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": row.get("kind"),
        "policy_name": row.get("policy_name"),
        "function_name": row.get("function_name"),
        "action": row.get("action"),
        "return_action": row.get("return_action"),
        "flags": row.get("flags"),
        "in_init_tree": row.get("in_init_tree"),
        "cap_effective": row.get("cap_effective"),
        "host_namespaces": row.get("host_namespaces"),
        "privileges_changed": row.get("privileges_changed"),
        "container_start_time": iso8601(row.get("container_start_time")),
        "container_pid": row.get("container_pid"),
        "workload": row.get("workload"),
        "workload_kind": row.get("workload_kind"),
        "ancestors": [b for b in row.get("ancestor_binaries") or [] if b] or None,
        "exit_signal": row.get("exit_signal"),
        "file_permission": row.get("file_permission"),
        "sock_state": row.get("sock_state"),
        "throttle_type": row.get("throttle_type"),
        "cgroup": row.get("cgroup"),
        "dropped_events": row.get("dropped_events"),
        "policy_tags": row.get("tags"),
    }


def _event(row: dict[str, Any]) -> dict[str, Any]:
    kind = row.get("kind") or "unknown"
    fn = row.get("function_name")
    doc = _common(row)
    event: dict[str, Any] = {
        "kind": "event",
        "module": "tetragon",
        "dataset": "tetragon.events",
        "id": row.get("event_id"),
        "action": fn or kind,
        "provider": row.get("policy_name"),
    }
    if kind == "process_exec":
        event |= {"category": ["process"], "type": ["start"]}
    elif kind == "process_exit":
        event |= {"category": ["process"], "type": ["end"]}
    elif row.get("file_path"):
        path = row["file_path"]
        event |= {"category": ["file"], "type": [FILE_TYPES.get((row.get("file_access") or "").lower(), "info")]}
        doc["file"] = {"path": path, "name": basename(path), "directory": dirname(path)}
    elif row.get("daddr") or kind in ("process_connect", "process_close", "process_listen"):
        types = ["connection"]
        if kind == "process_connect" or fn == "tcp_connect":
            types.append("start")
        elif kind == "process_close" or fn == "tcp_close":
            types.append("end")
        if row.get("tls_version"):
            types.append("protocol")
        event |= {"category": ["network"], "type": types}
        proto = transport(row.get("protocol"))
        version = ip_version(row.get("daddr") or row.get("saddr"), row.get("sock_family"))
        doc["source"] = {"ip": row.get("saddr"), "port": row.get("sport")}
        doc["destination"] = {"ip": row.get("daddr"), "port": row.get("dport")}
        doc["network"] = {
            "transport": proto,
            "type": f"ipv{version}" if version else None,
            "direction": "egress" if "start" in types else ("ingress" if kind == "process_listen" else None),
            "protocol": "tls" if row.get("tls_version") else None,
        }
        if row.get("tls_version") or row.get("tls_cipher"):
            doc["tls"] = {
                "version": tls_version_number(row.get("tls_version")),
                "version_protocol": "tls",
                "cipher": row.get("tls_cipher"),
                "client": {"server_name": row.get("tls_sni")},
                "established": True,
            }
    elif row.get("exec_id"):
        lowered = (fn or "").lower()
        change = any(s in lowered for s in ("setuid", "setgid", "setns", "setre", "setres", "capset"))
        event |= {"category": ["process"], "type": ["change" if change else "info"]}
    else:
        event |= {"category": ["host"], "type": ["info"]}
    if row.get("action") and any(a in row["action"] for a in ("SIGKILL", "OVERRIDE")):
        # Tetragon stopped the operation. ECS allows event.type "denied" only with the network (and
        # intrusion_detection) categories; for process and file the outcome alone says it.
        if "network" in event["category"]:
            event["type"] = [*event["type"], "denied"]
        event["outcome"] = "failure"
    doc["event"] = event
    doc["process"] = _process(row)
    doc["tetragon"] = _tetragon(row)
    doc["tetrapipe"] = {
        "source": row.get("source"),
        "source_offset": row.get("source_offset"),
        "tls_cipher_code": row.get("tls_cipher_code"),
    }
    doc["tags"] = row.get("tags")
    doc["message"] = row.get("message")
    return doc


def _alert(row: dict[str, Any]) -> dict[str, Any]:
    sev = (row.get("severity") or "info").lower()
    if sev not in EVENT_SEVERITY:  # a severity this version does not know ranks as info, never dropped
        sev = "info"
    doc = _common(row)
    categories = ["intrusion_detection"]
    if row.get("process_binary"):
        categories.append("process")
    doc["event"] = {
        "kind": "alert",
        "module": "tetrapipe",
        "dataset": "tetrapipe.alerts",
        "id": row.get("alert_id"),
        "category": categories,
        "type": ["info"],
        "action": row.get("rule_id"),
        "severity": EVENT_SEVERITY[sev],
        "risk_score": RISK_SCORE[sev],
        "start": iso8601(row.get("time")),
        "end": iso8601(row.get("last_time")),
        "reason": row.get("message"),
    }
    doc["log"] = {"level": sev}
    doc["message"] = row.get("message") or row.get("title")
    doc["rule"] = {
        "id": row.get("rule_id"),
        "name": row.get("title"),
        "description": row.get("title"),
        "ruleset": "tetrapipe",
        "category": (row.get("tags") or [None])[0],
    }
    techniques = []
    for t in row.get("mitre") or []:
        base, _, sub = t.partition(".")
        entry: dict[str, Any] = {"id": [base]}
        if sub:
            entry["subtechnique"] = {"id": [t]}
        techniques.append(entry)
    if techniques:
        doc["threat"] = {
            "framework": "MITRE ATT&CK",
            "technique": {
                "id": sorted({t["id"][0] for t in techniques}),
                "subtechnique": {
                    "id": sorted({s for t in techniques for s in t.get("subtechnique", {}).get("id", [])})
                },
            },
        }
    args = split_args(row.get("arguments"))
    if row.get("exec_id") or row.get("process_binary"):
        argv = [row["process_binary"], *args] if row.get("process_binary") else args
        doc["process"] = {
            "entity_id": row.get("exec_id"),
            "executable": row.get("process_binary"),
            "name": basename(row.get("process_binary")),
            "args": argv or None,
            "args_count": len(argv) if argv else None,
            "command_line": command_line(row.get("process_binary"), row.get("arguments")),
            "parent": {"executable": row.get("parent_binary"), "name": basename(row.get("parent_binary"))},
        }
    doc["tags"] = row.get("tags")
    doc["tetrapipe"] = {
        "alert": {
            "count": row.get("count"),
            "dedup_key": row.get("dedup_key"),
            "event_ids": row.get("event_ids"),
            "ancestors": [b for b in row.get("ancestor_binaries") or [] if b] or None,
        },
    }
    doc["related"] = {"hosts": [row["node_name"]] if row.get("node_name") else None}
    return doc
