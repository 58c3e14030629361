"""tetrapipe ingest next to DuckDB's own read_json of the same file, in one run.

    python bench/gen_events.py --out /tmp/events.jsonl
    python bench/bench_ingest.py /tmp/events.jsonl [--rules none|DIR]
    python bench/bench_ingest.py /tmp/events.jsonl --no-duckdb --rules none --rules rules --repeat 3

Every mode runs in a fresh process, so its peak RSS (from wait4) is its own;
DuckDB uses all cores, as tetrapipe does. Modes:

* duckdb-auto: ``CREATE TABLE t AS SELECT * FROM read_ndjson_auto(file, sample_size=-1)``
  (schema inferred from every line: with the default sample, rare keys deeper in
  the file make it fail)
* duckdb-fields: ``read_ndjson`` with explicit columns (envelope + each kind as
  JSON) and 15 typed fields extracted: closer to what a normalizer does
* tetrapipe: ``tetrapipe ingest file --quiet`` (parse, normalize ~80 columns,
  transforms, Parquet zstd) with the rules given (default: off); ``--rules`` more than
  once runs each rule set (``--no-duckdb``: only those, to measure what rules cost)
* ``--also-src DIR`` (repeatable): the same ingest with the tetrapipe package found
  in DIR (a ``git worktree`` of an older commit), in the same run, so a change is
  measured against what it replaced on the same machine state. ``--repeat N``
  runs every mode N times and reports the median.
* duckdb-parquet: the duckdb-fields query plus each event's body (JSON text, about
  the size of the line the lake keeps), written with ``COPY ... TO`` as zstd Parquet:
  not the bar's limit, but what DuckDB itself needs to parse AND store
* ``--no-auto``: leave out duckdb-auto (the bar is set against duckdb-fields).

Besides wall time, each mode's CPU seconds (user + system, every thread, from
wait4) are reported: on a machine others are using, wall time says as much about
them as about the code, while CPU time moves far less with the load. The load
average before and after the run is recorded with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tree_env import compiled, tree_env  # bench/ is on sys.path when a script here runs

KINDS = [
    "process_exec",
    "process_exit",
    "process_kprobe",
    "process_connect",
    "process_close",
    "process_listen",
    "process_throttle",
    "process_tracepoint",
    "process_lsm",
    "rate_limit_info",
]
FIELDS = [
    "process.exec_id",
    "process.pid",
    "process.binary",
    "process.arguments",
    "process.start_time",
    "process.pod.namespace",
    "process.pod.name",
    "process.pod.container.id",
    "process.pod.container.image.name",
    "process.pod.container.start_time",
    "process.parent_exec_id",
    "parent.binary",
    "function_name",
    "policy_name",
    "action",
]


def _duckdb_script(mode: str, path: str) -> str:
    if mode == "duckdb-auto":
        sql = f"CREATE TABLE t AS SELECT * FROM read_ndjson_auto('{path}', sample_size=-1)"
        return f"import duckdb; c = duckdb.connect(); c.execute({sql!r}); print(c.execute('SELECT count(*) FROM t').fetchone()[0])"
    cols = "{'node_name':'VARCHAR','time':'VARCHAR'," + ",".join(f"'{k}':'JSON'" for k in KINDS) + "}"
    body = "coalesce(" + ",".join(KINDS) + ")"
    sel = ", ".join(f"json_extract_string({body}, '$.{f}') AS f{i}" for i, f in enumerate(FIELDS))
    query = (
        f"SELECT node_name, TRY_CAST(time AS TIMESTAMP) AS time, {sel}@MORE@ FROM read_ndjson('{path}', columns={cols})"
    )
    if mode == "duckdb-fields":
        sql = f"CREATE TABLE t AS {query.replace('@MORE@', '')}"
        return f"import duckdb; c = duckdb.connect(); c.execute({sql!r}); print(c.execute('SELECT count(*) FROM t').fetchone()[0])"
    # duckdb-parquet: the same fields and each event's body (as JSON text, about the size of the line)
    # written to a zstd Parquet file, as the lake keeps the line: a limit that stores what it parsed
    out = os.path.join(tempfile.gettempdir(), f"bench-ingest-duckdb-{os.getpid()}.parquet")
    select = query.replace("@MORE@", f", {body} AS body")
    sql = f"COPY ({select}) TO '{out}' (FORMAT parquet, COMPRESSION zstd)"
    return (
        f"import duckdb, os; c = duckdb.connect(); c.execute({sql!r}); "
        f"print(c.execute(\"SELECT count(*) FROM '{out}'\").fetchone()[0]); os.remove({out!r})"
    )


def _run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, float]:
    """Run ``cmd`` to its end: wall seconds, peak RSS (KiB) and CPU seconds (user + system)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[:4]} failed: {proc.stderr.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", type=Path)
    ap.add_argument(
        "--rules",
        action="append",
        default=[],
        help="Rules for a tetrapipe run ('none', or a directory); repeat to compare rule sets in one run.",
    )
    ap.add_argument("--no-duckdb", action="store_true", help="Only the tetrapipe runs (a rules-cost comparison).")
    ap.add_argument("--no-auto", action="store_true", help="Leave out duckdb-auto (schema inference).")
    ap.add_argument("--also-src", action="append", default=[], help="Also ingest with the package in this tree.")
    ap.add_argument("--repeat", type=int, default=1, help="Runs per mode; the median is reported.")
    args = ap.parse_args()
    path = str(args.file.resolve())
    size = args.file.stat().st_size
    with open(path, "rb") as f:
        n = sum(1 for _ in f)
    rule_sets = args.rules or ["none"]
    runs: list[tuple[str, list[str], dict[str, str] | None]] = [
        (mode, [sys.executable, "-c", _duckdb_script(mode, path)], None)
        for mode in ("duckdb-auto", "duckdb-fields", "duckdb-parquet")
        if not args.no_duckdb and not (args.no_auto and mode == "duckdb-auto")
    ]
    compiled()  # this tree's bytecode, as an installed wheel has it
    lake = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    ingest = [sys.executable, "-m", "tetrapipe", "ingest", path, "--lake", str(lake / "lake"), "--quiet"]
    for src in args.also_src:
        env = tree_env(src)
        runs.append((f"tetrapipe @ {Path(src).name}", [*ingest, "--rules", rule_sets[-1]], env))
    for rules in rule_sets:  # interleaved below like every mode: the rules' cost is the difference
        runs.append((f"tetrapipe (rules: {Path(rules).name})", [*ingest, "--rules", rules], None))
    results = []
    load_before = os.getloadavg()
    try:
        samples: dict[str, list[tuple[float, int, float]]] = {label: [] for label, _, _ in runs}
        for _ in range(args.repeat):
            for label, cmd, env in runs:  # interleaved: a slow minute of the machine hits every mode alike
                shutil.rmtree(lake / "lake", ignore_errors=True)
                samples[label].append(_run(cmd, env))
        for label, _, _ in runs:
            secs = statistics.median(s for s, _, _ in samples[label])
            cpu = statistics.median(c for _, _, c in samples[label])
            results.append((label, secs, max(r for _, r, _ in samples[label]), cpu))
    finally:
        shutil.rmtree(lake, ignore_errors=True)
    load_after = os.getloadavg()
    print(f"{n:,} events, {size / 1e9:.2f} GB ({size / n:,.0f} B/line), {os.cpu_count()} cores")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (1 min)")
    print(f"{'mode':32s} {'seconds':>8s} {'events/s':>10s} {'MB/s':>7s} {'peak RSS MiB':>13s} {'CPU s':>7s}")
    for mode, secs, rss, cpu in results:
        print(f"{mode:32s} {secs:8.1f} {n / secs:10,.0f} {size / secs / 1e6:7.0f} {rss / 1024:13,.0f} {cpu:7.1f}")
    last, ours, _, our_cpu = results[-1]
    for mode, secs, _, cpu in results[:-1]:
        print(
            f"{last} vs {mode}: {100 * secs / ours:.0f}% of its events/s, {100 * cpu / our_cpu:.0f}% of its events/CPU s"
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"ingest-{time.strftime('%Y%m%d-%H%M')}.json").write_text(
        json.dumps(
            [
                {
                    "mode": m,
                    "seconds": s,
                    "cpu_seconds": c,
                    "events": n,
                    "events_per_s": n / s,
                    "peak_rss_mib": r / 1024,
                    "repeat": args.repeat,
                    "load_before": load_before[0],
                    "load_after": load_after[0],
                }
                for m, s, r, c in results
            ],
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
