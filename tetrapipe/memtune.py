"""What a long ingest asks of the process's allocators, so that its peak memory is what it holds.

An ingest hands ~24 MB chunks through four stages (read, normalize,
transforms, lake writer), and each stage frees what the one before it
allocated. Five allocators live in one process (glibc for Python and numpy,
Arrow's pool, DuckDB's jemalloc, and delta-rs's and polars' own), and each
keeps what it freed for later: measured on 300k generated events (issue 19),
Arrow's default pool (mimalloc) held ~190 MB resident for ~40 MB in use, and
glibc ~130-190 MB of free heap between the chunks' line buffers, DuckDB's
jemalloc ~100-200 MB above what it had in use. What gives some of that back at
~1% of CPU (measured, same runs):

* :func:`use_returning_arrow_pool`: Arrow's jemalloc pool, which returns freed
  pages after a short decay, when the installed pyarrow has it;
* :func:`release_free_heap`: glibc's ``malloc_trim`` once a chunk is committed,
  which hands the pages of the heap's free holes back to the system.

Both are process-wide, so a flow calls them (``tetrapipe ingest``), never a
library function on its own; elsewhere (musl, macOS, a pyarrow built without
jemalloc) they do nothing. Why not ``MALLOC_ARENA_MAX`` or ``MALLOC_CONF``
variables: the allocators read them when the process starts, before any of
this code runs. Left out because they cost CPU (same runs): DuckDB's
``allocator_bulk_deallocation_flush_threshold`` at 8 MB (~70 MB less, ~8% more
CPU) and its ``allocator_flush_threshold`` at 8 MB (~4% more), and a lower glibc
``M_MMAP_THRESHOLD`` (every line buffer faulted in afresh: ~3%).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """Give the free pages inside glibc's heaps back to the system; False where there is no glibc.

    Costs a walk of the free lists (well under a millisecond after a chunk)
    and the page faults of reusing those pages: once a chunk, not once an
    allocation as a lower ``M_MMAP_THRESHOLD`` would (that cost ~3% of an
    ingest's CPU, measured).
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def use_returning_arrow_pool() -> bool:
    """Make Arrow's jemalloc pool the default; False when pyarrow was built without it.

    Only buffers allocated afterwards use it; earlier ones are freed to the
    pool they came from.
    """
    import pyarrow as pa

    try:
        pool = pa.jemalloc_memory_pool()
    except (NotImplementedError, pa.ArrowNotImplementedError):
        return False
    pa.set_memory_pool(pool)
    return True


__all__ = ["release_free_heap", "use_returning_arrow_pool"]
