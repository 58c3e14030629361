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
    exit_line = json.dumps(
        {
            "process_exit": {
                "process": {"exec_id": "eA==", "binary": "/bin/false"},
                "status": 1,
                "signal": "SIGKILL",
                "time": "2024-01-01T00:00:01Z",
            },
            "node_name": "n1",
            "time": "2024-01-01T00:00:01.5Z",
        }
    )
    (r,) = _rows([exit_line])
    assert r["exit_status"] == 1 and r["exit_signal"] == "SIGKILL"


def test_every_kind_of_the_api_and_unknown_kinds_are_kept() -> None:
    base = {"process": {"exec_id": "aDoxOjI=", "pid": 2, "binary": "/usr/bin/x"}}
    lines = [
        {
            "process_tracepoint": {
                **base,
                "subsys": "raw_syscalls",
                "event": "sys_enter",
                "policy_name": "p",
                "args": [{"long_arg": "59"}],
            }
        },
        {"process_uprobe": {**base, "path": "/usr/lib/libssl.so.3", "symbol": "SSL_write", "policy_name": "u"}},
        {
            "process_lsm": {
                **base,
                "function_name": "file_open",
                "policy_name": "lsm",
                "args": [{"file_arg": {"path": "/etc/shadow"}}],
                "action": "KPROBE_ACTION_POST",
            }
        },
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
    ev = {
        "node_name": "n1",
        "time": "2024-01-01T00:00:00Z",
        "process_kprobe": {
            "process": {"exec_id": "aDoxOjM=", "binary": "/usr/bin/curl"},
            "function_name": "tcp_connect",
            "policy_name": "connect",
            "args": [
                {
                    "sock_arg": {
                        "family": "AF_INET",
                        "type": "SOCK_STREAM",
                        "protocol": "IPPROTO_TCP",
                        "saddr": "10.0.0.2",
                        "daddr": "104.198.14.52",
                        "sport": 33978,
                        "dport": 443,
                        "cookie": "18446",
                        "state": "TCP_SYN_SENT",
                    }
                }
            ],
        },
    }
    (r,) = _rows([json.dumps(ev)])
    assert (r["sock_family"], r["protocol"], r["saddr"], r["sport"], r["daddr"], r["dport"], r["sock_state"]) == (
        "AF_INET",
        "IPPROTO_TCP",
        "10.0.0.2",
        33978,
        "104.198.14.52",
        443,
        "TCP_SYN_SENT",
    )
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
        ("[1, 2]", "not a Tetragon event: an array, not an object"),
        ("123", "not a Tetragon event: a number, not an object"),
        ('"text"', "not a Tetragon event: a string, not an object"),
        ("{}", "not a Tetragon event: an empty object"),
        # a reason quotes at most 100 characters of a value (a 5,000-character time is not printed back whole)
        (
            '{"process_exec":{},"time":"' + "9" * 5000 + '"}',
            "not a Tetragon event: bad time " + "9" * 100 + "... (5000 characters)",
        ),
        ('{"node_name":"' + "n" * 300 + '"}', "not a Tetragon event: no event key besides node_name"),
        ('{"node_name":"x","time":"2024-01-01T00:00:00Z"}', "not a Tetragon event: no event key"),
        ('{"process_exec":{},"time":"yesterday"}', "not a Tetragon event: bad time"),
        ('{"process_exec":"x","time":"2024-01-01T00:00:00Z"}', "not a Tetragon event: process_exec is not an object"),
        # two events in one Kafka record (a shipper that batches lines): said so, not "unexpected content"
        (
            '{"process_exec":{}}\n{"process_exit":{}}',
            "invalid JSON: a second JSON document at character 21 (one event per line, and per Kafka record)",
        ),
        ('{"process_exec":{}} x', "invalid JSON: unexpected content after document at character 21"),
        ('{"process_exec":{}}}', "invalid JSON: unexpected content after document at character 20"),
        ('\x00{\x00"\x00a\x00"\x00:\x001\x00}', "invalid JSON: a NUL byte between characters, as UTF-16 text"),
        (
            '{"process_exec":{"process":{"binary":"a\x00b"}}}x',
            "invalid JSON: unexpected control character in string at character 40",
        ),
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


# --- issue 14: any input, any fault ---------------------------------------------------------

PROVENANCE = ("raw", "source", "source_offset")


def _real_lines() -> list[str]:
    return [line for p in REAL_LOGS for line in p.read_text().splitlines() if line.strip()]


def _same_rows(a: list[dict], b: list[dict]) -> None:
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k not in PROVENANCE} == {
            k: v for k, v in y.items() if k not in PROVENANCE
        }


