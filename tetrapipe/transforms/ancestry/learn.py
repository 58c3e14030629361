"""What a batch teaches the process table, and the chains it writes back.

The learning and chain-walking half of :class:`~tetrapipe.transforms.ancestry.table.ProcessTable`
(a mixin: the table's arrays and storage live in :mod:`.table`). See
:mod:`tetrapipe.transforms.ancestry` for what is learned from which event, and
``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from tetrapipe.transforms.ancestry.batch import Records, set_column
from tetrapipe.transforms.ancestry.index import (
    EXITED,
    GAP,
    INFO,
    NO_PARENT,
    PAD,
    TRIED_RAW,
    UNKNOWN_PARENT,
    exec_id_pid,
    flat,
    hash_strings,
    valid_mask,
)

if TYPE_CHECKING:
    from tetrapipe.transforms.ancestry.batch import Batch


class BatchLearning:
    """Learning from batches and walking chains; mixed into :class:`~.table.ProcessTable`."""

    def _tetragon_records(self, b: Batch) -> list[Records]:
        """Links from Tetragon's ``ancestors`` lists (element i's parent is element i + 1), one list per parent."""
        rows = np.flatnonzero(b.anc_nonempty & b.parent_valid)
        if not rows.size:
            return []
        _, first = np.unique(b.parent_idx[rows], return_index=True)
        r = rows[first]
        ids = flat(b.anc_ids.take(pa.array(r)))
        bins = flat(b.anc_bins.take(pa.array(r))) if b.anc_bins is not None else None
        flat_ids = flat(pc.list_flatten(ids))
        owner = pc.list_parent_indices(ids).to_numpy(zero_copy_only=False)
        m = len(flat_ids)
        if not m:
            return []
        ok = valid_mask(flat_ids)
        nxt = np.arange(1, m + 1)
        last = np.ones(m, bool)
        last[:-1] = owner[1:] != owner[:-1]
        nxt[last] = 0  # placeholder index; masked below
        next_ids = flat_ids.take(pa.array(nxt, mask=last))
        next_ok = valid_mask(next_ids)
        h = np.zeros(m, np.uint64)
        if ok.any():
            h[ok] = hash_strings(flat_ids.filter(pa.array(ok)))
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
            Records(
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

    def _apply(self, recs: list[Records]) -> None:
        """Merge facts into the table: a field is set only while it is unknown (first fact wins).

        The general (slower) path, for the rare facts: Tetragon ancestors lists and raw reads.
        """
        recs = [r for r in recs if len(r.key_h)]
        if not recs:
            return
        key_h = np.concatenate([r.key_h for r in recs])
        keys = pa.concat_arrays([flat(r.key).cast(pa.string()) for r in recs])
        node = np.concatenate([r.node for r in recs])
        time = np.concatenate([r.time for r in recs])
        binary = np.concatenate([r.binary for r in recs])
        pid = np.concatenate([r.pid for r in recs])
        parent_h = np.concatenate([r.parent_h for r in recs])
        parents = pa.concat_arrays([flat(r.parent).cast(pa.string()) for r in recs])
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
        self._flags[slot[i]] |= INFO
        i = np.flatnonzero((pid >= 0) & (self._pid[slot] < 0))
        self._pid[slot[i]] = np.minimum(pid[i], np.iinfo(np.int32).max)
        # links: only while the parent is unknown; never to itself
        i = np.flatnonzero((((pslot >= 0) & (pslot != slot)) | top) & (self._parent[slot] <= UNKNOWN_PARENT))
        if i.size:
            new_parent = np.where(top[i], NO_PARENT, pslot[i]).astype(np.int32)
            self._parent[slot[i]] = new_parent
            np.add.at(self._children, new_parent[new_parent >= 0], 1)

    def _learn(self, b: Batch) -> None:
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
            self._flags[s] |= EXITED
            np.maximum.at(self._exit, s, b.time[ex])
        # watermarks: per node, event time
        np.maximum.at(self._wm, b.node.astype(np.int64), b.time)
        self._read_grandparents(b)

    def _grandparents(self, b: Batch) -> tuple[np.ndarray, np.ndarray]:
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
            valid = valid_mask(gp)
            if valid.any():
                g = np.flatnonzero(valid)
                gp_h = hash_strings(gp.filter(pa.array(valid)))
                gp_slot[which[has][g]] = self._ensure(gp_h, gp.filter(pa.array(valid)), b.node[rr][g], b.time[rr][g])
        return gp_slot, top

    def _read_grandparents(self, b: Batch) -> None:
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
        stuck = (self._parent[ps] <= UNKNOWN_PARENT) & ((self._flags[ps] & TRIED_RAW) == 0)
        rows, ps = rows[stuck], ps[stuck]
        if not rows.size:
            return
        _, first = np.unique(ps, return_index=True)
        rows, ps = rows[first], ps[first]
        self._flags[ps] |= TRIED_RAW
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
        gp_h = hash_strings(gp_arr)
        rr = pa.array(r)
        # the grandparent is known by its id only; its pid is inside the id, and pid <= 2 is the top
        gp_pid = np.array([exec_id_pid(g) or -1 for g in found_gp], np.int64)
        self._apply(
            [
                Records(
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
                Records(
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
        out = np.full((u, depth + 1), PAD, np.int32)
        cur = starts.astype(np.int32).copy()
        alive = cur >= 0
        out[~alive, 0] = GAP
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
            out[idx[gap], d] = GAP
            cur[idx[link]] = p[link]
            alive[idx[~link]] = False
        if alive.any():  # cut at the depth limit, unless the last one reached is the top
            idx = np.flatnonzero(alive)
            cut = idx[self._parent[cur[idx]] != NO_PARENT]
            out[cut, depth] = GAP
        filled = out != PAD
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
            gap_rows = np.repeat(np.arange(u), lens)[(flat == GAP) | (self._binary[np.maximum(slots, 0)] < 0)]
            has_gap[gap_rows] = True
        return pa.ListArray.from_arrays(off, ids), pa.ListArray.from_arrays(off, bins), has_gap

    def _fill(self, b: Batch) -> pa.Table:
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
                flat(events.column(name)).cast(list_type) if name in events.column_names else pa.nulls(n, list_type)
            )
            pick = np.arange(n, dtype=np.int64)
            pick[keep] += n
            return pa.concat_arrays([rows, original]).take(pa.array(pick))

        out = set_column(events, "ancestor_exec_ids", column("ancestor_exec_ids", ids_u))
        out = set_column(out, "ancestor_binaries", column("ancestor_binaries", bins_u))
        # parent binary / pid, when the event lacks them and the table knows
        all_ps = b.parent_slots()
        known = all_ps >= 0
        safe = np.maximum(all_ps, 0)
        for name, values in (("parent_binary", self._binary), ("parent_pid", self._pid)):
            if name not in events.column_names:
                continue
            col = flat(events.column(name))
            if not col.null_count:
                continue
            missing = known & ~valid_mask(col) & (values[safe] >= 0)
            if not missing.any():
                continue
            if name == "parent_binary":
                vals = self._binaries.take(np.where(missing, self._binary[safe], -1))
            else:
                vals = pa.array(self._pid[safe].astype(np.int64), pa.int64())
            out = set_column(out, name, pc.if_else(pa.array(missing), vals, col))
        return out
