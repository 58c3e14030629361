"""OCSF 1.x mapping: one tetrapipe row -> one OCSF event.

Which class a row becomes (first rule that matches):

* an alert (``rule_id``)                         -> Detection Finding (2004, Findings)
* an event with ``file_path``                    -> File System Activity (1001, System Activity)
* an event with ``daddr`` or a socket kind       -> Network Activity (4001, Network Activity)
  (``process_connect`` Open, ``process_close`` Close, ``process_listen`` Listen 7)
* ``process_exec`` / ``process_exit``            -> Process Activity (1007), Launch / Terminate
* any other event about a process (a kprobe on ``setuid``, ``setns``, a tracepoint ...)
                                                 -> Process Activity (1007), Other (99), or
                                                    Set User ID (5) for the setuid family
* an event with no process (``process_throttle``, ``rate_limit_info``, unknown kinds)
                                                 -> Base Event (0), Other (99)

``type_uid`` is always ``class_uid * 100 + activity_id``. ``time`` is epoch
milliseconds. Events are Informational (``severity_id`` 1); alerts map the
rule's severity (info 1, low 2, medium 3, high 4, critical 5). What OCSF has no
attribute for (Kubernetes namespace / pod / workload, Tetragon policy, hook and
flags) goes under ``unmapped``, the place OCSF reserves for it. The field-by-
field table is in ``tetrapipe/formats/README.md``.
"""

from __future__ import annotations

from typing import Any

from tetrapipe import __version__
from tetrapipe.formats.values import (
    PROTOCOL_NUMBERS,
    as_map,
    basename,
    command_line,
    compact,
    epoch_ms,
    event_time,
    exec_id_node,
    ip_version,
    is_alert,
    iso8601,
    tls_version_number,
    transport,
)
from tetrapipe.units import severity_rank

OCSF_VERSION = "1.3.0"

#: the device name of an event whose node Tetragon did not name
UNKNOWN_DEVICE = "unknown"

PRODUCT = {"name": "tetrapipe", "vendor_name": "tetrapipe", "version": __version__}

# categories and classes used here
CATEGORY_UNCATEGORIZED, CATEGORY_SYSTEM, CATEGORY_FINDINGS, CATEGORY_NETWORK = 0, 1, 2, 4
CLASS_BASE, CLASS_FILE, CLASS_PROCESS, CLASS_DETECTION, CLASS_NETWORK = 0, 1001, 1007, 2004, 4001

CLASS_NAMES = {
    CLASS_BASE: ("Base Event", "Uncategorized"),
    CLASS_FILE: ("File System Activity", "System Activity"),
    CLASS_PROCESS: ("Process Activity", "System Activity"),
    CLASS_DETECTION: ("Detection Finding", "Findings"),
    CLASS_NETWORK: ("Network Activity", "Network Activity"),
}

SEVERITY_NAMES = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical", 6: "Fatal"}

# file_access (normalize.py's vocabulary) -> File System Activity activity_id
FILE_ACTIVITY = {
    "create": (1, "Create"),
    "read": (2, "Read"),
    "write": (3, "Update"),
    "truncate": (3, "Update"),
    "unlink": (4, "Delete"),
    "rename": (5, "Rename"),
    "chmod": (6, "Set Attributes"),
    "chown": (7, "Set Security"),
    "open": (14, "Open"),
}

NETWORK_KINDS = {"process_connect": (1, "Open"), "process_close": (2, "Close"), "process_listen": (7, "Listen")}
NETWORK_FUNCTIONS = {
    "tcp_connect": (1, "Open"),
    "tcp_close": (2, "Close"),
    "inet_csk_accept": (1, "Open"),
    "tcp_sendmsg": (6, "Traffic"),
    "udp_sendmsg": (6, "Traffic"),
}
SETUID_FUNCTIONS = ("setuid", "setreuid", "setresuid", "setfsuid")

# Tetragon actions that stop the operation: the Security Control profile's action/disposition
_DENY_ACTIONS = ("SIGKILL", "OVERRIDE", "NOTIFY_ENFORCER")


def to_ocsf(row: dict[str, Any], *, include_raw: bool = False) -> dict[str, Any]:
    if is_alert(row):
        out = _detection_finding(row)
    elif row.get("file_path"):
        out = _file_activity(row)
    elif row.get("daddr") or row.get("kind") in NETWORK_KINDS:
        out = _network_activity(row)
    elif row.get("exec_id") or row.get("process_binary"):
        out = _process_activity(row)
    else:
        out = _base_event(row)
    if include_raw and row.get("raw"):
        out["raw_data"] = row["raw"]
    return compact(out)


