"""A kind's branch tests its rules as they read on rows of that kind (kindfold.specialize).

Every row of a kind's branch has that kind, so a rule's tests of the ``kind``
column are constants there, and its parts for other kinds fold away. These
tests hold the folding to SQL's three-valued logic (every combination of
true, false and NULL operands, evaluated by DuckDB against the original on
rows of the kind), show what it leaves alone (a lambda's own ``kind``), and
check that the shipped rules' branches no longer set up, nor read the columns
of, the other kinds' halves. That the plan's bits equal the flat statement's
on real and generated events is tests/test_detect_scale.py's to show.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import duckdb
import pytest

from tetrapipe.ruleset import load_ruleset
from tetrapipe.transforms.kindfold import specialize
from tetrapipe.transforms.maskplan import kind_mask_sql
from tetrapipe.transforms.sqltree import TREES

REPO = Path(__file__).resolve().parent.parent

CASES = [
    "(kind = 'process_exec' AND a) OR (kind = 'process_kprobe' AND b)",
    "kind <> 'process_exec' AND a",
    "'process_exec' = kind OR a",
    "kind IN ('process_kprobe', 'process_lsm') AND a OR b",
    "kind NOT IN ('process_kprobe') AND (a OR NOT (kind = 'process_exec'))",
    "kind IN ['process_exec', 'tls'] AND a",
    "NOT (kind = 'process_kprobe' OR a) AND (b OR kind = 'process_exec')",
    "coalesce(kind = 'process_kprobe', a) AND b",
    "CASE WHEN kind = 'process_exec' THEN a ELSE b END",
    "(a AND kind = 'process_kprobe') IS NOT TRUE",
    "len(list_filter(['process_exec'], lambda kind: kind = 'process_kprobe')) = 0 AND a",
    "a OR true",
    "b AND false OR a",
    "NOT (len(list_filter(['/a/', '/b/', ''], lambda d: starts_with(x, d))) > 0) OR a",
    "(len(list_filter(['/a/', '/b/'], lambda d: starts_with(x, d))) > 0) IS NOT TRUE AND kind = 'process_exec'",
    "len(list_filter(['/a/'], lambda x: starts_with(x, x))) > 0",
]


def _rendered(expr: str, kind: str) -> str:
    parsed = TREES.parse(expr)
    assert parsed is not None
    text = TREES.render(parsed, specialize(parsed["expr"], kind))
    assert text is not None
    return text


@pytest.mark.parametrize("kind", ["process_exec", "process_kprobe", "tls"])
def test_specialized_tests_equal_the_originals_on_rows_of_the_kind_in_three_valued_logic(kind: str) -> None:
    con = duckdb.connect()
    values = [True, False, None]
    paths = ["/a/x", "/b/", "/c/a/", "", None]
    con.execute("CREATE TABLE t (kind VARCHAR, a BOOLEAN, b BOOLEAN, x VARCHAR)")
    rows = [(kind, a, b, x) for a, b, x in itertools.product(values, values, paths)]
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows)
    for expr in CASES:
        folded = _rendered(expr, kind)
        got = con.execute(f"SELECT a, b, x, ({folded}) FROM t ORDER BY ALL").fetchall()
        want = con.execute(f"SELECT a, b, x, ({expr}) FROM t ORDER BY ALL").fetchall()
        assert got == want, (kind, expr, folded)


def test_a_below_these_directories_test_becomes_prefix_tests_of_the_column() -> None:
    assert _rendered(CASES[13], "process_exec") == (
        "((NOT COALESCE((starts_with(x, '/a/') OR starts_with(x, '/b/') OR starts_with(x, '')), false)) OR a)"
    )
    assert "list_filter" in _rendered(CASES[15], "process_exec")  # the lambda's own x: left as it is


def test_kind_tests_fold_away_and_a_lambdas_own_kind_is_left_alone() -> None:
    assert _rendered(CASES[0], "process_exec") == "a"
    assert _rendered(CASES[0], "process_kprobe") == "b"
    assert _rendered(CASES[0], "tls") == "false"
    assert _rendered(CASES[1], "process_exec") == "false"
    assert _rendered(CASES[5], "process_kprobe") == "false"
    assert "lambda kind: (kind = 'process_kprobe')" in _rendered(CASES[10], "process_exec")


def test_the_shipped_rules_exec_branch_reads_nothing_of_their_kprobe_and_connect_halves() -> None:
    """crypto-miner, reverse-shell and privilege-escalation-setuid cover execs and kprobes in one condition:
    the exec branch keeps their exec half only (no kind test left in it, none of the kprobe half's columns)."""
    rs = load_ruleset([REPO / "rules"])
    rules = [r for r in rs.enabled() if r.sequence is None]
    plan = kind_mask_sql(rules, "_batch")
    n = plan.kinds.index("process_exec")
    for sql in (plan.branches[n], plan.by_row[n]):
        assert "kind =" not in sql and "kind IN" not in sql and "'process_kprobe'" not in sql
    assert not {"args", "file_path", "function_name", "daddr", "dport"} & plan.columns[n]
    k = plan.kinds.index("process_kprobe")
    assert "regexp_replace(process_name" not in plan.by_row[k]  # crypto-miner's exec half (its name test)
