"""The process table: processes by exec_id with parent pointers, bounded, in numpy arrays.

Storage, lookups, eviction and compaction; what a batch teaches it and the chains it writes
are in :mod:`.learn`. See :mod:`tetrapipe.transforms.ancestry` and ``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tetrapipe.transforms.ancestry.batch import Batch
from tetrapipe.transforms.ancestry.index import (
    EXITED,
    FORGOTTEN_PARENT,
    INFO,
    LIVE,
    NO_PARENT,
    UNKNOWN_PARENT,
    US,
    Interner,
    U64Index,
    flat,
    gather_ranges,
    hash_strings,
    str_parts,
)
from tetrapipe.transforms.ancestry.learn import BatchLearning


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


class ProcessTable(BatchLearning):
    """Processes by exec_id with parent pointers: learn from event batches, walk chains.

    ``grace``: how long (event time, per node) an exited process stays, so late
    events of it and of its children still find it. ``max_entries``: the hard
    cap. ``max_depth``: longest chain walked (a cut chain ends with a NULL id).
    """

    def __init__(
        self, grace: dt.timedelta = dt.timedelta(minutes=2), max_entries: int = 1_000_000, max_depth: int = 64
    ) -> None:
        self.grace_us = int(grace.total_seconds() * US)
        self.max_entries = int(max_entries)
        self.max_depth = int(max_depth)
        self.stats = TableStats()
        self._index = U64Index()
        self._binaries = Interner()
        self._nodes = Interner()
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
        offsets, data = gather_ranges(self._arena, self._str_off[safe], lens)
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
        dead = dead[(self._flags[slots[dead]] & LIVE) == 0]
        if dead.size:
            ds = slots[dead]
            self._flags[ds] = LIVE
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
            offs, data = str_parts(flat(ustr.take(pa.array(new))))
            starts = self._arena_append(offs - offs[0], data[offs[0] : offs[-1]])
            self._str_off[ns] = starts
            self._str_len[ns] = np.diff(offs)
            self._hash[ns] = uh[new]
            self._flags[ns] = LIVE
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
        slot = int(self._find(hash_strings(strings), strings)[0])
        if slot < 0 or not self._flags[slot] & LIVE:
            return None
        p = int(self._parent[slot])
        state = {NO_PARENT: "top", UNKNOWN_PARENT: "unknown", FORGOTTEN_PARENT: "forgotten"}.get(p, "known")
        node = self._nodes.values[self._node[slot]] if self._nodes.values else None
        binary = int(self._binary[slot])

        def when(us: int) -> dt.datetime | None:
            return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(us)) if us else None

        exited = bool(self._flags[slot] & EXITED)
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
        slot = self._find(hash_strings(strings), strings)
        ids, bins, _ = self._walk(slot.astype(np.int32))
        return list(zip(ids[0].as_py(), bins[0].as_py(), strict=True))

    # --- learning ------------------------------------------------------------------------

    def learn_history(self, tables: Iterable[pa.Table]) -> int:
        """Learn from the history's recent rows (a restart); returns the rows read.

        ``tables``: what :func:`tetrapipe.lake.state.recent_processes` reads, in
        time order: one row per recent process and the exits, without ``raw``.
        """
        rows = 0
        for tbl in tables:
            rows += tbl.num_rows
            self.update(tbl)
        return rows

    def update(self, events: pa.Table) -> None:
        """Learn from a batch without enriching it (rebuilds, and processes that only listen)."""
        if events.num_rows:
            self._learn(Batch(events, self._node_id, self._binaries))
            self._maybe_evict()

    def enrich(self, events: pa.Table) -> pa.Table:
        """Learn from the batch, then fill its ancestor columns (see the module doc)."""
        if not events.num_rows:
            return events
        b = Batch(events, self._node_id, self._binaries)
        self._learn(b)
        out = self._fill(b)
        # only now: eviction compacts the arrays, which moves the slots the batch looked up
        self._maybe_evict()
        self.stats.batches += 1
        self.stats.events += events.num_rows
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
        cand = np.flatnonzero(flags & LIVE)
        for _ in range(self.max_depth):
            if not cand.size:
                break
            f = flags[cand]
            exited = ((f & EXITED) != 0) & (self._exit[cand] + self.grace_us < wm[cand])
            stale_stub = ((f & INFO) == 0) & (self._seen[cand] + self.grace_us < wm[cand])
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
        live = np.flatnonzero(self._flags[:n] & LIVE)
        excess = len(live) - int(self.max_entries * 0.9)
        if excess <= 0:
            return
        oldest = live[np.argpartition(self._seen[live], excess - 1)[:excess]]
        self._drop(oldest)
        orphaned = (self._flags[:n] & LIVE) != 0
        p = self._parent[:n]
        ref = p >= 0
        orphaned &= ref
        orphaned[ref] &= (self._flags[p[ref]] & LIVE) == 0
        self._parent[:n][orphaned] = FORGOTTEN_PARENT
        self.stats.evicted_by_cap += int(excess)
        self.compact()

    def compact(self) -> None:
        """Squeeze dead slots out of every array and rebuild the index (O(table))."""
        n = self._n
        keep = np.flatnonzero(self._flags[:n] & LIVE)
        remap = np.full(max(n, 1), -1, np.int32)
        remap[keep] = np.arange(len(keep), dtype=np.int32)
        parent = self._parent[keep]
        ref = parent >= 0
        new_parent = parent.copy()
        new_parent[ref] = remap[parent[ref]]
        new_parent[ref & (new_parent < 0)] = FORGOTTEN_PARENT
        offsets, data = gather_ranges(self._arena, self._str_off[keep], self._str_len[keep])
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
