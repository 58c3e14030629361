"""The stream processor on a lake in Azure Blob Storage (``az://``): exactly once with nothing shared but the store.

The promise tested here is the one the AKS deployment rests on: processor
replicas need no ReadWriteMany volume, because the Delta log in the container
is all they share. Everything is real: the session's tansu broker
(tests/conftest_kafka.py), the session's Azurite emulator (tests/azurite.py),
``tetrapipe process`` as a subprocess given ``--lake az://... --lake-option``
exactly as a pod is, and SIGKILL at random points, which leaves the remote
tables as a killed pod would: some of a batch's four commits made, the rest not.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from azurite import Azurite, lake_uri
from kafka_broker import TansuBroker
from test_process import (  # the processor tests' own helpers, shared rather than copied
    FAST_GROUP,
    FAST_GROUP_ARGS,
    _create_topic,
    _expected_ids,
    _produce,
    _scenario_lines,
    _wait,
    tree_events,
    two_replicas_one_joining_late,
)

from tetrapipe.flows.process import Processor, ProcessorConfig
from tetrapipe.lake import Lake, connect
from tetrapipe.transforms.chain import build_transforms

REPO = Path(__file__).resolve().parents[1]
TABLES = ("events", "alerts", "rejects", "tls_stats")
COUNTS_SQL = " UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM {t}" for t in TABLES)


# --- small helpers (test_process.py keeps its own private; these are the few this module needs) -------------


def _process_cmd(bootstrap: str, topic: str, uri: str, azurite: Azurite, *extra: str, rules: bool) -> list[str]:
    """``tetrapipe process`` on an az:// lake, credentials as ``--lake-option`` pairs (as a pod gets them)."""
    return [
        sys.executable,
        "-m",
        "tetrapipe",
        "process",
        "--kafka",
        bootstrap,
        "--topic",
        topic,
        "--group",
        topic,
        "--lake",
        uri,
        *azurite.lake_options(),
        *([] if rules else ["--rules", "none"]),
        "--alerts-topic",
        "",
        "--dead-letter-topic",
        "",
        *FAST_GROUP_ARGS,
        *extra,
    ]


class RemoteLake:
    """Reads of an az:// lake for the test's checks: each a fresh :class:`Lake`, as another process would open it."""

    def __init__(self, uri: str, azurite: Azurite) -> None:
        self.uri, self.options = uri, azurite.storage_options

    def lake(self) -> Lake:
        return Lake(self.uri, storage_options=self.options)

    def events_version(self) -> int:
        """The events table's Delta version (-1: none yet); every committed batch adds one."""
        table = self.lake().table("events")
        return -1 if table is None else table.version()

    def has_events(self) -> bool:
        """The processor has committed rows (its first commit creates the table empty)."""
        table = self.lake().table("events")
        return table is not None and len(table.get_add_actions(flatten=True)) > 0

    def sql(self, query: str) -> list[tuple]:
        con = connect(self.lake())
        try:
            return con.execute(query).fetchall()
        finally:
            con.close()

    def summary(self) -> tuple[int, int]:
        return self.sql("SELECT count(*), count(DISTINCT event_id) FROM events")[0]

    def delta_counts(self) -> dict[str, int]:
        """Rows per table read with deltalake directly (not through tetrapipe's views)."""
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        out = {}
        for t in TABLES:
            try:
                out[t] = DeltaTable(f"{self.uri}/{t}", storage_options=self.options).to_pyarrow_table().num_rows
            except TableNotFoundError:  # (a run without rules writes no alerts table)
                out[t] = 0
        return out


def _alerts(lake: Lake) -> dict[str, int]:
    """alert_id -> events it stands for: an alert stored twice shows as a larger sum, one lost as a missing id."""
    con = connect(lake)
    try:
        return dict(con.execute("SELECT alert_id, sum(count) FROM alerts GROUP BY alert_id").fetchall())
    finally:
        con.close()


