"""tetrapipe's tetragon.proto against the facts and the real exported events.

What must hold, and why:

* the committed stubs are what the ``.proto`` generates (else they drift);
* every field name in every real open-source event exists in our ``.proto``:
  the samples are parsed *without* ``ignore_unknown_fields``;
* protobuf -> JSON gives back the exported line (as parsed JSON), so the
  gRPC source and the file source feed the pipeline identical events;
* enterprise-only kinds are refused with a message that says why;
* names and numbers match Tetragon's published API (a renumbered field
  decodes into the wrong place without any error).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REAL_LOGS
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import FieldDescriptor

from tetrapipe.proto import regenerate, tetragon_pb2
from tetrapipe.sources.grpc import codec as grpc_codec
from tetrapipe.sources.grpc.codec import (
    UnsupportedEventKind,
    json_to_response,
    response_to_dict,
    response_to_json,
)

REPO = Path(__file__).resolve().parents[1]
# The checkout's stubs (what gets committed), even when tetrapipe is imported
# from an installed copy.
CHECKOUT_PROTO = REPO / "tetrapipe" / "proto"
OSS_KINDS = {"process_exec", "process_exit", "process_kprobe", "process_throttle"}
ENTERPRISE_KINDS = {"process_connect", "process_close", "process_listen"}


def _sample_lines() -> list[tuple[str, str, str]]:
    """(id, kind, line) of every real sample event."""
    out = []
    for path in REAL_LOGS:
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                kind = grpc_codec.event_kind(json.loads(line))
                out.append((f"{path.name}:{n}", kind, line))
    return out


SAMPLES = _sample_lines()
OSS = [s for s in SAMPLES if s[1] in OSS_KINDS]
ENTERPRISE = [s for s in SAMPLES if s[1] in ENTERPRISE_KINDS]


def test_samples_cover_the_kinds() -> None:
    kinds = {s[1] for s in SAMPLES}
    assert kinds <= OSS_KINDS | ENTERPRISE_KINDS, f"a sample kind this test does not classify: {kinds}"
    assert {s[1] for s in OSS} == OSS_KINDS
    assert len(OSS) >= 40 and ENTERPRISE


# ---------------------------------------------------------------------------
# Stubs are up to date
# ---------------------------------------------------------------------------


def _copy_stubs(tmp_path: Path) -> Path:
    copy = tmp_path / "tetrapipe" / "proto"
    copy.mkdir(parents=True)
    for name in (*regenerate.GENERATED, "tetragon.proto"):
        shutil.copy(CHECKOUT_PROTO / name, copy / name)
    return copy


def test_regenerate_check_passes() -> None:
    assert regenerate.differences(CHECKOUT_PROTO) == []
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "tetrapipe.proto.regenerate", "--check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_another_grpcio_tools_release_is_no_drift(tmp_path: Path) -> None:
    """Stubs stamped by another grpcio-tools/protobuf release (what PyPI does every few weeks) still check clean."""
    copy = _copy_stubs(tmp_path)
    grpc_stub = copy / "tetragon_pb2_grpc.py"
    text = grpc_stub.read_text()
    assert "GRPC_GENERATED_VERSION = '" in text
    grpc_stub.write_text(
        re.sub(r"GRPC_GENERATED_VERSION = '[^']+'", "GRPC_GENERATED_VERSION = '1.99.7'", text)
        + "\n# a template comment of another release\n"
    )
    pb2 = copy / "tetragon_pb2.py"
    pb2.write_text(re.sub(r"# Protobuf Python Version: \S+", "# Protobuf Python Version: 9.1.2", pb2.read_text()))
    assert regenerate.differences(copy) == []


def test_regenerate_check_detects_stale_stubs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A renumbered field, a renamed method, a missing file: each is named."""
    copy = _copy_stubs(tmp_path)
    proto = copy / "tetragon.proto"
    text = proto.read_text()
    # the .proto changed but the stubs were not regenerated: a field number moved
    assert "string exec_id = 1;" in text
    proto.write_text(text.replace("string exec_id = 1;", "string exec_id = 99;", 1))
    grpc_stub = copy / "tetragon_pb2_grpc.py"
    grpc_stub.write_text(
        grpc_stub.read_text().replace("/tetragon.FineGuidanceSensors/GetHealth", "/tetragon.X/GetHealth")
    )
    (copy / "tetragon_pb2.pyi").unlink()
    monkeypatch.setattr(regenerate, "PROTO_DIR", copy)
    problems = regenerate.differences()
    assert any("tetragon_pb2.py: differs" in p and "number: 99" in p for p in problems), problems
    assert any("tetragon_pb2_grpc.py: differs" in p and "/tetragon.X/GetHealth" in p for p in problems), problems
    assert any("tetragon_pb2.pyi: missing" in p for p in problems)
    assert regenerate.main(["--check"]) == 1


