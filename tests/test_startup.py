"""What the reading commands import: ``query`` and ``tree`` never load Kafka, gRPC, protobuf or polars.

A hunter's one-line query pays for every module the command line imports
before it starts (issue 19: Kafka alone was 0.1 s of every query). Each
command runs in a fresh interpreter, through the same entry point as the
console script, and the test reads that interpreter's ``sys.modules`` after
the command's work is done.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLES

from tetrapipe.cli import LAZY_COMMANDS
from tetrapipe.flows.ingest import ingest
from tetrapipe.lake import Lake
from tetrapipe.sources.files import expand_inputs

REPO = Path(__file__).resolve().parent.parent
#: top-level packages a reading command has no use for
HEAVY = ("kafka", "confluent_kafka", "grpc", "polars", "google.protobuf")

#: runs the command line in-process, then reports which of HEAVY were imported (its output goes to a file)
_PROBE = """
import json, sys
from tetrapipe.cli import cli
try:
    cli.main(args=sys.argv[2:], prog_name="tetrapipe", standalone_mode=False)
finally:
    loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in {heavy!r}))
    with open(sys.argv[1], "w") as f:
        json.dump(loaded, f)
"""


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("startup") / "lake"
    ingest(expand_inputs([str(SAMPLES / "scenario" / "tenant-jobs.log")]), Lake(root), transforms=[])
    return root


def imported_by(tmp_path: Path, *args: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """The ``heavy`` modules loaded by ``tetrapipe ARGS`` run to its end in a fresh interpreter."""
    report = tmp_path / "modules.json"
    probe = _PROBE.format(heavy=heavy)
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(report), *args], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(report.read_text())


@pytest.mark.parametrize(
    "args",
    [
        ["query", "SELECT kind, count(*) FROM events GROUP BY 1", "--format", "csv"],
        ["query", "SELECT depth FROM process_tree(pod_name := 'crawler-5f7c8d9b6-x4k2p')", "--format", "json"],
        ["tree", "--pod", "crawler", "--format", "json"],
        ["tree"],
    ],
    ids=["query", "query-tree-macro", "tree", "tree-pods"],
)
def test_reading_commands_import_no_kafka_grpc_or_polars(lake: Path, tmp_path: Path, args: list[str]) -> None:
    assert imported_by(tmp_path, *args, "--lake", str(lake)) == []


#: pyarrow's parts for scanning files (~70 ms of start-up), which DuckDB's own reader makes needless on a local lake
ARROW_SCAN = ("pyarrow.dataset", "pyarrow.compute", "pyarrow.parquet", "pyarrow.fs")


@pytest.mark.parametrize(
    "args",
    [
        ["query", "SELECT count(*) FROM events WHERE pod IS NOT NULL", "--format", "csv"],
        ["query", "SELECT rule_id, count(*) FROM alerts GROUP BY 1", "--format", "json"],
        ["tree", "--pod", "crawler", "--format", "json"],
    ],
    ids=["query-events", "query-alerts", "tree"],
)
def test_reading_a_local_lake_loads_no_arrow_scanning(lake: Path, tmp_path: Path, args: list[str]) -> None:
    assert imported_by(tmp_path, *args, "--lake", str(lake), heavy=ARROW_SCAN) == []


def test_the_arrow_probe_sees_a_lake_read_through_pyarrow(lake: Path, tmp_path: Path) -> None:
    """The check above can fail: ``--as-of`` reads the commit times through pyarrow.fs."""
    assert "pyarrow.fs" in imported_by(
        tmp_path, "query", "SELECT 1", "--as-of", "0", "--lake", str(lake), heavy=ARROW_SCAN
    )


#: pyarrow and numpy (~80 ms of start-up): a local lake's query and tree need neither (DuckDB reads the files,
#: writes CSV and JSON, hands the rows a table shows to Python); only ``--format parquet`` goes through Arrow
ARROW = ("pyarrow", "numpy")


@pytest.mark.parametrize(
    "args",
    [
        ["query", "SELECT kind, count(*) FROM events GROUP BY 1", "--format", "csv"],
        ["query", "SELECT * FROM events ORDER BY event_id LIMIT 3", "--format", "json"],
        ["query", "SELECT time, pod, pod_labels, cap_effective FROM events LIMIT 3"],
        ["query", "SELECT * FROM tls_stats", "--format", "json"],  # a table the lake has not: the empty view
        ["query", "SELECT depth, path FROM process_tree(pod_name := 'crawler-5f7c8d9b6-x4k2p')", "--format", "csv"],
        ["query", "SELECT count(*) FROM events", "--format", "csv", "--output", "answer.csv"],
        ["tree", "--pod", "crawler", "--format", "json"],
        ["tree", "--pod", "crawler"],
        ["tree"],
    ],
    ids=["csv", "json", "table", "empty-view", "tree-macro", "output-file", "tree-json", "tree-text", "tree-pods"],
)
def test_reading_a_local_lake_loads_neither_pyarrow_nor_numpy(lake: Path, tmp_path: Path, args: list[str]) -> None:
    assert imported_by(tmp_path, *args, "--lake", str(lake), heavy=ARROW) == []


def test_a_query_written_by_duckdb_loads_no_rich(lake: Path, tmp_path: Path) -> None:
    """rich draws tables for people: CSV and JSON are DuckDB's own text, so rich (~20 ms) stays out too."""
    for fmt in ("csv", "json"):
        args = ("query", "SELECT pod, count(*) FROM events GROUP BY 1", "--format", fmt, "--lake", str(lake))
        assert imported_by(tmp_path, *args, heavy=("rich",)) == [], fmt


def test_the_arrow_probe_sees_parquet_output(lake: Path, tmp_path: Path) -> None:
    """The checks above can fail: ``--format parquet`` is written by pyarrow, which loads numpy."""
    loaded = imported_by(
        tmp_path, "query", "SELECT 1", "--format", "parquet", "-o", "x.parquet", "--lake", str(lake), heavy=ARROW
    )
    assert {"pyarrow", "numpy"} <= set(loaded)


def test_rules_test_imports_no_kafka_or_grpc(tmp_path: Path) -> None:
    """``rules test`` runs the pipeline on each rule's samples, which needs polars (the ancestry index) and
    protobuf (the normalizer's field list, from Tetragon's descriptors): those it may load, never a client."""
    loaded = imported_by(tmp_path, "rules", "test", str(REPO / "rules"), "--quiet")
    assert [m for m in loaded if m.split(".")[0] not in ("polars", "google")] == []


def test_the_probe_sees_an_import(lake: Path, tmp_path: Path) -> None:
    """The check above can fail: a command that does load Kafka (the processor's status) is caught."""
    loaded = imported_by(tmp_path, "status", "--help")
    assert "kafka" in loaded


def test_every_command_module_is_known_to_the_command_line() -> None:
    """LAZY_COMMANDS names each command of each module: a command added to a module's COMMANDS is not lost."""
    for module in set(LAZY_COMMANDS.values()):
        names = {c.name for c in importlib.import_module(module).COMMANDS}
        assert names == {n for n, m in LAZY_COMMANDS.items() if m == module}, module
    shipped = {p.stem for p in (REPO / "tetrapipe" / "commands").glob("*.py")}
    with_commands = {m for m in shipped if hasattr(importlib.import_module(f"tetrapipe.commands.{m}"), "COMMANDS")}
    assert {f"tetrapipe.commands.{m}" for m in with_commands} == set(LAZY_COMMANDS.values())
