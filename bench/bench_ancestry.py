"""Benchmark of the ancestry transform: throughput, share of ingest time, and table memory.

    python bench/bench_ancestry.py                      # 1,000,000 events, 1,000,000 processes
    python bench/bench_ancestry.py --events 200000 --processes 200000 --no-ingest

Three measurements:

1. ``transform``: events/s of ``AncestryTransform`` alone over normalized
   batches (read with ``read_line_batches`` + ``Normalizer``, 32 MB chunks, as
   ``tetrapipe ingest`` does), starting from an empty table.
2. ``ingest``: ``tetrapipe.flows.ingest.ingest`` of the same file into a fresh lake,
   without and with the transform (best of ``--repeat`` runs each); the
   difference is what the enrichment adds to ingest time.
3. ``memory``: ``--processes`` short-lived processes (exec + exit, 1 ms apart,
   children of long-lived shells) fed to a ``ProcessTable``: its size and
   bytes over time, and the process RSS growth. Then the same number of
   processes that never exit (no eviction possible): bytes per process.

Events come from ``bench/gen_events.py --count N --out FILE`` when it exists
(``--generator gen_events``), else from the generator below, which builds
process trees of pods on three nodes (init -> containerd -> shim -> app ->
sh -> short-lived commands, with file and connect kprobes). Results are
printed and written to ``bench/results/ancestry.json``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import gc
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tetrapipe.transforms.ancestry import AncestryTransform, ProcessTable  # noqa: E402

T0 = dt.datetime(2026, 3, 10, 9, 0, 0)


def _ts(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _eid(node: str, ktime: int, pid: int) -> str:
    return base64.b64encode(f"{node}:{ktime}:{pid}".encode()).decode()


class _Gen:
    """Tetragon-shaped events of pods on a few nodes, in time order."""

    IMAGES = [
        "docker.io/library/nginx:1.27",
        "quay.io/cilium/crawler:0.3",
        "ghcr.io/acme/api:2.14.1",
        "docker.io/library/python:3.12-slim",
        "docker.io/bitnami/redis:7.2",
    ]
    APPS = ["/usr/sbin/nginx", "/usr/bin/node", "/app/api", "/usr/local/bin/python", "/opt/bitnami/redis-server"]
    CMDS = [
        ("/usr/bin/curl", "-s http://svc.internal:8080/healthz"),
        ("/bin/date", "+%s"),
        ("/bin/cat", "/etc/resolv.conf"),
        ("/usr/bin/wget", "-q -O- http://10.96.0.10/metrics"),
        ("/bin/ls", "-la /tmp"),
        ("/usr/bin/find", "/var/cache -mtime +1 -delete"),
    ]

    def __init__(self, seed: int = 1) -> None:
        self.rnd = random.Random(seed)
        self.t = T0
        self.ktime = 10**12
        self.pid = 20000
        self.nodes = [f"gke-prod-pool-1-{h}" for h in ("8f3a2c1d-x1q2", "8f3a2c1d-b7k9", "8f3a2c1d-m4t6")]
        self.pods: list[dict] = []
        self.host: dict[str, dict] = {}
        for node in self.nodes:
            init = self._proc(node, "/sbin/init", "", None, pid=1)
            containerd = self._proc(node, "/usr/bin/containerd", "", init)
            self.host[node] = {"init": init, "containerd": containerd}
            for k in range(12):
                ns = ["tenant-jobs", "default", "payments", "monitoring"][k % 4]
                name = f"app{k}-{self.rnd.randrange(16**8):08x}-{self.rnd.randrange(36**5):05d}"
                img = k % len(self.IMAGES)
                pod = {
                    "namespace": ns,
                    "name": name,
                    "container": {
                        "id": f"containerd://{self.rnd.randrange(16**32):032x}",
                        "name": f"app{k}",
                        "image": {"id": self.IMAGES[img] + "@sha256:" + "ab" * 32, "name": self.IMAGES[img]},
                        "start_time": T0.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "pid": 1,
                    },
                    "pod_labels": {
                        "app": f"app{k}",
                        "pod-template-hash": f"{self.rnd.randrange(16**8):08x}",
                        "team": "platform",
                    },
                    "workload": f"app{k}",
                    "workload_kind": "Deployment",
                }
                shim = self._proc(
                    node,
                    "/usr/bin/containerd-shim-runc-v2",
                    f"-namespace k8s.io -id {pod['container']['id'][13:77]}",
                    containerd,
                )
                app = self._proc(node, self.APPS[img], "--port 8080", shim, pod=pod)
                self.pods.append({"node": node, "pod": pod, "app": app, "shim": shim})

    def _proc(
        self, node: str, binary: str, args: str, parent: dict | None, pod: dict | None = None, pid: int | None = None
    ) -> dict:
        self.ktime += self.rnd.randrange(10**5, 10**7)
        if pid is None:
            self.pid += 1
            pid = self.pid
        p = {
            "exec_id": _eid(node, self.ktime, pid),
            "pid": pid,
            "uid": 0,
            "cwd": "/",
            "binary": binary,
            "arguments": args,
            "flags": "execve rootcwd clone",
            "start_time": _ts(self.t),
            "auid": 4294967295,
            "tid": pid,
        }
        if pod is not None:
            p["pod"] = pod
            p["docker"] = pod["container"]["id"][13:44]
        if parent is not None:
            p["parent_exec_id"] = parent["exec_id"]
        return p

    def _line(self, kind: str, body: dict, node: str) -> bytes:
        self.t += dt.timedelta(microseconds=self.rnd.randrange(200, 1800))
        return orjson.dumps({kind: body, "node_name": node, "time": _ts(self.t)})

    def lines(self, n: int):
        made = 0
        # Tetragon starts by reporting what already runs (flags procFS), parents first
        for node, h in self.host.items():
            for p, parent in ((h["init"], None), (h["containerd"], h["init"])):
                yield self._line(
                    "process_exec", {"process": {**p, "flags": "procFS auid rootcwd"}, "parent": parent or {}}, node
                )
                made += 1
        for slot in self.pods:
            app, shim, containerd = slot["app"], slot["shim"], self.host[slot["node"]]["containerd"]
            for p, parent in ((shim, containerd), (app, shim)):
                yield self._line(
                    "process_exec", {"process": {**p, "flags": "procFS auid rootcwd"}, "parent": parent}, slot["node"]
                )
                made += 1
        while made < n:
            slot = self.rnd.choice(self.pods)
            node, app = slot["node"], slot["app"]
            sh = self._proc(node, "/bin/sh", "-c /app/cron.sh", app, pod=slot["pod"])
            batch = [self._line("process_exec", {"process": sh, "parent": app}, node)]
            for _ in range(self.rnd.randrange(1, 4)):
                binary, args = self.rnd.choice(self.CMDS)
                c = self._proc(node, binary, args, sh, pod=slot["pod"])
                batch.append(self._line("process_exec", {"process": c, "parent": sh}, node))
                for _ in range(self.rnd.randrange(0, 5)):
                    if self.rnd.random() < 0.5:
                        body = {
                            "process": c,
                            "parent": sh,
                            "function_name": "security_file_permission",
                            "args": [
                                {"file_arg": {"path": "/etc/resolv.conf", "permission": "-rw-r--r--"}},
                                {"int_arg": 4},
                            ],
                            "return": {"int_arg": 0},
                            "action": "KPROBE_ACTION_POST",
                            "policy_name": "file-monitoring",
                        }
                    else:
                        body = {
                            "process": c,
                            "parent": sh,
                            "function_name": "tcp_connect",
                            "args": [
                                {
                                    "sock_arg": {
                                        "family": "AF_INET",
                                        "type": "SOCK_STREAM",
                                        "protocol": "IPPROTO_TCP",
                                        "saddr": "10.244.1.7",
                                        "daddr": "10.96.0.10",
                                        "sport": 41000,
                                        "dport": 8080,
                                        "cookie": "1844674407",
                                        "state": "TCP_SYN_SENT",
                                    }
                                }
                            ],
                            "action": "KPROBE_ACTION_POST",
                            "policy_name": "connect",
                        }
                    batch.append(self._line("process_kprobe", body, node))
                batch.append(self._line("process_exit", {"process": c, "parent": sh}, node))
            batch.append(self._line("process_exit", {"process": sh, "parent": app}, node))
            yield from batch
            made += len(batch)


def generate(path: Path, count: int, generator: str) -> str:
    script = HERE / "gen_events.py"
    if generator == "gen_events" or (generator == "auto" and script.exists()):
        subprocess.run([sys.executable, str(script), "--count", str(count), "--out", str(path)], check=True)
        return "bench/gen_events.py"
    with open(path, "wb") as f:
        for i, line in enumerate(_Gen().lines(count)):
            if i >= count:
                break
            f.write(line + b"\n")
    return "bench/bench_ancestry.py (process trees of 36 pods on 3 nodes)"


def normalized_batches(path: Path) -> list[pa.Table]:
    from tetrapipe.sources.lines import read_line_batches
    from tetrapipe.transforms.normalize import Normalizer

    out = []
    norm = Normalizer()
    try:
        with open(path, "rb") as f:
            for lb in read_line_batches(f, chunk_bytes=32 * 1024 * 1024):
                out.append(norm.normalize(lb.raw, lb.line_nos, str(path)).events)
    finally:
        norm.close()
    return out


def bench_transform(batches: list[pa.Table], repeat: int) -> dict:
    best = None
    for _ in range(repeat):
        transform = AncestryTransform()
        gc.collect()
        started = time.perf_counter()
        for b in batches:
            transform(b)
        took = time.perf_counter() - started
        if best is None or took < best[0]:
            best = (took, transform.table)
    took, table = best
    n = sum(b.num_rows for b in batches)
    s = table.stats
    return {
        "events": n,
        "batches": len(batches),
        "seconds": round(took, 3),
        "events_per_second": round(n / took),
        "us_per_event": round(took / n * 1e6, 3),
        "enriched": s.enriched,
        "with_gaps": s.with_gaps,
        "raw_reads": s.raw_reads,
        "table_entries_at_end": len(table),
        "table_mib_at_end": round(table.nbytes / 2**20, 1),
    }


def bench_ingest(path: Path, repeat: int) -> dict:
    from tetrapipe.flows.ingest import ingest
    from tetrapipe.lake import Lake
    from tetrapipe.sources.files import expand_inputs

    def run(with_ancestry: bool) -> float:
        best = float("inf")
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as d:
                transforms = [AncestryTransform()] if with_ancestry else []
                gc.collect()
                started = time.perf_counter()
                ingest(expand_inputs([str(path)]), Lake(d), transforms=transforms)
                best = min(best, time.perf_counter() - started)
        return best

    # interleave so that drift on a shared machine hits both
    base, enriched = [], []
    for _ in range(repeat):
        base.append(run(False))
        enriched.append(run(True))
    b, e = min(base), min(enriched)
    return {
        "ingest_seconds_without": round(b, 2),
        "ingest_seconds_with": round(e, 2),
        "overhead_percent": round((e - b) / b * 100, 1),
        "runs_without": [round(x, 2) for x in base],
        "runs_with": [round(x, 2) for x in enriched],
    }


def _rss_mib() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _short_lived(start: int, count: int, node: str, parents: list[str], t0_us: int) -> pa.Table:
    """exec + exit of short-lived processes, 1 ms apart: every fourth a shell (child of a long-lived
    app), the three after it its children; the shell exits last."""
    idx = range(start, start + count)

    def sid(i: int) -> str:
        return _eid(node, 10**9 + i * 1000, 100000 + i % 3000000)

    ids = [sid(i) for i in idx]
    par = [parents[i % len(parents)] if i % 4 == 0 else sid(i - i % 4) for i in idx]
    times = [t0_us + i * 1000 for i in idx]
    exits = [t + (3500 if i % 4 == 0 else 500) for i, t in zip(idx, times, strict=True)]
    binaries = [("/bin/sh", "/usr/bin/curl", "/bin/true", "/usr/bin/date")[i % 4] for i in idx]
    parent_bins = ["/usr/bin/node" if i % 4 == 0 else "/bin/sh" for i in idx]
    return pa.table(
        {
            "time": pa.array(times + exits, pa.int64()).cast(pa.timestamp("us")),
            "kind": pa.array(["process_exec"] * count + ["process_exit"] * count),
            "node_name": pa.array([node] * (2 * count)),
            "exec_id": pa.array(ids * 2),
            "parent_exec_id": pa.array(par * 2),
            "pid": pa.array([100000 + i % 3000000 for i in idx] * 2, pa.int64()),
            "process_binary": pa.array(binaries * 2),
            "parent_binary": pa.array(parent_bins * 2),
            "parent_pid": pa.array(
                [900 if i % 4 == 0 else 100000 + (i - i % 4) % 3000000 for i in idx] * 2, pa.int64()
            ),
        }
    )


def bench_memory(processes: int) -> dict:
    node = "gke-prod-pool-1-8f3a2c1d-x1q2"
    parents = [_eid(node, 5 * 10**8 + k, 900 + k) for k in range(100)]
    t0 = int(T0.timestamp() * 1e6)
    step = 50_000
    gc.collect()
    rss0 = _rss_mib()
    table = ProcessTable()  # defaults: 2 min grace, 1,000,000 cap
    peak_entries = peak_bytes = 0
    peak_rss = rss0
    rss_by_quarter = []
    started = time.perf_counter()
    for start in range(0, processes, step):
        table.enrich(_short_lived(start, min(step, processes - start), node, parents, t0))
        peak_entries = max(peak_entries, len(table))
        peak_bytes = max(peak_bytes, table.nbytes)
        peak_rss = max(peak_rss, _rss_mib())
        if (start + step) % max(processes // 4, step) == 0:
            rss_by_quarter.append(round(_rss_mib() - rss0, 1))
    took = time.perf_counter() - started
    short = {
        "processes": processes,
        "grace_seconds": table.grace_us / 1e6,
        "seconds": round(took, 2),
        "peak_entries": peak_entries,
        "peak_table_mib": round(peak_bytes / 2**20, 1),
        "entries_at_end": len(table),
        "table_mib_at_end": round(table.nbytes / 2**20, 1),
        "process_rss_growth_peak_mib": round(peak_rss - rss0, 1),
        "process_rss_growth_by_quarter_mib": rss_by_quarter,
        "evicted": table.stats.evicted,
    }
    del table
    gc.collect()
    # none exit: nothing can be evicted, so this is the layout's own cost per process
    table = ProcessTable(grace=dt.timedelta(days=1), max_entries=processes * 2)
    for start in range(0, processes, step):
        table.update(_short_lived(start, min(step, processes - start), node, parents, t0).slice(0, step))
    live = {
        "processes": len(table),
        "table_mib": round(table.nbytes / 2**20, 1),
        "bytes_per_process": round(table.nbytes / len(table)),
    }
    return {"short_lived": short, "never_exiting": live}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--processes", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--generator", choices=["auto", "internal", "gen_events"], default="internal")
    ap.add_argument("--input", type=Path, help="An existing export log instead of generating one.")
    ap.add_argument("--no-ingest", action="store_true", help="Skip the end-to-end ingest comparison.")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ancestry.json")
    args = ap.parse_args()

    results: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
    }
    # memory first, while the process is fresh (later phases leave freed memory in the allocators)
    results["memory"] = bench_memory(args.processes)
    print("memory:", json.dumps(results["memory"]), flush=True)
    gc.collect()
    with tempfile.TemporaryDirectory() as d:
        path = args.input
        if path is None:
            path = Path(d) / "events.log"
            t = time.perf_counter()
            results["generator"] = generate(path, args.events, args.generator)
            print(
                f"generated {args.events:,} events in {time.perf_counter() - t:.1f}s "
                f"({path.stat().st_size / 2**20:.0f} MiB) with {results['generator']}",
                flush=True,
            )
        batches = normalized_batches(path)
        results["transform"] = bench_transform(batches, args.repeat)
        print("transform:", json.dumps(results["transform"]), flush=True)
        del batches
        gc.collect()
        if not args.no_ingest:
            results["ingest"] = bench_ingest(path, args.repeat)
            print("ingest:", json.dumps(results["ingest"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
