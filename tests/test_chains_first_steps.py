"""The chain engine's shortcut for rows that only start a chain (``ChainEngine._visit``) must never change an alert.

Most step rows a busy node sends the engine are first steps and nothing else
(every outbound connection of a container starts ``chain-reverse-shell``);
they are read as the few columns a partial chain keeps rather than as whole
rows. These tests feed random streams in which most rows are such first
steps, interleaved with later steps, ``until`` rows and rows of several
rules, over keys that collide, in random micro-batches, through the engine
with the shortcut (and parking) and through its plain path (every row whole,
through ``_one``), and want the same alerts, state and evictions.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from test_chains_park import _run, _shapes, _stream

from tetrapipe.ruleset.model import Rule
from tetrapipe.transforms.chains import ChainEngine


def _first_heavy(rng: random.Random, rules: list[Rule], n: int, jitter_s: float) -> list[dict[str, Any]]:
    """:func:`_stream`'s rows with most of them made a first step of one rule only."""
    rows = _stream(rng, rules, n, jitter_s)
    for row in rows:
        if rng.random() < 0.7:
            only = rng.randrange(len(rules))
            for r in range(len(rules)):
                row[f"_q{r}"] = 1 if r == only else 0
    return rows


def test_random_first_step_heavy_streams_alert_the_same_with_the_shortcut_and_without(tmp_path: Path) -> None:
    rules = _shapes(tmp_path)
    alerts = 0
    for seed in range(60):
        rng = random.Random(seed)
        n = rng.choice([5, 40, 150, 300])
        rows = _first_heavy(rng, rules, n, rng.choice([0.0, 0.5, 0.9]))
        cuts = sorted({0, n, *(rng.randrange(n + 1) for _ in range(rng.randint(0, 12)))})
        got, state, _ = _run(rules, rows, cuts, park=True)
        want, want_state, _ = _run(rules, rows, cuts, park=False)
        assert got == want and state == want_state, seed
        alerts += len(got)
    assert alerts > 300  # first steps did start chains that completed


def test_a_first_step_keeps_only_the_slimmed_columns_and_its_key(tmp_path: Path) -> None:
    """The partial chain a first-step-only row starts holds what ``_slimmed`` keeps of the whole row, no more."""
    rules = _shapes(tmp_path)
    rng = random.Random(7)
    rows = _first_heavy(rng, rules, 200, 0.0)
    fast, plain = ChainEngine(rules), ChainEngine(rules, park=False)
    from test_chains_park import _table

    fast.feed(_table(fast, rows))
    plain.feed(_table(plain, rows))
    assert list(fast._partials) == list(plain._partials)  # same chains under the same keys, in the same order
    for key, chain in plain._partials.items():
        assert fast._partials[key].rows == chain.rows
        assert (fast._partials[key].start_us, fast._partials[key].last_us) == (chain.start_us, chain.last_us)
    assert len(fast._partials) > 20
