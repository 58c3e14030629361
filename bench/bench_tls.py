"""The TLS transform alone over normalized batches, its cost per event, in one run.

    python bench/gen_events.py --out /tmp/events.jsonl
    python bench/bench_tls.py /tmp/events.jsonl [--events 200000] [--batch 20000] [--also-src DIR]

The file's first ``--events`` lines are normalized once (not timed), cut into
batches of ``--batch`` rows as the ingest cuts them, then
``TlsTransform()(batch)`` runs over every batch: the median of ``--repeat``
passes, as microseconds per event, with how many rows of each kind the
transform touches (connect rows, handshakes). ``--also-src DIR`` times the
transform of another source tree (a ``git worktree`` of an older commit) in a
fresh process on the same batches, so a change is measured against what it
replaced on the same machine state: ``--rounds`` fresh processes per tree,
alternating, the best of each reported (the machine is shared: the best run
is the one least disturbed).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tree_env import compiled, tree_env  # bench/ is on sys.path when a script here runs


def _batches(path: Path, events: int, batch: int) -> list:
    from tetrapipe.transforms.normalize import normalize_lines

    with path.open() as f:
        lines = list(itertools.islice(f, events))
    table = normalize_lines(lines).events
    return [table.slice(i, batch) for i in range(0, table.num_rows, batch)]


def measure(path: Path, events: int, batch: int, repeat: int) -> dict:
    import pyarrow.compute as pc

    from tetrapipe.transforms.tls import TlsTransform

    batches = _batches(path, events, batch)
    rows = sum(b.num_rows for b in batches)
    connects = sum(pc.sum(pc.is_valid(b.column("daddr"))).as_py() or 0 for b in batches)
    times = []
    for _ in range(repeat):
        tls = TlsTransform()
        t = time.perf_counter()
        for b in batches:
            tls(b)
        times.append(time.perf_counter() - t)
    best = statistics.median(times)
    return {"events": rows, "rows_with_daddr": connects, "seconds": best, "us_per_event": best / rows * 1e6}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("events_file", type=Path)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--also-src", action="append", default=[])
    p.add_argument("--rounds", type=int, default=3, help="fresh processes per tree, alternating (with --also-src)")
    p.add_argument("--json", action="store_true", help="print only the result as JSON (used by --also-src)")
    args = p.parse_args()
    result = measure(args.events_file, args.events, args.batch, args.repeat)
    if args.json:
        print(json.dumps(result))
        return
    results = {"this tree": [result]}
    env = {"this tree": compiled()}
    for src in args.also_src:
        env[src] = tree_env(src)
        results[src] = []
    cmd = [sys.executable, __file__, str(args.events_file), "--events", str(args.events)]
    cmd += ["--batch", str(args.batch), "--repeat", str(args.repeat), "--json"]
    for _ in range(args.rounds if args.also_src else 0):  # alternate the trees: a load spike hits both
        for label in env:
            out = subprocess.run(cmd, env=env[label], capture_output=True, text=True, check=True).stdout
            results[label].append(json.loads(out.strip().splitlines()[-1]))
    for label, runs in results.items():
        r = min(runs, key=lambda x: x["seconds"])
        print(
            f"[{label}] TlsTransform over {r['events']:,} events ({r['rows_with_daddr']:,} with a destination): "
            f"best of {len(runs)} processes {r['seconds']:.3f} s, {r['us_per_event']:.2f} us/event"
        )
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
