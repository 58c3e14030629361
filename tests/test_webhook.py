"""Webhook sink against a real HTTP endpoint: batching modes, chat messages, refusals, outages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from test_forward_sinks import fast, records, replay
from webhook_receiver import WebhookReceiver

from tetrapipe.sinks.siem import Route, Router
from tetrapipe.sinks.siem.webhook import WebhookSink


@pytest.fixture
def endpoint() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(token="s3cret").start()
    yield r
    r.stop()


AUTH = {"Authorization": "Bearer s3cret"}


def ids(got: list[dict[str, Any]]) -> list[str]:
    return [r["alert_id"] for r in got]


def test_ndjson_batches_with_headers_and_gzip(endpoint: WebhookReceiver) -> None:
    sink = WebhookSink(
        "soar",
        url=endpoint.url + "/api/alerts?source=tetrapipe",
        headers=AUTH,
        gzip=True,
        delivery=fast(batch_size=100),
    )
    sink.send(records(250))
    sink.close()
    assert ids(endpoint.records) == [f"a{i:05d}" for i in range(250)]
    assert [len(r["body"].splitlines()) for r in endpoint.requests] == [100, 100, 50]
    first = endpoint.requests[0]
    assert first["path"] == "/api/alerts?source=tetrapipe" and first["method"] == "POST"
    assert first["headers"]["content-type"] == "application/x-ndjson"
    assert first["headers"]["content-encoding"] == "gzip"
    assert sink.stats.delivered == 250 and sink.stats.dropped == sink.stats.rejected == 0


def test_array_and_single_modes(endpoint: WebhookReceiver) -> None:
    array = WebhookSink("a", url=endpoint.url, mode="array", headers=AUTH, method="PUT", delivery=fast())
    array.send(records(5))
    array.close()
    assert (
        endpoint.requests[0]["method"] == "PUT" and json.loads(endpoint.requests[0]["body"])[0]["alert_id"] == "a00000"
    )
    single = WebhookSink("s", url=endpoint.url, mode="single", headers=AUTH, delivery=fast())
    single.send(records(3, start=5))
    single.close()
    assert len(endpoint.requests) == 1 + 3
    assert ids(endpoint.records) == [f"a{i:05d}" for i in range(8)]


def test_slack_messages_through_the_router(endpoint: WebhookReceiver) -> None:
    """format: slack + mode: single: one chat message per alert, severity first, markup escaped."""
    sink = WebhookSink("chat", url=endpoint.url, mode="single", headers=AUTH, delivery=fast())
    router = Router([Route("chat", sink, format="slack", forward="alerts")])
    alerts = pa.Table.from_pylist(
        [
            {k: v for k, v in r.items() if k not in ("record_type", "schema")}
            for r in records(2, message="wrote <@channel> & /etc/passwd")
        ]
    )
    router.handle(alerts=alerts)
    router.close()
    texts = [r["text"] for r in endpoint.records]
    assert len(texts) == 2 and set(endpoint.records[0]) == {"text"}
    assert texts[0].startswith(":large_yellow_circle: *LOW* `shell-in-pod`")
    assert "wrote &lt;@channel&gt; &amp; /etc/passwd" in texts[0]  # no mention, no broken markup
    assert "_tenant-jobs/crawler on kind-worker, 2026-03-10 09:00:32 UTC_" in texts[0]
    assert texts[1].startswith(":large_orange_circle: *MEDIUM*")


def test_a_refused_record_is_isolated_and_the_rest_delivered(tmp_path: Path) -> None:
    endpoint = WebhookReceiver(refuse=lambda r: r.get("message") == "poison").start()
    try:
        batch = records(10)
        batch[6]["message"] = "poison"
        sink = WebhookSink("soar", url=endpoint.url, delivery=fast(spool_dir=str(tmp_path)))
        sink.send(batch)
        sink.close()
        assert ids(endpoint.records) == [f"a{i:05d}" for i in range(10) if i != 6]
        assert sink.stats.delivered == 9 and sink.stats.rejected == 1 and sink.stats.dropped == 0
        dead = [json.loads(line) for line in (tmp_path / "soar" / "rejected.jsonl").read_text().splitlines()]
        assert [d["record"]["alert_id"] for d in dead] == ["a00006"] and "422" in dead[0]["reason"]
    finally:
        endpoint.stop()


def test_busy_endpoint_is_retried_and_a_wrong_token_spools_never_drops(
    endpoint: WebhookReceiver, tmp_path: Path
) -> None:
    endpoint.fail_next(2, status=429, retry_after=0.05)
    sink = WebhookSink("soar", url=endpoint.url, headers=AUTH, delivery=fast(spool_dir=str(tmp_path)))
    sink.send(records(4))
    sink.flush()
    assert ids(endpoint.records) == [f"a{i:05d}" for i in range(4)] and sink.stats.retried >= 4
    wrong = WebhookSink(
        "wrong", url=endpoint.url, headers={"Authorization": "Bearer nope"}, delivery=fast(spool_dir=str(tmp_path))
    )
    wrong.send(records(3, start=4))
    wrong.flush()
    assert wrong.stats.spooled == 3 and wrong.stats.dropped == 0 and "check the URL" in wrong.stats.last_error
    wrong.close()
    fixed = WebhookSink("wrong", url=endpoint.url, headers=AUTH, delivery=fast(spool_dir=str(tmp_path)))
    fixed.flush()  # the next run, with the right token, sends what the last one kept
    fixed.close()
    sink.close()
    assert ids(endpoint.records) == [f"a{i:05d}" for i in range(7)] and fixed.stats.replayed == 3


def test_outage_spools_in_order_then_replays(endpoint: WebhookReceiver, tmp_path: Path) -> None:
    sink = WebhookSink("soar", url=endpoint.url, headers=AUTH, delivery=fast(spool_dir=str(tmp_path)))
    sink.send(records(10))
    sink.flush()
    endpoint.stop()
    sink.send(records(20, start=10))
    sink.flush()
    assert sink.stats.spooled == 20 and not sink.stats.up
    endpoint.start()  # back on the same port
    replay(sink)
    sink.send(records(5, start=30))
    sink.close()
    assert ids(endpoint.records) == [f"a{i:05d}" for i in range(35)]  # all, once, in order
    assert sink.stats.delivered == 35 and sink.stats.replayed == 20 and sink.stats.dropped == 0


def test_bad_options_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="mode must be one of ndjson, array, single"):
        WebhookSink("x", url="http://127.0.0.1:1", mode="batch")
    with pytest.raises(ValueError, match="url must be http"):
        WebhookSink("x", url="ftp://example.org/")


def test_url_credentials_are_basic_auth_never_part_of_the_host_nor_shown(tmp_path: Path) -> None:
    """``http://user:password@host/path``: the userinfo is basic authentication (an explicit Authorization
    header wins), the connection goes to the host, and no message shows the password."""
    import base64

    endpoint = WebhookReceiver().start()
    try:
        url = endpoint.url.replace("http://", "http://alice:p%40ss%20w0rd@") + "/hook?team=blue"
        sink = WebhookSink("soar", url=url, delivery=fast())
        sink.send(records(2))
        sink.close()
        assert ids(endpoint.records) == ["a00000", "a00001"]
        first = endpoint.requests[0]
        assert first["headers"]["authorization"] == "Basic " + base64.b64encode(b"alice:p@ss w0rd").decode()
        assert first["headers"]["host"] == f"127.0.0.1:{endpoint.port}" and first["path"] == "/hook?team=blue"
        bearer = WebhookSink("bearer", url=url, headers=AUTH, delivery=fast())
        bearer.send(records(1, start=2))
        bearer.close()
        assert endpoint.requests[-1]["headers"]["authorization"] == "Bearer s3cret"
    finally:
        endpoint.stop()
    down = WebhookSink("down", url=url, delivery=fast(max_attempts=1))
    down.send(records(1))
    down.flush()
    assert (
        down.stats.dropped == 1
        and f"webhook 127.0.0.1:{endpoint.port}: ConnectionRefusedError" in down.stats.last_error
    )
    assert "w0rd" not in down.stats.last_error and "alice" not in down.stats.last_error
    with pytest.raises(ValueError) as bad:
        WebhookSink("x", url="ftp://alice:hunter2@example.org/hooks/T000/secret")
    assert "ftp://alice:***@example.org/***" in str(bad.value) and "hunter2" not in str(bad.value)
    with pytest.raises(ValueError, match="not valid") as bad:
        WebhookSink("x", url="https://alice:hunter2@example.org:port/")
    assert "hunter2" not in str(bad.value)
