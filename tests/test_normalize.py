"""The normalizer against real Tetragon events: every one lands, with the right values."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa
import pytest
from conftest import REAL_LOGS, REPO, real_events

from tetrapipe.schema import EVENT_SCHEMA
from tetrapipe.transforms.normalize import normalize_lines


def _rows(lines: list[str]) -> list[dict]:
    result = normalize_lines(lines)
    assert result.rejects.num_rows == 0, result.rejects.to_pylist()
    return result.events.to_pylist()


@pytest.fixture(scope="module")
def real() -> list[dict]:
    lines = [line for p in REAL_LOGS for line in p.read_text().splitlines()]
    return _rows(lines)


def _find(rows: list[dict], **kw: object) -> dict:
    hits = [r for r in rows if all(r[k] == v for k, v in kw.items())]
    assert len(hits) == 1, (kw, len(hits))
    return hits[0]


def test_every_real_event_normalizes_with_its_kind(real: list[dict]) -> None:
    expected = Counter()
    for _, _, ev in real_events():
        kind = next(k for k in ev if k not in ("node_name", "time", "cluster_name", "node_labels"))
        expected[kind] += 1
    assert Counter(r["kind"] for r in real) == expected
    assert len(real) == sum(expected.values()) == 55
    # the raw JSON is kept verbatim: nothing Tetragon sent is lost
    originals = sorted(line for p in REAL_LOGS for line in p.read_text().splitlines() if line.strip())
    assert sorted(r["raw"] for r in real) == originals


def test_schema_is_the_one_definition(real: list[dict]) -> None:
    result = normalize_lines([real[0]["raw"]])
    assert result.events.schema == EVENT_SCHEMA


def test_file_monitoring_kprobe(real: list[dict]) -> None:
    r = _find(real, function_name="security_file_permission", policy_name="file-monitoring")
    assert r["kind"] == "process_kprobe"
    assert r["process_binary"] == "/bin/vi" and r["process_name"] == "vi"
    assert r["file_path"] == "/etc/passwd"
    assert r["file_access"] == "write"  # int_arg 2 = MAY_WRITE
    assert r["file_permission"] == "-rw-r--r--"
    assert r["action"] == "KPROBE_ACTION_POST" and r["return_action"] == "KPROBE_ACTION_POST"
    assert json.loads(r["return_value"]) == {"int_arg": 0}
    assert json.loads(r["args"])[1] == {"int_arg": 2}
    assert r["node_name"] == "tetragon-dev-control-plane"
    assert r["namespace"] == "default" and r["pod"] == "file-access"
    assert r["parent_binary"] == "/bin/sh"
    assert str(r["time"]) == "2024-04-14 02:18:14.376304"


def test_sys_write_with_bytes_and_uint64_as_string(real: list[dict]) -> None:
    r = _find(real, function_name="__x64_sys_write", namespace="tenant-jobs")
    assert r["file_path"] == "etc/passwd"  # as Tetragon reported it (FollowFD era, no leading slash)
    assert r["file_access"] == "write"
    args = json.loads(r["args"])
    assert args[2] == {"size_arg": "627"}  # 64-bit integers stay strings, as Tetragon sends them


def test_exec_with_pod_container_and_caps(real: list[dict]) -> None:
    r = _find(real, kind="process_exec", exec_id="bWluaWt1YmU6MTA1NzU3MjgzNTAwNzk6MTE1MTUz")
    assert r["process_binary"] == "/usr/bin/curl" and r["arguments"] == "www.google.com"
    assert r["pid"] == 115153 and r["uid"] == 0 and r["auid"] == 4294967295
    assert r["namespace"] == "tenant-jobs" and r["pod"] == "elasticsearch-56f8fc6988-pb8c7"
    assert r["container_name"] == "elasticsearch"
    assert r["image"] == "quay.io/isovalent/jobs-app-elasticsearch:latest"
    assert str(r["container_start_time"]) == "2022-01-19 16:27:56"
    assert str(r["process_start_time"]) == "2022-01-19 16:29:01.861000"
    assert r["container_pid"] == 131
    assert r["parent_exec_id"] == "bWluaWt1YmU6MTA1NTYwMTY4NzQzNTU6MTE0NzU3"
    assert r["parent_binary"] == "/bin/bash" and r["parent_pid"] == 114757
    assert "CAP_NET_RAW" in r["cap_effective"] and "DAC_OVERRIDE" in r["cap_effective"]
    assert r["flags"] == "execve clone"


def test_exit_and_enterprise_connect(real: list[dict]) -> None:
    exits = [r for r in real if r["kind"] == "process_exit"]
    assert exits and all(r["exec_id"] for r in exits)
    c = [r for r in real if r["kind"] == "process_connect" and r["process_name"] == "nc"]
    assert len(c) == 1
    assert (c[0]["saddr"], c[0]["daddr"], c[0]["dport"], c[0]["protocol"]) == ("10.88.0.6", "64.225.45.153", 443, "TCP")


def test_throttle_and_host_event_without_node_name(real: list[dict]) -> None:
    t = [r for r in real if r["kind"] == "process_throttle"]
    assert sorted(r["throttle_type"] for r in t) == ["THROTTLE_START", "THROTTLE_STOP"]
    assert {r["cgroup"] for r in t} == {"session-429.scope"}
    openat = _find(real, function_name="__x64_sys_openat")
    assert openat["node_name"] is None and openat["namespace"] is None
    assert openat["file_path"] == "tracing_policy.yaml" and openat["file_access"] == "open"


def test_setns_and_exit_status_fields() -> None:
    exit_line = json.dumps({"process_exit": {"process": {"exec_id": "eA==", "binary": "/bin/false"},
                                             "status": 1, "signal": "SIGKILL", "time": "2024-01-01T00:00:01Z"},
                            "node_name": "n1", "time": "2024-01-01T00:00:01.5Z"})
    (r,) = _rows([exit_line])
    assert r["exit_status"] == 1 and r["exit_signal"] == "SIGKILL"


def test_every_kind_of_the_api_and_unknown_kinds_are_kept() -> None:
    base = {"process": {"exec_id": "aDoxOjI=", "pid": 2, "binary": "/usr/bin/x"}}
    lines = [
        {"process_tracepoint": {**base, "subsys": "raw_syscalls", "event": "sys_enter", "policy_name": "p",
                                "args": [{"long_arg": "59"}]}},
        {"process_uprobe": {**base, "path": "/usr/lib/libssl.so.3", "symbol": "SSL_write", "policy_name": "u"}},
        {"process_lsm": {**base, "function_name": "file_open", "policy_name": "lsm",
                         "args": [{"file_arg": {"path": "/etc/shadow"}}], "action": "KPROBE_ACTION_POST"}},
        {"process_loader": {**base, "path": "/usr/lib/libc.so.6", "buildid": "AAEC"}},
        {"process_usdt": {**base, "path": "/usr/bin/python3", "provider": "python", "name": "function__entry"}},
        {"rate_limit_info": {"number_of_dropped_process_events": "42"}},
        {"tls": {**base, "future_field": {"x": 1}}},
    ]
    rows = _rows([json.dumps({**ev, "node_name": "n1", "time": "2024-01-01T00:00:00Z"}) for ev in lines])
    by = {r["kind"]: r for r in rows}
    assert by["process_tracepoint"]["function_name"] == "raw_syscalls/sys_enter"
    assert by["process_uprobe"]["function_name"] == "SSL_write"
    assert by["process_uprobe"]["hook_path"] == "/usr/lib/libssl.so.3"
    assert by["process_lsm"]["file_path"] == "/etc/shadow" and by["process_lsm"]["file_access"] == "open"
    assert by["process_loader"]["hook_path"] == "/usr/lib/libc.so.6"
    assert by["process_usdt"]["function_name"] == "python:function__entry"
    assert by["rate_limit_info"]["dropped_events"] == 42
    assert by["tls"]["process_binary"] == "/usr/bin/x"  # an unknown kind still gets its process fields
    assert json.loads(by["tls"]["raw"])["tls"]["future_field"] == {"x": 1}


def test_kind_not_first_key_and_socket_args() -> None:
    ev = {"node_name": "n1", "time": "2024-01-01T00:00:00Z",
          "process_kprobe": {"process": {"exec_id": "aDoxOjM=", "binary": "/usr/bin/curl"},
                             "function_name": "tcp_connect", "policy_name": "connect",
                             "args": [{"sock_arg": {"family": "AF_INET", "type": "SOCK_STREAM",
                                                    "protocol": "IPPROTO_TCP", "saddr": "10.0.0.2",
                                                    "daddr": "104.198.14.52", "sport": 33978, "dport": 443,
                                                    "cookie": "18446", "state": "TCP_SYN_SENT"}}]}}
    (r,) = _rows([json.dumps(ev)])
    assert (r["sock_family"], r["protocol"], r["saddr"], r["sport"], r["daddr"], r["dport"], r["sock_state"]) == (
        "AF_INET", "IPPROTO_TCP", "10.0.0.2", 33978, "104.198.14.52", 443, "TCP_SYN_SENT")
    assert r["file_path"] is None


def test_event_id_is_deterministic_and_distinct(real: list[dict]) -> None:
    assert len({r["event_id"] for r in real}) == len(real)
    again = normalize_lines([r["raw"] for r in reversed(real)]).events.to_pylist()
    assert {r["raw"]: r["event_id"] for r in again} == {r["raw"]: r["event_id"] for r in real}
    # whitespace does not change identity (Go's protojson output is not byte-stable)
    spaced = json.dumps(json.loads(real[0]["raw"]), indent=None, separators=(", ", ": "))
    assert normalize_lines([spaced]).events.column("event_id")[0].as_py() == real[0]["event_id"]


@pytest.mark.parametrize(
    "line, reason",
    [
        ('{"process_exec":{"process":{"exec_id":"abc"', "truncated JSON"),
        ("hello world", "invalid JSON"),
        ("[1, 2]", "not a Tetragon event: JSON array, not an object"),
        ('{"node_name":"x","time":"2024-01-01T00:00:00Z"}', "not a Tetragon event: no event key"),
        ('{"process_exec":{},"time":"yesterday"}', "not a Tetragon event: bad time"),
        ('{"process_exec":"x","time":"2024-01-01T00:00:00Z"}', "not a Tetragon event: process_exec is not an object"),
    ],
)
def test_bad_lines_are_rejected_with_reason_and_position(line: str, reason: str) -> None:
    good = next(iter(REAL_LOGS)).read_text().splitlines()[0]
    result = normalize_lines([good, line, good], source="x.log", first_offset=10)
    assert result.events.num_rows == 2
    (rej,) = result.rejects.to_pylist()
    assert rej["reason"].startswith(reason), rej["reason"]
    assert rej["source"] == "x.log" and rej["source_offset"] == 11 and rej["raw"] == line


def test_non_utf8_is_a_reject_not_a_crash() -> None:
    result = normalize_lines([b'{"a":"\xff"}'])
    assert result.events.num_rows == 0
    assert result.rejects.column("reason")[0].as_py().startswith("not UTF-8")


def test_empty_batch() -> None:
    result = normalize_lines([])
    assert result.events.num_rows == 0 and isinstance(result.events, pa.Table)


def test_rows_keep_the_log_order_across_scan_chunks() -> None:
    """DuckDB scans a batch's Arrow chunks on several threads; rows must still come back in log order.

    The TLS transform pairs a ServerHello with the ClientHello before it, and the
    ancestry table wants a parent's exec before its child's: both read rows in order.
    """
    scenario = (REPO / "samples" / "scenario" / "tenant-jobs.log").read_text().splitlines()
    lines = [scenario[i % len(scenario)] for i in range(12 * 4096)]
    for _ in range(3):
        events = normalize_lines(lines).events
        assert events.num_rows == len(lines)
        assert events.column("source_offset").to_pylist() == list(range(1, len(lines) + 1))
