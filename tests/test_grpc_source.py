"""GrpcSource against a real gRPC server (tests/grpc_server.py) on 127.0.0.1.

The server serves the real open-source sample events; every test demands
that each one arrives exactly once, in order, and decodes to the same JSON as
its line in the export file, whatever happens to the connection.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time

import grpc
import pytest
from conftest import REAL_LOGS
from grpc_server import FakeTetragon, serve, wait_until

from tetrapipe.proto import tetragon_pb2
from tetrapipe.sources.grpc import (
    GrpcSource,
    GrpcSourceError,
    build_request,
    parse_address,
    parse_field_filters,
    parse_filters,
)
from tetrapipe.sources.grpc.codec import EVENT_KINDS, event_kind, json_to_response


def _oss_lines() -> list[str]:
    out = []
    for path in REAL_LOGS:
        for line in path.read_text().splitlines():
            if line.strip() and event_kind(json.loads(line)) in EVENT_KINDS:
                out.append(line)
    return out


LINES = _oss_lines()
EVENTS = [json_to_response(line) for line in LINES]
EXPECTED = [json.loads(line) for line in LINES]
FAST = {"backoff_initial": 0.02, "backoff_max": 0.1}


def _decoded(lines: list[bytes]) -> list[dict]:
    return [json.loads(b) for b in lines]


class Collector:
    """Iterate a source's lines() in a thread, the way a pipeline does."""

    def __init__(self, source: GrpcSource, delay: float = 0.0) -> None:
        self.source = source
        self.delay = delay
        self.lines: list[bytes] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for line in self.source.lines():
                self.lines.append(line)
                if self.delay:
                    time.sleep(self.delay)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_samples_loaded() -> None:
    assert len(EVENTS) >= 40
    assert {e.WhichOneof("event") for e in EVENTS} == {
        "process_exec",
        "process_exit",
        "process_kprobe",
        "process_throttle",
    }


def test_all_events_arrive_in_order_as_export_json() -> None:
    with serve(EVENTS) as agent:
        src = GrpcSource(agent.address, reconnect=False)
        got = list(src.lines())
        src.stop()
    assert _decoded(got) == EXPECTED
    assert all(b"\n" not in line for line in got)
    st = src.stats
    assert st["received"] == st["delivered"] == len(EVENTS)
    assert st["connects"] == 1 and st["reconnects"] == 0 and st["backoffs"] == 0
    assert st["state"] == "finished" and st["clean_stream_ends"] == 1
    assert st["decode_errors"] == 0 and st["unknown_field_events"] == 0
    assert st["unknown_field_checks"] == len(EVENTS)


def test_messages_and_payloads_views() -> None:
    with serve(EVENTS) as agent, GrpcSource(agent.address, reconnect=False) as src:
        msgs = list(src.messages())
    assert msgs == EVENTS


def test_filters_reach_the_server_as_protobuf() -> None:
    allow = {"event_set": ["PROCESS_EXEC", "PROCESS_KPROBE"], "namespace": ["default"], "pod_regex": ["^xwing"]}
    deny = [{"health_check": True}, {"namespace": ["", "cilium", "kube-system"]}]
    fields = {
        "fields": "process.exec_id,process.parent_exec_id",
        "event_set": ["PROCESS_EXEC"],
        "invert_event_set": True,
        "action": "INCLUDE",
    }
    with serve(EVENTS[:3]) as agent:
        with GrpcSource(agent.address, allow_list=allow, deny_list=deny, field_filters=[fields], reconnect=False) as s:
            assert len(list(s.lines())) == 3
        assert len(agent.requests) == 1
        req = agent.requests[0]

    # the expected request, built field by field with the protobuf API
    want = tetragon_pb2.GetEventsRequest()
    a = want.allow_list.add()
    a.event_set.extend([tetragon_pb2.PROCESS_EXEC, tetragon_pb2.PROCESS_KPROBE])
    a.namespace.append("default")
    a.pod_regex.append("^xwing")
    d1 = want.deny_list.add()
    d1.health_check.value = True
    d2 = want.deny_list.add()
    d2.namespace.extend(["", "cilium", "kube-system"])
    f = want.field_filters.add()
    f.fields.paths.extend(["process.exec_id", "process.parent_exec_id"])
    f.event_set.append(tetragon_pb2.PROCESS_EXEC)
    f.invert_event_set.value = True
    f.action = tetragon_pb2.INCLUDE
    assert req == want
    assert req.deny_list[1].namespace[0] == ""  # "" = host processes, kept

    # the agents' flag syntax (line-separated JSON) gives the same request
    flag_text = "\n".join(json.dumps(x) for x in deny) + "\n"
    assert build_request(json.dumps(allow), flag_text, json.dumps(fields)) == want


