"""``tetrapipe query`` and ``tetrapipe tree`` beside DuckDB alone over the same files, in one run.

    python bench/gen_events.py --out /tmp/events.jsonl
    python -m tetrapipe ingest /tmp/events.jsonl --lake /tmp/lake-1m --rules none -q
    python bench/bench_query.py /tmp/lake-1m [--repeat 5] [--also-src DIR]

Everything runs as a fresh process, since that is what a hunter waits for
(interpreter start and imports included, on both sides):

* **count / by kind / csv**: ``tetrapipe query SQL --format csv`` against a
  Python process that imports DuckDB and runs the same SQL over the table's
  data files (``read_parquet`` of the files the Delta log lists: no log, no
  views) and writes the same CSV with DuckDB's ``COPY``. The limit is DuckDB
  itself: tetrapipe's views are DuckDB over those files.
* **import**: ``python -c "import tetrapipe.cli"`` against ``import duckdb``.
* **tree**: ``tetrapipe tree --pod P --format json`` for the pod with the most
  processes (its own bar: 1.5 s; no limit to divide by).

``--also-src DIR`` times the same commands with the tetrapipe package found in
DIR (a ``git worktree`` of an older commit), so a change is measured against
what it replaced on the same machine state. Every command of a measurement
runs ``--repeat`` times, the sides alternating within each round (this tree,
the older one, DuckDB), and the best time counts (a shared machine: the run
least disturbed); CPU time (user + system) is kept beside the wall time, as
it is the steadier under load. Run it from outside the repository's root
(``python -m`` puts the working directory first on the path, ahead of
``--also-src``). Results go to ``bench/results/query-YYYYMMDD-HHMM.json``
with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from tree_env import compiled, tree_env  # bench/ is on sys.path when a script here runs

QUERIES = {
    "count": "SELECT count(*) FROM events",
    "by kind": "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY n DESC",
    "csv 100k rows": (
        "SELECT time, kind, pod, process_binary, arguments FROM events WHERE kind = 'process_exec' LIMIT 100000"
    ),
}
#: the bars of issue 19
QUERY_BAR = 2.0
TREE_BAR_S = 1.5


def _timed(cmd: list[str], env: dict[str, str] | None) -> tuple[float, float]:
    """Wall time and CPU time (user + system, its children included) of one command run to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{cmd[:6]} failed: {proc.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _best(cmds: list[tuple[list[str], dict[str, str] | None]], repeat: int) -> list[tuple[float, float]]:
    """The best wall and CPU time of each command over ``repeat`` rounds, the commands alternating in a round.

    The machine is shared: alternating puts a load spike on every side of a
    ratio, and the best run is the one least disturbed. CPU time is the
    steadier of the two under load (it does not count the time spent waiting
    for a core), so both are kept.
    """
    for cmd, env in cmds:
        _timed(cmd, env)  # warm the page cache and the .pyc files: every side reads warm files
    times: list[list[tuple[float, float]]] = [[] for _ in cmds]
    for _ in range(repeat):
        for i, (cmd, env) in enumerate(cmds):
            times[i].append(_timed(cmd, env))
    return [(min(w for w, _ in t), min(c for _, c in t)) for t in times]


def _files(lake: Path) -> list[str]:
    from tetrapipe.lake import Lake

    table = Lake(lake).table("events")
    root = Path(table.table_uri.removeprefix("file://"))
    return [str(root / p) for p in table.get_add_actions(flatten=True).column("path").to_pylist()]


def _duckdb_alone(files: list[str], sql: str) -> list[str]:
    """A fresh Python process: DuckDB over the files as a view named ``events``, CSV to standard output."""
    script = (
        "import duckdb, json; c = duckdb.connect(); "
        f"c.execute('CREATE VIEW events AS SELECT * FROM read_parquet(' + json.dumps({files!r}) + ', "
        "union_by_name=true)'); "
        f"c.execute(\"COPY ({sql}) TO '/dev/stdout' (FORMAT csv, HEADER)\")"
    )
    return [sys.executable, "-c", script]


def _busiest_pod(files: list[str]) -> str:
    import duckdb

    con = duckdb.connect()
    row = con.execute(
        "SELECT pod, count(DISTINCT exec_id) FROM read_parquet(?, union_by_name=true) "
        "WHERE pod IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 1",
        [files],
    ).fetchone()
    print(f"busiest pod: {row[0]} ({row[1]:,} processes)")
    return row[0]


def _env(src: str | None) -> dict[str, str] | None:
    if src is None:
        return compiled()
    return tree_env(src)


def run(lake: Path, repeat: int, sources: list[str | None], tree: bool = True) -> dict:
    """Every measurement, each source's command alternating with the others' and with DuckDB's in every round."""
    files = _files(lake)
    pod = _busiest_pod(files)
    result: dict = {"lake": str(lake), "files": len(files), "repeat": repeat, "rows": []}
    labels = [src or "this tree" for src in sources]
    envs = [_env(src) for src in sources]
    tp = [sys.executable, "-m", "tetrapipe"]

    def report(what: str, best: list[tuple[float, float]], limit: tuple[float, float] | None, bar: float) -> None:
        for label, (wall, cpu) in zip(labels, best, strict=True):
            row = {"src": label, "what": what, "tetrapipe_s": wall, "tetrapipe_cpu_s": cpu}
            if limit is None:
                verdict = "ok" if wall <= bar else f"over the {bar} s bar"
                print(f"[{label}] {what:16s} {wall:5.2f} s (cpu {cpu:5.2f} s) {verdict}")
                row["bar_s"] = bar
            else:
                ratio, cpu_ratio = wall / limit[0], cpu / limit[1]
                verdict = "ok" if ratio <= bar else f"over the {bar}x bar"
                print(
                    f"[{label}] {what:16s} tetrapipe {wall:5.2f} s   duckdb alone {limit[0]:5.2f} s   x{ratio:.2f} "
                    f"({verdict}); cpu {cpu:.2f} s / {limit[1]:.2f} s = x{cpu_ratio:.2f}"
                )
                row.update(limit_s=limit[0], limit_cpu_s=limit[1], ratio=ratio, cpu_ratio=cpu_ratio)
            result["rows"].append(row)

    duck, *ours = _best(
        [([sys.executable, "-c", "import duckdb"], None)]
        + [([sys.executable, "-c", "import tetrapipe.cli"], env) for env in envs],
        repeat,
    )
    report("import", ours, duck, QUERY_BAR)
    for name, sql in QUERIES.items():
        duck, *ours = _best(
            [(_duckdb_alone(files, sql), None)]
            + [([*tp, "query", sql, "--lake", str(lake), "--format", "csv"], env) for env in envs],
            repeat,
        )
        report(name, ours, duck, QUERY_BAR)
    if tree:
        cmd = [*tp, "tree", "--pod", pod, "--lake", str(lake), "--format", "json"]
        report(f"tree {pod}", _best([(cmd, env) for env in envs], repeat), None, TREE_BAR_S)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lake", type=Path, help="a lake made by tetrapipe ingest (e.g. of 1M generated events)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--also-src", action="append", default=[], help="another tetrapipe source tree to time too")
    p.add_argument("--no-tree", action="store_true", help="leave out the tree (an old tree's takes a minute)")
    args = p.parse_args()
    result = run(args.lake, args.repeat, [None, *args.also_src], tree=not args.no_tree)
    result["load"] = os.getloadavg()
    out = Path(__file__).parent / "results" / time.strftime("query-%Y%m%d-%H%M.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"load average {result['load'][0]:.2f}; written {out}")


if __name__ == "__main__":
    main()
