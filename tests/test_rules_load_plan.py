"""Loading many rules, cheaper (issue 19): what the shortcuts must not change.

The mask plan's rewrite reads DuckDB parse trees serialized without their
default fields, answers literal ``LIKE`` patterns with string methods, shares
untouched subtrees instead of copying them, and is written on a thread of its
own while the command goes on; the loader types its expressions with one
``DESCRIBE`` per 64. Each test here checks one of those against the plain
meaning: the same bits as the ILIKE the rule wrote, the same plan however
often it is written, the same types and errors.
"""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from tetrapipe.errors import UsageProblem
from tetrapipe.ruleset import RulesError, load_ruleset
from tetrapipe.ruleset.compiler import Validator
from tetrapipe.ruleset.model import Rule
from tetrapipe.schema import EVENT_SCHEMA
from tetrapipe.transforms.chain import load_detector
from tetrapipe.transforms.detect import Detector
from tetrapipe.transforms.maskplan import branch_predicates, kind_mask_sql
from tetrapipe.transforms.sqltree import TREES, string_constant

#: patterns and their escape: literal (prefix, suffix, substring, whole), wildcards, escapes, empty, doubled %
PATTERNS = [
    ("%curl%", None),
    ("curl%", None),
    ("%curl", None),
    ("curl", None),
    ("%%cu%%", None),
    ("%", None),
    ("", None),
    ("c_rl", None),
    ("%c%l%", None),
    ("%100\\%%", "\\"),
    ("%a\\_b%", "\\"),
    ("%x!%y%", "!"),
    ("%İstanbul%", None),
    ("%STRASSE%", "\\"),
    ("%it''s%", None),
    ("%(a|b)*.+?[x]^$\\\\%", "\\"),
    ("%\t%", None),
]
STRINGS = ["curl", "CURL -s", "/usr/bin/curl", "xcurlx", "100% sure", "a_b", "axb", "x!%y", "istanbul", "İstanbul"]
STRINGS += ["straße", "it's", "(a|b)*.+?[x]^$\\", "tab\there", "", None, "c", "cu"]


def _rules(root: Path, conditions: list[str], kinds: str = "[process_exec]") -> list[Rule]:
    root.mkdir(parents=True, exist_ok=True)
    for n, cond in enumerate(conditions):
        (root / f"r{n:03d}.yaml").write_text(
            textwrap.dedent(
                f"""\
                id: r{n:03d}
                title: rule {n}
                description: a pattern of the rewrite tests
                severity: low
                event: {kinds}
                condition: "{cond.replace(chr(92), chr(92) * 2).replace('"', chr(92) + '"')}"
                output: "{{process_binary}}"
                """
            ),
            encoding="utf-8",
        )
    rs = load_ruleset([root])
    assert not rs.errors, rs.errors
    return sorted(rs.enabled(), key=lambda r: r.id)


def _conditions() -> list[str]:
    out = []
    for pattern, escape in PATTERNS:
        esc = f" ESCAPE '{escape}'" if escape else ""
        out.append(f"concat_ws(' ', process_binary, arguments) ILIKE '{pattern}'{esc}")
        out.append(f"arguments NOT ILIKE '{pattern}'{esc}")
    # many literal tests of one operand: merged into one regular expression
    out.append(" OR ".join(f"concat_ws(' ', process_binary, arguments) ILIKE '{p}'" for p, e in PATTERNS if not e))
    return out


def test_rewritten_tests_give_the_bits_the_rules_wrote(tmp_path: Path) -> None:
    """Every rewritten test (string methods, merged regular expression, hoisted operands) equals the rule's own."""
    rules = _rules(tmp_path / "rules", _conditions())
    tests, shared = branch_predicates(rules)
    assert shared, "the command line operand is shared by many rules: hoisted"
    assert any("starts_with(" in t for t in tests) and any("regexp_matches(" in t for t in tests)
    con = duckdb.connect()
    con.register("_e", EVENT_SCHEMA.empty_table())
    con.execute("CREATE TABLE events AS SELECT * FROM _e")
    rows = [(b, a) for b in STRINGS for a in STRINGS]
    con.executemany("INSERT INTO events (process_binary, arguments) VALUES (?, ?)", rows)
    hoisted = f"SELECT *{''.join(', ' + x for x in shared)} FROM events"
    wrote = ", ".join(f"({r.compiled.condition})" for r in rules)
    planned = ", ".join(f"({t})" for t in tests)
    assert (
        con.execute(f"SELECT {wrote} FROM events").fetchall()
        == con.execute(f"SELECT {planned} FROM ({hoisted})").fetchall()
    )


