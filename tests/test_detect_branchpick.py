"""The choice between a kind's two equivalent mask statements, measured (the alerts: tests/test_detect_scale.py)."""

from __future__ import annotations

from tetrapipe.transforms.branchpick import CLEAR, MIN_ROWS, RECHECK, TRIALS, BranchPick


def _run(pick: BranchPick, n: int, cost: list[float], rows: int = 1_000) -> int:
    """One batch of kind ``n``: the variant picked, recorded at ``cost[variant]`` seconds per 1,000 rows."""
    v = pick.variant(n, rows)
    pick.record(n, v, rows, cost[v] * rows / 1_000)
    return v


def test_the_cheaper_variant_is_kept_after_both_are_measured() -> None:
    for cost, want in (([1.0, 1.4], 0), ([1.4, 1.0], 1)):
        pick = BranchPick([True])
        seen = [_run(pick, 0, cost) for _ in range(2 * TRIALS)]
        assert seen.count(0) == seen.count(1) == TRIALS  # alternately, while deciding
        assert pick.chosen(0) == want
        assert {_run(pick, 0, cost) for _ in range(20)} == {want}


def test_a_clear_difference_decides_after_one_run_of_each() -> None:
    pick = BranchPick([True])
    assert [_run(pick, 0, [1.0, CLEAR * 1.01]) for _ in range(2)] == [0, 1]
    assert pick.chosen(0) == 0


def test_small_parts_and_kinds_without_a_variant_do_not_count() -> None:
    pick = BranchPick([True, False])
    assert pick.variant(0, MIN_ROWS - 1) == 0
    pick.record(0, 0, MIN_ROWS - 1, 99.0)
    assert pick.variant(0, 5_000) == 0
    for _ in range(RECHECK + 5):
        assert pick.variant(1, 5_000) == 0
        pick.record(1, 0, 5_000, 1.0)
    assert pick.chosen(1) == 0


def test_the_choice_is_measured_again_after_recheck_runs() -> None:
    pick = BranchPick([True])
    while pick.chosen(0) is None:
        _run(pick, 0, [1.0, 3.0])
    for _ in range(RECHECK):
        assert _run(pick, 0, [1.0, 3.0]) == 0
    assert pick.chosen(0) is None  # measuring again: the data may have changed
    while pick.chosen(0) is None:
        _run(pick, 0, [3.0, 1.0])
    assert pick.chosen(0) == 1
