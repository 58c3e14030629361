"""``tetrapipe run`` on a growing file and ``collect`` + ``process`` through Kafka give the same lake.

The embedded default and the deployed pipeline must be one product: the same
events once each, the same ancestor chains, the same alerts. Both follow one
export log while it is being written (half lines, many polls), the way the
real exporter writes; the comparison leaves out only what names the route
(``source``, ``source_offset``) and the raw segment layout. ``run``'s
/metrics, /healthz and /readyz are checked against its lake on the way.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from kafka_broker import TansuBroker
from test_process import (
    FAST_GROUP_ARGS,
    _create_topic,
    _free_port,
    _metric,
    _scrape,
    _status,
    _wait,
    tree_events,
)

from tetrapipe.lake import Lake, connect

SCENARIO = Path(__file__).resolve().parents[1] / "samples" / "scenario" / "tenant-jobs.log"
EVENT_COLUMNS = (
    "event_id, kind, node_name, exec_id, parent_exec_id, parent_binary, ancestor_exec_ids, "
    "ancestor_binaries, tls_version, tls_cipher"
)
#: an alert is one alert_id (rule + dedup key + window); a batch that adds events to an open alert writes a
#: follow-up row with the same id (tetrapipe/transforms/detect.py), so rows depend on batch boundaries and the
#: comparison is per alert: its rule, severity, key, first time and total count
ALERTS_SQL = (
    "SELECT alert_id, rule_id, severity, dedup_key, min(time), sum(count) FROM alerts GROUP BY ALL ORDER BY ALL"
)


def _rows(lake: Path, sql: str) -> list[tuple]:
    con = connect(Lake(lake))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


class _TopicCounter:
    """Counts a topic's records by reading them (group-less), as they arrive.

    Not from end offsets: tansu answers ListOffsets with the last *batch*'s
    base offset + 1, which undercounts as soon as a batch holds several records.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        parts = _wait(lambda: self.consumer.partitions_for_topic(topic), 20, f"metadata of {topic}")
        tps = [TopicPartition(topic, p) for p in parts]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.values: list[bytes] = []

    def count(self) -> int:
        for records in self.consumer.poll(timeout_ms=300).values():
            self.values.extend(r.value for r in records)
        return len(self.values)

    def close(self) -> None:
        self.consumer.close()


def test_run_on_a_growing_file_equals_collect_then_process(kafka: TansuBroker, topic: str, tmp_path: Path) -> None:
    lines = tree_events(20_000, nodes=4).lines
    scenario = [line.encode() for line in SCENARIO.read_text().splitlines() if line.strip()]
    step = len(lines) // len(scenario)
    for i, line in enumerate(scenario):  # the tutorial's story (alerts, TLS) inside the load
        lines.insert(i * (step + 1), line)
    _create_topic(kafka.bootstrap, topic, 2)
    live = tmp_path / "tetragon.log"
    live.write_bytes(b"")
    lake_run, lake_kafka = tmp_path / "lake-run", tmp_path / "lake-kafka"
    port = _free_port()
    tp = [sys.executable, "-m", "tetrapipe"]
    logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("run", "collect")}  # noqa: SIM115
    run = subprocess.Popen(
        [*tp, "run", str(live), "--lake", str(lake_run), "--poll-seconds", "0.1", "--metrics-port", str(port)],
        stdout=logs["run"],
        stderr=subprocess.STDOUT,
    )
    collect = subprocess.Popen(
        [
            *tp,
            "collect",
            f"file://{live}",
            "--kafka",
            kafka.bootstrap,
            "--topic",
            topic,
            "--from",
            "beginning",
            "--state-dir",
            str(tmp_path / "state"),
            "--metrics-port",
            "0",
            "--linger-ms",
            "5",
            "--stats-interval",
            "0",
        ],
        stdout=logs["collect"],
        stderr=subprocess.STDOUT,
    )
    shipped = _TopicCounter(kafka.bootstrap, topic)
    try:
        with open(live, "ab") as f:  # grow it in pieces, cutting lines in half, as the exporter's writes land
            for start in range(0, len(lines), 1500):
                text = b"\n".join(lines[start : start + 1500]) + b"\n"
                cut = len(text) // 3
                f.write(text[:cut])
                f.flush()
                time.sleep(0.05)
                f.write(text[cut:])
                f.flush()
                time.sleep(0.1)

        def run_events() -> float:
            try:
                return _metric(_scrape(port), "tetrapipe_process_events_total") or 0.0
            except OSError:
                return 0.0

        _wait(lambda: run_events() >= len(lines), 90, "tetrapipe run to take every line")
        _wait(lambda: shipped.count() >= len(lines), 90, "collect to ship every line")
        assert _status(port, "/healthz") == 200 and _status(port, "/readyz") == 200
        scraped = _scrape(port)
        run_alerts = _rows(lake_run, "SELECT rule_id, severity, count(*) FROM alerts GROUP BY ALL")
        assert run_alerts
        for rule, severity, n in run_alerts:
            assert _metric(scraped, "tetrapipe_process_alerts_total", rule_id=rule, severity=severity) == n
        assert _metric(scraped, "tetrapipe_process_records_total") == len(lines)
        assert _metric(scraped, "tetrapipe_process_rejects_total") == 0
        assert _metric(scraped, "tetrapipe_process_table_processes") > 0
        for proc in (run, collect):
            proc.send_signal(signal.SIGTERM)
        for name, proc in (("run", run), ("collect", collect)):
            assert proc.wait(timeout=30) == 0, (tmp_path / f"{name}.log").read_text()[-2000:]
    finally:
        for proc in (run, collect):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for f in logs.values():
            f.close()
    shipped.count()
    shipped.close()
    assert sorted(shipped.values) == sorted(lines)  # collect shipped each line once
    done = subprocess.run(
        [
            *tp,
            "process",
            "--kafka",
            kafka.bootstrap,
            "--topic",
            topic,
            "--group",
            topic,
            "--lake",
            str(lake_kafka),
            "--exit-at-eof",
            "--alerts-topic",
            "",
            "--dead-letter-topic",
            "",
            *FAST_GROUP_ARGS,
        ],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    events_sql = f"SELECT {EVENT_COLUMNS} FROM events ORDER BY event_id"
    from_run, from_kafka = _rows(lake_run, events_sql), _rows(lake_kafka, events_sql)
    assert len(from_run) == len(lines) == len({r[0] for r in from_run})
    assert from_run == from_kafka
    alerts = _rows(lake_run, ALERTS_SQL)
    assert len({a[1] for a in alerts}) >= 4  # several rules fired (scenario: shells, passwd, TLS, connections)
    assert alerts == _rows(lake_kafka, ALERTS_SQL)
