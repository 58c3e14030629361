"""What an ingest asks of the allocators (tetrapipe.memtune, issue 19), checked where it is applied.

No memory thresholds here (they would flake with the machine): the settings
themselves are what a regression would lose, so they are what is asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pytest

from tetrapipe.memtune import release_free_heap, tune_duckdb, use_returning_arrow_pool
from tetrapipe.ruleset.loader import load_ruleset
from tetrapipe.transforms.detect import Detector
from tetrapipe.transforms.normalize import Normalizer

RULES = Path(__file__).resolve().parents[1] / "rules"


def _bulk_flush(con: object) -> str:
    return con.execute(  # type: ignore[attr-defined]
        "SELECT value FROM duckdb_settings() WHERE name = 'allocator_bulk_deallocation_flush_threshold'"
    ).fetchone()[0]


def _bulk_flush_of(tuned: bool) -> str:
    import duckdb

    con = duckdb.connect()
    try:
        if tuned:
            tune_duckdb(con)
        return _bulk_flush(con)
    finally:
        con.close()


def test_the_normalizer_and_the_detector_return_a_freed_result_to_the_system() -> None:
    default, tuned = _bulk_flush_of(False), _bulk_flush_of(True)
    assert tuned != default, (tuned, default)  # (else the setting would say nothing)
    normalizer = Normalizer()
    detector = Detector(load_ruleset([RULES]))
    try:
        assert [_bulk_flush(normalizer._con), _bulk_flush(detector._con)] == [tuned, tuned]
    finally:
        normalizer.close()
        detector.close()


def test_tune_duckdb_leaves_a_shared_connection_usable() -> None:
    import duckdb

    con = duckdb.connect()
    tune_duckdb(con)
    assert con.execute("SELECT 41 + 1").fetchone()[0] == 42


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_the_free_heap_is_released_on_glibc() -> None:
    assert release_free_heap() is True


def test_arrow_allocates_from_a_pool_that_returns_pages() -> None:
    before = pa.default_memory_pool()
    try:
        if not use_returning_arrow_pool():
            pytest.skip("this pyarrow was built without jemalloc")
        assert pa.default_memory_pool().backend_name == "jemalloc"
        assert pa.array(range(1000)).sum().as_py() == 499500
    finally:
        pa.set_memory_pool(before)
