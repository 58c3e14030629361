"""The Delta lake's costs, each beside a limit measured in the same run.

    python bench/gen_events.py --out /tmp/events.jsonl
    python bench/bench_lake.py /tmp/events.jsonl [--commits 10000]

1. **Hunts**: a lake is made by ``tetrapipe ingest`` of the file (rules off), then
   each query below runs as ``tetrapipe query`` (a fresh process: what a hunter
   waits for) and as DuckDB in a fresh process reading the very same Parquet
   data files directly (``read_parquet`` over the table's files, no Delta log,
   no views): the limit, since tetrapipe's views are DuckDB over those files.
2. **Small commits**: ``--commits`` one-row commits through :meth:`Lake.commit`
   with a Kafka position each (what a processor replica does once a second
   when traffic is low), with ``tetrapipe lake optimize`` every
   ``--optimize-every`` commits as the processor does (every 600 s): latency
   percentiles, the last 100 commits' median, and the size of ``_delta_log``
   at the end (delta-rs writes a checkpoint every 100 commits). Without
   compaction a commit's cost grows with the table's file count (the snapshot
   delta-rs checks against), which the run also shows on the first
   ``--commits // 5`` commits of a table never optimized. The limit: one-row
   Parquet files written with pyarrow (no log, no atomicity).
3. **A day at steady state** (``--day-commits``, 8,640 = one commit every 10 s,
   the processor's ``--commit-seconds`` default; optimize every 60 commits =
   600 s): a day of log and tombstones, in compressed time (see
   :func:`steady_day`). The number to watch: steady-state latency against the
   first commits', and the log's file count.

Median of ``--repeat`` runs for the hunts. Results go to
``bench/results/lake-YYYYMMDD.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HUNTS = {
    "count": "SELECT count(*) FROM events",
    "by kind": "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY n DESC",
    "one pod's execs": (
        "SELECT time, process_binary, arguments FROM events WHERE kind = 'process_exec' "
        "AND pod = (SELECT pod FROM events WHERE pod IS NOT NULL LIMIT 1) ORDER BY time LIMIT 100"
    ),
    "last hour": ("SELECT count(*) FROM events WHERE time >= (SELECT max(time) FROM events) - INTERVAL 1 HOUR"),
}


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one command run to its end (the benchmark stops if it fails). Also used by bench_query."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{cmd[:6]} failed: {proc.stderr[-2000:]}")
    return elapsed


def _duckdb_direct(files: list[str], sql: str) -> list[str]:
    """DuckDB alone, over the same data files: the table's files as a view named ``events``."""
    script = (
        "import duckdb, json, sys; c = duckdb.connect(); "
        f"c.execute('CREATE VIEW events AS SELECT * FROM read_parquet(' + json.dumps({files!r}) + ', union_by_name=true)'); "
        f"c.execute({sql!r}).fetchall()"
    )
    return [sys.executable, "-c", script]


def hunts(events_file: Path, work: Path, repeat: int) -> list[dict]:
    from tetrapipe.lake import Lake

    lake_dir = work / "lake"
    t = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tetrapipe",
            "ingest",
            str(events_file),
            "--lake",
            str(lake_dir),
            "--quiet",
            "--rules",
            "none",
        ],
        check=True,
    )
    print(f"lake made in {time.perf_counter() - t:.1f} s")
    table = Lake(lake_dir).table("events")
    files = [
        str(Path(table.table_uri.removeprefix("file://")) / p)
        for p in table.get_add_actions(flatten=True).column("path").to_pylist()
    ]
    rows = []
    for name, sql in HUNTS.items():
        ours = statistics.median(
            timed([sys.executable, "-m", "tetrapipe", "query", sql, "--lake", str(lake_dir), "--format", "json"])
            for _ in range(repeat)
        )
        limit = statistics.median(timed(_duckdb_direct(files, sql)) for _ in range(repeat))
        rows.append({"hunt": name, "tetrapipe_s": ours, "duckdb_direct_s": limit, "ratio": ours / limit})
        print(
            f"{name:18s} tetrapipe query {ours:6.2f} s   duckdb over the same files {limit:6.2f} s   x{ours / limit:.1f}"
        )
    return rows