def test_filter_conversion_details_and_errors() -> None:
    caps = parse_filters({"capabilities": {"effective": {"any": ["CAP_SYS_ADMIN", "DAC_OVERRIDE"]}}, "pid_set": [1]})
    assert list(caps[0].capabilities.effective.any) == [tetragon_pb2.CAP_SYS_ADMIN, tetragon_pb2.DAC_OVERRIDE]
    assert list(caps[0].pid_set) == [1]
    assert parse_filters(None) == [] and parse_filters("  \n") == []
    exclude = parse_field_filters({"fields": ["process.pod", "parentExecId"], "action": "EXCLUDE"})[0]
    assert list(exclude.fields.paths) == ["process.pod", "parent_exec_id"]
    assert exclude.action == tetragon_pb2.EXCLUDE and not exclude.HasField("invert_event_set")
    with pytest.raises(ValueError, match="PROCESS_TELEPORT"):
        parse_filters({"event_set": ["PROCESS_TELEPORT"]})
    with pytest.raises(ValueError, match="binary_regexp"):
        parse_filters([{"namespace": ["a"]}, {"binary_regexp": ["x"]}], "allow_list filter")
    with pytest.raises(ValueError, match="line 2"):
        parse_filters('{"namespace": ["a"]}\n{not json}\n')
    with pytest.raises(ValueError, match="names no field"):
        parse_field_filters({"fields": " , "})


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("localhost:54321", "localhost:54321"),
        ("grpc://10.0.0.7:54321", "10.0.0.7:54321"),
        ("tcp://[::1]:54321/", "[::1]:54321"),
        ("unix:///var/run/tetragon/tetragon.sock", "unix:///var/run/tetragon/tetragon.sock"),
        ("  dns:///tetragon.kube-system:54321 ", "dns:///tetragon.kube-system:54321"),
    ],
)
def test_parse_address(address: str, target: str) -> None:
    assert parse_address(address) == target


@pytest.mark.parametrize("bad", ["", "grpc://", "https://x:1", "http://x:1", "unix://"])
def test_parse_address_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_address(bad)


def test_server_restart_mid_stream_reconnects_and_delivers_the_rest() -> None:
    agent = FakeTetragon(EVENTS, pause_at=20, at_end="hold").start()
    src = GrpcSource(agent.address, rng=random.Random(7), **FAST)
    consumer = Collector(src)
    try:
        assert wait_until(lambda: len(consumer.lines) == 20)
        assert src.stats["connects"] == 1
        agent.stop()  # the agent goes away mid-stream...
        assert wait_until(lambda: src.stats["backoffs"] >= 2)  # ...and the source keeps trying, backing off
        assert src.stats["connects"] == 1
        agent.pause_at = None
        agent.start()  # same port
        assert wait_until(lambda: len(consumer.lines) == len(EVENTS))
    finally:
        src.stop()
        agent.stop()
    consumer.thread.join(2)
    assert consumer.error is None
    assert _decoded(consumer.lines) == EXPECTED  # everything, once, in order
    st = src.stats
    # one connection before the restart, at least one after (a loaded machine
    # can connect to the restarting agent a moment too early and retry)
    assert st["connects"] >= 2 and st["reconnects"] == st["connects"] - 1
    assert st["stream_errors"] >= 2 and st["connect_attempts"] >= 3
    assert 0 < st["backoff_total_s"] and st["last_backoff_s"] <= FAST["backoff_max"]
    assert any(code in (st["last_error"] or "") for code in ("UNAVAILABLE", "CANCELLED"))
    assert agent.streams >= 2


def test_backoff_grows_and_is_capped_with_full_jitter() -> None:
    src = GrpcSource("127.0.0.1:1", backoff_initial=0.5, backoff_max=4.0, rng=random.Random(3))
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    delays = [src._backoff_delay(i) for i in range(len(ceilings))]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule
    again = GrpcSource("127.0.0.1:1", backoff_initial=0.5, backoff_max=4.0, rng=random.Random(3))
    assert [again._backoff_delay(i) for i in range(len(ceilings))] == delays  # seeded: reproducible


@pytest.mark.parametrize("how", ["close", "abort"])
def test_stream_ends_and_failures_reconnect(how: str) -> None:
    opts = {"close_after": 10} if how == "close" else {"abort_after": 15}
    with serve(EVENTS, at_end="hold", **opts) as agent:
        src = GrpcSource(agent.address, rng=random.Random(1), **FAST)
        consumer = Collector(src)
        assert wait_until(lambda: len(consumer.lines) == len(EVENTS))
        src.stop()
    assert _decoded(consumer.lines) == EXPECTED
    st = src.stats
    if how == "close":
        assert st["clean_stream_ends"] >= 4 and st["connects"] >= 5
    else:
        assert st["stream_errors"] >= 2 and st["connects"] >= 3
        assert "UNAVAILABLE" in st["last_error"]


