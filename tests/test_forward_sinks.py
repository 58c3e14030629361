"""SIEM sinks against real peers: an HTTP server speaking the HEC contract, a real rsyslogd, the broker.

Each test drives a sink the way the forwarder does (send, flush, close) and
checks what the peer really received, and the sink's counts: nothing is lost
and nothing is dropped silently, through failures, slow answers and outages.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hec_receiver import HecReceiver
from syslog_server import Rsyslog, has_ossl_driver, make_cert, rsyslogd

from tetrapipe.sinks.siem.base import Delivery
from tetrapipe.sinks.siem.hec import HecSink
from tetrapipe.sinks.siem.jsonfile import JsonFileSink
from tetrapipe.sinks.siem.kafka_out import KafkaTopicSink
from tetrapipe.sinks.siem.stdout import StdoutSink
from tetrapipe.sinks.siem.syslog import SyslogSink
from tetrapipe.sinks.spool import DiskSpool

TOKEN = "0b9c5a3e-hec-token"


def records(n: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    """Native-format alerts (what the router hands a sink with ``format: native``)."""
    return [
        {
            "record_type": "alert",
            "schema": "tetrapipe/1",
            "alert_id": f"a{i:05d}",
            "rule_id": "shell-in-pod",
            "severity": ("low", "medium", "high", "critical")[i % 4],
            "time": "2026-03-10T09:00:32.611001Z",
            "node_name": "kind-worker",
            "namespace": "tenant-jobs",
            "pod": "crawler",
            "message": f"alert {i}",
            **extra,
        }
        for i in range(start, start + n)
    ]


def replay(sink: Any, timeout: float = 10.0) -> None:
    """Let the sink's housekeeping replay its spool, as the forwarder's pump does, until it is empty."""
    deadline = time.monotonic() + timeout
    while sink.backlog and time.monotonic() < deadline:
        time.sleep(0.05)
        sink.poll()


def fast(**kw: Any) -> Delivery:
    """Delivery settings for tests: quick backoff, no fsync."""
    opts: dict[str, Any] = {
        "batch_size": 100,
        "linger_seconds": 0.0,
        "max_attempts": 3,
        "backoff_initial_seconds": 0.02,
        "backoff_max_seconds": 0.2,
        "spool_fsync": False,
    }
    opts.update(kw)
    return Delivery(**opts)


@pytest.fixture
def hec() -> Iterator[HecReceiver]:
    r = HecReceiver(token=TOKEN).start()
    yield r
    r.stop()


@pytest.fixture
def hec_ack() -> Iterator[HecReceiver]:
    r = HecReceiver(token=TOKEN, ack=True).start()
    yield r
    r.stop()


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["alert_id"] for e in events]


# --- HEC -------------------------------------------------------------------------------------------


def test_hec_batches_gzip_and_envelope(hec: HecReceiver) -> None:
    sink = HecSink(
        "splunk",
        url=hec.url,
        token=TOKEN,
        index="tetragon",
        sourcetype="tetrapipe:native",
        delivery=fast(batch_size=100),
    )
    sink.send(records(250))
    sink.close()
    assert ids(hec.payloads()) == [f"a{i:05d}" for i in range(250)]
    assert [r["events"] for r in hec.requests] == [100, 100, 50]
    assert all(r["gzip"] for r in hec.requests)
    env = hec.events[0]
    assert env["index"] == "tetragon" and env["sourcetype"] == "tetrapipe:native" and env["host"] == "kind-worker"
    assert env["time"] == pytest.approx(1773133232.611001)
    assert env["fields"] == {"tetrapipe_kind": "alert"}
    assert sink.stats.delivered == 250 and sink.stats.dropped == sink.stats.retried == 0


def test_hec_retries_busy_server_and_honours_retry_after(hec: HecReceiver) -> None:
    slept: list[float] = []
    hec.fail_next(1, 503, 9, "Server is busy")
    hec.fail_next(1, 429, 9, "Too many requests", retry_after=0.15)
    sink = HecSink("splunk", url=hec.url, token=TOKEN, delivery=fast(max_attempts=5), sleep=slept.append)
    sink.send(records(10))
    sink.close()
    assert ids(hec.payloads()) == [f"a{i:05d}" for i in range(10)]  # once each, in order
    assert sink.stats.retried == 20 and sink.stats.delivered == 10 and sink.stats.failures == 2
    assert slept[1] >= 0.15  # the server's Retry-After, not our shorter backoff


def test_hec_rejected_record_goes_to_dead_letter_rest_delivered(hec: HecReceiver, tmp_path: Path) -> None:
    batch = records(3)
    batch[1] = {}  # HEC: 400 code 13 "Event field cannot be blank", invalid-event-number 1
    sink = HecSink("splunk", url=hec.url, token=TOKEN, gzip=False, delivery=fast(spool_dir=str(tmp_path)))
    sink.send(batch)
    sink.close()
    assert ids(hec.payloads()) == ["a00000", "a00002"]
    assert sink.stats.rejected == 1 and sink.stats.delivered == 2 and sink.stats.dropped == 0
    dead = [json.loads(line) for line in (tmp_path / "splunk" / "rejected.jsonl").read_text().splitlines()]
    assert dead == [{"reason": "HEC 400 code 13: Event field cannot be blank (event 1 of the batch)", "record": {}}]


def test_a_dead_letter_after_a_kill_mid_write_starts_a_line_of_its_own(hec: HecReceiver, tmp_path: Path) -> None:
    """A run killed while writing rejected.jsonl leaves half a line; the next run's dead letter was glued to it."""
    (tmp_path / "splunk").mkdir()
    dead_letters = tmp_path / "splunk" / "rejected.jsonl"
    whole = b'{"reason": "earlier", "record": {}}\n'
    dead_letters.write_bytes(whole + b'{"reason": "cut sh')  # the kill
    batch = records(2)
    batch[1] = {}
    sink = HecSink("splunk", url=hec.url, token=TOKEN, gzip=False, delivery=fast(spool_dir=str(tmp_path)))
    sink.send(batch)
    sink.close()
    dead = [json.loads(line) for line in dead_letters.read_text().splitlines()]
    assert [d["reason"] for d in dead] == [
        "earlier",
        "HEC 400 code 13: Event field cannot be blank (event 1 of the batch)",
    ]


