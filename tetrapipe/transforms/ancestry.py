"""Process ancestry: a bounded, live process table and every event's ancestor chain.

Why a table: Tetragon sends the full chain (``ancestors``) only when it runs with
``--enable-ancestors`` (off by default) and then not for every event kind; every
event does carry its process and its parent. A table keyed by ``exec_id`` that
learns ``process -> parent`` links from every event can walk the rest of the
chain, so rules can say "any ancestor is a web server" on any event kind.

What the table learns from one event (all of it vectorized over a batch):

* the process: ``exec_id -> parent_exec_id``, binary, pid;
* the parent: ``parent_exec_id`` with its binary and pid, and its own parent when
  the event carries ``ancestors`` (their first element is the grandparent);
* Tetragon's ``ancestors`` list, when present: each element's parent is the next;
* ``process_exit``: the process exited at the event's time (eviction clock).

Which events are enriched: rows with an ``exec_id`` and a ``parent_exec_id`` whose
``ancestor_exec_ids`` is NULL get ``ancestor_exec_ids`` / ``ancestor_binaries``
filled (nearest first, starting above the parent, as Tetragon orders them); rows
whose Tetragon ``ancestors`` were present keep them as sent. A missing
``parent_binary`` / ``parent_pid`` is filled from the table too.

Where the chain ends, and the gap markers (documented in the README):

* at the top: a process with host pid <= 2 (init, kthreadd; Tetragon's own
  ``ancestors`` stop there too). The chain is complete; an empty list means
  the parent is itself the top.
* an element whose binary is NULL is a process known only by its exec_id (a
  parent that started before tetrapipe did, or whose events are still to come);
  the walk goes on above it when its parent is known.
* a NULL exec_id as the last element: the chain is cut there, because the
  parent of the element before it is not known (yet), or the walk hit the depth
  limit or a cycle in corrupt data.

Out of order is normal: the whole batch is learned before any row is enriched,
so a child before its parent in one batch gets the full chain; across batches,
rows written before the parent showed up keep their gap markers (written rows
are never rewritten) and later events of the same process get the full chain.

Why columnar: the budget is about 3 µs per event at 70k events/s. Python never
loops over events: each exec_id column is made distinct with Arrow's dictionary
encoding, the distinct ids are hashed with polars and looked up in an
open-addressing numpy hash index; the table is a set of numpy arrays (parent
pointers, interned binary ids, pids, times) and exec_id strings live in one byte
arena; chains are walked for the batch's distinct parents with numpy gathers
and become Arrow list columns without a per-row step. Python only touches the
distinct binaries and node names of a batch, and (once per unknown parent) the
raw JSON of one event to read the grandparent's exec_id, which the event
schema does not carry.

Bounded memory: an exited process is evicted ``grace`` after its exit, in event
time per node (replaying an old log behaves like the live stream), once no live
child references it (as Tetragon's own cache does with its refcount); a
process that never exits stays. ``max_entries`` is a hard cap that evicts the
least recently seen processes first (their children's chains then end with a
NULL exec_id). About 180 bytes per process with 40-60 character exec_ids:
1,000,000 processes that never exit take ~170 MB (bench/bench_ancestry.py).

Keys: ``exec_id`` alone. Tetragon exec_ids are ``base64(node:ktime:pid)``, so they
embed the node and ids of different nodes do not collide. Two different
exec_ids with the same 64-bit hash would be detected (the stored string is
compared) and the newcomer left unenriched, never merged.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from tetrapipe.lake.store import Lake

log = logging.getLogger("tetrapipe.ancestry")

# parent pointer codes (a value >= 0 is the parent's slot)
NO_PARENT = -1  # the top of a chain: nothing above
UNKNOWN_PARENT = -2  # the parent is not known (yet)
FORGOTTEN_PARENT = -3  # the parent was dropped by the hard cap

# slot flags
_LIVE = 1  # the slot holds a process
_INFO = 2  # binary/pid known (not just an exec_id seen as somebody's parent)
_EXITED = 4
_TRIED_RAW = 8  # the raw JSON was read once for this process's parent

_GAP = -2  # in a walked chain: "unknown from here", emitted as a NULL exec_id
_PAD = -9

_HASH_SEED = 0x7E7A9E37
_US = 1_000_000


def _hash_strings(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
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


def _flat(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


def _valid(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.ones(len(arr), bool)
    return pc.is_valid(arr).to_numpy(zero_copy_only=False)


def _str_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
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


def _gather_ranges(data: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _int_col(arr: pa.Array, fill: int) -> np.ndarray:
    if arr.null_count:
        arr = pc.fill_null(arr, fill)
    return arr.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _time_us(arr: pa.Array) -> np.ndarray:
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


class _U64Index:
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


class _Interner:
    """Small string -> id table (binaries, node names) with an Arrow array for vectorized take."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.values: list[str] = []
        self._arrow: pa.Array | None = None

    def map(self, arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Ids of every value of ``arr`` (-1 for NULL); Python touches only the distinct values."""
        arr = _flat(arr)
        n = len(arr)
        if n == 0:
            return np.zeros(0, np.int32)
        if arr.null_count == n:
            return np.full(n, -1, np.int32)
        enc = pc.dictionary_encode(arr)
        lut = np.fromiter((self.id(v) for v in enc.dictionary.to_pylist()), np.int32, len(enc.dictionary))
        idx = enc.indices
        out = lut[_int_col(idx, 0)]
        if idx.null_count:
            out[~_valid(idx)] = -1
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


# --- the table -----------------------------------------------------------------------


@dataclass
class TableStats:
    """Counters a processor exports as metrics; cumulative since the table was created."""

    batches: int = 0
    events: int = 0
    enriched: int = 0  # rows that got a chain from the table
    kept_from_tetragon: int = 0  # rows whose Tetragon ancestors were kept
    with_gaps: int = 0  # enriched rows whose chain has an unknown element
    inserted: int = 0
    evicted: int = 0
    evicted_by_cap: int = 0
    raw_reads: int = 0  # events whose raw JSON was read for a grandparent
    hash_collisions: int = 0
    compactions: int = 0


@dataclass
class ProcessInfo:
    """One process as the table knows it (for tests, debugging and ``tetrapipe tree``)."""

    exec_id: str
    binary: str | None
    pid: int | None
    parent_exec_id: str | None
    parent_state: str  # 'known', 'top', 'unknown' or 'forgotten'
    exited: bool
    children: int
    node: str | None
    last_seen: dt.datetime | None
    exit_time: dt.datetime | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class _Records:
    """Facts learned from a batch, one row per (process, fact source); parents as strings."""

    key: pa.Array  # exec_id strings (no NULLs)
    key_h: np.ndarray
    binary: np.ndarray  # interned id or -1
    pid: np.ndarray  # -1 unknown
    parent: pa.Array  # parent exec_id strings (NULL: none given)
    parent_h: np.ndarray  # 0 where parent is NULL
    top: np.ndarray  # bool: this process is the top of its chain
    node: np.ndarray
    time: np.ndarray


class ProcessTable:
    """Processes by exec_id with parent pointers: learn from event batches, walk chains.

    ``grace``: how long (event time, per node) an exited process stays, so late
    events of it and of its children still find it. ``max_entries``: the hard
    cap. ``max_depth``: longest chain walked (a cut chain ends with a NULL id).
    """

    def __init__(
        self, grace: dt.timedelta = dt.timedelta(minutes=2), max_entries: int = 1_000_000, max_depth: int = 64
    ) -> None:
        self.grace_us = int(grace.total_seconds() * _US)
        self.max_entries = int(max_entries)
        self.max_depth = int(max_depth)
        self.stats = TableStats()
        self._index = _U64Index()
        self._binaries = _Interner()
        self._nodes = _Interner()
        self._n = 0  # slots used (live or dead, until compaction)
        self._live = 0
        cap = 1024
        self._hash = np.zeros(cap, np.uint64)
        self._parent = np.full(cap, UNKNOWN_PARENT, np.int32)
        self._binary = np.full(cap, -1, np.int32)
        self._pid = np.full(cap, -1, np.int32)
        self._children = np.zeros(cap, np.int32)
        self._node = np.zeros(cap, np.int16)
        self._flags = np.zeros(cap, np.uint8)
        self._exit = np.zeros(cap, np.int64)
        self._seen = np.zeros(cap, np.int64)
        self._str_off = np.zeros(cap, np.int64)
        self._str_len = np.zeros(cap, np.int32)
        self._arena = np.zeros(1 << 16, np.uint8)
        self._arena_used = 0
        self._wm = np.zeros(16, np.int64)  # per-node watermark: latest event time (µs since the epoch)
        self._wm_swept = np.zeros(16, np.int64)  # the watermark at the last eviction sweep

    # --- sizes ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._live

    @property
    def nbytes(self) -> int:
        """Bytes held by the table's arrays (index, slots, string arena, interned strings)."""
        arrays = (
            self._hash,
            self._parent,
            self._binary,
            self._pid,
            self._children,
            self._node,
            self._flags,
            self._exit,
            self._seen,
            self._str_off,
            self._str_len,
            self._arena,
            self._wm,
            self._wm_swept,
        )
        interned = sum(len(s) + 60 for s in self._binaries.values) + sum(len(s) + 60 for s in self._nodes.values)
        return sum(a.nbytes for a in arrays) + self._index.nbytes + interned

    # --- storage -------------------------------------------------------------------------

    _SLOT_ARRAYS = (
        "_hash",
        "_parent",
        "_binary",
        "_pid",
        "_children",
        "_node",
        "_flags",
        "_exit",
        "_seen",
        "_str_off",
        "_str_len",
    )

    def _reserve(self, extra: int) -> None:
        need = self._n + extra
        cap = len(self._parent)
        if need <= cap:
            return
        new_cap = max(need, cap + cap // 2)
        fills = {"_parent": UNKNOWN_PARENT, "_binary": -1, "_pid": -1}
        for name in self._SLOT_ARRAYS:
            old = getattr(self, name)
            new = np.full(new_cap, fills.get(name, 0), old.dtype)
            new[: self._n] = old[: self._n]
            setattr(self, name, new)

    def _arena_append(self, offs: np.ndarray, data: np.ndarray) -> np.ndarray:
        """Store strings (given as offsets + bytes); returns each one's start in the arena."""
        size = len(data)
        if self._arena_used + size > len(self._arena):
            new = np.zeros(max(self._arena_used + size, len(self._arena) * 3 // 2), np.uint8)
            new[: self._arena_used] = self._arena[: self._arena_used]
            self._arena = new
        self._arena[self._arena_used : self._arena_used + size] = data
        starts = offs[:-1] + self._arena_used
        self._arena_used += size
        return starts

    def _ids_of(self, slots: np.ndarray) -> pa.Array:
        """exec_id strings of slots as an Arrow string array (NULL where slot < 0)."""
        valid = slots >= 0
        safe = np.where(valid, slots, 0)
        lens = np.where(valid, self._str_len[safe], 0)
        offsets, data = _gather_ranges(self._arena, self._str_off[safe], lens)
        n = len(slots)
        mask = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
        if offsets[-1] < 2**31:
            typ, offsets = pa.string(), offsets.astype(np.int32)
        else:
            typ = pa.large_string()
        arr = pa.Array.from_buffers(
            typ, n, [mask, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=int(n - valid.sum())
        )
        return arr if typ == pa.string() else arr.cast(pa.string())

    def _node_id(self, arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
        ids = self._nodes.map(arr)
        ids[ids < 0] = self._nodes.id("")
        if len(self._nodes.values) > len(self._wm):
            grow = len(self._nodes.values) * 2 - len(self._wm)
            self._wm = np.concatenate([self._wm, np.zeros(grow, np.int64)])
            self._wm_swept = np.concatenate([self._wm_swept, np.zeros(grow, np.int64)])
        return ids.astype(np.int16)

    # --- lookups -------------------------------------------------------------------------

    def _find(self, h: np.ndarray, strings: pa.Array) -> np.ndarray:
        """Slots of exec_ids (hashes + the strings themselves); -1 when absent or colliding."""
        slots = self._index.lookup(h)
        found = np.flatnonzero(slots >= 0)
        if found.size:
            stored = self._ids_of(slots[found])
            same = pc.equal(stored, strings.take(pa.array(found))).to_numpy(zero_copy_only=False)
            if not same.all():
                bad = found[~same]
                self.stats.hash_collisions += int(bad.size)
                slots[bad] = -2  # present under another exec_id: never merge
        return slots

    def _ensure(
        self, h: np.ndarray, strings: pa.Array, node: np.ndarray, time: np.ndarray, unique: bool = False
    ) -> np.ndarray:
        """Slots for exec_ids, creating empty (exec_id-only) entries for new ones. -1: collision.

        ``unique``: the caller guarantees distinct hashes (saves a sort).
        """
        if not len(h):
            return np.zeros(0, np.int32)
        if unique:
            uh, first, inv, ustr = h, np.arange(len(h)), None, strings
        else:
            uh, first, inv = np.unique(h, return_index=True, return_inverse=True)
            ustr = strings.take(pa.array(first))
        slots = self._find(uh, ustr)
        # a dead slot still in the index comes back to life, empty
        dead = np.flatnonzero(slots >= 0)
        dead = dead[(self._flags[slots[dead]] & _LIVE) == 0]
        if dead.size:
            ds = slots[dead]
            self._flags[ds] = _LIVE
            self._parent[ds] = UNKNOWN_PARENT
            self._binary[ds] = -1
            self._pid[ds] = -1
            self._children[ds] = 0
            self._exit[ds] = 0
            self._node[ds] = node[first[dead]]
            self._live += int(ds.size)
        new = np.flatnonzero(slots == -1)
        if new.size:
            self._reserve(int(new.size))
            ns = np.arange(self._n, self._n + new.size, dtype=np.int32)
            self._n += int(new.size)
            offs, data = _str_parts(_flat(ustr.take(pa.array(new))))
            starts = self._arena_append(offs - offs[0], data[offs[0] : offs[-1]])
            self._str_off[ns] = starts
            self._str_len[ns] = np.diff(offs)
            self._hash[ns] = uh[new]
            self._flags[ns] = _LIVE
            self._node[ns] = node[first[new]]
            self._seen[ns] = time[first[new]]
            self._index.insert(uh[new], ns)
            slots[new] = ns
            self._live += int(new.size)
            self.stats.inserted += int(new.size)
        slots[slots < -1] = -1
        return slots if inv is None else slots[inv]

    def get(self, exec_id: str) -> ProcessInfo | None:
        """What the table knows about one process (None when absent)."""
        strings = pa.array([exec_id], pa.string())
        slot = int(self._find(_hash_strings(strings), strings)[0])
        if slot < 0 or not self._flags[slot] & _LIVE:
            return None
        p = int(self._parent[slot])
        state = {NO_PARENT: "top", UNKNOWN_PARENT: "unknown", FORGOTTEN_PARENT: "forgotten"}.get(p, "known")
        node = self._nodes.values[self._node[slot]] if self._nodes.values else None
        binary = int(self._binary[slot])

        def when(us: int) -> dt.datetime | None:
            return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(us)) if us else None

        exited = bool(self._flags[slot] & _EXITED)
        return ProcessInfo(
            exec_id=exec_id,
            binary=self._binaries.values[binary] if binary >= 0 else None,
            pid=int(self._pid[slot]) if self._pid[slot] >= 0 else None,
            parent_exec_id=self._ids_of(np.array([p], np.int32))[0].as_py() if p >= 0 else None,
            parent_state=state,
            exited=exited,
            children=int(self._children[slot]),
            node=node or None,
            last_seen=when(self._seen[slot]),
            exit_time=when(self._exit[slot]) if exited else None,
        )

    def chain(self, exec_id: str) -> list[tuple[str | None, str | None]]:
        """(exec_id, binary) of the processes above ``exec_id``'s parent, nearest first, with markers.

        The same chain :meth:`enrich` writes for an event of a child of ``exec_id``'s parent.
        """
        info = self.get(exec_id)
        if info is None or info.parent_exec_id is None:
            return []
        strings = pa.array([info.parent_exec_id], pa.string())
        slot = self._find(_hash_strings(strings), strings)
        ids, bins, _ = self._walk(slot.astype(np.int32))
        return list(zip(ids[0].as_py(), bins[0].as_py(), strict=True))

    # --- learning ------------------------------------------------------------------------

    def update(self, events: pa.Table) -> None:
        """Learn from a batch without enriching it (rebuilds, and processes that only listen)."""
        if events.num_rows:
            self._learn(_Batch(events, self))
            self._maybe_evict()

    def enrich(self, events: pa.Table) -> pa.Table:
        """Learn from the batch, then fill its ancestor columns (see the module doc)."""
        if not events.num_rows:
            return events
        b = _Batch(events, self)
        self._learn(b)
        out = self._fill(b)
        # only now: eviction compacts the arrays, which moves the slots the batch looked up
        self._maybe_evict()
        self.stats.batches += 1
        self.stats.events += events.num_rows
        return out

    def _tetragon_records(self, b: _Batch) -> list[_Records]:
        """Links from Tetragon's ``ancestors`` lists (element i's parent is element i + 1), one list per parent."""
        rows = np.flatnonzero(b.anc_nonempty & b.parent_valid)
        if not rows.size:
            return []
        _, first = np.unique(b.parent_idx[rows], return_index=True)
        r = rows[first]
        ids = _flat(b.anc_ids.take(pa.array(r)))
        bins = _flat(b.anc_bins.take(pa.array(r))) if b.anc_bins is not None else None
        flat_ids = _flat(pc.list_flatten(ids))
        owner = pc.list_parent_indices(ids).to_numpy(zero_copy_only=False)
        m = len(flat_ids)
        if not m:
            return []
        ok = _valid(flat_ids)
        nxt = np.arange(1, m + 1)
        last = np.ones(m, bool)
        last[:-1] = owner[1:] != owner[:-1]
        nxt[last] = 0  # placeholder index; masked below
        next_ids = flat_ids.take(pa.array(nxt, mask=last))
        next_ok = _valid(next_ids)
        h = np.zeros(m, np.uint64)
        if ok.any():
            h[ok] = _hash_strings(flat_ids.filter(pa.array(ok)))
        nh = np.zeros(m, np.uint64)
        nh[next_ok] = h[nxt[next_ok]]
        bin_ids = np.full(m, -1, np.int32)
        if bins is not None:
            flat_bins = pc.list_flatten(bins)
            if len(flat_bins) == m:
                bin_ids = self._binaries.map(flat_bins)
        # the top of each list: usually one init per node; its pid is inside its exec_id
        pids = np.full(m, -1, np.int64)
        ends = np.flatnonzero(last & ok)
        if ends.size:
            _, first_end, inv_end = np.unique(h[ends], return_index=True, return_inverse=True)
            end_ids = flat_ids.take(pa.array(ends[first_end])).to_pylist()
            end_pids = np.array([exec_id_pid(e) if e else None for e in end_ids], dtype=object)
            pids[ends] = np.array([-1 if x is None else x for x in end_pids], np.int64)[inv_end]
        top = (pids >= 0) & (pids <= 2)
        keep = np.flatnonzero(ok)
        kk = pa.array(keep)
        return [
            _Records(
                key=flat_ids.take(kk),
                key_h=h[keep],
                binary=bin_ids[keep],
                pid=pids[keep],
                parent=next_ids.take(kk),
                parent_h=nh[keep],
                top=top[keep],
                node=b.node[r][owner[keep]],
                time=b.time[r][owner[keep]],
            )
        ]

    def _apply(self, recs: list[_Records]) -> None:
        """Merge facts into the table: a field is set only while it is unknown (first fact wins).

        The general (slower) path, for the rare facts: Tetragon ancestors lists and raw reads.
        """
        recs = [r for r in recs if len(r.key_h)]
        if not recs:
            return
        key_h = np.concatenate([r.key_h for r in recs])
        keys = pa.concat_arrays([_flat(r.key).cast(pa.string()) for r in recs])
        node = np.concatenate([r.node for r in recs])
        time = np.concatenate([r.time for r in recs])
        binary = np.concatenate([r.binary for r in recs])
        pid = np.concatenate([r.pid for r in recs])
        parent_h = np.concatenate([r.parent_h for r in recs])
        parents = pa.concat_arrays([_flat(r.parent).cast(pa.string()) for r in recs])
        top = np.concatenate([r.top for r in recs])
        parent_h = np.where(top, np.uint64(0), parent_h)  # nothing is above the top
        hp = np.flatnonzero(parent_h != 0)
        pslot = np.full(len(key_h), -1, np.int32)
        if hp.size:
            pslot[hp] = self._ensure(parent_h[hp], parents.take(pa.array(hp)), node[hp], time[hp])
        slot = self._ensure(key_h, keys, node, time)
        ok = slot >= 0
        np.maximum.at(self._seen, slot[ok], time[ok])
        _, first = np.unique(slot[ok], return_index=True)
        i = np.flatnonzero(ok)[first]  # the first fact about each process
        self._set_facts(slot[i], binary[i], pid[i], pslot[i], top[i])

    def _set_facts(
        self, slot: np.ndarray, binary: np.ndarray, pid: np.ndarray, pslot: np.ndarray, top: np.ndarray
    ) -> None:
        """Fill what is still unknown of distinct processes: binary, pid, and the parent link."""
        ok = slot >= 0
        if not ok.all():
            slot, binary, pid, pslot, top = slot[ok], binary[ok], pid[ok], pslot[ok], top[ok]
        i = np.flatnonzero((binary >= 0) & (self._binary[slot] < 0))
        self._binary[slot[i]] = binary[i]
        self._flags[slot[i]] |= _INFO
        i = np.flatnonzero((pid >= 0) & (self._pid[slot] < 0))
        self._pid[slot[i]] = np.minimum(pid[i], np.iinfo(np.int32).max)
        # links: only while the parent is unknown; never to itself
        i = np.flatnonzero((((pslot >= 0) & (pslot != slot)) | top) & (self._parent[slot] <= UNKNOWN_PARENT))
        if i.size:
            new_parent = np.where(top[i], NO_PARENT, pslot[i]).astype(np.int32)
            self._parent[slot[i]] = new_parent
            np.add.at(self._children, new_parent[new_parent >= 0], 1)

    def _learn(self, b: _Batch) -> None:
        """What one batch teaches: each distinct process and each distinct parent, once.

        Parents first, so that every process's parent has a slot to point to.
        """
        pu = b.parent_u
        p_slots = self._ensure(pu.h, pu.values, b.node[pu.first], b.time[pu.first], unique=True)
        eu = b.exec_u
        e_slots = self._ensure(eu.h, eu.values, b.node[eu.first], b.time[eu.first], unique=True)
        b.set_slots(e_slots, p_slots)
        row_e, row_p = b.exec_slots(), b.parent_slots()
        # (a) the processes: what their own (first) event says
        r = eu.first
        pid = b.pid[r]
        self._set_facts(e_slots, b.interned_binaries("process_binary", r), pid, row_p[r], (pid >= 0) & (pid <= 2))
        # (b) the parents: what their children's events say, and their own parent when Tetragon sent ancestors
        r = pu.first
        ppid = b.parent_pid[r]
        gp_slot = np.full(len(r), -1, np.int32)
        top = (ppid >= 0) & (ppid <= 2)
        if b.anc_valid.any():
            gp_slot, top_from_list = self._grandparents(b)
            top |= top_from_list
        self._set_facts(p_slots, b.interned_binaries("parent_binary", r), ppid, gp_slot, top)
        if b.anc_nonempty.any():
            self._apply(self._tetragon_records(b))
        # last seen (event time): the hard cap evicts the least recently seen first
        for rows_slots in (row_e, row_p):
            k = rows_slots >= 0
            if k.any():
                np.maximum.at(self._seen, rows_slots[k], b.time[k])
        # exits
        ex = np.flatnonzero(b.is_exit & (row_e >= 0))
        if ex.size:
            s = row_e[ex]
            self._flags[s] |= _EXITED
            np.maximum.at(self._exit, s, b.time[ex])
        # watermarks: per node, event time
        np.maximum.at(self._wm, b.node.astype(np.int64), b.time)
        self._read_grandparents(b)

    def _grandparents(self, b: _Batch) -> tuple[np.ndarray, np.ndarray]:
        """Per distinct parent: the grandparent's slot from a row's ``ancestors[0]``, and "is the top".

        An empty ancestors list (Tetragon omits it, so these are our own rows from the lake, on a
        rebuild) says the parent is the top.
        """
        pu = b.parent_u
        gp_slot = np.full(len(pu.first), -1, np.int32)
        top = np.zeros(len(pu.first), bool)
        rows = np.flatnonzero(b.anc_valid & b.parent_valid)
        order = np.argsort(~b.anc_nonempty[rows], kind="stable")  # prefer rows that name the grandparent
        rows = rows[order]
        _, first = np.unique(b.parent_idx[rows], return_index=True)
        rows = rows[first]
        which = b.parent_idx[rows]  # the parent's index among the distinct parents
        has = b.anc_nonempty[rows]
        top[which[~has]] = True
        if has.any():
            rr = rows[has]
            gp = b.anc_first(rr)
            valid = _valid(gp)
            if valid.any():
                g = np.flatnonzero(valid)
                gp_h = _hash_strings(gp.filter(pa.array(valid)))
                gp_slot[which[has][g]] = self._ensure(gp_h, gp.filter(pa.array(valid)), b.node[rr][g], b.time[rr][g])
        return gp_slot, top

    def _read_grandparents(self, b: _Batch) -> None:
        """For parents whose own parent is unknown, read it once from one event's raw JSON.

        The event schema has no column for ``parent.parent_exec_id``, but every
        Tetragon event carries it inside ``parent``; a parent that started before
        tetrapipe did is otherwise stuck without a link until it has an event of
        its own. One orjson parse per such parent, once.
        """
        if b.raw is None:
            return
        rows = np.flatnonzero(b.needs_fill)
        if not rows.size:
            return
        ps = b.parent_slots()[rows]
        keep = ps >= 0
        rows, ps = rows[keep], ps[keep]
        stuck = (self._parent[ps] <= UNKNOWN_PARENT) & ((self._flags[ps] & _TRIED_RAW) == 0)
        rows, ps = rows[stuck], ps[stuck]
        if not rows.size:
            return
        _, first = np.unique(ps, return_index=True)
        rows, ps = rows[first], ps[first]
        self._flags[ps] |= _TRIED_RAW
        raws = [b.raw[int(i)].as_py() for i in rows]
        kinds = b.kind.take(pa.array(rows)).to_pylist()
        found_rows: list[int] = []
        found_gp: list[str] = []
        for row, raw, kind in zip(rows.tolist(), raws, kinds, strict=True):
            self.stats.raw_reads += 1
            try:
                parent = orjson.loads(raw).get(kind, {}).get("parent") or {}
            except (orjson.JSONDecodeError, AttributeError, TypeError):
                continue
            gp = parent.get("parent_exec_id") if isinstance(parent, dict) else None
            if isinstance(gp, str) and gp:
                found_rows.append(row)
                found_gp.append(gp)
        if not found_rows:
            return
        r = np.array(found_rows)
        gp_arr = pa.array(found_gp, pa.string())
        gp_h = _hash_strings(gp_arr)
        rr = pa.array(r)
        # the grandparent is known by its id only; its pid is inside the id, and pid <= 2 is the top
        gp_pid = np.array([exec_id_pid(g) or -1 for g in found_gp], np.int64)
        self._apply(
            [
                _Records(
                    key=b.parent_id.take(rr),
                    key_h=b.parent_u.h[b.parent_idx[r]],
                    binary=b.interned_binaries("parent_binary", r),
                    pid=b.parent_pid[r],
                    parent=gp_arr,
                    parent_h=gp_h,
                    top=np.zeros(len(r), bool),
                    node=b.node[r],
                    time=b.time[r],
                ),
                _Records(
                    key=gp_arr,
                    key_h=gp_h,
                    binary=np.full(len(r), -1, np.int32),
                    pid=gp_pid,
                    parent=pa.nulls(len(r), pa.string()),
                    parent_h=np.zeros(len(r), np.uint64),
                    top=(gp_pid >= 0) & (gp_pid <= 2),
                    node=b.node[r],
                    time=b.time[r],
                ),
            ]
        )

    # --- chains --------------------------------------------------------------------------

    def _walk(self, starts: np.ndarray) -> tuple[pa.Array, pa.Array, np.ndarray]:
        """Chains above each start slot: (list<exec_id>, list<binary>, has_gap) per start."""
        u = len(starts)
        depth = self.max_depth
        out = np.full((u, depth + 1), _PAD, np.int32)
        cur = starts.astype(np.int32).copy()
        alive = cur >= 0
        out[~alive, 0] = _GAP
        for d in range(depth):
            idx = np.flatnonzero(alive)
            if not idx.size:
                break
            p = self._parent[cur[idx]]
            link = p >= 0
            if link.any() and d:
                li = np.flatnonzero(link)
                cyc = (out[idx[li], :d] == p[li, None]).any(axis=1) | (starts[idx[li]] == p[li])
                if cyc.any():
                    link[li[cyc]] = False
                    p = p.copy()
                    p[li[cyc]] = UNKNOWN_PARENT
            gap = p <= UNKNOWN_PARENT
            out[idx[link], d] = p[link]
            out[idx[gap], d] = _GAP
            cur[idx[link]] = p[link]
            alive[idx[~link]] = False
        if alive.any():  # cut at the depth limit, unless the last one reached is the top
            idx = np.flatnonzero(alive)
            cut = idx[self._parent[cur[idx]] != NO_PARENT]
            out[cut, depth] = _GAP
        filled = out != _PAD
        lens = filled.sum(axis=1)
        flat = out[filled]
        offsets = np.zeros(u + 1, np.int32)
        np.cumsum(lens, out=offsets[1:])
        slots = np.where(flat >= 0, flat, -1).astype(np.int32)
        ids = self._ids_of(slots)
        bins = self._binaries.take(np.where(slots >= 0, self._binary[np.maximum(slots, 0)], -1))
        off = pa.array(offsets, pa.int32())
        has_gap = np.zeros(u, bool)
        if len(flat):
            gap_rows = np.repeat(np.arange(u), lens)[(flat == _GAP) | (self._binary[np.maximum(slots, 0)] < 0)]
            has_gap[gap_rows] = True
        return pa.ListArray.from_arrays(off, ids), pa.ListArray.from_arrays(off, bins), has_gap

    def _fill(self, b: _Batch) -> pa.Table:
        """Write the chains: walked once per distinct parent of the batch, then taken per row."""
        events = b.events
        need = b.needs_fill
        n = events.num_rows
        self.stats.kept_from_tetragon += int((b.anc_valid & b.exec_valid).sum())
        n_need = int(need.sum())
        if not n_need:
            return events
        pu = b.parent_u
        ids_u, bins_u, gap_u = self._walk(b.parent_u_slots)
        idx = np.zeros(n, np.int32)
        idx[pu.rows] = pu.inv
        take = pa.array(idx, mask=~need)
        self.stats.enriched += n_need
        self.stats.with_gaps += int(gap_u[idx[need]].sum())
        list_type = pa.list_(pa.string())
        keep = b.anc_valid  # rows whose Tetragon ancestors stay as sent

        def column(name: str, walked: pa.Array) -> pa.Array:
            rows = walked.take(take)  # NULL where not filled
            if not keep.any():
                return rows
            original = (
                _flat(events.column(name)).cast(list_type) if name in events.column_names else pa.nulls(n, list_type)
            )
            pick = np.arange(n, dtype=np.int64)
            pick[keep] += n
            return pa.concat_arrays([rows, original]).take(pa.array(pick))

        out = _set_column(events, "ancestor_exec_ids", column("ancestor_exec_ids", ids_u))
        out = _set_column(out, "ancestor_binaries", column("ancestor_binaries", bins_u))
        # parent binary / pid, when the event lacks them and the table knows
        all_ps = b.parent_slots()
        known = all_ps >= 0
        safe = np.maximum(all_ps, 0)
        for name, values in (("parent_binary", self._binary), ("parent_pid", self._pid)):
            if name not in events.column_names:
                continue
            col = _flat(events.column(name))
            if not col.null_count:
                continue
            missing = known & ~_valid(col) & (values[safe] >= 0)
            if not missing.any():
                continue
            if name == "parent_binary":
                vals = self._binaries.take(np.where(missing, self._binary[safe], -1))
            else:
                vals = pa.array(self._pid[safe].astype(np.int64), pa.int64())
            out = _set_column(out, name, pc.if_else(pa.array(missing), vals, col))
        return out

    # --- eviction ------------------------------------------------------------------------

    def _maybe_evict(self) -> None:
        nodes = len(self._nodes.values)
        if not nodes:
            return
        moved = (self._wm[:nodes] - self._wm_swept[:nodes]) >= max(self.grace_us // 4, 1)
        if moved.any():
            self.evict()
            self._wm_swept[:nodes] = self._wm[:nodes]
        if self._live > self.max_entries:
            self._evict_cap()
        dead = self._n - self._live
        if dead > 8192 and dead > self._live:
            self.compact()

    def evict(self) -> int:
        """Drop exited processes past their grace, and stale exec_id-only entries, without live children."""
        n = self._n
        if not n:
            return 0
        total = 0
        flags = self._flags[:n]
        wm = self._wm[self._node[:n].astype(np.int64)]
        cand = np.flatnonzero(flags & _LIVE)
        for _ in range(self.max_depth):
            if not cand.size:
                break
            f = flags[cand]
            exited = ((f & _EXITED) != 0) & (self._exit[cand] + self.grace_us < wm[cand])
            stale_stub = ((f & _INFO) == 0) & (self._seen[cand] + self.grace_us < wm[cand])
            go = cand[(exited | stale_stub) & (self._children[cand] == 0)]
            if not go.size:
                break
            total += self._drop(go)
            parents = self._parent[go]
            cand = np.unique(parents[parents >= 0])  # a parent may have lost its last child
        self.stats.evicted += total
        return total

    def _drop(self, slots: np.ndarray) -> int:
        self._flags[slots] = 0
        parents = self._parent[slots]
        linked = parents[parents >= 0]
        np.subtract.at(self._children, linked, 1)
        self._parent[slots] = UNKNOWN_PARENT
        self._live -= int(slots.size)
        return int(slots.size)

    def _evict_cap(self) -> None:
        """Hard cap: drop the least recently seen tenth; their children forget them."""
        n = self._n
        live = np.flatnonzero(self._flags[:n] & _LIVE)
        excess = len(live) - int(self.max_entries * 0.9)
        if excess <= 0:
            return
        oldest = live[np.argpartition(self._seen[live], excess - 1)[:excess]]
        self._drop(oldest)
        orphaned = (self._flags[:n] & _LIVE) != 0
        p = self._parent[:n]
        ref = p >= 0
        orphaned &= ref
        orphaned[ref] &= (self._flags[p[ref]] & _LIVE) == 0
        self._parent[:n][orphaned] = FORGOTTEN_PARENT
        self.stats.evicted_by_cap += int(excess)
        self.compact()

    def compact(self) -> None:
        """Squeeze dead slots out of every array and rebuild the index (O(table))."""
        n = self._n
        keep = np.flatnonzero(self._flags[:n] & _LIVE)
        remap = np.full(max(n, 1), -1, np.int32)
        remap[keep] = np.arange(len(keep), dtype=np.int32)
        parent = self._parent[keep]
        ref = parent >= 0
        new_parent = parent.copy()
        new_parent[ref] = remap[parent[ref]]
        new_parent[ref & (new_parent < 0)] = FORGOTTEN_PARENT
        offsets, data = _gather_ranges(self._arena, self._str_off[keep], self._str_len[keep])
        m = len(keep)
        cap = max(1024, m + m // 4)
        fills = {"_parent": UNKNOWN_PARENT, "_binary": -1, "_pid": -1}
        for name in self._SLOT_ARRAYS:
            old = getattr(self, name)
            new = np.full(cap, fills.get(name, 0), old.dtype)
            new[:m] = old[keep]
            setattr(self, name, new)
        self._parent[:m] = new_parent
        self._str_off[:m] = offsets[:-1]
        self._arena = np.zeros(max(1 << 16, len(data) + len(data) // 4), np.uint8)
        self._arena[: len(data)] = data
        self._arena_used = len(data)
        self._n = m
        self._live = m
        self._index.rebuild(self._hash[:m], np.arange(m, dtype=np.int32))
        self.stats.compactions += 1

    # --- restart -------------------------------------------------------------------------

    @classmethod
    def rebuild_from_lake(
        cls, lake: Lake | str, since: dt.datetime | dt.timedelta | None = None, **kwargs: object
    ) -> ProcessTable:
        """A table restored from the history after a restart.

        ``since``: a time, or a duration back from the newest event in the lake
        (event time, so a lake of replayed old logs works too); default one hour.
        Reads one row per process seen since then (its exec when there is one)
        plus the exits, in time order, without ``raw``: enough for every link
        the table had (the rows' own ancestor columns give the links above).
        """
        table = cls(**kwargs)  # type: ignore[arg-type]
        table.load_from_lake(lake, since)
        return table

    def load_from_lake(
        self, lake: Lake | str, since: dt.datetime | dt.timedelta | None = None, chunk_rows: int = 200_000
    ) -> int:
        """Learn from the lake's recent rows (see :meth:`rebuild_from_lake`); returns the rows read."""
        from tetrapipe.lake import views as history

        con = history.connect(lake)
        try:
            if not isinstance(since, dt.datetime):
                back = since if isinstance(since, dt.timedelta) else dt.timedelta(hours=1)
                newest = con.sql("SELECT max(time) FROM events").fetchall()[0][0]
                if newest is None:
                    return 0
                since = newest - back
            reader = con.sql(REBUILD_SQL, params={"since": since}).to_arrow_reader(chunk_rows)
            rows = 0
            for batch in reader:
                tbl = pa.Table.from_batches([batch])
                rows += tbl.num_rows
                self.update(tbl)
            return rows
        finally:
            con.close()


REBUILD_SQL = """
WITH recent AS (
    SELECT time, kind, node_name, exec_id, parent_exec_id, pid, process_binary, parent_binary, parent_pid,
           ancestor_exec_ids, ancestor_binaries
    FROM events
    WHERE exec_id IS NOT NULL AND time >= $since
),
firsts AS (
    SELECT * FROM recent
    QUALIFY row_number() OVER (PARTITION BY exec_id ORDER BY kind = 'process_exec' DESC, time) = 1
)
SELECT * FROM firsts
UNION ALL
SELECT * FROM recent WHERE kind = 'process_exit'
ORDER BY time
"""


def _set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        i = table.column_names.index(name)
        return table.set_column(i, table.schema.field(i), values.cast(table.schema.field(i).type))
    return table.append_column(name, values)


@dataclass
class _Distinct:
    """The distinct exec_ids of one column of a batch, in first-seen order, and row -> index."""

    values: pa.Array  # the distinct strings
    h: np.ndarray  # their hashes
    first: np.ndarray  # row of the first occurrence of each
    rows: np.ndarray  # the rows with a value
    inv: np.ndarray  # for each of those rows, the index of its value


class _Batch:
    """The columns of one batch the table needs, as numpy arrays (absent columns read as NULL).

    Each exec_id column is hashed and made distinct once; everything after
    works on the distinct values and maps back to rows with ``inv``.
    """

    def __init__(self, events: pa.Table, table: ProcessTable) -> None:
        self.events = events
        self._table = table
        n = events.num_rows
        self._cols = set(events.column_names)
        col = self.col  # a bound method, not a closure kept on self: no reference cycle holding the batch
        self.exec_id = col("exec_id", pa.string())
        self.parent_id = col("parent_exec_id", pa.string())
        self.exec_u = self._distinct(self.exec_id)
        self.parent_u = self._distinct(self.parent_id)
        self.exec_idx = self._row_index(self.exec_u, n)  # row -> index among the distinct values, -1
        self.parent_idx = self._row_index(self.parent_u, n)
        self.exec_valid = self.exec_idx >= 0
        self.parent_valid = self.parent_idx >= 0
        kind = col("kind", pa.string())
        self.kind = kind
        self.is_exit = pc.fill_null(pc.equal(kind, "process_exit"), False).to_numpy(zero_copy_only=False)
        self.time = _time_us(col("time", pa.timestamp("us")))
        self.node = table._node_id(col("node_name", pa.string()))
        self.pid = _int_col(col("pid", pa.int64()), -1)
        self.parent_pid = _int_col(col("parent_pid", pa.int64()), -1)
        self.anc_ids = col("ancestor_exec_ids", pa.list_(pa.string()))
        self.anc_bins = col("ancestor_binaries", pa.list_(pa.string())) if "ancestor_binaries" in self._cols else None
        self.anc_valid = _valid(self.anc_ids)
        if self.anc_valid.any():
            lens = pc.fill_null(pc.list_value_length(self.anc_ids), 0).to_numpy(zero_copy_only=False)
            self.anc_nonempty = self.anc_valid & (lens > 0)
        else:
            self.anc_nonempty = self.anc_valid
        # raw stays chunked: combining it would copy every line of the batch for the few rows read
        self.raw = events.column("raw") if "raw" in self._cols else None
        self.needs_fill = self.exec_valid & self.parent_valid & ~self.anc_valid
        self._exec_slots: np.ndarray | None = None
        self._parent_slots: np.ndarray | None = None

    def col(self, name: str, typ: pa.DataType) -> pa.Array:
        """A column as one Arrow array; an absent column reads as NULLs."""
        if name in self._cols:
            return _flat(self.events.column(name))
        return pa.nulls(self.events.num_rows, typ)

    @staticmethod
    def _distinct(arr: pa.Array) -> _Distinct:
        """One hash pass (Arrow's dictionary encoding), then hash only the distinct strings."""
        enc = pc.dictionary_encode(arr)
        values = enc.dictionary
        ind = _int_col(enc.indices, -1)
        rows = np.flatnonzero(ind >= 0)
        # new values get the next index, so a value's first row is where the running maximum grows
        grown = np.diff(np.maximum.accumulate(ind), prepend=-1) > 0
        first = np.flatnonzero(grown)
        return _Distinct(values, _hash_strings(values), first, rows, ind[rows])

    @staticmethod
    def _row_index(d: _Distinct, n: int) -> np.ndarray:
        idx = np.full(n, -1, np.int64)
        idx[d.rows] = d.inv
        return idx

    def interned_binaries(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Interned ids of a binary column at some rows (only the distinct processes are interned)."""
        if name not in self._cols or not len(rows):
            return np.full(len(rows), -1, np.int32)
        return self._table._binaries.map(self.col(name, pa.string()).take(pa.array(rows)))

    def anc_first(self, rows: np.ndarray) -> pa.Array:
        """The first ancestor (the grandparent) of each row, NULL when none."""
        has = self.anc_nonempty[rows]
        if not has.any():
            return pa.nulls(len(rows), pa.string())
        firsts = _flat(pc.list_element(self.anc_ids.take(pa.array(rows[has])), 0))
        pos = np.cumsum(has) - 1
        return firsts.take(pa.array(np.where(has, pos, 0), mask=~has)).cast(pa.string())

    def set_slots(self, exec_slots: np.ndarray, parent_slots: np.ndarray) -> None:
        """Row slots from the slots of the distinct values (valid until the table compacts)."""
        self.parent_u_slots = parent_slots
        n = len(self.exec_valid)
        self._exec_slots = np.full(n, -1, np.int32)
        self._exec_slots[self.exec_u.rows] = exec_slots[self.exec_u.inv]
        self._parent_slots = np.full(n, -1, np.int32)
        self._parent_slots[self.parent_u.rows] = parent_slots[self.parent_u.inv]

    def exec_slots(self) -> np.ndarray:
        assert self._exec_slots is not None
        return self._exec_slots

    def parent_slots(self) -> np.ndarray:
        assert self._parent_slots is not None
        return self._parent_slots


class AncestryTransform:
    """The pipeline step (a ``BatchTransform``): enrich each batch's ancestor columns.

    ``AncestryTransform()`` starts empty; ``AncestryTransform.from_lake(lake)``
    first restores the table from the lake's last hour (what the stream
    processor does after a restart). It returns no extra tables.
    """

    def __init__(self, table: ProcessTable | None = None, **table_options: object) -> None:
        self.table = table if table is not None else ProcessTable(**table_options)  # type: ignore[arg-type]

    @classmethod
    def from_lake(
        cls, lake: Lake | str, since: dt.datetime | dt.timedelta | None = None, **table_options: object
    ) -> AncestryTransform:
        return cls(ProcessTable.rebuild_from_lake(lake, since, **table_options))

    def __call__(self, events: pa.Table) -> tuple[pa.Table, dict[str, pa.Table]]:
        return self.table.enrich(events), {}


def enrich_all(batches: Iterable[pa.Table], table: ProcessTable | None = None) -> list[pa.Table]:
    """Enrich batches in order with one table (tests, small tools)."""
    table = table or ProcessTable()
    return [table.enrich(b) for b in batches]


__all__ = [
    "AncestryTransform",
    "ProcessTable",
    "ProcessInfo",
    "TableStats",
    "exec_id_pid",
    "enrich_all",
    "NO_PARENT",
    "UNKNOWN_PARENT",
    "FORGOTTEN_PARENT",
]
