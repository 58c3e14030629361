"""One batch as the process table reads it: its exec_id columns made distinct and hashed once.

See :mod:`tetrapipe.transforms.ancestry` and ``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tetrapipe.transforms.ancestry.index import Interner, flat, hash_strings, int_col, time_us, valid_mask


@dataclass
class Records:
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


def set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    if name in table.column_names:
        i = table.column_names.index(name)
        return table.set_column(i, table.schema.field(i), values.cast(table.schema.field(i).type))
    return table.append_column(name, values)


@dataclass
class Distinct:
    """The distinct exec_ids of one column of a batch, in first-seen order, and row -> index."""

    values: pa.Array  # the distinct strings
    h: np.ndarray  # their hashes
    first: np.ndarray  # row of the first occurrence of each
    rows: np.ndarray  # the rows with a value
    inv: np.ndarray  # for each of those rows, the index of its value


class Batch:
    """The columns of one batch the table needs, as numpy arrays (absent columns read as NULL).

    Each exec_id column is hashed and made distinct once; everything after
    works on the distinct values and maps back to rows with ``inv``.
    ``node_ids`` interns node names (the table's per-node clocks grow with it);
    ``binaries`` is the table's interner of binary paths.
    """

    def __init__(self, events: pa.Table, node_ids: Callable[[pa.Array], np.ndarray], binaries: Interner) -> None:
        self.events = events
        self._binaries = binaries
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
        self.time = time_us(col("time", pa.timestamp("us")))
        self.node = node_ids(col("node_name", pa.string()))
        self.pid = int_col(col("pid", pa.int64()), -1)
        self.parent_pid = int_col(col("parent_pid", pa.int64()), -1)
        self.anc_ids = col("ancestor_exec_ids", pa.list_(pa.string()))
        self.anc_bins = col("ancestor_binaries", pa.list_(pa.string())) if "ancestor_binaries" in self._cols else None
        self.anc_valid = valid_mask(self.anc_ids)
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
            return flat(self.events.column(name))
        return pa.nulls(self.events.num_rows, typ)

    @staticmethod
    def _distinct(arr: pa.Array) -> Distinct:
        """One hash pass (Arrow's dictionary encoding), then hash only the distinct strings."""
        enc = pc.dictionary_encode(arr)
        values = enc.dictionary
        ind = int_col(enc.indices, -1)
        rows = np.flatnonzero(ind >= 0)
        # new values get the next index, so a value's first row is where the running maximum grows
        grown = np.diff(np.maximum.accumulate(ind), prepend=-1) > 0
        first = np.flatnonzero(grown)
        return Distinct(values, hash_strings(values), first, rows, ind[rows])

    @staticmethod
    def _row_index(d: Distinct, n: int) -> np.ndarray:
        idx = np.full(n, -1, np.int64)
        idx[d.rows] = d.inv
        return idx

    def interned_binaries(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Interned ids of a binary column at some rows (only the distinct processes are interned)."""
        if name not in self._cols or not len(rows):
            return np.full(len(rows), -1, np.int32)
        return self._binaries.map(self.col(name, pa.string()).take(pa.array(rows)))

    def anc_first(self, rows: np.ndarray) -> pa.Array:
        """The first ancestor (the grandparent) of each row, NULL when none."""
        has = self.anc_nonempty[rows]
        if not has.any():
            return pa.nulls(len(rows), pa.string())
        firsts = flat(pc.list_element(self.anc_ids.take(pa.array(rows[has])), 0))
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