# ---------------------------------------------------------------------------
# Real samples: strict parse and round trip
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("sample_id", "kind", "line"), OSS, ids=[s[0] for s in OSS])
def test_real_event_parses_strictly_and_round_trips(sample_id: str, kind: str, line: str) -> None:
    msg = tetragon_pb2.GetEventsResponse()
    json_format.Parse(line, msg)  # no ignore_unknown_fields: every key must exist in our .proto
    assert msg.WhichOneof("event") == kind

    # protobuf -> JSON is the exporter's line, as parsed JSON
    assert json.loads(response_to_json(msg)) == json.loads(line)
    # ... and equal to the generic reference encoder
    assert response_to_dict(msg) == json_format.MessageToDict(msg, preserving_proto_field_name=True)
    # wire round trip
    again = tetragon_pb2.GetEventsResponse.FromString(msg.SerializeToString())
    assert again == msg
    assert json.loads(grpc_codec.bytes_to_json(msg.SerializeToString())) == json.loads(line)
    # the codec's own parser agrees with json_format
    assert json_to_response(line) == msg
    # one compact line
    out = response_to_json(msg)
    assert b"\n" not in out and not out.endswith(b" ")


@pytest.mark.parametrize(("sample_id", "kind", "line"), ENTERPRISE, ids=[s[0] for s in ENTERPRISE])
def test_enterprise_event_is_rejected_clearly(sample_id: str, kind: str, line: str) -> None:
    with pytest.raises(json_format.ParseError, match=kind):
        json_format.Parse(line, tetragon_pb2.GetEventsResponse())
    with pytest.raises(UnsupportedEventKind, match="Enterprise") as err:
        json_to_response(line)
    assert err.value.kind == kind
    assert "open-source" in str(err.value)


def test_unknown_field_is_an_error_not_silence() -> None:
    line = json.loads(OSS[0][2])
    line[OSS[0][1]]["process"]["brand_new_field"] = 1
    with pytest.raises(json_format.ParseError, match="brand_new_field"):
        json_to_response(json.dumps(line))
    assert json_to_response(json.dumps(line), ignore_unknown_fields=True).WhichOneof("event") == OSS[0][1]
    with pytest.raises(UnsupportedEventKind, match="not an event kind"):
        json_to_response('{"process_teleport": {}, "node_name": "n"}')


# ---------------------------------------------------------------------------
# protojson details the samples do not all exercise
# ---------------------------------------------------------------------------