def test_a_plan_written_twice_is_the_same_and_leaves_the_parsed_trees_alone(tmp_path: Path) -> None:
    """The rewrite shares untouched subtrees with the parsed trees, which every branch of a plan reads: none changes them.

    One rule is of two kinds: in the exec branch its operand is shared with
    the other rules (read from a hoisted column), in the kprobe branch it is alone
    and must be computed there; a tree rewritten in place for the first branch
    would make the second read a column it does not have.
    """
    conditions = _conditions()
    rules = _rules(tmp_path / "exec", conditions[1:])
    both = f"{conditions[0]} AND arguments IS NOT NULL"  # the ILIKE under a node the rewrite goes through
    rules += _rules(tmp_path / "both", [both], kinds="[process_exec, process_kprobe]")
    first = kind_mask_sql(rules, "_batch")
    assert first.kinds == ("process_exec", "process_kprobe")
    assert first == kind_mask_sql(rules, "_batch")
    con = duckdb.connect()
    batch = EVENT_SCHEMA.empty_table().append_column("_i", pa.array([], pa.int64()))
    for slot, columns in zip(first.slots, first.columns, strict=True):
        con.register(slot, batch.select([c for c in batch.schema.names if c in columns]))
    for branch in first.branches:
        assert con.execute(branch).fetchall() == []  # binds: reads only what its slot and projection hold
    assert "_tp_h" not in first.branches[1]  # one test of the operand there: nothing to share


def test_an_empty_string_constant_reads_as_one() -> None:
    """Trees are read without their default fields: an empty string constant has no ``text`` then."""
    parsed = TREES.parse("process_binary = ''")
    assert parsed is not None
    assert string_constant(parsed["expr"]["right"]) == ""


def test_primed_types_are_the_ones_bound_one_by_one() -> None:
    """Priming (one DESCRIBE per 64 expressions) learns the type names that binding each alone gives."""
    exprs = ["process_binary ILIKE '%x%'", "pid + 1", "ancestor_binaries", "NULL", "{'a': pid, 'b': [arguments]}"]
    exprs += ["time", "pid::DECIMAL(10,2)", "map([pid], [uid])", "list_filter(ancestor_binaries, lambda a: a = 'x')"]
    primed = Validator()
    primed.prime(exprs, [])
    alone = Validator()
    for expr in exprs:
        assert primed._types[expr] == alone.type_of(expr)
    assert primed._types["ancestor_binaries"] == "VARCHAR[]"


def test_a_detector_plans_on_a_thread_and_tests_the_same(tmp_path: Path) -> None:
    """The plan written on a thread is the plan written in line, and the detector waits for it before a batch."""
    rules = _rules(tmp_path / "rules", _conditions())
    detector = Detector(rules)
    try:
        assert detector._kind_mask == kind_mask_sql(rules, "_batch")
        assert not [t for t in threading.enumerate() if t.name == "tetrapipe-rule-plan" and t.is_alive()]
    finally:
        detector.close()


def test_a_bad_rule_still_stops_loading_with_its_place(tmp_path: Path) -> None:
    """Planning on a thread changes nothing for rules in error: loading stops, naming the file and line."""
    root = tmp_path / "rules"
    _rules(root, ["process_binary ILIKE '%sh'"])
    (root / "bad.yaml").write_text(
        "id: bad\ntitle: bad\ndescription: x\nseverity: low\nevent: process_exec\n"
        "condition: regexp_matches(process_binary, '(')\noutput: x\n",
        encoding="utf-8",
    )
    with pytest.raises(RulesError) as caught:
        load_detector(root)
    assert "bad.yaml:6" in str(caught.value)
    with pytest.raises(UsageProblem):
        load_detector(tmp_path / "missing")
