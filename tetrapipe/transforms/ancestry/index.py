"""The low-level pieces of the process table: slot codes, Arrow <-> numpy helpers, the hash index, the interner.

Everything here works on whole arrays (see the budget in :mod:`tetrapipe.transforms.ancestry`):
no Python step per event. See ``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

# parent pointer codes (a value >= 0 is the parent's slot)
NO_PARENT = -1  # the top of a chain: nothing above
UNKNOWN_PARENT = -2  # the parent is not known (yet)
FORGOTTEN_PARENT = -3  # the parent was dropped by the hard cap

# slot flags
LIVE = 1  # the slot holds a process
INFO = 2  # binary/pid known (not just an exec_id seen as somebody's parent)
EXITED = 4
TRIED_RAW = 8  # the raw JSON was read once for this process's parent

GAP = -2  # in a walked chain: "unknown from here", emitted as a NULL exec_id
PAD = -9

_HASH_SEED = 0x7E7A9E37
US = 1_000_000


def hash_strings(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """64-bit hashes of strings, vectorized; 0 is reserved for empty index buckets."""
    if len(arr) == 0:
        return np.zeros(0, np.uint64)
    h = pl.Series(values=arr).hash(seed=_HASH_SEED).to_numpy()
    h = np.asarray(h, dtype=np.uint64).copy()
    h[h == 0] = 1
    return h


@lru_cache(maxsize=4096)
def exec_id_pid(exec_id: str) -> int | None:
    """The host pid inside a Tetragon exec_id (``base64(node:ktime:pid)``), or None."""
    try:
        text = base64.b64decode(exec_id + "=" * (-len(exec_id) % 4), validate=False).decode("utf-8", "replace")
        return int(text.rsplit(":", 1)[1])
    except (binascii.Error, ValueError, IndexError):
        return None


# --- Arrow <-> numpy helpers ------------------------------------------------------------


def flat(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


def valid_mask(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.ones(len(arr), bool)
    return pc.is_valid(arr).to_numpy(zero_copy_only=False)


def str_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, bytes) of a string array, offsets relative to the bytes, length n + 1."""
    if pa.types.is_string(arr.type):
        odt = np.int32
    elif pa.types.is_large_string(arr.type):
        odt = np.int64
    else:
        arr = arr.cast(pa.large_string())
        odt = np.int64
    bufs = arr.buffers()
    offs = np.frombuffer(bufs[1], dtype=odt)[arr.offset : arr.offset + len(arr) + 1].astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offs, data


_GATHER_CHUNK = 1 << 20  # bytes gathered per step: the int64 index and its temporaries stay near 24 MB