# --- shared pieces ---------------------------------------------------------------------


def _envelope(
    row: dict[str, Any], class_uid: int, activity_id: int, activity_name: str, severity_id: int = 1
) -> dict[str, Any]:
    class_name, category_name = CLASS_NAMES[class_uid]
    category_uid = class_uid // 1000
    return {
        "category_uid": category_uid,
        "category_name": category_name,
        "class_uid": class_uid,
        "class_name": class_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        # the caption of type_uid: for 99 (Other) it is "Other", activity_name carries the source's word
        "type_name": f"{class_name}: {'Other' if activity_id == 99 else activity_name}",
        "time": epoch_ms(event_time(row)),
        "severity_id": severity_id,
        "severity": SEVERITY_NAMES[severity_id],
        "metadata": _metadata(row, [] if class_uid == CLASS_BASE else ["host", "container"]),
    }


def _metadata(row: dict[str, Any], profiles: list[str]) -> dict[str, Any]:
    alert = is_alert(row)
    return {
        "version": OCSF_VERSION,
        "product": dict(PRODUCT, feature={"name": "detection" if alert else "Tetragon events"}),
        "uid": row.get("alert_id") if alert else row.get("event_id"),
        "original_time": iso8601(row.get("time")),
        "log_name": "tetrapipe.alerts" if alert else "tetragon.events",
        "log_provider": row.get("source"),
        "profiles": profiles or None,
    }


def _device(row: dict[str, Any]) -> dict[str, Any]:
    """The node that saw the event. ``type_id`` 0 (Unknown): a node may be a VM, metal or cloud.

    OCSF needs one identifier of the device; without ``node_name`` the node is
    the one named inside the process's exec_id (how Tetragon builds it). An
    agent that knew no node name writes none there either (exec_ids starting
    with ``:``, seen in Tetragon's own recorded events): the device is then
    named ``unknown``, not left out (a SIEM that validates drops the record),
    with ``hostname`` absent so no host of that name appears.
    """
    node = row.get("node_name") or exec_id_node(row.get("exec_id")) or exec_id_node(row.get("parent_exec_id"))
    return {"type_id": 0, "type": "Unknown", "hostname": node, "name": node or UNKNOWN_DEVICE}


def _container(row: dict[str, Any]) -> dict[str, Any] | None:
    if not row.get("container_id") and not row.get("container_name"):
        return None
    image = row.get("image")
    image_uid = row.get("image_id") or image
    return {
        "uid": row.get("container_id"),
        "name": row.get("container_name"),
        "image": {"uid": image_uid, "name": image} if image_uid else None,
        "orchestrator": "Kubernetes" if row.get("pod") else None,
        "pod_uuid": row.get("pod_uid"),
    }


