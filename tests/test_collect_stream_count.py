"""A stream collector's ``redelivered`` count after a restart: exactly the events a producer may have delivered.

A stream (stdin, gRPC) cannot be read again: what the next run reads from
it is new, never sent before, so it must never count as redelivered. The
only events a run sends again are those an earlier run left in the spool:
a parked batch counts the lines its producer had (its ``sent``), a batch
the earlier run had already sent from the spool counts all its lines. Both
used to leak onto fresh data: the "sent up to" byte mark of a run killed
with unacknowledged data counted the next run's first new bytes, and spool
batch numbers started again at 0 in a run that found the spool empty, so a
later outage's fresh batches matched the last run's "sent from the spool up
to" number.

Real broker (tansu, tests/kafka_broker.py), the real CLI in a subprocess,
the helpers of tests/test_collect.py; each test checks the topic's content
with a consumer.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

from kafka_broker import TansuBroker, read_topic
from test_collect import Collect, _no_leftover_collectors, check_order, line  # noqa: F401 - the fixture is autouse
from test_collect_stream_term import DURING, FIRST, MEMORY, on_stdin, send_first, write_lines


def run_on(kafka: TansuBroker, topic: str, state: Path, lines: list[bytes], *extra: str) -> Collect:
    """A run whose stdin holds ``lines`` and then ends (under a pipe's 64 KB, written before it starts)."""
    data = b"".join(ln + b"\n" for ln in lines)
    assert len(data) < 60_000, len(data)
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    c = Collect("-", kafka, topic, state, *extra, stdin=r)
    os.close(r)
    return c


def test_kill_9_with_unacknowledged_stdin_counts_no_new_line_as_redelivered(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """Killed holding sent, unacknowledged stdin events: the next run's new lines were never sent before.

    ``--stall-seconds 600`` keeps them in the producer (no parking), so the killed run's "sent up to"
    mark is well past its checkpoint. Those events die with the process (memory only, the broker was
    away: nothing of them reached the topic); the next run reads new lines from its stdin, and none of
    them may count as redelivered. It used to count the first of them (as many bytes as the lost ones).
    """
    state = tmp_path / "state"
    during = DURING[:1_000]
    new = [line(i) for i in range(10_000, 10_150)]
    with on_stdin(kafka, topic, state, "--kafka-client", "kafka-python", "--stall-seconds", "600") as (c, wfd):
        send_first(c, wfd)
        kafka.stop()
        write_lines(wfd, during)
        c.wait_metric("tetrapipe_collect_events_sent_total", len(FIRST) + len(during), timeout=30)
        assert c.metric(MEMORY) == len(during), c.output()  # handed to the producer, unacknowledged
        c.proc.send_signal(signal.SIGKILL)
        assert c.wait() == -signal.SIGKILL
    assert not list(state.glob("spool-*/*.spool"))  # nothing parked: the case at hand
    kafka.start()  # empty (tansu keeps topics in memory)
    c2 = run_on(kafka, topic, state, new)
    assert c2.wait(60) == 0, c2.output()
    records = read_topic(kafka.bootstrap, topic, expect=len(new))
    values = [r.value for r in records]
    assert sorted(values) == sorted(new)  # each new line once; nothing of the lost ones
    check_order(records)
    assert c2.final_count("redelivered") == 0, c2.output()


def test_kill_9_before_the_parking_was_checkpointed_counts_exactly_the_parked_lines(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """Parked at a stall, killed before the checkpoint covering the parking reached the disk; restart with new lines.

    The window (spool written, checkpoint not yet fsync'd: milliseconds) is made certain by putting back
    the checkpoint from before the outage. Each parked line had been handed to a producer (the sent
    counter says so), so each may be in the topic: exactly those count as redelivered, not one of the
    new lines the next run reads. Every line (parked and new) reaches the topic, in order.
    """
    state = tmp_path / "state"
    during = DURING
    new = [line(i) for i in range(10_000, 10_150)]
    with on_stdin(kafka, topic, state, "--kafka-client", "kafka-python", "--stall-seconds", "1") as (c, wfd):
        send_first(c, wfd)
        c.wait_metric("tetrapipe_collect_checkpoint_timestamp_seconds", 1, timeout=30)
        (checkpoint,) = state.glob("collect-*.json")
        before_outage = checkpoint.read_bytes()
        assert json.loads(before_outage)["total"] == sum(len(ln) + 1 for ln in FIRST)
        kafka.stop()
        write_lines(wfd, during)
        c.wait_metric("tetrapipe_collect_events_spooled_total", len(during), timeout=30)
        assert c.metric(MEMORY) == 0, c.output()
        handed = c.metric("tetrapipe_collect_events_sent_total") - len(FIRST)
        c.proc.send_signal(signal.SIGKILL)
        assert c.wait() == -signal.SIGKILL
    checkpoint.write_bytes(before_outage)  # as if killed before the checkpoint recorded the parking
    assert handed == len(during), c.output()  # kafka-python holds them through the outage: all were sent
    kafka.start()
    c2 = run_on(kafka, topic, state, new)
    assert c2.wait(60) == 0, c2.output()
    records = read_topic(kafka.bootstrap, topic, expect=len(during) + len(new))
    values = [r.value for r in records]
    assert set(values) == set(during + new), f"lost {len(set(during + new) - set(values))}"
    assert all(n == 1 for v, n in Counter(values).items() if v in set(new))  # new lines never twice
    check_order(records)
    assert c2.final_count("redelivered") == len(during), c2.output()


def test_a_later_runs_fresh_spool_batches_are_not_counted_as_the_last_runs(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """Two outages in two runs: the second run's spooled events were never sent before; none is redelivered.

    The first run spools during an outage, sends its spool when the broker is back and exits with the
    spool empty; its mark says "sent from the spool up to batch N". The second run found no batch on
    disk and numbered its own from 0 again: each matched the mark and counted as redelivered.
    """
    state = tmp_path / "state"
    runs = [[line(i) for i in range(k * 1_000, k * 1_000 + 150)] for k in (1, 2)]
    for lines in runs:
        kafka.stop()  # the broker is away when the run starts: every line goes to the spool first
        c = run_on(kafka, topic, state, lines, "--stall-seconds", "1")
        c.wait_metric("tetrapipe_collect_events_spooled_total", len(lines), timeout=30)
        kafka.start()  # empty: the topic then holds what this run sends
        assert c.wait(60) == 0, c.output()
        records = read_topic(kafka.bootstrap, topic, expect=len(lines))
        assert sorted(r.value for r in records) == sorted(lines)
        check_order(records)
        assert c.final_count("redelivered") == 0, c.output()
