"""Generate N Tetragon export lines with the real structure, for benchmarks.

    python bench/gen_events.py --count 1000000 --out /tmp/events.jsonl [--seed 1]

Each line is one of the real events in samples/ (all kinds they hold: exec,
exit, kprobe file and syscall hooks, throttle, enterprise connect/close/listen),
with its time, exec_ids, pids and node changed so every line is a distinct
event (about three events per process, parents linked per node); the structure (keys, nesting, omitted zeros, 64-bit integers as strings)
is untouched. Real events are 0.6-3.6 KB; the mix averages about 1.9 KB.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import random
import time
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "real"
NODES = [f"kind-worker{i}" for i in range(8)]


def _templates() -> list[str]:
    """Real events as JSON text with placeholders for what varies per line."""
    out = []
    for path in sorted(SAMPLES.glob("*.log")):
        for line in path.read_text().splitlines():
            ev = json.loads(line)
            kind = next(k for k in ev if k not in ("node_name", "time", "cluster_name"))
            body = ev[kind]
            ev["time"] = "@TIME@"
            ev["node_name"] = "@NODE@"
            for key in ("process", "parent"):
                p = body.get(key)
                if isinstance(p, dict) and p.get("exec_id"):
                    p["exec_id"] = f"@{key.upper()}_ID@"
                    if "pid" in p:
                        p["pid"] = 999999 if key == "process" else 999998
            if isinstance(body.get("process"), dict) and body["process"].get("parent_exec_id"):
                body["process"]["parent_exec_id"] = "@PARENT_ID@"
            text = json.dumps(ev, separators=(",", ":"))
            out.append(text.replace('"pid":999999', '"pid":@PID@').replace('"pid":999998', '"pid":@PPID@'))
    return out


def generate(count: int, out: Path, seed: int = 1) -> tuple[int, float]:
    rng = random.Random(seed)
    templates = _templates()
    t0 = dt.datetime(2026, 3, 10, 9, 0, 0)
    total = 0
    with open(out, "w", buffering=4 * 1024 * 1024) as f:
        for i in range(count):
            # a process shows up in ~3 events (exec, hooks, exit); its parent is an earlier
            # process of the same node, 16 children each, so trees are a few levels deep
            k = i // 3
            node = NODES[k % len(NODES)]
            pid = 10000 + (k // len(NODES)) % 4_000_000
            ktime = 1_000_000_000 + k * 1000
            parent_k = (k // 128) * len(NODES) + k % len(NODES) if k >= 128 else k
            ppid = 10000 + (parent_k // len(NODES)) % 4_000_000
            pktime = 1_000_000_000 + parent_k * 1000
            t = t0 + dt.timedelta(microseconds=i * 500)
            line = (rng.choice(templates)
                    .replace("@TIME@", t.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{i % 1000:03d}Z")
                    .replace("@NODE@", node)
                    .replace("@PROCESS_ID@", base64.b64encode(f"{node}:{ktime}:{pid}".encode()).decode())
                    .replace("@PARENT_ID@", base64.b64encode(f"{node}:{pktime}:{ppid}".encode()).decode())
                    .replace("@PID@", str(pid)).replace("@PPID@", str(ppid)))
            f.write(line)
            f.write("\n")
            total += len(line) + 1
    return count, total / max(count, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    started = time.perf_counter()
    n, avg = generate(args.count, args.out, args.seed)
    print(f"{n:,} events, {avg:,.0f} bytes per line on average, {args.out.stat().st_size / 1e9:.2f} GB, "
          f"in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