def _commit_run(
    lake_dir: Path, n: int, optimize_every: int, start: int = 0, lake: object | None = None
) -> tuple[list[float], float]:
    import pyarrow as pa

    from tetrapipe.lake import Lake
    from tetrapipe.lake.maintenance import optimize
    from tetrapipe.lake.positions import kafka_position
    from tetrapipe.schema import SCHEMAS

    lake = lake or Lake(lake_dir)
    row = pa.Table.from_pylist(
        [{"time": None, "node_name": "node-1", "kind": "process_exec", "event_id": "x"}], schema=SCHEMAS["events"]
    )
    latencies = []
    t0 = time.perf_counter()
    for i in range(start, start + n):
        t = time.perf_counter()
        lake.commit("events", row, kafka_position("tetragon.events", 0, i))
        latencies.append(time.perf_counter() - t)
        if optimize_every and (i + 1) % optimize_every == 0:
            optimize(lake, ["events"])
    return latencies, time.perf_counter() - t0


def _log_files(log: Path) -> tuple[int, int, int]:
    """(commit files, checkpoint files, bytes) of a ``_delta_log``."""
    files = [p for p in log.iterdir() if p.is_file()]
    commits_ = sum(1 for p in files if p.name.endswith(".json") and p.name[:-5].isdigit())
    checkpoints = sum(1 for p in files if p.name.endswith(".checkpoint.parquet"))
    return commits_, checkpoints, sum(p.stat().st_size for p in files)


def steady_day(work: Path, day_commits: int, optimize_every: int) -> dict:
    """A day of commits at steady state, in compressed time.

    The tables keep a day of log and a day of tombstones
    (``TABLE_PROPERTIES``). A real day cannot be waited for, so the day is
    made as long as ``day_commits`` commits take here: the first
    ``day_commits`` commits are timed, both retentions are set to that many
    seconds, and ``day_commits`` more are made. From then on the log holds a
    "day" of entries and tombstones, as a processor's tables do after their
    first day: the second half's latencies and the log's size are the steady
    state. ``day_commits`` 8,640 = one commit every 10 s (``--commit-seconds``
    default); 86,400 would be one a second.
    """
    from tetrapipe.lake import Lake
    from tetrapipe.lake.maintenance import configure, interval

    lake_dir = work / "day"
    lake = Lake(lake_dir)
    first, day_seconds = _commit_run(lake_dir, day_commits, optimize_every, lake=lake)
    span = interval(dt.timedelta(seconds=max(1, round(day_seconds))))
    configure(lake, {"delta.logRetentionDuration": span, "delta.deletedFileRetentionDuration": span})
    second, _ = _commit_run(lake_dir, day_commits, optimize_every, start=day_commits, lake=lake)
    entries, checkpoints, log_bytes = _log_files(lake_dir / "events" / "_delta_log")
    newest = sorted((lake_dir / "events" / "_delta_log").glob("*.checkpoint.parquet"))[-1]
    result = {
        "day_commits": day_commits,
        "day_seconds": day_seconds,
        "optimize_every": optimize_every,
        "first_500_p50_ms": 1000 * statistics.median(first[:500]),
        "steady_p50_ms": _ms(second, 0.5),
        "steady_p99_ms": _ms(second, 0.99),
        "steady_last_500_p50_ms": 1000 * statistics.median(second[-500:]),
        "log_commit_files": entries,
        "log_checkpoints": checkpoints,
        "log_bytes": log_bytes,
        "checkpoint_bytes": newest.stat().st_size,
    }
    print(
        f"a day of {day_commits:,} commits (compressed to {day_seconds:.0f} s), optimize every {optimize_every}: "
        f"first 500 p50 {result['first_500_p50_ms']:.1f} ms; steady state p50 {result['steady_p50_ms']:.1f} ms, "
        f"p99 {result['steady_p99_ms']:.1f} ms, last 500 p50 {result['steady_last_500_p50_ms']:.1f} ms; "
        f"_delta_log {entries:,} commit files + {checkpoints} checkpoints, {log_bytes / 1e6:.1f} MB "
        f"(newest checkpoint {newest.stat().st_size / 1e3:.0f} kB)"
    )
    return result