def test_hec_413_splits_the_batch(hec: HecReceiver) -> None:
    hec.fail_next(1, 413, 27, "Content too large")
    sink = HecSink("splunk", url=hec.url, token=TOKEN, delivery=fast())
    sink.send(records(8))
    sink.close()
    assert sorted(ids(hec.payloads())) == [f"a{i:05d}" for i in range(8)]
    assert [r["events"] for r in hec.requests] == [0, 4, 4]
    assert sink.stats.delivered == 8 and sink.stats.rejected == 0


def test_hec_bad_token_spools_never_drops(hec: HecReceiver, tmp_path: Path) -> None:
    sink = HecSink("splunk", url=hec.url, token="revoked", delivery=fast(spool_dir=str(tmp_path)))
    sink.send(records(5))
    sink.flush()
    assert hec.payloads() == []
    assert sink.stats.spooled == 5 and sink.stats.dropped == 0 and not sink.stats.up
    assert "403" in (sink.stats.last_error or "") and "token" in (sink.stats.last_error or "")
    sink.close()
    # the operator fixes the token: the next run sends what waited on disk
    fixed = HecSink("splunk", url=hec.url, token=TOKEN, delivery=fast(spool_dir=str(tmp_path)))
    assert fixed.stats.spool_records == 5
    fixed.flush()
    fixed.close()
    assert ids(hec.payloads()) == [f"a{i:05d}" for i in range(5)]
    assert fixed.stats.replayed == 5 and fixed.stats.spool_records == 0


def test_hec_slow_responses_time_out_and_are_retried(hec: HecReceiver, tmp_path: Path) -> None:
    hec.delay = 0.6
    sink = HecSink(
        "splunk", url=hec.url, token=TOKEN, timeout_seconds=0.2, delivery=fast(max_attempts=2, spool_dir=str(tmp_path))
    )
    sink.send(records(3))
    assert sink.stats.failures == 2 and sink.stats.delivered == 0 and sink.stats.spooled == 3
    hec.delay = 0.0
    time.sleep(0.25)  # the backoff has passed
    sink.close()
    time.sleep(0.7)  # let the timed-out requests finish on the server side
    # a timed-out request may still have been indexed: at least once, never lost
    got = ids(hec.payloads())
    assert set(got) == {"a00000", "a00001", "a00002"} and len(got) >= 3
    assert sink.stats.delivered == 3 and sink.stats.dropped == 0