def _sort_keys(value: object) -> object:
    if isinstance(value, dict):
        return {k: _sort_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sort_keys(v) for v in value]
    return value


def test_key_order_changes_nothing() -> None:
    """`jq -S` output and an envelope written first give the rows of the original lines, node and time included."""
    lines = _real_lines()
    original = _rows(lines)
    envelope_first = []
    for line in lines:
        ev = json.loads(line)
        envelope_first.append(json.dumps({**{k: ev[k] for k in ("time", "node_name") if k in ev}, **ev}))
    jq_sorted = [json.dumps(_sort_keys(json.loads(line)), separators=(",", ":")) for line in lines]
    for variant in (envelope_first, jq_sorted):
        rows = _rows(variant)
        assert sum(r["node_name"] is not None for r in rows) == sum(r["node_name"] is not None for r in original) > 50
        _same_rows(rows, original)


_NOT_A_LIST = ["notalist", "[1, 2]", '[{"file_arg": {}}]', 7, True, None, {"x": [1]}]
_NOT_AN_OBJECT = ["notalist", '{"a": "b"}', "{}x", 7, False, [["nested"]], [{"a": "b"}]]


@pytest.mark.parametrize(
    ("path", "column", "wrong"),
    [
        (("args",), "args", _NOT_A_LIST),
        (("ancestors",), "ancestor_binaries", _NOT_A_LIST),
        (("process", "cap", "effective"), "cap_effective", _NOT_A_LIST),
        (("process", "binary_properties", "privileges_changed"), "privileges_changed", _NOT_A_LIST),
        (("tags",), "tags", _NOT_A_LIST),
        (("process", "ns"), "host_namespaces", _NOT_AN_OBJECT),
        (("process", "pod", "pod_labels"), "pod_labels", _NOT_AN_OBJECT),
        (("return",), "return_value", _NOT_AN_OBJECT),
    ],
)
def test_a_value_of_the_wrong_json_type_is_null_and_the_event_is_kept(
    path: tuple[str, ...], column: str, wrong: list[object]
) -> None:
    """A string (even one holding JSON), a number, a bool or the other container type where Tetragon sends a list
    or an object: that column is NULL, the rest of the event is read, the next line is not disturbed."""
    base = {
        "process": {
            "exec_id": "aDoxOjI=",
            "binary": "/usr/bin/cat",
            "ns": {"uts": {"inum": 1, "is_host": True}},
            "pod": {"namespace": "ns1", "pod_labels": {"app": "x"}},
            "cap": {"effective": ["CAP_CHOWN"]},
            "binary_properties": {"privileges_changed": ["PRIVILEGES_RAISED_EXEC_FILE_SETUID"]},
        },
        "function_name": "security_file_permission",
        "args": [{"file_arg": {"path": "/etc/shadow", "permission": "-rw-r-----"}}, {"int_arg": 4}],
        "return": {"int_arg": 0},
        "tags": ["t1"],
        "ancestors": [{"exec_id": "aDoxOjE=", "binary": "/bin/sh"}],
    }
    good = json.dumps({"process_kprobe": base, "node_name": "n1", "time": "2024-01-01T00:00:00Z"})
    lines = [good]
    for value in wrong:
        bad = json.loads(good)
        target = bad["process_kprobe"]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        lines += [json.dumps(bad), good]
    rows = _rows(lines)
    assert rows[0][column] is not None
    for value, bad_row, next_row in zip(wrong, rows[1::2], rows[2::2], strict=True):
        assert bad_row[column] is None, (value, bad_row[column])
        assert bad_row["process_binary"] == "/usr/bin/cat" and bad_row["node_name"] == "n1"
        _same_rows([next_row], [rows[0]])


def test_a_string_that_looks_like_arguments_is_not_read_as_arguments() -> None:
    fake = json.dumps([{"file_arg": {"path": "/etc/shadow"}}])
    line = {
        "process_kprobe": {
            "process": {"exec_id": "aDoxOjI=", "binary": "/bin/x"},
            "function_name": "fd_install",
            "args": fake,
        },
        "time": "2024-01-01T00:00:00Z",
    }
    (row,) = _rows([json.dumps(line)])
    assert row["args"] is None and row["file_path"] is None and row["function_name"] == "fd_install"