def test_exit_at_eof_ends_iteration_even_with_reconnect() -> None:
    with serve(EVENTS) as agent:
        src = GrpcSource(agent.address, reconnect=True, exit_at_eof=True)
        got = list(src.lines())
    assert _decoded(got) == EXPECTED
    assert src.stats["connects"] == 1 and src.stats["backoffs"] == 0


def test_failure_without_reconnect_raises_after_delivering() -> None:
    with serve(EVENTS, abort_after=5) as agent:
        src = GrpcSource(agent.address, reconnect=False)
        got = []
        with pytest.raises(GrpcSourceError, match="UNAVAILABLE.*reconnect is off"):
            for line in src.lines():
                got.append(line)
    assert _decoded(got) == EXPECTED[:5]
    assert src.stats["state"] == "failed"


def test_non_retryable_status_is_not_retried() -> None:
    with serve(EVENTS, abort_after=3, abort_code=grpc.StatusCode.INVALID_ARGUMENT) as agent:
        src = GrpcSource(agent.address, **FAST)
        got = []
        with pytest.raises(GrpcSourceError, match="INVALID_ARGUMENT"):
            for line in src.lines():
                got.append(line)
        assert agent.streams == 1
    assert len(got) == 3 and src.stats["backoffs"] == 0


def test_unreachable_agent() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = GrpcSource(f"127.0.0.1:{port}", reconnect=False)
    t0 = time.monotonic()
    with pytest.raises(GrpcSourceError, match="UNAVAILABLE"):
        list(src.lines())
    assert time.monotonic() - t0 < 5
    retrying = GrpcSource(f"127.0.0.1:{port}", rng=random.Random(2), **FAST).start()
    assert wait_until(lambda: retrying.stats["backoffs"] >= 3)
    t0 = time.monotonic()
    retrying.stop()
    assert time.monotonic() - t0 < 1
    st = retrying.stats
    assert st["connects"] == 0 and st["connect_attempts"] >= 3 and st["state"] == "stopped"


def test_slow_consumer_gets_backpressure_and_loses_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tetrapipe.sources.grpc")
    with serve(EVENTS) as agent:
        src = GrpcSource(agent.address, buffer_events=2, reconnect=False)
        got = []
        for line in src.lines():
            got.append(line)
            time.sleep(0.004)  # slower than the stream
    assert _decoded(got) == EXPECTED
    st = src.stats
    assert st["backpressure_events"] > 0 and st["backpressure_episodes"] >= 1
    assert st["backpressure_wait_s"] > 0
    assert st["received"] == st["delivered"] == len(EVENTS)
    assert any("buffer full" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_stop_ends_iteration_promptly() -> None:
    with serve(EVENTS, at_end="hold") as agent:  # an idle agent: the stream stays open
        src = GrpcSource(agent.address)
        consumer = Collector(src)
        assert wait_until(lambda: len(consumer.lines) == len(EVENTS))
        time.sleep(0.05)  # the consumer now waits for more
        t0 = time.monotonic()
        src.stop()
        consumer.thread.join(1)
        elapsed = time.monotonic() - t0
    assert not consumer.thread.is_alive() and consumer.error is None
    assert elapsed < 1
    assert src.stats["state"] == "stopped"
    assert list(src.lines()) == []  # a stopped source yields nothing


def test_stop_while_blocked_on_a_full_buffer() -> None:
    with serve(EVENTS, at_end="hold") as agent:
        src = GrpcSource(agent.address, buffer_events=1).start()  # nobody consumes
        assert wait_until(lambda: src.stats["backpressure_events"] >= 1)
        t0 = time.monotonic()
        src.stop()
        assert time.monotonic() - t0 < 1
        assert not src._thread.is_alive()


def test_undecodable_and_unknown_fields_are_counted_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tetrapipe.sources.grpc")
    newer = EVENTS[0].SerializeToString() + bytes([0xC0, 0xB8, 0x02, 0x01])  # + unknown field 5000 = 1
    garbage = b"\x0a\xff\x01"  # field 1 claims 255 bytes, has 1
    with serve([EVENTS[1], newer, garbage, EVENTS[2]]) as agent:
        src = GrpcSource(agent.address, reconnect=False)
        got = list(src.lines())
    assert _decoded(got) == [EXPECTED[1], EXPECTED[0], EXPECTED[2]]
    st = src.stats
    assert st["decode_errors"] == 1 and st["unknown_field_events"] == 1
    assert any("unknown to tetrapipe" in r.getMessage() for r in caplog.records)
    assert any("undecodable" in r.getMessage() for r in caplog.records)


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        GrpcSource("localhost:54321", buffer_events=0)
    with pytest.raises(ValueError):
        GrpcSource("localhost:54321", backoff_initial=2, backoff_max=1)
    with pytest.raises(ValueError, match="event_set"):
        GrpcSource("localhost:54321", allow_list={"event_set": ["NOPE"]})
