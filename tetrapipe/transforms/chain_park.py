"""Step rows no chain can use yet, kept as Arrow (never as Python rows) until one could.

Every partial chain of a sequence rule lives under the key of its first
step's event (the key never changes as the chain advances), so a row of a
later step can only advance a chain, or be picked up by one, under a key of
its own (:func:`row_keys_touch`) that is either the key of a chain still open
or of a first step in the same batch. On a busy node almost no row qualifies:
every exec of a binary below ``/usr/bin`` is a second step of
``chain-bindir-write-exec``, every outbound connect a second step of
``chain-cred-read-new-dest``, and none of them has a chain to join. Such a row
would only be *held* (for its step's predecessor arriving late, within the
rule's tolerance); here it is parked instead: a position in the batch's Arrow
table, found again with one vectorized membership test per batch
(:meth:`Parked.take_touching`) when a first step with its key shows up.

Converting those rows to Python dicts, indexing them by key and expiring them
one by one was most of what the chain rules cost; this keeps them columnar.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def key_columns(by: str, columns: tuple[str, ...]) -> tuple[str, ...]:
    """The columns a row's chain keys are read from (:func:`row_keys_touch`)."""
    return ("exec_id", "parent_exec_id", "ancestor_exec_ids") if by == "lineage" else columns


def present(table: pa.Table, columns: tuple[str, ...]) -> list[str]:
    """``columns`` that ``table`` has (a missing one reads as NULL)."""
    return [c for c in columns if c in table.schema.names]


def _strings(table: pa.Table, column: str) -> pa.ChunkedArray | pa.Array:
    if column not in table.schema.names:
        return pa.nulls(table.num_rows, pa.string())
    col = table.column(column)
    return col if pa.types.is_string(col.type) else col.cast(pa.string())


def own_keys(table: pa.Table, columns: tuple[str, ...]) -> pa.ChunkedArray | pa.Array:
    """Each row's own chain key (NULL when it has none): the engine's ``_own_key``, vectorized.

    One column: its value (an empty string is no key); several: their values
    joined by ``/``, NULL unless all are set and non-empty.
    """
    parts = []
    for c in columns:
        col = _strings(table, c)
        parts.append(pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col))
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, "/", null_handling="emit_null")


def _hits(values: pa.ChunkedArray | pa.Array, keys: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.is_in(values, value_set=keys), False), dtype=bool)


def row_keys_touch(table: pa.Table, by: str, columns: tuple[str, ...], keys: pa.Array) -> np.ndarray:
    """Per row: does any key under which it may continue a chain (the engine's ``_keys``) lie in ``keys``?

    ``lineage``: the row's exec_id, its parent's or an ancestor's; otherwise its own key.
    """
    if by != "lineage":
        return _hits(own_keys(table, columns), keys)
    # one lookup over the exec ids, the parents' and the ancestors' together: each builds the set of keys anew
    parts = [_strings(table, "exec_id"), _strings(table, "parent_exec_id")]
    lists = None
    if "ancestor_exec_ids" in table.schema.names and not pa.types.is_null(table.schema.field("ancestor_exec_ids").type):
        lists = table.column("ancestor_exec_ids")
        if isinstance(lists, pa.ChunkedArray):
            lists = lists.combine_chunks()
        flat = pc.list_flatten(lists)
        parts.append(flat if pa.types.is_string(flat.type) else flat.cast(pa.string()))
    hit = _hits(
        pa.chunked_array(
            [c for p in parts for c in (p.chunks if isinstance(p, pa.ChunkedArray) else [p])], pa.string()
        ),
        keys,
    )
    n = table.num_rows
    out = hit[:n] | hit[n : 2 * n]
    ancestors = hit[2 * n :]
    if lists is not None and ancestors.any():
        parents = np.asarray(pc.list_parent_indices(lists))
        out[parents[ancestors]] = True
    return out


@dataclass
class _Chunk:
    """Parked rows of one rule from one batch: positions in ``table``, in the engine's order."""

    table: pa.Table
    idx: np.ndarray  # row positions in table
    us: np.ndarray  # event time, microseconds
    bits: np.ndarray  # the steps each row matched
    keyed: pa.Table  # the key columns of those rows (what unparking tests)

    def subset(self, mask: np.ndarray) -> _Chunk:
        return _Chunk(self.table, self.idx[mask], self.us[mask], self.bits[mask], self.keyed.filter(pa.array(mask)))


class Parked:
    """Parked step rows per rule, oldest batch first."""

    def __init__(self, rules: int) -> None:
        self._chunks: list[list[_Chunk]] = [[] for _ in range(rules)]
        self.rows = 0

    def add(self, r: int, table: pa.Table, idx: np.ndarray, us: np.ndarray, bits: np.ndarray, keyed: pa.Table) -> None:
        """Park rows ``idx`` of ``table`` (``keyed``: their key columns, :func:`key_columns`)."""
        if len(idx):
            self._chunks[r].append(_Chunk(table, idx, us, bits, keyed))
            self.rows += len(idx)

    def has(self, r: int) -> bool:
        return bool(self._chunks[r])

    def take_touching(
        self, r: int, by: str, columns: tuple[str, ...], keys: pa.Array
    ) -> list[tuple[pa.Table, np.ndarray, np.ndarray, np.ndarray]]:
        """Unpark, oldest first, the rows of rule ``r`` with a key in ``keys``: ``(table, idx, us, bits)``."""
        kept: list[_Chunk] = []
        out = []
        for c in self._chunks[r]:
            hit = row_keys_touch(c.keyed, by, columns, keys)
            if hit.any():
                out.append((c.table, c.idx[hit], c.us[hit], c.bits[hit]))
                self.rows -= int(hit.sum())
                c = c.subset(~hit)
            if len(c.idx):
                kept.append(c)
        self._chunks[r] = kept
        return out

    def expire(self, r: int, before_us: int) -> None:
        """Drop rule ``r``'s rows older than ``before_us`` (their predecessor can no longer be in tolerance)."""
        kept = []
        for c in self._chunks[r]:
            live = c.us >= before_us
            if not live.all():
                self.rows -= int((~live).sum())
                c = c.subset(live)
            if len(c.idx):
                kept.append(c)
        self._chunks[r] = kept

    def drop_oldest(self, k: int) -> None:
        """Evict ``k`` rows (the bound on the engine's state), the oldest batch's first, across rules."""
        while k > 0 and self.rows:
            r, c = min(((r, cs[0]) for r, cs in enumerate(self._chunks) if cs), key=lambda rc: int(rc[1].us.min()))
            n = min(k, len(c.idx))
            if n == len(c.idx):
                self._chunks[r].pop(0)
            else:
                keep = np.arange(len(c.idx)) >= n
                self._chunks[r][0] = c.subset(keep)
            self.rows -= n
            k -= n

    def nbytes(self) -> int:
        """Bytes of the Arrow tables parked rows keep alive."""
        tables = {id(c.table): c.table for cs in self._chunks for c in cs}
        return sum(t.nbytes for t in tables.values())


__all__ = ["Parked", "key_columns", "own_keys", "present", "row_keys_touch"]