def test_protojson_details() -> None:
    r = tetragon_pb2.GetEventsResponse(node_name="n1", cluster_name="c")
    k = r.process_kprobe
    k.process.exec_id = "eA=="
    k.process.uid.value = 0  # wrapper set to zero: present
    k.process.pid.value = 7
    k.process.refcnt = 0  # plain zero: omitted
    k.process.start_time.FromNanoseconds(1_713_061_094_000_000_000)  # whole seconds
    k.parent.SetInParent()  # empty but present
    k.args.add().size_arg = 1277
    k.args.add().int_arg = 0  # oneof member at zero: present
    k.args.add().bytes_arg = b"\x00\xffroot:x:0:0"
    a = k.args.add()
    a.sock_arg.cookie = 18446744073709551615
    a.sock_arg.family = "AF_INET"
    a.label = "sock"
    k.args.add().long_arg = -5
    k.args.add().cap_effective_arg = "000001ffffffffff"
    k.args.add().bpf_cmd_arg = tetragon_pb2.BPF_PROG_LOAD
    k.action = tetragon_pb2.KPROBE_ACTION_POST
    k.return_action = 999  # unknown enum number stays a number
    k.process.pod.pod_labels["app"] = "x"
    k.process.cap.effective.extend([tetragon_pb2.CAP_CHOWN, tetragon_pb2.DAC_OVERRIDE])
    r.time.FromNanoseconds(1_713_061_094_376_304_204)
    r.node_labels["zone"] = "a"

    d = json.loads(response_to_json(r))
    p = d["process_kprobe"]
    assert p["process"]["uid"] == 0 and p["process"]["pid"] == 7
    assert "refcnt" not in p["process"]
    assert p["process"]["start_time"] == "2024-04-14T02:18:14Z"
    assert p["parent"] == {}
    assert p["args"][0] == {"size_arg": "1277"}
    assert p["args"][1] == {"int_arg": 0}
    assert p["args"][2] == {"bytes_arg": "AP9yb290Ong6MDow"}
    assert p["args"][3] == {"sock_arg": {"family": "AF_INET", "cookie": "18446744073709551615"}, "label": "sock"}
    assert p["args"][4] == {"long_arg": "-5"}
    assert p["args"][6] == {"bpf_cmd_arg": "BPF_PROG_LOAD"}
    assert p["action"] == "KPROBE_ACTION_POST" and p["return_action"] == 999
    assert p["process"]["cap"] == {"effective": ["CAP_CHOWN", "DAC_OVERRIDE"]}
    assert d["time"] == "2024-04-14T02:18:14.376304204Z"
    assert d["node_labels"] == {"zone": "a"} and d["cluster_name"] == "c"
    assert response_to_dict(r) == json_format.MessageToDict(r, preserving_proto_field_name=True)

    for nanos, text in [(0, ""), (5_000_000, ".005"), (5_000, ".000005"), (5, ".000000005"), (120_000_000, ".120")]:
        t = tetragon_pb2.GetEventsResponse()
        t.time.seconds, t.time.nanos = 1_700_000_000, nanos
        assert json.loads(response_to_json(t))["time"] == f"2023-11-14T22:13:20{text}Z"

    rl = tetragon_pb2.GetEventsResponse()
    rl.rate_limit_info.number_of_dropped_process_events = 12
    assert json.loads(response_to_json(rl)) == {"rate_limit_info": {"number_of_dropped_process_events": "12"}}


def _fill(msg, depth: int, salt: int) -> None:
    """Set every field of ``msg`` (recursively) to a non-default value."""
    desc = msg.DESCRIPTOR
    name = desc.full_name
    if name == "google.protobuf.Timestamp":
        msg.seconds, msg.nanos = 1_600_000_000 + salt, [0, 1_000_000, 2_000, 3][salt % 4]
        return
    if name == "google.protobuf.Duration":
        msg.seconds, msg.nanos = 15 + salt, [0, 500_000_000][salt % 2]
        return
    if name == "google.protobuf.FieldMask":
        msg.paths.extend(["process.exec_id", "parent"])
        return
    chosen_oneofs = {o.name: o.fields[salt % len(o.fields)].name for o in desc.oneofs}
    for fd in desc.fields:
        if fd.containing_oneof is not None and chosen_oneofs[fd.containing_oneof.name] != fd.name:
            continue
        repeated = regenerate_is_repeated(fd)
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            if fd.message_type.GetOptions().map_entry:
                getattr(msg, fd.name)["k1"] = "v1"
                getattr(msg, fd.name)["k2"] = ""
                continue
            if depth <= 0:
                continue
            if repeated:
                for i in range(2):
                    _fill(getattr(msg, fd.name).add(), depth - 1, salt + i + 1)
            else:
                sub = getattr(msg, fd.name)
                sub.SetInParent()
                _fill(sub, depth - 1, salt + 1)
            continue
        value = _scalar(fd, salt)
        if repeated:
            getattr(msg, fd.name).extend([value, _scalar(fd, salt + 1)])
        else:
            setattr(msg, fd.name, value)


def regenerate_is_repeated(fd: FieldDescriptor) -> bool:
    flag = getattr(fd, "is_repeated", None)
    return bool(flag) if flag is not None else fd.label == FieldDescriptor.LABEL_REPEATED


def _scalar(fd: FieldDescriptor, salt: int):
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        return f's{salt}-é/"x"'
    if t == FieldDescriptor.TYPE_BYTES:
        return bytes([salt % 256, 255, 0, 10])
    if t == FieldDescriptor.TYPE_BOOL:
        return salt % 2 == 0
    if t == FieldDescriptor.TYPE_ENUM:
        values = fd.enum_type.values
        return values[(salt % (len(values) - 1)) + 1].number if len(values) > 1 else 0
    if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return -1 - salt
    if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return -(2**40) - salt
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return 2**63 + salt
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return 1.5 + salt
    return 4_000_000_000 + salt  # uint32 / fixed32


