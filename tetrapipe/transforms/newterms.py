"""New-terms and first-seen rules in a live batch: which matches are new (split out of :mod:`.detect`).

A ``new_terms:`` rule alerts on the first event of each combination of its
fields; a ``first_seen:`` rule also lets each key learn for a while first.
The mask statement gives every candidate row its term hash (``_t{i}``) and
key hash (``_k{i}``); this keeps the earliest of each and clears the others'
bits, remembering what it saw for the next batches.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tetrapipe.ruleset.plan import MASK_BITS


def drop_seen_terms(
    batch: pa.Table,
    rows: np.ndarray,
    arrays: list[np.ndarray],
    masks: dict[str, np.ndarray],
    term_rules: list[int],
    seen: OrderedDict[tuple[int, int], None],
    first: OrderedDict[tuple[int, int], int],
    learn: dict[int, int],
) -> None:
    """Clear the bits of new-terms matches whose combination was seen before (in this batch or earlier).

    The earliest match (by time, then event id) of a combination not seen
    yet keeps its bit and is remembered; ``arrays`` (the mask columns, one
    entry per row of ``rows``) are changed in place, and so are ``seen``
    (rule, term) and ``first`` (rule, key -> first time, for first-seen rules
    with a learning period in ``learn``); the caller bounds them.
    """
    rs, pos, terms, keys = [], [], [], []
    for i in term_rules:
        sel = np.flatnonzero(arrays[i // MASK_BITS] & (1 << (i % MASK_BITS)))
        if not len(sel):
            continue
        t = np.ma.asarray(masks[f"_t{i}"])[sel]
        valid = ~np.ma.getmaskarray(t)  # no term: not a new-terms candidate, kept as is
        rs.append(np.full(int(valid.sum()), i))
        pos.append(sel[valid])
        terms.append(np.ma.getdata(t)[valid])
        k = masks.get(f"_k{i}")
        # uint64 for every rule: a float64 filler would turn the concatenated key hashes into floats (lossy
        # above 2**53), and a key would then never equal its restored value after a restart
        keys.append(
            np.ma.getdata(np.ma.asarray(k)[sel])[valid].astype(np.uint64)
            if k is not None
            else np.zeros(int(valid.sum()), dtype=np.uint64)
        )
    if not rs:
        return
    r_all, pos_all, term_all = np.concatenate(rs), np.concatenate(pos), np.concatenate(terms)
    key_all = np.concatenate(keys)
    if not len(pos_all):
        return
    cand = batch.select(["time", "event_id"]).take(pa.array(rows[pos_all]))
    order = pc.sort_indices(
        cand, sort_keys=[("time", "ascending", "at_end"), ("event_id", "ascending", "at_end")]
    ).to_numpy()
    times = pc.cast(cand.column("time"), pa.int64()).take(pa.array(order))
    has_time = np.asarray(times.is_valid(), dtype=bool)
    us = np.asarray(times.fill_null(0), dtype=np.int64)
    r, t, p, k = r_all[order], term_all[order].astype(np.uint64), pos_all[order], key_all[order]
    # Python per distinct (rule, term) and (rule, key), not per candidate row (thousands: every exec of a
    # container image is one for a first-seen binary). Row by row, in this order, would have: set a first-seen
    # key's first time at its first timed row; kept the bit of a combination's first row only, if the
    # combination was not seen before and (first-seen rules) its key was no longer learning; left each
    # combination of the batch at the end of ``seen`` in the order of its last row.
    learns = np.isin(r, np.fromiter(learn, dtype=np.int64, count=len(learn))) & has_time
    if learns.any():
        rows_l = np.flatnonzero(learns)
        at, _ = _groups(r[rows_l], k[rows_l])
        for j in rows_l[np.sort(at)].tolist():
            first.setdefault((int(r[j]), int(k[j])), int(us[j]))
    first_at, group = _groups(r, t)
    last_at = np.zeros(len(first_at), dtype=np.int64)
    np.maximum.at(last_at, group, np.arange(len(r)))
    keep = np.zeros(len(r), dtype=bool)
    for u in np.argsort(last_at, kind="stable").tolist():
        j = int(first_at[u])
        key = (int(r[j]), int(t[j]))
        if key in seen:
            seen.move_to_end(key)
            continue
        seen[key] = None
        if key[0] in learn:  # a first-seen rule: not new while its key learns (no time: never new)
            if not has_time[j] or us[j] < first[(key[0], int(k[j]))] + learn[key[0]]:
                continue  # part of the baseline: remembered, not alerted
        keep[j] = True
    for i in np.unique(r[~keep]).tolist():
        drop = p[(r == i) & ~keep]
        arrays[i // MASK_BITS][drop] &= ~np.int64(1 << (i % MASK_BITS))


def _groups(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct pairs ``(a[i], b[i])``: each one's first position, and each position's pair number."""
    order = np.lexsort((b, a))  # stable: a pair's first position comes first among its own
    sa, sb = a[order], b[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (sa[1:] != sa[:-1]) | (sb[1:] != sb[:-1])
    group = np.empty(len(order), dtype=np.int64)
    group[order] = np.cumsum(starts) - 1
    return order[starts], group


__all__ = ["drop_seen_terms"]