def test_hec_outage_spools_in_order_then_replays(hec: HecReceiver, tmp_path: Path) -> None:
    sink = HecSink("splunk", url=hec.url, token=TOKEN, delivery=fast(spool_dir=str(tmp_path)))
    sink.send(records(20))
    sink.flush()
    hec.stop()  # the SIEM goes down
    sink.send(records(30, start=20))
    sink.send(records(10, start=50))
    assert sink.stats.spooled == 40 and not sink.stats.up and sink.backlog == 40
    hec.start()  # back, same port
    replay(sink)
    sink.send(records(5, start=60))
    sink.close()
    assert ids(hec.payloads()) == [f"a{i:05d}" for i in range(65)]  # all, once, in order
    assert sink.stats.delivered == 65 and sink.stats.replayed == 40 and sink.stats.dropped == 0
    assert sink.stats.up


def test_hec_indexer_acknowledgement(hec_ack: HecReceiver) -> None:
    hec_ack.ack_delay = 0.2
    sink = HecSink("splunk", url=hec_ack.url, token=TOKEN, ack=True, ack_poll_seconds=0.05, delivery=fast())
    sink.send(records(150))
    assert sink.stats.delivered == 0  # sent, not yet acknowledged
    sink.flush()
    assert sink.stats.delivered == 150
    sink.close()
    assert ids(hec_ack.payloads()) == [f"a{i:05d}" for i in range(150)]


def test_hec_unacknowledged_batches_are_resent(hec_ack: HecReceiver) -> None:
    hec_ack.withhold_acks = True
    sink = HecSink(
        "splunk",
        url=hec_ack.url,
        token=TOKEN,
        ack=True,
        ack_poll_seconds=0.05,
        ack_timeout_seconds=0.3,
        delivery=fast(),
    )
    sink.send(records(4))
    sink.flush()  # waits ack_timeout_seconds, then sends the batch again
    hec_ack.withhold_acks = False
    sink.flush()
    sink.close()
    got = ids(hec_ack.payloads())
    assert got == [f"a{i:05d}" for i in range(4)] * 2  # at least once: indexed late, sent again
    assert sink.stats.delivered == 4 and sink.stats.retried == 4


def test_hec_unacknowledged_at_shutdown_stay_in_the_spool(hec_ack: HecReceiver, tmp_path: Path) -> None:
    hec_ack.withhold_acks = True
    sink = HecSink(
        "splunk",
        url=hec_ack.url,
        token=TOKEN,
        ack=True,
        ack_poll_seconds=0.05,
        ack_timeout_seconds=0.2,
        delivery=fast(spool_dir=str(tmp_path), max_attempts=1),
    )
    sink.send(records(3))
    hec_ack.stop()
    sink.close()
    assert DiskSpool(tmp_path / "splunk").pending_records == 3
    assert sink.stats.dropped == 0


def test_hec_without_spool_counts_and_logs_drops(caplog: pytest.LogCaptureFixture) -> None:
    sink = HecSink("splunk", url="http://127.0.0.1:9", token=TOKEN, timeout_seconds=0.5, delivery=fast())
    with caplog.at_level(logging.ERROR, logger="tetrapipe.sinks"):
        sink.send(records(3))
        sink.close()
    assert sink.stats.dropped == 3
    assert any("DROPPED 3 record(s)" in r.getMessage() for r in caplog.records)


