"""What an ingest asks of the allocators (tetrapipe.memtune, issue 19), checked where it is applied.

No memory thresholds here (they would flake with the machine): the settings
themselves are what a regression would lose, so they are what is asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import REAL_LOGS

from tetrapipe.flows.ingest import ingest
from tetrapipe.lake import Lake
from tetrapipe.memtune import release_free_heap
from tetrapipe.sources.files import expand_inputs


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_the_free_heap_is_released_on_glibc() -> None:
    assert release_free_heap() is True


def test_an_ingest_allocates_arrow_buffers_from_a_pool_that_returns_pages(lake_dir: Path) -> None:
    try:
        pa.jemalloc_memory_pool()
    except (NotImplementedError, pa.ArrowNotImplementedError):
        pytest.skip("this pyarrow was built without jemalloc")
    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())  # (whatever the test run had set)
    try:
        stats = ingest(expand_inputs([str(p) for p in REAL_LOGS]), Lake(lake_dir))
        assert stats.events == 55
        assert pa.default_memory_pool().backend_name == "jemalloc"
    finally:
        pa.set_memory_pool(before)