@pytest.mark.parametrize("salt", range(12))
def test_codec_equals_json_format_on_every_field(salt: int) -> None:
    """Every field of every message, each oneof member in turn: same JSON as MessageToDict."""
    r = tetragon_pb2.GetEventsResponse()
    _fill(r, depth=4, salt=salt)
    assert r.WhichOneof("event") is not None
    assert response_to_dict(r) == json_format.MessageToDict(r, preserving_proto_field_name=True)
    assert json_to_response(response_to_json(r)) == r  # and it parses back
    req = tetragon_pb2.GetEventsRequest()
    _fill(req, depth=3, salt=salt)
    assert grpc_codec._message_converter(req.DESCRIPTOR)(req) == json_format.MessageToDict(
        req, preserving_proto_field_name=True
    )


def test_every_oneof_member_is_covered() -> None:
    kinds = set()
    args = set()
    for salt in range(64):
        r = tetragon_pb2.GetEventsResponse()
        _fill(r, depth=3, salt=salt)
        kinds.add(r.WhichOneof("event"))
        a = tetragon_pb2.KprobeArgument()
        _fill(a, depth=2, salt=salt)
        args.add(a.WhichOneof("arg"))
    assert kinds == grpc_codec.EVENT_KINDS
    assert args == {f.name for f in tetragon_pb2.KprobeArgument.DESCRIPTOR.oneofs_by_name["arg"].fields}


# ---------------------------------------------------------------------------
# Names and numbers (tetragon-facts.md §1)
# ---------------------------------------------------------------------------


def _numbers(message) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}


def test_service_and_method() -> None:
    svc = tetragon_pb2.DESCRIPTOR.services_by_name["FineGuidanceSensors"]
    assert svc.full_name == "tetragon.FineGuidanceSensors"
    m = svc.methods_by_name["GetEvents"]
    assert m.input_type.full_name == "tetragon.GetEventsRequest"
    assert m.output_type.full_name == "tetragon.GetEventsResponse"
    assert m.server_streaming and not m.client_streaming


def test_envelope_numbers() -> None:
    got = _numbers(tetragon_pb2.GetEventsResponse)
    assert got == {
        "process_exec": 1,
        "process_exit": 5,
        "process_kprobe": 9,
        "process_tracepoint": 10,
        "process_loader": 11,
        "process_uprobe": 12,
        "process_throttle": 27,
        "process_lsm": 28,
        "process_usdt": 29,
        "test": 40000,
        "rate_limit_info": 40001,
        "node_name": 1000,
        "time": 1001,
        "aggregation_info": 1002,
        "cluster_name": 1003,
        "node_labels": 1004,
    }
    # EventType numbers equal the oneof numbers (servers map one onto the other)
    oneof = tetragon_pb2.GetEventsResponse.DESCRIPTOR.oneofs_by_name["event"]
    for f in oneof.fields:
        assert tetragon_pb2.EventType.Value(f.name.upper()) == f.number
    assert tetragon_pb2.EventType.Value("UNDEF") == 0
    # numbers of retired event kinds stay reserved, in the message and the enum
    file_proto = descriptor_pb2.FileDescriptorProto.FromString(tetragon_pb2.DESCRIPTOR.serialized_pb)
    retired = [(2, 4), (6, 8), (13, 26)]
    (resp,) = [m for m in file_proto.message_type if m.name == "GetEventsResponse"]
    assert [(r.start, r.end - 1) for r in resp.reserved_range] == retired  # message ranges: end exclusive
    (etype,) = [e for e in file_proto.enum_type if e.name == "EventType"]
    assert [(r.start, r.end) for r in etype.reserved_range] == retired  # enum ranges: end inclusive


def test_request_and_filter_numbers() -> None:
    assert _numbers(tetragon_pb2.GetEventsRequest) == {
        "allow_list": 1,
        "deny_list": 2,
        "aggregation_options": 3,
        "field_filters": 4,
    }
    assert _numbers(tetragon_pb2.Filter) == {
        "binary_regex": 1,
        "namespace": 2,
        "health_check": 3,
        "pid": 4,
        "pid_set": 5,
        "event_set": 6,
        "pod_regex": 7,
        "arguments_regex": 8,
        "labels": 9,
        "policy_names": 10,
        "capabilities": 11,
        "parent_binary_regex": 12,
        "cel_expression": 13,
        "parent_arguments_regex": 14,
        "container_id": 15,
        "in_init_tree": 16,
        "ancestor_binary_regex": 17,
        "container_name_regex": 18,
        "namespace_regex": 19,
    }
    assert _numbers(tetragon_pb2.FieldFilter) == {"event_set": 1, "fields": 2, "action": 3, "invert_event_set": 4}
    assert tetragon_pb2.FieldFilter.DESCRIPTOR.fields_by_name["fields"].message_type.full_name == (
        "google.protobuf.FieldMask"
    )
    assert _numbers(tetragon_pb2.CapFilterSet) == {"any": 1, "all": 2, "exactly": 3, "none": 4}
    assert _numbers(tetragon_pb2.AggregationOptions) == {"window_size": 1, "channel_buffer_size": 2}
    assert _numbers(tetragon_pb2.RedactionFilter) == {"match": 1, "redact": 2, "binary_regex": 3}