def test_full_spool_counts_drops(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sink = HecSink(
        "splunk",
        url="http://127.0.0.1:9",
        token=TOKEN,
        timeout_seconds=0.5,
        delivery=fast(spool_dir=str(tmp_path), spool_max_bytes=2000),
    )
    with caplog.at_level(logging.ERROR, logger="tetrapipe.sinks"):
        sink.send(records(20))
    assert sink.stats.spooled + sink.stats.dropped == 20 and sink.stats.dropped > 0
    assert any("spool full" in r.getMessage() for r in caplog.records)
    sink.close()


def test_hec_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        HecSink("x", url="ftp://splunk:8088", token="t")


# --- the spool ------------------------------------------------------------------------------------


def test_spool_survives_a_torn_write_and_resumes_at_its_cursor(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, segment_bytes=300, fsync=False)
    assert spool.append(records(10)) == 10
    chunk = spool.read(4)
    spool.commit(chunk.positions[-1])
    last = sorted(tmp_path.glob("*.jsonl"))[-1]
    with open(last, "ab") as f:
        f.write(b'{"alert_id": "half')  # a crash in the middle of an append
    again = DiskSpool(tmp_path, fsync=False)
    assert again.pending_records == 6
    assert ids(again.read(100).records) == [f"a{i:05d}" for i in range(4, 10)]


# --- syslog / rsyslog ------------------------------------------------------------------------------


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    if rsyslogd() is None:
        pytest.fail("rsyslogd is not installed: apt-get install rsyslog rsyslog-openssl (.ci/run does)")
    cert = make_cert(tmp_path) if has_ossl_driver() else None
    r = Rsyslog(tmp_path / "rsyslog", tls_cert=cert).start()
    yield r
    r.stop()


def _json_msgs(rs: Rsyslog, n: int) -> list[dict[str, Any]]:
    got = rs.wait_for(n)
    return [json.loads(m.msg.strip()) for m in got]


@pytest.mark.parametrize("protocol", ["tcp", "udp", "tls"])
def test_syslog_rfc5424_to_rsyslog(rsyslog: Rsyslog, protocol: str, tmp_path: Path) -> None:
    if protocol == "tls" and rsyslog.tls_port is None:
        pytest.fail("rsyslog's OpenSSL driver (rsyslog-openssl) is missing: .ci/run installs it")
    port = {"tcp": rsyslog.tcp_port, "udp": rsyslog.udp_port, "tls": rsyslog.tls_port}[protocol]
    sink = SyslogSink(
        "syslog",
        host="127.0.0.1",
        port=port,
        protocol=protocol,
        facility="local4",
        ca_file=str(tmp_path / "cert.pem") if protocol == "tls" else None,
        server_name="localhost",
        delivery=fast(),
    )
    batch = records(12, message='quotes " and ] and \\ and\nnewline')
    sink.send(batch)
    sink.close()
    got = rsyslog.wait_for(12)
    assert [json.loads(m.msg.strip()) for m in got] == batch  # rsyslog parsed every message, JSON intact
    first = got[0]
    assert first.pri == 20 * 8 + 5  # local4 (20), low -> notice (5)
    assert {m.pri for m in got} == {20 * 8 + s for s in (5, 4, 3, 2)}  # low, medium, high, critical
    assert first.hostname == "kind-worker" and first.app_name == "tetrapipe" and first.msgid == "alert"
    assert first.timestamp.startswith("2026-03-10T09:00:32.611001")
    assert 'rule="shell-in-pod"' in first.structured_data and 'namespace="tenant-jobs"' in first.structured_data
    assert sink.stats.delivered == 12


def cef_records(n: int) -> list[dict[str, Any]]:
    """What the router hands a sink with ``format: cef``: native alerts mapped to CEF envelopes."""
    from tetrapipe.formats import to_cef

    rows = records(n, message="wrote /etc/passwd; key=value | pipe \\ backslash")
    for r in rows:
        r.pop("record_type")
        r.pop("schema")
    return [to_cef(r) for r in rows]


def test_syslog_cef_to_rsyslog(rsyslog: Rsyslog) -> None:
    """CEF over syslog: the MSG is the CEF line itself; PRI, MSGID and SD as for JSON."""
    batch = cef_records(4)
    sink = SyslogSink("arcsight", port=rsyslog.tcp_port, facility="local4", delivery=fast())
    sink.send(batch)
    sink.close()
    got = rsyslog.wait_for(4)
    assert [m.msg.strip() for m in got] == [r["cef"] for r in batch]
    assert got[0].msg.strip().startswith("CEF:0|tetrapipe|tetrapipe|")
    assert "msg=wrote /etc/passwd; key\\=value | pipe \\\\ backslash" in got[0].msg
    assert [m.pri for m in got] == [20 * 8 + s for s in (5, 4, 3, 2)]  # low, medium, high, critical
    assert got[0].msgid == "alert" and 'rule="shell-in-pod"' in got[0].structured_data
    assert got[0].hostname == "kind-worker" and got[0].timestamp.startswith("2026-03-10T09:00:32.611")


def test_hec_cef_events_are_strings(hec: HecReceiver) -> None:
    batch = cef_records(3)
    sink = HecSink("splunk", url=hec.url, token=TOKEN, sourcetype="cef", delivery=fast())
    sink.send(batch)
    sink.close()
    assert hec.payloads() == [r["cef"] for r in batch]
    assert hec.events[0]["host"] == "kind-worker" and hec.events[0]["fields"] == {"tetrapipe_kind": "alert"}


def test_cef_records_survive_the_spool_and_come_out_as_lines(tmp_path: Path) -> None:
    """An outage spools the envelopes as JSON; the replay still writes CEF lines, once each."""

    class Broken(io.BytesIO):
        broken = True

        def write(self, data: bytes) -> int:  # type: ignore[override]
            if self.broken:
                raise BrokenPipeError("reader went away")
            return super().write(data)

    batch = cef_records(5)
    out = Broken()
    sink = StdoutSink("console", stream=out, delivery=fast(spool_dir=str(tmp_path / "spool"), max_attempts=1))
    sink.send(batch)
    sink.flush()
    assert out.getvalue() == b"" and sink.backlog == 5
    out.broken = False
    replay(sink)
    sink.close()
    assert out.getvalue().decode().splitlines() == [r["cef"] for r in batch]
    assert sink.stats.delivered == 5 and sink.stats.dropped == 0


def test_syslog_restart_of_rsyslog_loses_nothing(rsyslog: Rsyslog, tmp_path: Path) -> None:
    sink = SyslogSink("syslog", port=rsyslog.tcp_port, delivery=fast(spool_dir=str(tmp_path / "spool")))
    sink.send(records(10))
    sink.flush()
    assert len(rsyslog.wait_for(10)) == 10
    rsyslog.stop()
    sink.send(records(15, start=10))  # receiver gone: the closed connection is noticed, records spooled
    assert sink.stats.spooled == 15 and not sink.stats.up
    rsyslog.start()
    replay(sink)
    sink.send(records(5, start=25))
    sink.close()
    got = _json_msgs(rsyslog, 30)
    assert ids(got) == [f"a{i:05d}" for i in range(30)]
    assert sink.stats.delivered == 30 and sink.stats.dropped == 0


def test_syslog_oversized_message_is_rejected_not_truncated(rsyslog: Rsyslog, tmp_path: Path) -> None:
    batch = records(3)
    batch[1]["message"] = "x" * 2000
    sink = SyslogSink(
        "syslog", port=rsyslog.tcp_port, max_message_bytes=1000, delivery=fast(spool_dir=str(tmp_path / "spool"))
    )
    sink.send(batch)
    sink.close()
    assert ids(_json_msgs(rsyslog, 2)) == ["a00000", "a00002"]
    assert sink.stats.rejected == 1 and sink.stats.delivered == 2
    assert (tmp_path / "spool" / "syslog" / "rejected.jsonl").exists()


def test_syslog_bad_options_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="udp, tcp or tls"):
        SyslogSink("s", protocol="sctp")
    with pytest.raises(ValueError, match="facility"):
        SyslogSink("s", facility="local9")


