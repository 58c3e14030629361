"""A stream source (stdin, gRPC) stopped while the broker is away: what the producer held goes to the spool.

A file source's unacknowledged events are read again by the next run (its
checkpoint never moved past them); a stream cannot be read again, so the
events handed to the Kafka producer but not acknowledged, held in memory,
used to die with the process: SIGTERM waited out the drain and exited, and
a kill during an outage took them too. Now a stream's unacknowledged chunks
are written to the on-disk spool, in order, when Kafka stalls and at exit;
the next run sends the spool first. An event that may have reached the
broker before and is sent again from the spool is counted as redelivered.

Real broker (tansu, tests/kafka_broker.py), the real CLI in a subprocess,
the helpers of tests/test_collect.py.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

from kafka_broker import TansuBroker, read_topic
from test_collect import Collect, _no_leftover_collectors, check_order, line  # noqa: F401 - the fixture is autouse

MEMORY = 'tetrapipe_collect_events_buffered{where="memory"}'


def write_lines(fd: int, lines: list[bytes]) -> None:
    """Write whole lines to the collector's stdin, a hundred at a time (a pipe holds 64 KB)."""
    for i in range(0, len(lines), 100):
        os.write(fd, b"".join(ln + b"\n" for ln in lines[i : i + 100]))


def restart_and_drain(kafka: TansuBroker, topic: str, state: Path) -> Collect:
    """A second run on the same state dir with an empty stdin: it sends the spool, then exits (stdin ended)."""
    r, w = os.pipe()
    os.close(w)
    c2 = Collect("-", kafka, topic, state, stdin=r)
    os.close(r)
    assert c2.wait(60) == 0, c2.output()
    return c2


def check_all_there(kafka: TansuBroker, topic: str, expected: list[bytes], c2: Collect) -> tuple[int, int]:
    """Every expected event in the topic, nothing else, duplicates within what the second run counted."""
    records = read_topic(kafka.bootstrap, topic, expect=len(expected))
    values = [r.value for r in records]
    assert set(expected) - set(values) == set(), f"lost {len(set(expected) - set(values))} of {len(expected)}"
    assert set(values) <= set(expected)
    duplicates = len(values) - len(set(values))
    redelivered = c2.final_count("redelivered")
    assert duplicates <= redelivered, (duplicates, redelivered, Counter(values).most_common(3))
    check_order(records)
    return duplicates, redelivered