def _file_obj(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    return {"path": path, "name": basename(path), "type_id": 1, "type": "Regular File"}


def _process(row: dict[str, Any]) -> dict[str, Any]:
    """The process the row is about, with its parent and lineage (oldest ancestor first)."""
    parent = None
    if row.get("parent_exec_id") or row.get("parent_binary"):
        parent = {
            "pid": row.get("parent_pid"),
            "uid": row.get("parent_exec_id"),
            "name": basename(row.get("parent_binary")),
            "file": _file_obj(row.get("parent_binary")),
            "cmd_line": command_line(row.get("parent_binary"), row.get("parent_arguments")),
            "created_time": epoch_ms(row.get("parent_start_time")),
        }
    ancestors = [b for b in (row.get("ancestor_binaries") or []) if b]
    lineage = list(reversed(ancestors))
    if row.get("parent_binary"):
        lineage.append(row["parent_binary"])
    uid = row.get("uid")
    return {
        "pid": row.get("pid"),
        "tid": row.get("tid"),
        "uid": row.get("exec_id"),
        "name": row.get("process_name") or basename(row.get("process_binary")),
        "file": _file_obj(row.get("process_binary")),
        "cmd_line": command_line(row.get("process_binary"), row.get("arguments")),
        "created_time": epoch_ms(row.get("process_start_time")),
        "user": {"uid": str(uid)} if uid is not None else None,
        "parent_process": parent,
        "lineage": lineage or None,
        "container": _container(row),
        "namespace_pid": row.get("container_pid"),
    }


def _actor(row: dict[str, Any]) -> dict[str, Any]:
    return {"process": _process(row)}


def _unmapped(row: dict[str, Any]) -> dict[str, Any]:
    """Tetragon and Kubernetes context OCSF has no attribute for, kept under stable names."""
    return {
        "k8s": {
            "namespace": row.get("namespace"),
            "pod": row.get("pod"),
            "pod_labels": as_map(row.get("pod_labels")) or None,
            "workload": row.get("workload"),
            "workload_kind": row.get("workload_kind"),
            "cluster": row.get("cluster_name"),
        },
        "tetragon": {
            "kind": row.get("kind"),
            "policy_name": row.get("policy_name"),
            "function_name": row.get("function_name"),
            "action": row.get("action"),
            "flags": row.get("flags"),
            "cwd": row.get("cwd"),
            "in_init_tree": row.get("in_init_tree"),
            "cap_effective": row.get("cap_effective"),
            "privileged": row.get("privileged"),
            "container_start_time": iso8601(row.get("container_start_time")),
            "exit_signal": row.get("exit_signal"),
            "file_permission": row.get("file_permission"),
            "tags": row.get("tags"),
            "message": row.get("message"),
        },
    }


def _security_control(out: dict[str, Any], row: dict[str, Any]) -> None:
    """Tetragon enforcement (SIGKILL, OVERRIDE) as the Security Control profile's action/disposition.

    Those attributes exist only with that profile, so the record claims it
    (``metadata.profiles``) exactly when it carries them.
    """
    action = row.get("action") or ""
    if any(a in action for a in _DENY_ACTIONS):
        out.update({"action_id": 2, "action": "Denied", "disposition_id": 2, "disposition": "Blocked"})
        out["metadata"]["profiles"] = [*(out["metadata"].get("profiles") or []), "security_control"]


# --- classes -----------------------------------------------------------------------------


def _process_activity(row: dict[str, Any]) -> dict[str, Any]:
    kind = row.get("kind")
    fn = (row.get("function_name") or "").lower()
    if kind == "process_exec":
        activity = (1, "Launch")
    elif kind == "process_exit":
        activity = (2, "Terminate")
    elif any(fn.endswith(s) for s in SETUID_FUNCTIONS):
        activity = (5, "Set User ID")
    else:
        activity = (99, row.get("function_name") or kind or "Other")
    out = _envelope(row, CLASS_PROCESS, *activity)
    process = _process(row)
    if kind == "process_exec" and process.get("parent_process"):
        # the parent launched this process: it is the actor, the new process the target
        actor_process = dict(process["parent_process"], container=process.get("container"))
    else:
        actor_process = process
    out.update(
        {
            "process": process,
            "actor": {"process": actor_process},
            "device": _device(row),
            "message": _event_message(row),
            "unmapped": _unmapped(row),
        }
    )
    if kind == "process_exit":
        out["exit_code"] = row.get("exit_status") or 0  # Tetragon omits a zero status
    _security_control(out, row)
    return out


def _file_activity(row: dict[str, Any]) -> dict[str, Any]:
    access = (row.get("file_access") or "").lower()
    activity_id, activity_name = FILE_ACTIVITY.get(access, (99, access or "Other"))
    out = _envelope(row, CLASS_FILE, activity_id, activity_name)
    out.update(
        {
            "file": _file_obj(row["file_path"]),
            "actor": _actor(row),
            "device": _device(row),
            "message": _event_message(row),
            "unmapped": _unmapped(row),
        }
    )
    _security_control(out, row)
    return out


def _network_activity(row: dict[str, Any]) -> dict[str, Any]:
    kind = row.get("kind")
    fn = row.get("function_name")
    if kind in NETWORK_KINDS:
        activity = NETWORK_KINDS[kind]
    elif fn in NETWORK_FUNCTIONS:
        activity = NETWORK_FUNCTIONS[fn]
    else:
        activity = (6, "Traffic")
    out = _envelope(row, CLASS_NETWORK, *activity)
    proto = transport(row.get("protocol"))
    version = ip_version(row.get("daddr") or row.get("saddr"), row.get("sock_family"))
    direction = {1: (2, "Outbound"), 7: (1, "Inbound")}.get(activity[0], (0, "Unknown"))
    src = {"ip": row.get("saddr"), "port": row.get("sport")}
    if not row.get("saddr"):
        src["hostname"] = row.get("node_name")  # the local end is on this node even when the address is unknown
    dst = {"ip": row.get("daddr"), "port": row.get("dport")}
    if not row.get("daddr"):
        dst["hostname"] = row.get("node_name") if kind == "process_listen" else None
    out.update(
        {
            "src_endpoint": src,
            "dst_endpoint": dst,
            "connection_info": {
                "protocol_name": proto,
                "protocol_num": PROTOCOL_NUMBERS.get(proto or ""),
                "protocol_ver_id": version,
                "direction_id": direction[0],
                "direction": direction[1],
            },
            "actor": _actor(row),
            "device": _device(row),
            "message": _event_message(row),
            "unmapped": _unmapped(row),
        }
    )
    if row.get("tls_version") or row.get("tls_cipher"):
        out["tls"] = {
            "version": tls_version_number(row.get("tls_version")),
            "cipher": row.get("tls_cipher"),
            "sni": row.get("tls_sni"),
        }
        out["unmapped"]["tls_cipher_code"] = row.get("tls_cipher_code")  # OCSF's tls object has no code
    _security_control(out, row)
    return out


def _base_event(row: dict[str, Any]) -> dict[str, Any]:
    kind = row.get("kind") or "unknown"
    out = _envelope(row, CLASS_BASE, 99, kind)
    # Base Event has no device (and supports neither the host nor the container profile): the node
    # that reported the event goes under unmapped
    out["message"] = _event_message(row)
    out["unmapped"] = _unmapped(row) | {
        "node_name": row.get("node_name"),
        "throttle": {"type": row.get("throttle_type"), "cgroup": row.get("cgroup")},
        "dropped_events": row.get("dropped_events"),
    }
    return out


def _detection_finding(row: dict[str, Any]) -> dict[str, Any]:
    severity_id = severity_rank(row.get("severity")) + 1
    out = _envelope(row, CLASS_DETECTION, 1, "Create", severity_id)
    first, last = epoch_ms(row.get("time")), epoch_ms(row.get("last_time"))
    attacks = []
    for technique in row.get("mitre") or []:
        base, _, _sub = technique.partition(".")
        attack: dict[str, Any] = {"technique": {"uid": base}}
        if _sub:
            attack["sub_technique"] = {"uid": technique}
        attacks.append(attack)
    process = {
        "uid": row.get("exec_id"),
        "name": basename(row.get("process_binary")),
        "file": _file_obj(row.get("process_binary")),
        "cmd_line": command_line(row.get("process_binary"), row.get("arguments")),
        # no parent_process: an alert row keeps the parent's binary (in lineage), not its pid or exec_id,
        # and OCSF's process object needs one of them
        "lineage": list(reversed([b for b in (row.get("ancestor_binaries") or []) if b]))
        + ([row["parent_binary"]] if row.get("parent_binary") else [])
        or None,
        "container": _container(row),
    }
    out.update(
        {
            "message": row.get("message") or row.get("title"),
            "status_id": 1,
            "status": "New",
            "start_time": first,
            "end_time": last,
            "count": row.get("count"),
            "finding_info": {
                "uid": row.get("alert_id"),
                "title": row.get("title") or row.get("rule_id"),
                "desc": row.get("message"),
                "types": [row["rule_id"]] if row.get("rule_id") else None,
                "analytic": {"uid": row.get("rule_id"), "name": row.get("title"), "type_id": 1, "type": "Rule"},
                "attacks": attacks or None,
                "created_time": first,
                "first_seen_time": first,
                "last_seen_time": last,
                "related_events": [{"uid": e} for e in row.get("event_ids") or []] or None,
            },
            "actor": {"process": process} if row.get("exec_id") else None,
            "device": _device(row),
            "unmapped": {
                "k8s": {"namespace": row.get("namespace"), "pod": row.get("pod")},
                "rule": {"id": row.get("rule_id"), "tags": row.get("tags"), "dedup_key": row.get("dedup_key")},
            },
        }
    )
    return out


def _event_message(row: dict[str, Any]) -> str:
    """One readable line, what a SIEM shows in a list view."""
    kind = row.get("kind") or "event"
    who = row.get("process_binary") or ""
    where = f"{row.get('namespace')}/{row.get('pod')}" if row.get("pod") else (row.get("node_name") or "")
    detail = ""
    if row.get("file_path"):
        detail = f" {row.get('file_access') or 'access'} {row['file_path']}"
    elif row.get("daddr"):
        detail = f" -> {row['daddr']}:{row.get('dport')}"
    elif row.get("function_name"):
        detail = f" {row['function_name']}"
    return f"{kind} {who}{detail} on {where}".replace("  ", " ").strip()
