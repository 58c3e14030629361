"""Tetragon events with chosen field values, in the shapes Tetragon exports (``tetragon-samples``).

Generated firing tests of converted rules and the labelled SigmaHQ check
describe an event by the columns a Sigma rule reads (``process_binary``,
``arguments``, ``file_path``, ``daddr``, ...); this module writes the JSON line
Tetragon would have written for it, so the test runs the whole path (the
normalizer included), not a shortcut into the schema:

* ``process_creation``: a ``process_exec`` with process and parent;
* ``file_event`` / ``file_change``: a ``process_kprobe`` on ``sys_openat`` opened
  for writing (``O_WRONLY|O_CREAT|O_TRUNC``), as the file-monitoring policy
  reports it; ``file_access``: ``security_file_permission`` with ``MAY_READ``;
  ``file_delete``: ``security_path_unlink``;
* ``network_connection``: a ``process_kprobe`` on ``tcp_connect`` with a ``sock_arg``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

#: the columns :func:`tetragon_event` can set
COLUMNS = (
    "process_binary",
    "arguments",
    "parent_binary",
    "parent_arguments",
    "cwd",
    "uid",
    "auid",
    "pid",
    "parent_pid",
    "file_path",
    "daddr",
    "dport",
    "saddr",
    "sport",
)
_O_WRITE_CREATE_TRUNC = 0o1 | 0o100 | 0o1000


def _exec_id(node: str, pid: int) -> str:
    return base64.b64encode(f"{node}:{pid * 1000}:{pid}".encode()).decode()


def tetragon_event(category: str, values: dict[str, Any], n: int = 1, node: str = "sigma-test") -> str:
    """One Tetragon JSON line for a Sigma log source ``category`` whose columns have ``values``.

    ``n`` numbers the event (pids, times), so several events of one test are distinct processes.
    """
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise ValueError(f"cannot set {sorted(unknown)} in a generated event (settable: {', '.join(COLUMNS)})")
    pid = int(values.get("pid") or 40000 + n)
    ppid = int(values.get("parent_pid") or 30000 + n)
    when = f"2026-03-10T12:{n // 60 % 60:02d}:{n % 60:02d}.000Z"
    process: dict[str, Any] = {
        "exec_id": _exec_id(node, pid),
        "pid": pid,
        "uid": int(values.get("uid", 1000)),
        "cwd": values.get("cwd") or "/home/app",
        "binary": values.get("process_binary") or "/usr/bin/true",
        "flags": "execve clone",
        "start_time": when,
        "auid": int(values.get("auid", 4294967295)),
        "parent_exec_id": _exec_id(node, ppid),
    }
    if values.get("arguments"):
        process["arguments"] = values["arguments"]
    parent: dict[str, Any] = {
        "exec_id": _exec_id(node, ppid),
        "pid": ppid,
        "binary": values.get("parent_binary") or "/usr/bin/bash",
        "start_time": when,
    }
    if values.get("parent_arguments"):
        parent["arguments"] = values["parent_arguments"]
    body: dict[str, Any] = {"process": process, "parent": parent}
    if category == "process_creation":
        return json.dumps({"process_exec": body, "node_name": node, "time": when})
    if category in ("file_event", "file_change"):
        body["function_name"] = "__x64_sys_openat"
        body["args"] = [
            {"int_arg": -100},
            {"string_arg": values.get("file_path") or "/tmp/x"},
            {"int_arg": _O_WRITE_CREATE_TRUNC},
        ]
        body["policy_name"] = "file-monitoring"
    elif category == "file_access":
        body["function_name"] = "security_file_permission"
        body["args"] = [
            {"file_arg": {"path": values.get("file_path") or "/tmp/x", "permission": "-rw-r--r--"}},
            {"int_arg": 4},
        ]
        body["policy_name"] = "file-monitoring"
    elif category == "file_delete":
        body["function_name"] = "security_path_unlink"
        path = values.get("file_path") or "/tmp/x"
        body["args"] = [{"path_arg": {"path": path}}, {"path_arg": {"path": path}}]
        body["policy_name"] = "file-monitoring"
    elif category == "network_connection":
        body["function_name"] = "tcp_connect"
        body["args"] = [
            {
                "sock_arg": {
                    "family": "AF_INET6" if ":" in str(values.get("daddr") or "") else "AF_INET",
                    "type": "SOCK_STREAM",
                    "protocol": "IPPROTO_TCP",
                    "saddr": values.get("saddr") or "10.244.1.9",
                    "daddr": values.get("daddr") or "198.51.100.7",
                    "sport": int(values.get("sport") or 50122),
                    "dport": int(values.get("dport") or 443),
                    "state": "TCP_SYN_SENT",
                }
            }
        ]
        body["policy_name"] = "connect"
    else:
        raise ValueError(f"no event shape for log source category {category!r}")
    body["action"] = "KPROBE_ACTION_POST"
    return json.dumps({"process_kprobe": body, "node_name": node, "time": when})


__all__ = ["COLUMNS", "tetragon_event"]