def _ms(latencies: list[float], q: float) -> float:
    s = sorted(latencies)
    return 1000 * s[min(len(s) - 1, int(len(s) * q))]


def commits(work: Path, n: int, optimize_every: int) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    latencies, total = _commit_run(work / "small", n, optimize_every)
    log = work / "small" / "events" / "_delta_log"
    log_bytes = sum(p.stat().st_size for p in log.rglob("*") if p.is_file())
    json_files = sum(1 for p in log.glob("*.json"))
    checkpoints = sum(1 for p in log.glob("*.checkpoint.parquet"))
    grow, _ = _commit_run(work / "never-optimized", n // 5, 0)
    plain = work / "plain"
    plain.mkdir()
    row = pa.table({"event_id": ["x"]})
    t0 = time.perf_counter()
    for i in range(n):
        pq.write_table(row, plain / f"{i}.parquet")
    plain_total = time.perf_counter() - t0
    result = {
        "commits": n,
        "optimize_every": optimize_every,
        "seconds": total,
        "commits_per_s": n / total,
        "p50_ms": _ms(latencies, 0.5),
        "p99_ms": _ms(latencies, 0.99),
        "max_ms": _ms(latencies, 1.0),
        "last_100_p50_ms": 1000 * statistics.median(latencies[-100:]),
        "log_bytes": log_bytes,
        "log_json_files": json_files,
        "checkpoints": checkpoints,
        "never_optimized_commits": len(grow),
        "never_optimized_first_100_p50_ms": 1000 * statistics.median(grow[:100]),
        "never_optimized_last_100_p50_ms": 1000 * statistics.median(grow[-100:]),
        "plain_parquet_files_per_s": n / plain_total,
    }
    print(
        f"{n:,} one-row commits, optimize every {optimize_every}: {n / total:,.0f}/s, p50 {result['p50_ms']:.1f} ms, "
        f"p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.0f} ms, last 100 p50 {result['last_100_p50_ms']:.1f} ms; "
        f"_delta_log {log_bytes / 1e6:.1f} MB ({json_files} commit files, {checkpoints} checkpoints)"
    )
    print(
        f"never optimized: commits 1-100 p50 {result['never_optimized_first_100_p50_ms']:.1f} ms, "
        f"commits {len(grow) - 99}-{len(grow)} p50 {result['never_optimized_last_100_p50_ms']:.1f} ms; "
        f"plain Parquet files: {n / plain_total:,.0f}/s"
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", type=Path)
    ap.add_argument("--commits", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--optimize-every", type=int, default=600)
    ap.add_argument("--skip-hunts", action="store_true")
    ap.add_argument("--skip-small", action="store_true", help="skip the --commits run")
    ap.add_argument("--day-commits", type=int, default=8640, help="a day's commits for the steady state (0: skip)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-lake-"))
    try:
        results = {
            "events_file": str(args.file),
            "cores": os.cpu_count(),
            "hunts": [] if args.skip_hunts else hunts(args.file.resolve(), work, args.repeat),
            "small_commits": None if args.skip_small else commits(work, args.commits, args.optimize_every),
            "steady_day": steady_day(work, args.day_commits, 60) if args.day_commits else None,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"lake-{time.strftime('%Y%m%d-%H%M')}.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