def test_a_line_duckdb_cannot_handle_is_found_by_bisection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever DuckDB raises on, only the offending line is lost (as a reject saying why), the rest keep their order."""
    import tetrapipe.transforms.normalize.normalizer as normalize  # the module the Normalizer reads the queries from

    boom = "CASE WHEN contains(raw, 'BOOM') THEN error('cannot digest this line') ELSE raw END"
    for name in ("FAST_SQL", "CAREFUL_SQL"):
        sql = getattr(normalize, name).replace("FROM batch", f"FROM (SELECT * REPLACE ({boom} AS raw) FROM batch)")
        monkeypatch.setattr(normalize, name, sql)
    lines = _real_lines()[:9]
    bad = lines[4].replace('"binary":"', '"binary":"BOOM', 1)
    result = normalize_lines([*lines[:4], bad, *lines[4:]], source="s.log", first_offset=100)
    assert result.events.column("source_offset").to_pylist() == [100, 101, 102, 103, 105, 106, 107, 108, 109]
    (rej,) = result.rejects.to_pylist()
    assert rej["source_offset"] == 104 and rej["raw"] == bad
    assert rej["reason"].startswith("could not be normalized: ") and "cannot digest this line" in rej["reason"]


def test_no_exception_for_odd_strings() -> None:
    odd = [
        "{}",
        '{"process_exec":null}',
        '{"process_exec":{}}',
        '{"process_exec":{"process":[]}}',
        "null",
        '{"process_exec":{"process":{"pid":1e400}}}',
        '{"process_exec":{"process":{"binary":"\\ud800"}}}',
        '{"a":' * 3000 + "1" + "}" * 3000,
        '{"process_exec":{"process":{"pid":123456789012345678901234567890}}}',
        '{"time":{"a":1},"process_exec":{}}',
        '{"process_exec":{},"process_exec":[]}',
        "\x00",
        '{"x":"\x00"}',
    ]
    result = normalize_lines([*odd, "\ud800"])
    assert result.events.num_rows + result.rejects.num_rows == len(odd) + 1
    assert all(result.rejects.column("reason").to_pylist())


def test_duplicate_keys_take_the_last_value_and_are_flagged() -> None:
    """Every other JSON reader takes the last of two equal keys: so must the columns rules run on."""
    proc = '"process":{"exec_id":"aDoxOjI=","binary":"/bin/bash","binary":"/usr/bin/true"}'
    lines = [
        '{"process_exec":{' + proc + '},"node_name":"n1","time":"2024-01-01T00:00:00Z"}',
        '{"process_kprobe":{"process":{"exec_id":"aDoxOjM="},"function_name":"security_file_permission",'
        '"args":[{"file_arg":{"path":"/tmp/x","path":"/etc/shadow"}},{"int_arg":4}]},"time":"2024-01-01T00:00:00Z"}',
        '{"process_exec":{"process":{"exec_id":"aDoxOjQ=","pod":{"namespace":"a","pod_labels":{"app":"x","app":"y"}}}},'
        '"time":"2024-01-01T00:00:00Z","time":"2024-01-02T00:00:00Z"}',
        '{"process_exec":{"process":{"exec_id":"aDoxOjU="},"ancestors":[{"binary":"/bin/sh","binary":"/bin/zsh"}]}}',
        '{"process_exec":{"process":{"exec_id":"aDoxOjY=","binary":"/bin/ls"}},"time":"2024-01-01T00:00:00Z"}',
    ]
    rows = _rows(lines)
    assert rows[0]["process_binary"] == "/usr/bin/true"
    assert rows[0]["warnings"] == ["duplicate key process_exec.process.binary: last value used"]
    assert rows[1]["file_path"] == "/etc/shadow" and rows[1]["file_access"] == "read"
    assert rows[1]["warnings"] == ["duplicate key process_kprobe.args[0].file_arg.path: last value used"]
    assert rows[2]["pod_labels"] == [("app", "y")] and str(rows[2]["time"]) == "2024-01-02 00:00:00"
    assert sorted(rows[2]["warnings"]) == [
        "duplicate key process_exec.process.pod.pod_labels.app: last value used",
        "duplicate key time: last value used",
    ]
    assert rows[3]["ancestor_binaries"] == ["/bin/zsh"]
    assert rows[4]["warnings"] is None and rows[4]["process_binary"] == "/bin/ls"
    assert [r["raw"] for r in rows] == lines  # the line as read is kept, repeats and all


def test_linux_binprm_permission_reaches_file_permission() -> None:
    """The LSM hook bprm_check_security and the kprobe security_bprm_check carry a KprobeLinuxBinprm (path, flags, permission)."""
    binprm = {"linux_binprm_arg": {"path": "/tmp/payload", "permission": "-rwxrwxrwx"}}
    proc = {"exec_id": "aDoxOjI=", "binary": "/bin/sh"}
    lines = [
        {
            "process_lsm": {
                "process": proc,
                "function_name": "bprm_check_security",
                "policy_name": "lsm-exec",
                "args": [binprm],
                "action": "KPROBE_ACTION_POST",
            }
        },
        {
            "process_kprobe": {
                "process": proc,
                "function_name": "security_bprm_check",
                "policy_name": "exec",
                "args": [binprm],
                "action": "KPROBE_ACTION_POST",
            }
        },
    ]
    for row in _rows([json.dumps({**ev, "time": "2024-01-01T00:00:00Z"}) for ev in lines]):
        assert (row["file_path"], row["file_permission"], row["file_access"]) == ("/tmp/payload", "-rwxrwxrwx", "exec")


def test_a_file_argument_after_the_fourth_is_found() -> None:
    args = [
        {"int_arg": 1},
        {"int_arg": 2},
        {"size_arg": "3"},
        {"uint_arg": 4},
        {"int_arg": 5},
        {"file_arg": {"path": "/etc/sudoers", "permission": "-r--r-----"}},
    ]
    line = {
        "process_kprobe": {
            "process": {"exec_id": "aDoxOjI="},
            "function_name": "security_file_permission",
            "args": args,
        },
        "time": "2024-01-01T00:00:00Z",
    }
    (row,) = _rows([json.dumps(line)])
    assert row["file_path"] == "/etc/sudoers" and row["file_permission"] == "-r--r-----"


def test_openat_tracepoint_path() -> None:
    """A tracepoint sends the fields its policy selects; sys_enter_openat's filename is its string argument."""
    line = {
        "process_tracepoint": {
            "process": {"exec_id": "aDoxOjI=", "binary": "/usr/bin/cat"},
            "subsys": "syscalls",
            "event": "sys_enter_openat",
            "args": [{"int_arg": -100}, {"string_arg": "/etc/shadow"}, {"int_arg": 0}],
            "policy_name": "openat",
            "action": "KPROBE_ACTION_POST",
        },
        "time": "2024-01-01T00:00:00Z",
    }
    (row,) = _rows([json.dumps(line)])
    assert row["function_name"] == "syscalls/sys_enter_openat"
    assert (row["file_path"], row["file_access"]) == ("/etc/shadow", "open")


