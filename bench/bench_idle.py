"""What one `tetrapipe process` replica costs on a slow stream: its CPU while fed RATE events a second.

    python bench/bench_idle.py [--rate 0 --rate 50 --rate 500] [--partitions 1 --partitions 6] [--seconds 60]

Starts a local tansu broker (as ``bench_process.py`` does), a replica reading one
topic into a fresh lake with the shipped rules, and a producer sending the
generated events at each rate in steps of 100 ms, spread over the topic's
partitions. The replica's CPU (user + system, every thread, from ``/proc``)
is read from 15 s in (after its group join and first batches) to the end. Why it matters: a micro-batch closes at
least once a second (``batch_max_seconds``) and pays fixed costs whatever it
holds (README, Performance), which is what a platform engineer sizes a quiet
cluster's CPU request by.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_process  # bench/ is on sys.path when a script here runs
from broker import start_broker
from tree_env import compiled


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    bootstrap: str,
    lines: list[bytes],
    rate: int,
    seconds: float,
    client: str,
    work: Path,
    partitions: int,
    batch_seconds: float,
) -> float:
    """Percent of one core the replica used while fed ``rate`` events a second, spread over ``partitions``."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"idle-{rate}-{partitions}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    cmd = [
        *(sys.executable, "-m", "tetrapipe", "process", "--kafka", bootstrap, "--topic", topic, "--group", topic),
        *("--lake", str(work / topic), "--alerts-topic", "", "--dead-letter-topic", "", "--kafka-client", client),
        *bench_process.FAST_GROUP,
        *("--batch-seconds", str(batch_seconds)),
    ]
    replica = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sent, started, first = 0, time.monotonic(), None
        while time.monotonic() - started < seconds:
            tick = time.monotonic()
            for _ in range(rate // 10):
                producer.send(topic, value=lines[sent % len(lines)], partition=sent % partitions)
                sent += 1
            producer.flush()
            if first is None and tick - started > 15:
                first = (_cpu_seconds(replica.pid), time.monotonic())
            time.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
        if first is None:
            sys.exit("--seconds must be over 15")
        return 100 * (_cpu_seconds(replica.pid) - first[0]) / (time.monotonic() - first[1])
    finally:
        producer.close()
        replica.terminate()
        replica.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, action="append", default=[], help="Events a second (repeatable).")
    ap.add_argument("--seconds", type=float, default=60.0, help="How long each rate runs (measured after 15 s).")
    ap.add_argument("--kafka-client", choices=["kafka-python", "confluent"], default="confluent")
    ap.add_argument(
        "--batch-seconds", type=float, default=1.0, help="The replica's --batch-seconds (alert latency for CPU)."
    )
    ap.add_argument(
        "--partitions", type=int, action="append", default=[], help="Partitions of the topic (repeatable; default 1)."
    )
    args = ap.parse_args()
    compiled()  # this tree's bytecode, as an installed wheel has it (see tree_env.py)
    from gen_events import generate_reported

    work = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    events = work / "events.jsonl"
    generate_reported(20_000, events, 1)
    lines = events.read_bytes().splitlines()
    broker, bootstrap = start_broker()
    try:
        for partitions in args.partitions or [1]:
            for rate in args.rate or [0, 50, 500]:
                share = measure(
                    bootstrap, lines, rate, args.seconds, args.kafka_client, work, partitions, args.batch_seconds
                )
                print(
                    f"{rate:>6} events/s over {partitions} partition(s), --batch-seconds {args.batch_seconds:g}: "
                    f"the replica used {share:.1f}% of a core ({args.kafka_client})"
                )
    finally:
        broker.kill()
        broker.wait(10)


if __name__ == "__main__":
    main()