def _query_counts(cmd: list[str], cwd: Path, remote: RemoteLake, azurite: Azurite) -> dict[str, int]:
    """Rows per table as ``tetrapipe query`` reports them on the az:// lake."""
    proc = subprocess.run(
        [*cmd, "query", COUNTS_SQL, "--lake", remote.uri, *azurite.lake_options(), "--format", "json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return {row["t"]: row["n"] for row in json.loads(proc.stdout)}


# --- the tests --------------------------------------------------------------------------------------------


def test_kill_9_against_an_azure_lake_is_exactly_once(
    kafka: TansuBroker, topic: str, azurite: Azurite, az_container: str, tetrapipe_cmd: list[str], tmp_path: Path
) -> None:
    """SIGKILL mid-run 4 times with the shipped rules on, then a run to the end: every event and alert once.

    A kill lands before, between or after a batch's rejects, alerts and events
    commits to the container; the restart resumes from what the remote events
    table holds. Alerts are compared with an uninterrupted run into a local lake.
    Then ``tetrapipe query`` counts what deltalake reads from the container.
    """
    n = 24_000
    _create_topic(kafka.bootstrap, topic, 3)
    stream = tree_events(n)
    attacks = _scenario_lines()
    lines = list(stream.lines)
    for k in range(4):  # the attacks spread over the run, so batches commit alerts all along
        at = (k + 1) * n // 5
        # the story in order, in 4 pieces: a chain rule matches steps that arrive out of order only within its
        # tolerance, so interleaving the pieces would make the alerts depend on where batches happen to end
        lines[at:at] = [*attacks[k * len(attacks) // 4 : (k + 1) * len(attacks) // 4], b"poison %d" % k]
    _produce(kafka.bootstrap, topic, lines, partitions=3)
    remote = RemoteLake(lake_uri(az_container), azurite)
    # a restart waits for the killed member's session to expire before it gets partitions: keep it short
    short = ["--kafka-option", "session_timeout_ms=3000", "--kafka-option", "heartbeat_interval_ms=500"]
    cmd = _process_cmd(
        kafka.bootstrap,
        topic,
        remote.uri,
        azurite,
        "--exit-at-eof",
        "--batch-size",
        "1500",
        "--batch-seconds",
        "0.5",
        *short,
        rules=True,
    )
    rng = random.Random(11)
    seen: list[int] = []
    for k in range(4):
        before = remote.events_version()
        with open(tmp_path / f"run-{k}.log", "wb") as log:  # (kept: says where each restart resumed)
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        _wait(
            lambda: remote.events_version() > before or proc.poll() is not None,  # noqa: B023
            60,
            "the restarted processor to commit to the container",
            every=0.05,
        )
        time.sleep(rng.uniform(0.0, 1.0))  # a random point of the run, after readiness (not a wait for anything)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            seen.append(remote.summary()[0])
        proc.wait(timeout=30)
    good = n + sum(1 for line in attacks if line.startswith(b'{"process'))
    mid_run = [c for c in seen if 0 < c < good]
    assert len(mid_run) >= 3, f"the processor must have been killed mid-run at least three times (lake sizes {seen})"
    assert mid_run == sorted(set(mid_run)), f"each restart must make progress (lake sizes {seen})"
    done = subprocess.run(cmd, capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]

    assert remote.summary() == (good, good)
    assert {r[0] for r in remote.sql("SELECT event_id FROM events")} == _expected_ids(lines)
    assert sorted(r[0] for r in remote.sql("SELECT raw FROM rejects")) == [f"poison {k}" for k in range(4)]
    chains = remote.sql("SELECT exec_id, ancestor_exec_ids FROM events")
    assert [(e, got) for e, got in chains if e in stream.ancestors and got != stream.ancestors[e]] == []
    alerts = _alerts(remote.lake())
    assert alerts
    reference = tmp_path / "reference"
    cfg = ProcessorConfig(
        kafka.bootstrap,
        topic=topic,
        group=f"{topic}-ref",
        exit_at_eof=True,
        alerts_topic=None,
        dead_letter_topic=None,
        kafka_options=FAST_GROUP,
    )
    Processor(cfg, Lake(reference), build_transforms(None)[0]).run()
    assert alerts == _alerts(Lake(reference)), "every alert once, each event counted once"
    # nothing landed beside the command: the lake is in the container only
    assert not (tmp_path / "tetrapipe-lake").exists()
    # query, through tetrapipe's views, agrees with deltalake reading the container itself
    direct = remote.delta_counts()
    assert direct["events"] == good and direct["rejects"] == 4 and direct["alerts"] > 0
    assert _query_counts(tetrapipe_cmd, tmp_path, remote, azurite) == direct


def test_two_replicas_on_one_azure_lake_store_each_event_once(
    kafka: TansuBroker, topic: str, azurite: Azurite, az_container: str, tetrapipe_cmd: list[str], tmp_path: Path
) -> None:
    """Two processors of one group, one az:// lake and no shared volume; B joins while A is committing.

    The rebalance hands B partitions A began: B resumes them from the
    positions in the container's Delta log and rebuilds the process table
    from the remote events (ancestor chains stay whole). Both exit at the
    topic's end; both wrote part of it; each event is there once.
    """
    n = 24_000
    _create_topic(kafka.bootstrap, topic, 4)
    stream = tree_events(n)
    _produce(kafka.bootstrap, topic, stream.lines, partitions=4)
    remote = RemoteLake(lake_uri(az_container), azurite)
    cmd = _process_cmd(
        kafka.bootstrap,
        topic,
        remote.uri,
        azurite,
        "--exit-at-eof",
        "--batch-size",
        "500",
        "--batch-seconds",
        "0.2",
        rules=False,
    )
    two_replicas_one_joining_late(cmd, tmp_path, remote.events_version, lambda: remote.summary()[0], n)
    assert remote.summary() == (n, n)
    assert {r[0] for r in remote.sql("SELECT event_id FROM events")} == _expected_ids(stream.lines)
    chains = remote.sql("SELECT exec_id, ancestor_exec_ids FROM events")
    assert [(e, got) for e, got in chains if got != stream.ancestors.get(e)] == []
    direct = remote.delta_counts()
    assert direct["events"] == n
    assert _query_counts(tetrapipe_cmd, tmp_path, remote, azurite) == direct


def test_the_positions_of_all_partitions_come_from_one_snapshot(azurite: Azurite, az_container: str) -> None:
    """What the processor reads before every batch: each partition's version, absent ones left out.

    One snapshot answers for all partitions (kafka_committed): on an object
    store opening a table reads every log entry since its checkpoint, which a
    snapshot per partition multiplied (~1 s per batch for 4 partitions at 98
    commits on Azurite, ~0.3 s with one).
    """
    import datetime as dt

    import pyarrow as pa

    from tetrapipe.lake.positions import kafka_committed, kafka_position
    from tetrapipe.schema import SCHEMAS

    lake = Lake(lake_uri(az_container), storage_options=azurite.storage_options)
    assert kafka_committed(lake, "t", range(4), "rejects") == {}  # no table yet
    row = pa.Table.from_pydict(
        {"time": [dt.datetime(2026, 3, 10)], "source": ["k"], "source_offset": [0], "reason": ["x"], "raw": ["?"]},
        schema=SCHEMAS["rejects"].empty_table().schema,
    )
    for partition, last, epoch in ((0, 5, 0), (2, 9, 0), (0, 7, 0), (3, 1, 1)):
        assert lake.commit("rejects", row, kafka_position("t", partition, last, epoch))
    want = {0: kafka_position("t", 0, 7, 0).version, 2: 9, 3: kafka_position("t", 3, 1, 1).version}
    assert kafka_committed(Lake(lake.root, lake.storage_options), "t", range(4), "rejects") == want