def gather_ranges(data: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``data[starts[i]: starts[i] + lens[i]]`` for every i; returns (offsets, bytes).

    Vectorized through an index of every byte (8 bytes of index per byte moved), so large
    gathers (a compaction moves the whole string arena) go in chunks of ranges.
    """
    lens = lens.astype(np.int64, copy=False)
    starts = starts.astype(np.int64, copy=False)
    offsets = np.zeros(len(lens) + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    total = int(offsets[-1])
    if total == 0:
        return offsets, np.zeros(0, np.uint8)
    if total <= _GATHER_CHUNK:
        src = np.repeat(starts - offsets[:-1], lens) + np.arange(total, dtype=np.int64)
        return offsets, data[src]
    out = np.empty(total, np.uint8)
    cuts = np.searchsorted(offsets, np.arange(0, total, _GATHER_CHUNK), side="right") - 1
    cuts = np.unique(np.append(cuts, len(lens)))
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        lo, hi = int(offsets[a]), int(offsets[b])
        src = np.repeat(starts[a:b] - offsets[a:b], lens[a:b]) + np.arange(lo, hi, dtype=np.int64)
        out[lo:hi] = data[src]
    return offsets, out


def int_col(arr: pa.Array, fill: int) -> np.ndarray:
    if arr.null_count:
        arr = pc.fill_null(arr, fill)
    return arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def time_us(arr: pa.Array) -> np.ndarray:
    """Event times as int64 microseconds; a missing time borrows the batch's latest."""
    if not pa.types.is_timestamp(arr.type):
        arr = arr.cast(pa.timestamp("us"))
    if arr.type.unit != "us":
        arr = arr.cast(pa.timestamp("us"), safe=False)
    ints = arr.cast(pa.int64())
    if ints.null_count == len(ints):
        return np.zeros(len(ints), np.int64)
    if ints.null_count:
        ints = pc.fill_null(ints, pc.max(ints))
    return ints.to_numpy(zero_copy_only=False)


# --- the hash index and the string arena ------------------------------------------------


class U64Index:
    """Open-addressing (linear probing) hash index uint64 -> int32 slot, all numpy.

    Lookups and inserts take whole arrays: each probing round is one numpy
    gather over the keys still unresolved, so a batch costs a few rounds, not
    a Python step per key. Deletion is by rebuilding (the table compacts).
    """

    def __init__(self, capacity: int = 1 << 12) -> None:
        cap = 1 << max(4, int(capacity - 1).bit_length())
        self.keys = np.zeros(cap, np.uint64)
        self.vals = np.full(cap, -1, np.int32)
        self.size = 0

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.vals.nbytes

    def lookup(self, h: np.ndarray) -> np.ndarray:
        out = np.full(len(h), -1, np.int32)
        if not len(h) or not self.size:
            return out
        mask = np.uint64(len(self.keys) - 1)
        pos = (h & mask).astype(np.int64)
        active = np.arange(len(h))
        keys = self.keys
        while active.size:
            p = pos[active]
            k = keys[p]
            hit = k == h[active]
            if hit.any():
                out[active[hit]] = self.vals[p[hit]]
            go_on = ~(hit | (k == 0))
            active = active[go_on]
            pos[active] = (p[go_on] + 1) & int(mask)
        return out

    def insert(self, h: np.ndarray, slots: np.ndarray) -> None:
        """Insert distinct keys that are not in the index yet."""
        if not len(h):
            return
        if (self.size + len(h)) * 10 > len(self.keys) * 6:  # keep the load under 0.6
            self._grow(self.size + len(h))
        mask = len(self.keys) - 1
        pos = (h & np.uint64(mask)).astype(np.int64)
        active = np.arange(len(h))
        keys, vals = self.keys, self.vals
        while active.size:
            p = pos[active]
            free = keys[p] == 0
            done = np.zeros(len(active), bool)
            if free.any():
                fp = p[free]
                _, first = np.unique(fp, return_index=True)  # one winner per free bucket
                won = np.flatnonzero(free)[first]
                keys[p[won]] = h[active[won]]
                vals[p[won]] = slots[active[won]]
                done[won] = True
            active = active[~done]
            pos[active] = (pos[active] + 1) & mask
        self.size += len(h)

    def _grow(self, need: int) -> None:
        live = self.keys != 0
        old_k, old_v = self.keys[live], self.vals[live]
        cap = 1 << max(4, int(need * 2 - 1).bit_length())
        self.keys = np.zeros(cap, np.uint64)
        self.vals = np.full(cap, -1, np.int32)
        self.size = 0
        self.insert(old_k, old_v)

    def rebuild(self, h: np.ndarray, slots: np.ndarray) -> None:
        cap = 1 << max(12, int(len(h) * 2 - 1).bit_length())
        self.keys = np.zeros(cap, np.uint64)
        self.vals = np.full(cap, -1, np.int32)
        self.size = 0
        self.insert(h, slots)


class Interner:
    """Small string -> id table (binaries, node names) with an Arrow array for vectorized take."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.values: list[str] = []
        self._arrow: pa.Array | None = None

    def map(self, arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Ids of every value of ``arr`` (-1 for NULL); Python touches only the distinct values."""
        arr = flat(arr)
        n = len(arr)
        if n == 0:
            return np.zeros(0, np.int32)
        if arr.null_count == n:
            return np.full(n, -1, np.int32)
        enc = pc.dictionary_encode(arr)
        lut = np.fromiter((self.id(v) for v in enc.dictionary.to_pylist()), np.int32, len(enc.dictionary))
        idx = enc.indices
        out = lut[int_col(idx, 0)]
        if idx.null_count:
            out[~valid_mask(idx)] = -1
        return out

    def id(self, value: str) -> int:
        i = self.ids.get(value)
        if i is None:
            i = self.ids[value] = len(self.values)
            self.values.append(value)
            self._arrow = None
        return i

    def arrow(self) -> pa.Array:
        if self._arrow is None:
            self._arrow = pa.array(self.values, pa.string())
        return self._arrow

    def take(self, ids: np.ndarray) -> pa.Array:
        """Strings for ids, NULL where id < 0."""
        if not self.values:
            return pa.nulls(len(ids), pa.string())
        return self.arrow().take(pa.array(ids, pa.int32(), mask=ids < 0))
