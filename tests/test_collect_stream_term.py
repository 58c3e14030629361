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

import contextlib
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from kafka_broker import TansuBroker, read_topic
from test_collect import Collect, _no_leftover_collectors, check_order, line  # noqa: F401 - the fixture is autouse

from tetrapipe.sinks.spool import DiskSpool

MEMORY = 'tetrapipe_collect_events_buffered{where="memory"}'


#: sent and acknowledged before the broker goes away (:func:`send_first`), then what is written during the
#: outage (~700 KB)
FIRST = [line(i) for i in range(100)]
DURING = [line(i) for i in range(100, 2_100)]


def write_lines(fd: int, lines: list[bytes]) -> None:
    """Write whole lines to the collector's stdin, a hundred at a time (a pipe holds 64 KB)."""
    for i in range(0, len(lines), 100):
        os.write(fd, b"".join(ln + b"\n" for ln in lines[i : i + 100]))


@contextlib.contextmanager
def on_stdin(kafka: TansuBroker, topic: str, state: Path, *extra: str) -> Iterator[tuple[Collect, int]]:
    """A collector reading a pipe the test writes to; the write end closes (its stdin ends) with the block."""
    r, wfd = os.pipe()
    c = Collect("-", kafka, topic, state, *extra, stdin=r)
    os.close(r)
    try:
        yield c, wfd
    finally:
        os.close(wfd)


def send_first(c: Collect, wfd: int) -> None:
    """:data:`FIRST` written and acknowledged by the broker: the collector is up and sending."""
    write_lines(wfd, FIRST)
    c.wait_metric("tetrapipe_collect_events_acked_total", len(FIRST), timeout=30)


class SpoolWatch:
    """The collector's spool directory, measured on a thread while a test runs: the most it ever held on disk.

    Every file counts, a batch being written (its temporary file) included: the bound is about disk use.
    """

    def __init__(self, state: Path) -> None:
        self.state = state
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        total = 0
        for p in self.state.glob("spool-*/*"):
            try:
                total += p.stat().st_size
            except FileNotFoundError:  # renamed or removed while listed
                pass
        return total

    def _run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self.now())
            self._done.wait(0.002)

    def __enter__(self) -> SpoolWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(5)
        self.peak = max(self.peak, self.now())


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
    with on_stdin(kafka, topic, state, "--kafka-client", "kafka-python", "--stall-seconds", "600") as (c, wfd):
        send_first(c, wfd)
        kafka.stop()
        write_lines(wfd, DURING)
        c.wait_metric("tetrapipe_collect_events_read_total", len(FIRST) + len(DURING), timeout=30)
        assert c.metric(MEMORY) == len(DURING), c.output()  # all in memory, none spooled: the case at hand
        assert c.metric("tetrapipe_collect_events_spooled_total") == 0
        t0 = time.monotonic()
        assert c.terminate(timeout=40) == 0, c.output()
        took = time.monotonic() - t0
    assert took < 20, (took, c.output())  # the drain (10 s), not more than a little beyond it
    kafka.start()  # empty: tansu keeps topics in memory, so the first 100 went with it
    c2 = restart_and_drain(kafka, topic, state)
    duplicates, redelivered = check_all_there(kafka, topic, DURING, c2)
    assert "(2000 events) of the stream moved to the spool" in c.output(), c.output()
    # they were handed to the producer before the kill: each may have reached the broker, so each resend counts
    assert redelivered == len(DURING), c2.output()
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
    with on_stdin(kafka, topic, state, "--stall-seconds", "1") as (c, wfd):
        send_first(c, wfd)
        kafka.stop()
        write_lines(wfd, DURING)
        c.wait_metric("tetrapipe_collect_events_read_total", len(FIRST) + len(DURING), timeout=30)
        c.wait_metric("tetrapipe_collect_events_spooled_total", len(DURING), timeout=30)
        assert c.metric(MEMORY) == 0, c.output()
        c.proc.send_signal(signal.SIGKILL)
        assert c.wait() == -signal.SIGKILL
    kafka.start()
    c2 = restart_and_drain(kafka, topic, state)
    duplicates, redelivered = check_all_there(kafka, topic, DURING, c2)
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
    with on_stdin(kafka, topic, state) as (c, wfd):
        write_lines(wfd, lines)
        c.wait_metric("tetrapipe_collect_events_read_total", len(lines), timeout=30)
        t0 = time.monotonic()
        assert c.terminate(timeout=40) == 0, c.output()
        took = time.monotonic() - t0
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
    after = [line(i) for i in range(2_100, 2_600)]
    with on_stdin(kafka, topic, state, "--stall-seconds", "1") as (c, wfd):
        send_first(c, wfd)
        kafka.stop()
        write_lines(wfd, DURING[:1000])
        c.wait_metric("tetrapipe_collect_events_spooled_total", 1000, timeout=30)
        write_lines(wfd, DURING[1000:])
        c.wait_metric("tetrapipe_collect_events_spooled_total", len(DURING), timeout=30)
        kafka.start()  # empty: the first 100 are gone with the old broker's memory
        c.wait_metric("tetrapipe_collect_kafka_up", 1, timeout=30)
        write_lines(wfd, after)
    assert c.wait(60) == 0, c.output()  # stdin ended: everything acknowledged, then exit
    records = read_topic(kafka.bootstrap, topic, expect=len(DURING) + len(after))
    values = [r.value for r in records]
    assert set(values) == set(DURING + after), f"lost {len(set(DURING + after) - set(values))}"
    assert len(values) - len(set(values)) <= c.final_count("redelivered") + c.final_count("retried")
    check_order(records)
    assert not list(state.glob("spool-*/*.spool"))  # the spool drained, nothing left for a next run


