"""``delivered`` counts each record once, even when HEC acknowledges late and a batch is sent again.

With indexer acknowledgement the HEC sink counts a record delivered when HEC
acknowledges it. An acknowledgement that does not come within
``ack_timeout_seconds`` makes the sink send the batch again (at least once);
the summary of ``tetrapipe forward`` and ``tetrapipe_sink_records_total
{outcome="delivered"}`` must still say how many alerts reached the SIEM, not
how many copies: a user comparing ``routed`` with ``delivered`` must not see
more delivered than there are alerts. The extra sends are ``retried``.

The peer is the real HEC receiver of the tests, whose indexer is slow once:
it acknowledges nothing until a batch has come a second time, then
everything (the late first copy too).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
from hec_receiver import HecReceiver
from test_e2e_forward import _env, _tp
from test_forward_sinks import TOKEN, fast, records, replay

from tetrapipe.sinks.siem.hec import HecSink
from tetrapipe.sinks.spool import DiskSpool


class _SlowOnceHec(HecReceiver):
    """HEC acknowledging nothing until the sender, its ack timeout up, has sent a record again; then every ackId."""

    def __init__(self) -> None:
        super().__init__(token=TOKEN, ack=True)

    def _ack_query(self, channel: str | None, body: bytes) -> tuple[int, dict[str, Any], dict]:
        ids = [e["alert_id"] for e in self.payloads()]
        self.withhold_acks = len(ids) == len(set(ids))  # no copy yet: the indexer is still busy
        return super()._ack_query(channel, body)


def _distinct(hec: HecReceiver) -> set[str]:
    return {e["alert_id"] for e in hec.payloads()}


def _sink(hec: HecReceiver, spool: Path) -> HecSink:
    return HecSink(
        "splunk",
        url=hec.url,
        token=TOKEN,
        ack=True,
        ack_poll_seconds=0.02,
        ack_timeout_seconds=0.3,
        timeout_seconds=2,
        delivery=fast(spool_dir=str(spool), batch_size=40, max_attempts=1),
    )


def test_a_batch_sent_again_from_memory_is_delivered_once(tmp_path: Path) -> None:
    """Sent, its ack overdue, sent again, both copies acknowledged: each record counted once."""
    hec = _SlowOnceHec().start()
    try:
        sink = _sink(hec, tmp_path / "spool")
        sink.send(records(100))
        sink.flush()
        sink.close()
    finally:
        hec.stop()
    assert _distinct(hec) == {f"a{i:05d}" for i in range(100)}
    assert len(hec.payloads()) > 100, "the slow indexer should have made the sink send some records again"
    assert sink.stats.delivered == 100
    assert sink.stats.retried == len(hec.payloads()) - 100  # the extra copies are told, as retried
    assert sink.backlog == 0 and sink.stats.spooled == 0


def test_a_spool_chunk_sent_again_is_delivered_once_and_not_sent_a_third_time(tmp_path: Path) -> None:
    """The spool replays a chunk, HEC does not acknowledge it in time, the sink sends it again, HEC then
    acknowledges. The cursor waited for the ack; the next replay must move it, not read the chunk again
    and send a third copy (counted delivered a second time: 200 delivered for 100 alerts)."""
    hec = _SlowOnceHec().start()
    spool = tmp_path / "spool"
    try:
        sink = _sink(hec, spool)
        hec.stop()
        sink.send(records(100))  # the SIEM is down: to the spool
        assert sink.stats.spooled == 100 and sink.backlog == 100
        hec.start()
        replay(sink)
        sink.close()
    finally:
        hec.stop()
    assert _distinct(hec) == {f"a{i:05d}" for i in range(100)}
    assert sink.stats.delivered == 100, f"{sink.stats.delivered} delivered for 100 alerts"
    assert len(hec.payloads()) == 100 + sink.stats.retried  # once each, plus the copies sent on the overdue ack
    assert sink.backlog == 0 and DiskSpool(spool / "splunk").pending_records == 0


class _RefusesTheResend(_SlowOnceHec):
    """The slow-once HEC that is busy (503) for the request after the first batch it took: the resend."""

    busy_once = False

    def _handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, dict]:
        out = super()._handle(method, raw_path, headers, body)
        if "/event" in raw_path and out[0] == 200 and not self.busy_once:
            self.busy_once = True
            self.fail_next(1)
        return out


def test_a_spool_chunk_whose_resend_fails_is_sent_again_from_memory_not_spooled_again(tmp_path: Path) -> None:
    """The replayed chunk's ack is overdue and its resend is refused: the records are still in the spool at
    the cursor, so they wait in memory for the next replay rather than being appended to the spool a second
    time (sent twice more, counted twice)."""
    hec = _RefusesTheResend().start()
    spool = tmp_path / "spool"
    try:
        sink = _sink(hec, spool)
        hec.stop()
        sink.send(records(30))
        hec.start()
        replay(sink)
        sink.close()
    finally:
        hec.stop()
    assert hec.busy_once and sink.stats.failures >= 2  # the outage, then the refused resend
    assert _distinct(hec) == {f"a{i:05d}" for i in range(30)} and len(hec.payloads()) == 60
    assert sink.stats.delivered == 30 and sink.stats.spooled == 30
    assert sink.backlog == 0 and DiskSpool(spool / "splunk").pending_records == 0


def test_a_spool_chunk_unacknowledged_at_shutdown_is_not_spooled_twice(tmp_path: Path) -> None:
    """A replayed chunk HEC never acknowledges is still in the spool at its cursor when the forwarder stops:
    it must not be written to the spool a second time (and a third), so the next run sends it once."""
    hec = HecReceiver(token=TOKEN, ack=True).start()
    spool = tmp_path / "spool"
    try:
        sink = _sink(hec, spool)
        hec.stop()
        sink.send(records(30))
        hec.withhold_acks = True
        hec.start()
        deadline = time.monotonic() + 10
        while len(hec.payloads()) < 60 and time.monotonic() < deadline:
            sink.poll()  # the replay, once due: sent, not acknowledged in time, sent again, still not acknowledged
        assert sink.unconfirmed == 30 and len(hec.payloads()) == 60
        sink.close()
    finally:
        hec.stop()
    assert sink.stats.delivered == 0
    left = DiskSpool(spool / "splunk")
    assert left.pending_records == 30, f"{left.pending_records} records in the spool for 30 alerts"
    assert [r["alert_id"] for r in left.read(100).records] == [f"a{i:05d}" for i in range(30)]


def test_forward_summary_counts_each_alert_once_when_acks_are_late(tmp_path: Path) -> None:
    """``tetrapipe forward``'s summary after a replay whose acks came late: delivered = the alerts, not copies."""
    rows = records(120)
    alerts, nothing = tmp_path / "alerts.jsonl", tmp_path / "nothing.jsonl"
    alerts.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    nothing.write_bytes(b"")
    hec = _SlowOnceHec().start()
    delivery = {"batch_size": 40, "linger_seconds": 0.0, "max_attempts": 1, "backoff_initial_seconds": 0.05}
    cfg = tmp_path / "tetrapipe.yaml"
    cfg.write_text(f"""\
spool_dir: {tmp_path / "spool"}
sinks:
  - name: splunk
    type: hec
    format: native
    options: {{url: "{hec.url}", token: "{TOKEN}", ack: true, ack_poll_seconds: 0.02, ack_timeout_seconds: 0.3,
               timeout_seconds: 2}}
    delivery: {json.dumps(delivery)}
""")
    hec.stop()
    cmd = _tp("forward", "--config", str(cfg))
    try:
        down = subprocess.run([*cmd, str(alerts), "--drain-timeout", "0.2"], capture_output=True, text=True, env=_env())
        assert down.returncode == 1 and "in spool 120" in down.stderr, down.stderr[-3000:]
        hec.start()
        up = subprocess.run([*cmd, str(nothing)], capture_output=True, text=True, env=_env(), timeout=120)
    finally:
        hec.stop()
    assert up.returncode == 0, up.stderr[-3000:]
    assert _distinct(hec) == {r["alert_id"] for r in rows}
    assert len(hec.payloads()) > len(rows), "the slow indexer should have made the forwarder send some again"
    assert "delivered 120," in up.stderr, up.stderr[-3000:]