def test_process_and_pod_numbers() -> None:
    assert _numbers(tetragon_pb2.Process) == {
        "exec_id": 1,
        "pid": 2,
        "uid": 3,
        "cwd": 4,
        "binary": 5,
        "arguments": 6,
        "flags": 7,
        "start_time": 8,
        "auid": 9,
        "pod": 10,
        "docker": 11,
        "parent_exec_id": 12,
        "refcnt": 13,
        "cap": 14,
        "ns": 15,
        "tid": 16,
        "process_credentials": 17,
        "binary_properties": 18,
        "user": 19,
        "in_init_tree": 20,
        "environment_variables": 21,
    }
    assert _numbers(tetragon_pb2.Pod) == {
        "namespace": 1,
        "name": 2,
        "uid": 3,
        "container": 4,
        "pod_labels": 5,
        "workload": 6,
        "workload_kind": 7,
        "pod_annotations": 8,
    }
    assert _numbers(tetragon_pb2.Container) == {
        "id": 1,
        "name": 2,
        "image": 3,
        "start_time": 4,
        "pid": 5,
        "maybe_exec_probe": 13,
        "security_context": 14,
    }
    assert _numbers(tetragon_pb2.EnvVar) == {"Key": 1, "Value": 2}
    assert _numbers(tetragon_pb2.ProcessExit) == {
        "process": 1,
        "parent": 2,
        "signal": 3,
        "status": 4,
        "time": 5,
        "ancestors": 6,
    }
    wrappers = {
        ("Process", "pid"): "UInt32Value",
        ("Process", "auid"): "UInt32Value",
        ("Process", "in_init_tree"): "BoolValue",
        ("UserNamespace", "level"): "Int32Value",
        ("KprobeCapability", "value"): "Int32Value",
        ("KernelModule", "signature_ok"): "BoolValue",
    }
    for (msg, field), wrapper in wrappers.items():
        fd = getattr(tetragon_pb2, msg).DESCRIPTOR.fields_by_name[field]
        assert fd.message_type.full_name == f"google.protobuf.{wrapper}"


def test_kprobe_numbers() -> None:
    arg = _numbers(tetragon_pb2.KprobeArgument)
    assert arg.pop("label") == 18
    assert arg == {
        "string_arg": 1,
        "int_arg": 2,
        "skb_arg": 3,
        "size_arg": 4,
        "bytes_arg": 5,
        "path_arg": 6,
        "file_arg": 7,
        "truncated_bytes_arg": 8,
        "sock_arg": 9,
        "cred_arg": 10,
        "long_arg": 11,
        "bpf_attr_arg": 12,
        "perf_event_arg": 13,
        "bpf_map_arg": 14,
        "uint_arg": 15,
        "user_namespace_arg": 16,
        "capability_arg": 17,
        "process_credentials_arg": 19,
        "user_ns_arg": 20,
        "module_arg": 21,
        "kernel_cap_t_arg": 22,
        "cap_inheritable_arg": 23,
        "cap_permitted_arg": 24,
        "cap_effective_arg": 25,
        "linux_binprm_arg": 26,
        "net_dev_arg": 27,
        "bpf_cmd_arg": 28,
        "syscall_id": 29,
        "sockaddr_arg": 30,
        "bpf_prog_arg": 31,
        "error_arg": 32,
        "sockaddrun_arg": 33,
    }
    oneof = tetragon_pb2.KprobeArgument.DESCRIPTOR.oneofs_by_name["arg"]
    assert tetragon_pb2.KprobeArgument.DESCRIPTOR.fields_by_name["label"].containing_oneof is None
    assert len(oneof.fields) == 32
    assert _numbers(tetragon_pb2.ProcessKprobe) == {
        "process": 1,
        "parent": 2,
        "function_name": 3,
        "args": 4,
        "return": 5,
        "action": 6,
        "kernel_stack_trace": 7,
        "policy_name": 8,
        "return_action": 9,
        "message": 10,
        "tags": 11,
        "user_stack_trace": 12,
        "ancestors": 13,
        "data": 14,
    }
    assert _numbers(tetragon_pb2.KprobeSock) == {
        "family": 1,
        "type": 2,
        "protocol": 3,
        "mark": 4,
        "priority": 5,
        "saddr": 6,
        "daddr": 7,
        "sport": 8,
        "dport": 9,
        "cookie": 10,
        "state": 11,
    }
    assert _numbers(tetragon_pb2.ProcessTracepoint)["ancestors"] == 11
    assert _numbers(tetragon_pb2.ProcessLsm) == {
        "process": 1,
        "parent": 2,
        "function_name": 3,
        "policy_name": 5,
        "message": 6,
        "args": 7,
        "action": 8,
        "tags": 9,
        "ancestors": 10,
        "ima_hash": 11,
    }
    assert _numbers(tetragon_pb2.ProcessLoader) == {"process": 1, "path": 2, "buildid": 3, "parent": 4, "ancestors": 5}
    assert _numbers(tetragon_pb2.ProcessThrottle) == {"type": 1, "cgroup": 2}
    actions = {v.name: v.number for v in tetragon_pb2.KprobeAction.DESCRIPTOR.values}
    assert actions["KPROBE_ACTION_POST"] == 1 and actions["KPROBE_ACTION_SIGKILL"] == 3
    assert actions["KPROBE_ACTION_SET"] == 15
    assert all(n.startswith("KPROBE_ACTION_") for n in actions)