def test_enterprise_listen_address(real: list[dict]) -> None:
    """process_listen says where it listens as `ip` and `port` (samples/real/events-docs.log)."""
    listens = sorted((r["saddr"], r["sport"], r["protocol"]) for r in real if r["kind"] == "process_listen")
    assert listens == [("0.0.0.0", 80, "TCP"), ("0.0.0.0", 9080, "TCP")]


def test_nanoseconds_are_kept() -> None:
    """Two events of one process in the same microsecond keep their order through time_ns."""
    lines = [
        json.dumps(
            {"process_exec": {"process": {"exec_id": f"aDoxOj{i}="}}, "time": f"2024-04-14T02:18:14.376304{ns}Z"}
        )
        for i, ns in enumerate(("204", "917"))
    ]
    rows = _rows(lines)
    assert rows[0]["time"] == rows[1]["time"]
    assert [r["time_ns"] for r in rows] == [1713061094376304204, 1713061094376304917]
    no_fraction = _rows([json.dumps({"process_exec": {}, "time": "2024-04-14T02:18:14Z"})])[0]
    assert no_fraction["time_ns"] == 1713061094 * 10**9


def test_a_repeat_spelled_with_escapes_is_still_a_repeat() -> None:
    """`bin\\u0061ry` is `binary` to every JSON reader; keys with control characters cannot pass for other shapes."""
    lines = [
        '{"process_exec":{"process":{"exec_id":"aDoxOjI=","binary":"/bin/bash","bin\\u0061ry":"/usr/bin/true"}}}',
        '{"process_exec":{"process":{"exec_id":"aDoxOjM=","x\\u001fbinary":"a","binary":"/bin/ls"}}}',
        '{"process_exec":{"process":{"exec_id":"aDoxOjQ=","x":"a","binary":"/bin/ls","binary":"/bin/sh"}}}',
    ]
    rows = _rows(lines)
    assert [r["process_binary"] for r in rows] == ["/usr/bin/true", "/bin/ls", "/bin/sh"]
    assert [bool(r["warnings"]) for r in rows] == [True, False, True]