def test_sigterm_with_the_broker_away_spools_what_the_producer_held(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """SIGTERM while the producer holds unacknowledged stdin events in memory: the next run sends them all.

    kafka-python keeps its producer "up" through an outage (its sends only fail at the delivery timeout)
    and a long ``--stall-seconds`` keeps the collector from spooling: the events are certain to be in
    memory when SIGTERM comes, so this is the exit's path, not the stall's.
    """
    state = tmp_path / "state"
    first = [line(i) for i in range(100)]
    during = [line(i) for i in range(100, 2_100)]
    r, wfd = os.pipe()
    c = Collect("-", kafka, topic, state, "--kafka-client", "kafka-python", "--stall-seconds", "600", stdin=r)
    os.close(r)
    try:
        write_lines(wfd, first)
        c.wait_metric("tetrapipe_collect_events_acked_total", len(first), timeout=30)
        kafka.stop()
        write_lines(wfd, during)
        c.wait_metric("tetrapipe_collect_events_read_total", len(first) + len(during), timeout=30)
        assert c.metric(MEMORY) == len(during), c.output()  # all in memory, none spooled: the case at hand
        assert c.metric("tetrapipe_collect_events_spooled_total") == 0
        t0 = time.monotonic()
        assert c.terminate(timeout=40) == 0, c.output()
        took = time.monotonic() - t0
    finally:
        os.close(wfd)
    assert took < 20, (took, c.output())  # the drain (10 s), not more than a little beyond it
    kafka.start()  # empty: tansu keeps topics in memory, so the first 100 went with it
    c2 = restart_and_drain(kafka, topic, state)
    duplicates, redelivered = check_all_there(kafka, topic, during, c2)
    assert "(2000 events) of the stream moved to the spool" in c.output(), c.output()
    # they were handed to the producer before the kill: each may have reached the broker, so each resend counts
    assert redelivered == len(during), c2.output()
    print(f"exit took {took:.1f}s; {duplicates} duplicates, {redelivered} counted as redelivered")


def test_a_stall_spools_what_the_producer_held_so_a_kill_9_loses_none(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """Kafka stalls: the stream's unacknowledged in-memory events join the spool then, not only at exit.

    A kill -9 during an outage (OOM killer, node drain gone wrong) leaves nothing in memory to save, so
    the spool has to hold them already; the memory buffer (32 MB by default) would otherwise keep a
    stream's events in the process for the whole outage.
    """
    state = tmp_path / "state"
    first = [line(i) for i in range(100)]
    during = [line(i) for i in range(100, 2_100)]
    r, wfd = os.pipe()
    c = Collect("-", kafka, topic, state, "--stall-seconds", "1", stdin=r)
    os.close(r)
    try:
        write_lines(wfd, first)
        c.wait_metric("tetrapipe_collect_events_acked_total", len(first), timeout=30)
        kafka.stop()
        write_lines(wfd, during)
        c.wait_metric("tetrapipe_collect_events_read_total", len(first) + len(during), timeout=30)
        c.wait_metric("tetrapipe_collect_events_spooled_total", len(during), timeout=30)
        assert c.metric(MEMORY) == 0, c.output()
        c.proc.send_signal(signal.SIGKILL)
        assert c.wait() == -signal.SIGKILL
    finally:
        os.close(wfd)
    kafka.start()
    c2 = restart_and_drain(kafka, topic, state)
    duplicates, redelivered = check_all_there(kafka, topic, during, c2)
    print(f"{duplicates} duplicates, {redelivered} counted as redelivered")


def test_sigterm_when_the_broker_never_answered_keeps_every_stdin_event(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """No broker from the start: nothing is ever acknowledged; SIGTERM; the next run, broker up, sends it all.

    None of these events reached a producer that could deliver them, so none may count as redelivered.
    """
    state = tmp_path / "state"
    lines = [line(i) for i in range(1_000)]
    kafka.stop()
    r, wfd = os.pipe()
    c = Collect("-", kafka, topic, state, stdin=r)
    os.close(r)
    try:
        write_lines(wfd, lines)
        c.wait_metric("tetrapipe_collect_events_read_total", len(lines), timeout=30)
        t0 = time.monotonic()
        assert c.terminate(timeout=40) == 0, c.output()
        took = time.monotonic() - t0
    finally:
        os.close(wfd)
    assert took < 10, (took, c.output())  # not connected: the drain is not waited out (parked instead)
    kafka.start()
    c2 = restart_and_drain(kafka, topic, state)
    duplicates, redelivered = check_all_there(kafka, topic, lines, c2)
    assert (duplicates, redelivered) == (0, 0), c2.output()


def test_a_stream_parked_during_an_outage_drains_in_order_when_the_broker_is_back(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """The same run, broker back: the parked chunks, then what was spooled after them, then new reads, in order.

    Parking replaces the producer that held the chunks; the collector must reconnect, send the spool
    first and go back to sending directly, without losing or reordering anything.
    """
    state = tmp_path / "state"
    first = [line(i) for i in range(100)]
    during = [line(i) for i in range(100, 2_100)]
    after = [line(i) for i in range(2_100, 2_600)]
    r, wfd = os.pipe()
    c = Collect("-", kafka, topic, state, "--stall-seconds", "1", stdin=r)
    os.close(r)
    try:
        write_lines(wfd, first)
        c.wait_metric("tetrapipe_collect_events_acked_total", len(first), timeout=30)
        kafka.stop()
        write_lines(wfd, during[:1000])
        c.wait_metric("tetrapipe_collect_events_spooled_total", 1000, timeout=30)
        write_lines(wfd, during[1000:])
        c.wait_metric("tetrapipe_collect_events_spooled_total", len(during), timeout=30)
        kafka.start()  # empty: the first 100 are gone with the old broker's memory
        c.wait_metric("tetrapipe_collect_kafka_up", 1, timeout=30)
        write_lines(wfd, after)
    finally:
        os.close(wfd)
    assert c.wait(60) == 0, c.output()  # stdin ended: everything acknowledged, then exit
    records = read_topic(kafka.bootstrap, topic, expect=len(during) + len(after))
    values = [r.value for r in records]
    assert set(values) == set(during + after), f"lost {len(set(during + after) - set(values))}"
    assert len(values) - len(set(values)) <= c.final_count("redelivered") + c.final_count("retried")
    check_order(records)
    assert not list(state.glob("spool-*/*.spool"))  # the spool drained, nothing left for a next run