def test_enums() -> None:
    caps = {v.number: v.name for v in tetragon_pb2.CapabilitiesType.DESCRIPTOR.values}
    assert sorted(caps) == list(range(41))
    assert caps[0] == "CAP_CHOWN" and caps[1] == "DAC_OVERRIDE" and caps[2] == "CAP_DAC_READ_SEARCH"
    assert caps[21] == "CAP_SYS_ADMIN" and caps[39] == "CAP_BPF" and caps[40] == "CAP_CHECKPOINT_RESTORE"
    assert all(name.startswith("CAP_") for n, name in caps.items() if n != 1)
    bpf = {v.number: v.name for v in tetragon_pb2.BpfCmd.DESCRIPTOR.values}
    assert sorted(bpf) == list(range(37)) and bpf[5] == "BPF_PROG_LOAD" and bpf[36] == "BPF_TOKEN_CREATE"
    secure = {v.name: v.number for v in tetragon_pb2.SecureBitsType.DESCRIPTOR.values}
    assert (
        secure["SecBitNotSet"] == 0 and secure["SecBitNoRoot"] == 1 and secure["SecBitNoCapAmbientRaiseLocked"] == 128
    )
    assert {v.name: v.number for v in tetragon_pb2.ProcessPrivilegesChanged.DESCRIPTOR.values} == {
        "PRIVILEGES_CHANGED_UNSET": 0,
        "PRIVILEGES_RAISED_EXEC_FILE_CAP": 1,
        "PRIVILEGES_RAISED_EXEC_FILE_SETUID": 2,
        "PRIVILEGES_RAISED_EXEC_FILE_SETGID": 3,
    }
    assert {v.name: v.number for v in tetragon_pb2.ThrottleType.DESCRIPTOR.values} == {
        "THROTTLE_UNKNOWN": 0,
        "THROTTLE_START": 1,
        "THROTTLE_STOP": 2,
    }
    assert tetragon_pb2.FieldFilterAction.Value("INCLUDE") == 0 and tetragon_pb2.FieldFilterAction.Value("EXCLUDE") == 1
    tainted = {v.name: v.number for v in tetragon_pb2.TaintedBitsType.DESCRIPTOR.values}
    assert tainted["TAINT_UNSIGNED_MODULE"] == 8192 and tainted["TAINT_TEST_MODULE"] == 262144


def test_dependency_floors_are_what_the_committed_stubs_accept() -> None:
    """pip must never install a grpcio or protobuf the stubs refuse to import with."""
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {m[1]: m[2] for d in deps if (m := re.match(r"([\w-]+)>=([\d.]+)", d))}
    grpc_stamp = re.search(r"GRPC_GENERATED_VERSION = '([^']+)'", (CHECKOUT_PROTO / "tetragon_pb2_grpc.py").read_text())
    assert grpc_stamp and floors["grpcio"] == grpc_stamp[1]
    assert floors["protobuf"] == regenerate.protoc_version_stamp((CHECKOUT_PROTO / "tetragon_pb2.py").read_bytes())