def test_a_backslash_in_a_binary_name_is_part_of_the_name() -> None:
    """On Linux only ``/`` separates a path: ``/tmp/evil\\sshd`` is a file named ``evil\\sshd``.

    Were ``\\`` a separator too (DuckDB's ``parse_filename`` default), a binary
    named that way would show as ``sshd`` to every rule and exception that
    tests ``process_name``: an allowlisted name for any dropped binary, and a
    "shell" (``x\\bash``) that is none.
    """
    lines = [
        '{"process_exec":{"process":{"exec_id":"aDoxOjU=","binary":"/tmp/evil\\\\sshd"}}}',
        '{"process_exec":{"process":{"exec_id":"aDoxOjY=","binary":"/tmp/x\\\\bash"}}}',
        '{"process_exec":{"process":{"exec_id":"aDoxOjc=","binary":"/usr/sbin/sshd"}}}',
        '{"process_exec":{"process":{"exec_id":"aDoxOjg=","binary":"C:\\\\x\\\\bash.exe"}}}',
    ]
    rows = _rows(lines)
    assert [r["process_binary"] for r in rows] == [
        "/tmp/evil\\sshd",
        "/tmp/x\\bash",
        "/usr/sbin/sshd",
        "C:\\x\\bash.exe",
    ]
    assert [r["process_name"] for r in rows] == ["evil\\sshd", "x\\bash", "sshd", "C:\\x\\bash.exe"]


def test_a_time_with_an_offset_is_read_in_utc() -> None:
    """RFC 3339 allows any offset (protojson reads one; Tetragon writes ``Z``): ``09:00:01+02:00`` is 07:00:01 UTC.

    DuckDB's cast to TIMESTAMP drops an offset without a word, which put such an
    event hours away from its neighbours (windows, chains, trees, dedup) and gave
    the same event written two ways two ``event_id``s.
    """

    def line(when: str, start: str) -> str:
        process = {"exec_id": "aDoxOjk=", "binary": "/bin/ls", "start_time": start}
        process["pod"] = {"name": "p", "container": {"start_time": start}}
        parent = {"exec_id": "aDoxOjE=", "start_time": start}
        return json.dumps({"process_exec": {"process": process, "parent": parent}, "node_name": "n", "time": when})

    utc, plus, minus, bare = _rows(
        [
            line("2026-03-10T07:00:01.123456789Z", "2026-03-10T06:59:00Z"),
            line("2026-03-10T09:00:01.123456789+02:00", "2026-03-10T08:59:00+02:00"),
            line("2026-03-10T01:30:01.123456789-05:30", "2026-03-10T01:29:00-05:30"),
            line("2026-03-10T07:00:01.123456789", "2026-03-10T06:59:00"),
        ]
    )
    columns = ["time", "time_ns", "process_start_time", "container_start_time", "parent_start_time", "event_id"]
    assert str(utc["time"]) == "2026-03-10 07:00:01.123456" and utc["time_ns"] % 10**9 == 123456789
    assert str(utc["process_start_time"]) == "2026-03-10 06:59:00"
    for other in (plus, minus, bare):
        assert {c: other[c] for c in columns} == {c: utc[c] for c in columns}
    # an offset DuckDB cannot read makes the time unknown, never a wrong one: the line is a reject
    bad = normalize_lines([line("2026-03-10T09:00:01 +02:00", "2026-03-10T08:59:00 +02:00")])
    assert bad.events.num_rows == 0 and "bad time" in bad.rejects.column("reason")[0].as_py()
    # an offset RFC 3339 does not allow, which DuckDB reads anyway (+99:99 as 4 days 3 hours): unknown too
    impossible = ["+99:99", "+24:00", "+23:60", "-2400", "+00:60"]
    bad = normalize_lines([line(f"2026-03-10T09:00:01{o}", "2026-03-10T08:59:00Z") for o in impossible])
    assert bad.events.num_rows == 0 and bad.rejects.num_rows == len(impossible)
    assert all("bad time" in r for r in bad.rejects.column("reason").to_pylist())
    # the edges RFC 3339 allows still read
    edge = normalize_lines([line(f"2026-03-10T09:00:01{o}", "2026-03-10T08:59:00Z") for o in ("+23:59", "-23:59")])
    assert edge.events.num_rows == 2, edge.rejects.to_pylist()
    # the same for a process's start time: unknown rather than days off
    start = _rows([line("2026-03-10T07:00:01Z", "2026-03-10T08:59:00+99:99")])
    assert start and start[0]["process_start_time"] is None