# --- file, stdout, Kafka ---------------------------------------------------------------------------


def test_json_file_rotates_and_keeps_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "out" / "alerts.jsonl"
    sink = JsonFileSink("file", path=str(path), max_bytes=4096, backups=2, delivery=fast(batch_size=5))
    for i in range(0, 200, 5):
        sink.send(records(5, start=i))
    sink.close()
    files = [path, path.with_name("alerts.jsonl.1"), path.with_name("alerts.jsonl.2")]
    assert all(f.exists() for f in files) and not path.with_name("alerts.jsonl.3").exists()
    kept = []
    for f in reversed(files):
        assert f.stat().st_size <= 4096
        kept += [orjson.loads(line) for line in f.read_bytes().splitlines()]
    got = ids(kept)
    assert got == sorted(got) and got[-1] == "a00199"  # the newest, in order, whole lines only
    assert sink.stats.delivered == 200


def test_stdout_sink_writes_json_lines() -> None:
    buf = io.BytesIO()
    sink = StdoutSink("console", stream=buf)
    sink.send(records(3))
    sink.close()
    assert [orjson.loads(line)["alert_id"] for line in buf.getvalue().splitlines()] == ["a00000", "a00001", "a00002"]


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_kafka_sink_to_the_real_broker(client: str, kafka: Any, topic: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    sink = KafkaTopicSink("kafka", bootstrap=kafka.bootstrap, topic=topic, client=client, delivery=fast())
    sink.send(records(7))
    assert isinstance(sink._producer, KafkaProducer) == (client == "kafka-python")  # the library asked for
    sink.close()
    assert sink.stats.delivered == 7
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap, consumer_timeout_ms=3000)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or {0}]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        msgs = [m for _, batch in consumer.poll(timeout_ms=5000).items() for m in batch]
    finally:
        consumer.close()
    assert sorted(orjson.loads(m.value)["alert_id"] for m in msgs) == [f"a{i:05d}" for i in range(7)]
    assert {m.key for m in msgs} == {b"shell-in-pod"}  # alerts keyed by rule
