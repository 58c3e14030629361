"""New-terms and first-seen matches of a batch, decided per distinct combination: as if row by row.

``drop_seen_terms`` once looped over every candidate row in Python (every exec of
a container image is a candidate of a first-seen binary rule). It now works per
distinct (rule, term) and (rule, key); this holds it to the row-by-row rule it
replaced, on random batches full of repeats, rows without a time, rules that
learn and memories that already hold some of the batch's values.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import OrderedDict

import numpy as np
import pyarrow as pa

from tetrapipe.ruleset.plan import MASK_BITS
from tetrapipe.transforms.newterms import drop_seen_terms


def _row_by_row(
    times: list[int | None],
    ids: list[str],
    cands: list[tuple[int, int, int, int]],
    arrays: list[np.ndarray],
    seen: OrderedDict,
    first: OrderedDict,
    learn: dict[int, int],
) -> None:
    """The rule itself: candidates ``(rule, row, term, key)`` in (time, event id) order, one at a time."""
    order = sorted(cands, key=lambda c: (times[c[1]] is None, times[c[1]] or 0, ids[c[1]]))
    for r, p, t, k in order:
        us = times[p]
        learning = False
        if r in learn:
            learning = us is None or us < first.setdefault((r, k), us) + learn[r]
        if (r, t) in seen:
            seen.move_to_end((r, t))
            arrays[r // MASK_BITS][p] &= ~(1 << (r % MASK_BITS))
            continue
        seen[(r, t)] = None
        if learning:
            arrays[r // MASK_BITS][p] &= ~(1 << (r % MASK_BITS))


def test_the_same_bits_and_memories_as_row_by_row() -> None:
    cases = [_case(seed) for seed in range(60)]
    # not vacuous: bits kept and cleared, first-seen keys that learned, rows without a time
    assert all(sum(c[k] for c in cases) > 10 for k in ("kept", "cleared", "learning", "untimed"))


def _case(seed: int) -> dict[str, int]:
    """One random batch through both; what it exercised."""
    rnd = random.Random(seed)
    n_rules = rnd.choice([3, 70])  # one mask column, or two
    term_rules = sorted(rnd.sample(range(n_rules), 3))
    learn = {i: rnd.choice([10, 1_000]) for i in term_rules if rnd.random() < 0.5}
    n = rnd.randint(1, 60)
    times = [None if rnd.random() < 0.1 else rnd.randint(0, 2_000) for _ in range(n)]
    ids = [f"e{rnd.randint(0, 5):02d}-{i:03d}" for i in range(n)]  # unique, not in row order
    batch = pa.table(
        {
            "time": pa.array(
                [None if t is None else dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=t) for t in times],
                pa.timestamp("us"),
            ),
            "event_id": ids,
        }
    )
    rows = np.array(sorted(rnd.sample(range(n), rnd.randint(1, n))), dtype=np.int64)  # the rows with a bit
    groups = (n_rules + MASK_BITS - 1) // MASK_BITS
    arrays = [np.zeros(len(rows), dtype=np.int64) for _ in range(groups)]
    masks: dict[str, np.ndarray] = {}
    cands = []
    for i in term_rules:
        bit = rnd.random() < 0.8
        terms = np.ma.masked_all(len(rows), dtype=np.uint64)
        keys = np.zeros(len(rows), dtype=np.uint64)
        for j in range(len(rows)):
            if bit and rnd.random() < 0.7:
                arrays[i // MASK_BITS][j] |= 1 << (i % MASK_BITS)
                keys[j] = rnd.randint(0, 3) + 2**63  # above 2**53: a float would lose them
                if rnd.random() < 0.9:  # else no term: kept as it is
                    terms[j] = rnd.randint(0, 4) + 2**63
                    cands.append((i, j, int(terms[j]), int(keys[j])))
        masks[f"_t{i}"] = terms
        if i in learn:
            masks[f"_k{i}"] = np.ma.asarray(keys)
    seen: OrderedDict = OrderedDict(((i, rnd.randint(0, 4) + 2**63), None) for i in term_rules if rnd.random() < 0.5)
    first: OrderedDict = OrderedDict(((i, 2**63), rnd.randint(0, 500)) for i in learn if rnd.random() < 0.5)
    want_arrays = [a.copy() for a in arrays]
    want_seen, want_first = OrderedDict(seen), OrderedDict(first)
    row_times = [times[p] for p in rows]
    row_ids = [ids[p] for p in rows]
    _row_by_row(row_times, row_ids, cands, want_arrays, want_seen, want_first, learn)
    drop_seen_terms(batch, rows, arrays, masks, term_rules, seen, first, learn)
    assert [a.tolist() for a in arrays] == [a.tolist() for a in want_arrays]
    assert list(seen.items()) == list(want_seen.items())  # the LRU order too: it decides what is forgotten
    assert list(first.items()) == list(want_first.items())
    kept = sum(1 for r, p, _t, _k in cands if want_arrays[r // MASK_BITS][p] >> (r % MASK_BITS) & 1)
    learning = sum(
        1
        for r, p, _t, k in cands
        if r in learn and (row_times[p] is None or row_times[p] < want_first.get((r, k), -(2**62)) + learn[r])
    )
    return {
        "kept": kept,
        "cleared": len(cands) - kept,
        "learning": learning,
        "untimed": sum(1 for _r, p, _t, _k in cands if row_times[p] is None),
    }
