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
    times = pc.cast(cand.column("time"), pa.int64()).take(pa.array(order)).to_pylist()  # (None for no time)
    for r, t, p, k, us in zip(
        r_all[order].tolist(),
        term_all[order].tolist(),
        pos_all[order].tolist(),
        key_all[order].tolist(),
        times,
        strict=True,
    ):
        learning = False
        if r in learn:  # a first-seen rule: its key's first match starts the learning (no time: never new)
            learning = us is None or us < first.setdefault((r, k), us) + learn[r]
        key = (r, t)
        if key in seen:
            seen.move_to_end(key)
            arrays[r // MASK_BITS][p] &= ~(1 << (r % MASK_BITS))
            continue
        seen[key] = None
        if learning:  # part of the baseline: remembered, not alerted
            arrays[r // MASK_BITS][p] &= ~(1 << (r % MASK_BITS))


__all__ = ["drop_seen_terms"]