def test_sigterm_parks_within_spool_bytes_and_counts_what_did_not_fit(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """SIGTERM, broker away, more in the producer than ``--spool-bytes`` holds: the spool fills to its bound, no further.

    The oldest events go to the spool as far as the bound allows (down to single lines); the rest
    cannot be kept by a stream and is said to be lost: logged, counted as rejected (``lost_at_exit``).
    Parking used to write all of the memory buffer (up to 32 MB by default) past the bound.
    """
    bound = 256 * 1024
    state = tmp_path / "state"
    options = ("--kafka-client", "kafka-python", "--stall-seconds", "600", "--spool-bytes", "256K")
    with SpoolWatch(state) as watch, on_stdin(kafka, topic, state, *options) as (c, wfd):
        send_first(c, wfd)
        kafka.stop()
        write_lines(wfd, DURING)
        c.wait_metric("tetrapipe_collect_events_read_total", len(FIRST) + len(DURING), timeout=30)
        assert c.metric(MEMORY) == len(DURING), c.output()
        assert c.terminate(timeout=40) == 0, c.output()
    assert watch.peak <= bound, (watch.peak, bound)
    assert bound - watch.now() <= len(DURING[0]) + 64, watch.now()  # filled up to the last line that fit
    lost = c.final_count("rejected")
    assert 0 < lost < len(DURING), c.output()
    assert f"{lost} event(s) of the stream not acknowledged at exit and not in the spool (full: --spool-bytes)" in (
        c.output()
    )
    kafka.start()
    c2 = restart_and_drain(kafka, topic, state)
    kept = DURING[: len(DURING) - lost]  # the oldest, in order
    duplicates, redelivered = check_all_there(kafka, topic, kept, c2)
    assert redelivered == len(kept), c2.output()  # each had gone to the producer before SIGTERM
    print(f"spool peak {watch.peak} of {bound}; {len(kept)} kept, {lost} lost, {duplicates} duplicates")


def test_a_stall_with_more_than_the_spool_holds_stops_reading_and_loses_nothing(
    kafka: TansuBroker, topic: str, tmp_path: Path
) -> None:
    """Kafka stalls with more in memory than ``--spool-bytes`` holds: the spool fills to its bound and reading stops.

    What does not fit waits in memory; the stream waits in its pipe (the writer blocks). When the
    broker is back, everything arrives, in order, the spool never having held more than its bound.
    """
    bound = 256 * 1024
    state = tmp_path / "state"
    later = [line(i) for i in range(2_100, 3_100)]
    options = ("--kafka-client", "kafka-python", "--stall-seconds", "3", "--spool-bytes", "256K")
    with SpoolWatch(state) as watch:
        with on_stdin(kafka, topic, state, *options) as (c, wfd):
            send_first(c, wfd)
            kafka.stop()
            write_lines(wfd, DURING)
            c.wait_metric("tetrapipe_collect_events_read_total", len(FIRST) + len(DURING), timeout=30)
            assert c.metric("tetrapipe_collect_events_spooled_total") == 0, c.output()  # all in memory at the stall
            c.wait_metric("tetrapipe_collect_events_spooled_total", 1, timeout=30)  # the stall parked
            spooled = c.metric("tetrapipe_collect_events_spooled_total")
            assert 0 < spooled < len(DURING) and c.metric(MEMORY) == len(DURING) - spooled, c.output()
            writer = threading.Thread(target=write_lines, args=(wfd, later))
            writer.start()  # more than a pipe holds: it blocks until the collector reads again
            kafka.start()
            c.wait_metric("tetrapipe_collect_events_read_total", len(FIRST) + len(DURING) + len(later), timeout=60)
            writer.join(30)
        assert c.wait(60) == 0, c.output()  # stdin ended: everything acknowledged, then exit
    assert watch.peak <= bound, (watch.peak, bound)
    records = read_topic(kafka.bootstrap, topic, expect=len(DURING) + len(later))
    values = [r.value for r in records]
    assert set(values) == set(DURING + later), f"lost {len(set(DURING + later) - set(values))}"
    check_order(records)
    # each of ``DURING`` had gone to the first producer (kafka-python keeps them through the outage)
    assert c.final_count("redelivered") == len(DURING), c.output()
    assert c.final_count("rejected") == 0
    print(f"spool peak {watch.peak} of {bound}")


def test_a_stream_read_into_a_full_spool_waits_in_its_pipe(kafka: TansuBroker, topic: str, tmp_path: Path) -> None:
    """Broker away from the start: every chunk read goes to the spool, and the one that does not fit is not written.

    It waits in memory (the part that fits goes to the spool), reading stops and the writer blocks;
    the broker comes back, and everything arrives in order. A chunk used to be written whenever the
    spool was below its bound, passing it by up to a chunk.
    """
    bound = 64 * 1024
    state = tmp_path / "state"
    lines = [line(i) for i in range(1_000)]  # ~350 KB
    kafka.stop()
    with SpoolWatch(state) as watch:
        with on_stdin(kafka, topic, state, "--spool-bytes", "64K") as (c, wfd):
            writer = threading.Thread(target=write_lines, args=(wfd, lines))
            writer.start()
            # the spool is as full as it gets: less room left than one more line takes
            spool = 'tetrapipe_collect_bytes_buffered{where="spool"}'
            c.wait_metric(spool, bound - len(lines[0]) - 64, timeout=30)
            assert c.metric(spool) <= bound, c.output()
            assert c.metric("tetrapipe_collect_events_read_total") < len(lines)
            kafka.start()
            writer.join(60)
        assert c.wait(60) == 0, c.output()
    assert watch.peak <= bound, (watch.peak, bound)
    records = read_topic(kafka.bootstrap, topic, expect=len(lines))
    assert sorted(r.value for r in records) == sorted(lines)
    check_order(records)
    assert (c.final_count("redelivered"), c.final_count("rejected")) == (0, 0), c.output()


def test_spool_batches_never_pass_the_bound(tmp_path: Path) -> None:
    """The spool itself: a batch that would pass ``max_bytes`` is refused, and ``fitting`` lines always go in.

    Random line sizes, batches removed now and then (acknowledged): the files on disk never pass the
    bound, and a refusal comes only when the first line that did not fit really had no room.
    """
    rng = random.Random(7)
    bound = 50_000
    spool = DiskSpool(tmp_path / "spool-unit", max_bytes=bound)
    on_disk = SpoolWatch(tmp_path)  # measured on disk, not through the spool's own count
    refused = 0
    for _ in range(300):
        lines = [b"x" * rng.randint(1, 3_000) for _ in range(rng.randint(1, 12))]
        meta = {"source": "-", "total": rng.randint(0, 1 << 40), "nbytes": sum(len(ln) + 1 for ln in lines)}
        n = spool.fitting(lines, meta)
        if n < len(lines):
            refused += 1
            assert spool.put_batch(lines, meta) is None
            room = bound - spool.pending_bytes
            # no room for one line more (counted with the whole batch's header, as ``fitting`` promises)
            assert room < len(json.dumps({**meta, "lines": len(lines)})) + 1 + sum(len(ln) + 1 for ln in lines[: n + 1])
        if n:
            assert spool.put_batch(lines[:n], meta) is not None
        assert on_disk.now() <= bound
        if rng.random() < 0.3 and spool.batch_count:
            spool.remove_batch(min(spool._batches))
    assert refused > 50 and spool.batch_count  # the bound was pressed on, often
