"""Which of two equivalent mask statements a kind runs: the one measured cheaper on the batches seen.

The per-kind plan (:mod:`tetrapipe.transforms.maskplan`) can test a rule that
reads no per-event column once per distinct value of the columns it reads (a
``DISTINCT`` and a join back) or on every row. Both give the same bits; which
costs less depends on the data and the rules, not on anything the planner
knows: 160 converted SigmaHQ rules over a few dozen distinct command lines
per thousand execs halve the exec statement's time per distinct value, while
the 20 shipped rules over kprobe rows that are nearly all distinct pay the
grouping and the join for nothing (the per-row statement took 60% of the
time on the same batch). So each kind runs both, alternately, on its first
batches, and keeps the one that cost less CPU per row (at once if one run of
each tells them clearly apart); it measures again every :data:`RECHECK` runs,
in case the data changed.

Only speed depends on this choice, never an alert: the statements' bits are
the same (``tests/test_detect_scale.py`` holds them to it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: most measured runs of each variant before a choice
TRIALS = 3
#: one variant this many times as costly per row as the other after a run of each: the other, at once
CLEAR = 2.0
#: fewer rows than this in a kind's part of a batch: run the current choice, measure nothing (too noisy)
MIN_ROWS = 20
#: runs of a kind after which both variants are measured again
RECHECK = 500


@dataclass
class _Kind:
    chosen: int = 0
    #: per variant: measured runs, their CPU seconds and rows
    runs: list[int] = field(default_factory=lambda: [0, 0])
    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0])
    rows: list[int] = field(default_factory=lambda: [0, 0])
    deciding: bool = True
    since: int = 0


class BranchPick:
    """Per kind ``n``: variant 0 (the plan's branch) or 1 (its row-by-row alternative), from measured CPU time.

    ``alternatives[n]``: whether kind ``n`` has a second variant at all.
    """

    def __init__(self, alternatives: list[bool]) -> None:
        self._alternatives = list(alternatives)
        self._kinds = [_Kind(deciding=alt) for alt in alternatives]

    def variant(self, n: int, rows: int) -> int:
        """The variant to run for kind ``n``'s ``rows`` rows (the one measured less often while deciding)."""
        k = self._kinds[n]
        if not k.deciding or rows < MIN_ROWS:
            return k.chosen
        return 0 if k.runs[0] <= k.runs[1] else 1

    def record(self, n: int, variant: int, rows: int, seconds: float) -> None:
        """Kind ``n`` ran ``variant`` over ``rows`` rows in ``seconds`` of CPU time (its execution alone)."""
        k = self._kinds[n]
        if not self._alternatives[n]:
            return
        if not k.deciding:
            k.since += 1
            if k.since >= RECHECK:
                self._kinds[n] = _Kind(chosen=k.chosen)
            return
        if rows < MIN_ROWS:
            return
        k.seconds[variant] += seconds
        k.rows[variant] += rows
        k.runs[variant] += 1
        if min(k.runs) == 0:
            return
        per_row = [s / r for s, r in zip(k.seconds, k.rows, strict=True)]
        cheaper = 1 if per_row[1] < per_row[0] else 0
        if min(k.runs) >= TRIALS or per_row[1 - cheaper] >= CLEAR * per_row[cheaper]:
            k.chosen = cheaper
            k.deciding = False
            k.since = 0

    def chosen(self, n: int) -> int | None:
        """Kind ``n``'s choice, or None while it is being measured (for tests and stats)."""
        k = self._kinds[n]
        return None if k.deciding else k.chosen


__all__ = ["CLEAR", "MIN_ROWS", "RECHECK", "TRIALS", "BranchPick"]
