"""Rules at scale (issue 19): the per-kind plan alerts exactly like one rule at a time, on real and generated events.

The plan (:mod:`tetrapipe.transforms.maskplan`) rewrites conditions (ILIKE as
LIKE/contains on a lowered operand computed once per kind), tests rules per
kind and per distinct combination of the columns they read. Each of these
could change an alert; these tests compare, bit for bit and alert for alert,
with the flat one-statement mask (``mask_sql``) and with each rule run alone.
"""

from __future__ import annotations

import itertools
import logging
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from conftest import REAL_LOGS, REPO

from tetrapipe.ruleset import load_ruleset
from tetrapipe.ruleset.model import Rule
from tetrapipe.ruleset.plan import group_sql, mask_sql, match_sql, rule_columns, rules_table_sql
from tetrapipe.transforms.ancestry import AncestryTransform
from tetrapipe.transforms.branchpick import BranchPick
from tetrapipe.transforms.detect import Detector
from tetrapipe.transforms.maskplan import branch_predicates, kind_mask_sql, split_by_kind
from tetrapipe.transforms.normalize import normalize_lines

#: words the generated log and the samples contain (and some they do not), in several cases
WORDS = ["curl", "CURL", "sh -c", "python", "kubectl", "healthz", "/etc/passwd", "wget", "İstanbul", "it's", "x_y"]


def _lib() -> str:
    return textwrap.dedent(
        """\
        description: lists and macros of the synthetic rules
        lists:
          s_shells: {description: shells, items: [sh, bash, dash, zsh]}
          s_fetchers: {description: downloaders, items: [curl, wget]}
        macros:
          s_cmd: {description: the command line, condition: "concat_ws(' ', process_binary, arguments)"}
          s_is_shell: {description: a shell, condition: "process_name IN @s_shells"}
          s_in_pod: {description: in a pod, condition: container_id IS NOT NULL}
          s_fetching: {description: a fetch, condition: "@s_cmd ILIKE '%curl%' OR @s_cmd ILIKE '%WGET%'"}
        """
    )


def _conditions() -> list[tuple[str, str]]:
    """(event kinds, condition): shared operands, lists, macros, escapes, NULLs, lambdas, unique columns."""
    out: list[tuple[str, str]] = []
    for n, w in enumerate(WORDS):
        lit = w.replace("'", "''").replace("_", "\\_")
        kinds = "[process_exec]" if n % 3 else "[process_exec, process_kprobe]"
        out.append((kinds, f"@s_cmd ILIKE '%{lit}%' ESCAPE '\\'"))
        out.append((kinds, f"process_binary ILIKE '%{lit}' ESCAPE '\\' OR @s_cmd ILIKE '{lit}%' ESCAPE '\\'"))
        out.append(("[process_exec]", f"@s_is_shell AND NOT (@s_cmd ILIKE '%{lit}%' ESCAPE '\\')"))
    out += [
        ("[process_exec]", "@s_fetching AND @s_in_pod"),
        ("[process_exec]", "@s_fetching AND NOT @s_in_pod"),
        ("[process_exec]", "lower(process_binary) IN ('/bin/sh', '/usr/bin/curl') AND lower(process_binary) <> ''"),
        ("[process_exec]", "parent_binary ILIKE '%sh' AND cwd ILIKE '%tmp%'"),
        ("[process_exec]", "process_binary ILIKE '%/%/%' OR arguments ILIKE '_%'"),
        ("[process_exec]", "arguments ILIKE '%\\%%' ESCAPE '\\' OR arguments ILIKE '%a%b%'"),
        ("[process_exec]", "coalesce(arguments, '') ILIKE '' OR arguments IS NULL"),
        ("[process_exec]", "len(list_filter(ancestor_binaries, lambda a: a ILIKE '%sh')) > 0"),
        ("[process_exec]", "list_has_any(ancestor_binaries, ['/bin/sh', '/usr/bin/bash'])"),
        ("[process_exec]", "regexp_matches(coalesce(arguments, ''), '(^|\\s)-c(\\s|$)')"),
        ("[process_exec]", "pid % 2 = 0 AND @s_cmd ILIKE '%e%'"),
        ("[process_exec]", "time IS NOT NULL AND process_binary ILIKE '%BIN%'"),
        ("[process_exec]", "TRUE"),
        ("[process_exec, process_exit]", "process_name IN @s_shells OR process_binary ILIKE '%python%'"),
        ("[process_exit]", "@s_cmd ILIKE '%sh%' AND exit_status IS DISTINCT FROM 0"),
        ("[process_kprobe]", "file_path ILIKE '/etc/%' OR file_path ILIKE '%passwd'"),
        ("[process_kprobe]", "lower(file_path) LIKE '%shadow%' OR file_path ILIKE '%/ETC/%'"),
        ("[process_kprobe]", "daddr IS NOT NULL AND process_binary ILIKE '%curl'"),
        ("[process_kprobe, process_lsm]", "function_name ILIKE '%open%' OR policy_name ILIKE 'file%'"),
        ("[process_tracepoint]", "process_binary ILIKE '%' AND @s_in_pod"),
    ]
    return out


def write_synthetic_rules(root: Path) -> int:
    """A rules directory of dozens of rules of several kinds sharing sub-conditions; returns their number."""
    (root / "lib").mkdir(parents=True)
    (root / "lib" / "lib.yaml").write_text(_lib(), encoding="utf-8")
    conditions = _conditions()
    for n, (kinds, cond) in enumerate(conditions):
        extra = ""
        if n % 7 == 3:  # an exception that also reads a shared operand
            extra = "exceptions:\n  - name: not kubectl\n    binaries: ['*kubectl*']\n    when: \"@s_cmd ILIKE '%healthz%'\"\n"
        elif n % 11 == 5:
            extra = "new_terms:\n  fields: [namespace, process_binary]\n"
        elif n % 13 == 6:
            extra = "first_seen:\n  key: [image]\n  value: [process_binary]\n  learn: 1m\n"
        rule = textwrap.dedent(
            f"""\
            id: synth-{n:03d}
            title: synthetic {n}
            description: rule {n} of the synthetic set (issue 19 tests)
            severity: low
            event: {kinds}
            condition: "{cond.replace(chr(92), chr(92) * 2).replace('"', chr(92) + '"')}"
            output: "{{process_binary}} {{arguments}} {{file_path}}"
            dedup:
              fields: [node_name, exec_id]
              window: 10m
            """
        )
        (root / f"synth-{n:03d}.yaml").write_text(rule + extra, encoding="utf-8")
    return len(conditions)


def _events(lines: list[str], size: int) -> list[pa.Table]:
    """Normalized, ancestry-enriched batches of ``size`` lines (as ingest hands them to the detector)."""
    ancestry = AncestryTransform()
    out = []
    for start in range(0, len(lines), size):
        events = normalize_lines(lines[start : start + size]).events
        out.append(ancestry(events)[0])
    return out


def _real_lines() -> list[str]:
    return [ln for p in REAL_LOGS for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _generated_lines(tmp: Path, count: int) -> list[str]:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from gen_events import generate
    finally:
        sys.path.remove(str(REPO / "bench"))
    path = tmp / "gen.jsonl"
    generate(count, path, seed=7)
    return path.read_text(encoding="utf-8").splitlines()


def _rules(*dirs: Path) -> list[Rule]:
    rs = load_ruleset(list(dirs))
    assert not rs.errors, rs.errors
    return [r for r in rs.enabled() if r.sequence is None]


def _bits(con: duckdb.DuckDBPyConnection, sql: str) -> dict[int, tuple]:
    """Row ``_i`` -> its mask and term columns, for rows with a bit set."""
    got = con.execute(sql).fetchall()
    names = [d[0] for d in con.description]
    m = [k for k, n in enumerate(names) if n.startswith("_m")]
    return {row[0]: tuple(row[1:]) for row in got if any(row[k] for k in m)}


def _compare_masks(rules: list[Rule], batches: list[pa.Table]) -> int:
    """The per-kind plan's bits and term hashes equal the flat statement's on every row; returns the bits set.

    So do the row-by-row variants of the branches that test rules per distinct value (see branchpick).
    """
    flat = mask_sql(rules, "_batch")
    plan = kind_mask_sql(rules, "_batch")
    by_row = "\nUNION ALL\n".join(r or b for b, r in zip(plan.branches, plan.by_row, strict=True))
    assert by_row != plan.sql  # some kind has a variant to compare
    cols = rule_columns(rules)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    bits = 0
    for batch in batches:
        batch = batch.select([c for c in cols if c in batch.schema.names])
        batch = batch.append_column("_i", pa.array(np.arange(batch.num_rows, dtype=np.int64)))
        con.register("_batch", batch)
        for name, part in split_by_kind(batch, plan).items():
            con.register(name, part)
        want, got = _bits(con, flat), _bits(con, plan.sql)
        assert got == want
        assert _bits(con, by_row) == want
        bits += sum(bin(v).count("1") for row in want.values() for v in row if isinstance(v, int) and v > 0)
    return bits


def _alerts(detector: Detector, batches: list[pa.Table]) -> list[tuple]:
    rows = []
    for batch in batches:
        rows += [tuple(sorted((k, repr(v)) for k, v in r.items())) for r in detector.evaluate(batch).to_pylist()]
    detector.close()
    return sorted(rows)


def _one_at_a_time(rules: list[Rule], batches: list[pa.Table]) -> list[tuple]:
    return sorted(itertools.chain.from_iterable(_alerts(Detector([r], per_kind=False), batches) for r in rules))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "rules"
    assert write_synthetic_rules(root) >= 40
    return root


def test_ilike_is_lower_like_in_duckdb() -> None:
    """The rewrite's premise: ``x ILIKE p [ESCAPE e]`` is ``lower(x) LIKE lower(p)``, whatever the letters."""
    strings = ["abc", "ABC", "İstanbul", "ISTANBUL", "straße", "STRASSE", "ẞ", "Σίσυφος", "ΣΊΣΥΦΟΣ", "K", "Ǆ", "ǅ"]
    strings += ["Ⅻ", "a_b", "A%B", "a\\b", "", None, "ﬁle", "Ａ"]
    patterns = ["%abc%", "abc", "%i%", "%İ%", "%ß%", "%ẞ%", "%σ%", "%k%", "%ǅ%", "a\\_b", "%\\%%", "", "%", "_", "%ａ%"]
    con = duckdb.connect()
    con.execute("CREATE TABLE s AS SELECT unnest($1::VARCHAR[]) AS s", [strings])
    con.execute("CREATE TABLE p AS SELECT unnest($1::VARCHAR[]) AS p", [patterns])
    differ = con.execute(
        "SELECT s, p FROM s, p WHERE (s ILIKE p ESCAPE '\\') IS DISTINCT FROM (lower(s) LIKE lower(p) ESCAPE '\\')"
        " OR (s ILIKE p) IS DISTINCT FROM (lower(s) LIKE lower(p))"
    ).fetchall()
    assert differ == []


def test_shared_operands_are_computed_once_and_ilike_becomes_plain_string_tests(synthetic: Path) -> None:
    rules = [r for r in _rules(synthetic) if "process_exec" in r.compiled.kinds]
    tests, shared = branch_predicates(rules)
    assert any("lower(concat_ws(' ', process_binary, arguments)) AS _tp_h" in s for s in shared)
    text = "\n".join(tests)
    assert "contains(_tp_h" in text and "starts_with(_tp_h" in text and "suffix(_tp_h" in text
    # ILIKE stays only where the operand is not a plain column or call (COALESCE) or is a lambda's own name
    assert all("COALESCE" in t or "lambda" in t for t in tests if "~~*" in t)


def test_plan_bits_equal_the_flat_statement_on_real_samples(synthetic: Path) -> None:
    rules = _rules(REPO / "rules", synthetic)
    assert len(rules) >= 60
    assert _compare_masks(rules, _events(_real_lines(), 20)) > 0


@pytest.mark.slow
def test_plan_bits_equal_the_flat_statement_on_generated_events(synthetic: Path, tmp_path: Path) -> None:
    rules = _rules(REPO / "rules", synthetic)
    assert _compare_masks(rules, _events(_generated_lines(tmp_path, 6000), 1500)) > 1000


@pytest.mark.slow
def test_alerts_equal_one_rule_at_a_time(synthetic: Path, tmp_path: Path) -> None:
    """The whole detector (plan, grouping, new terms, first seen) against each rule alone in the flat statement."""
    rules = _rules(REPO / "rules", synthetic)
    batches = _events(_real_lines() + _generated_lines(tmp_path, 3000), 800)
    together = _alerts(Detector(rules, max_event_ids=None), batches)
    assert len(together) > 100
    assert together == _one_at_a_time(rules, batches)


def test_a_plan_that_does_not_bind_falls_back_to_the_flat_statement(
    synthetic: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A rewrite DuckDB refuses costs speed, not alerts: the detector keeps going with the flat statement, and says so."""
    rules = _rules(REPO / "rules", synthetic)
    batches = _events(_real_lines(), 30)
    broken = Detector(rules)
    plan = broken._kind_mask
    assert plan is not None
    exec_branch = plan.kinds.index("process_exec")
    branches = [
        b.replace(" AS _tp_h0", " AS _tp_renamed", 1) if n == exec_branch else b for n, b in enumerate(plan.branches)
    ]
    assert branches != list(plan.branches)
    broken._kind_mask = type(plan)(tuple(branches), plan.kinds, plan.slots, plan.columns)
    with caplog.at_level(logging.WARNING, logger="tetrapipe.detect"):
        assert _alerts(broken, batches) == _alerts(Detector(rules, per_kind=False), batches)
    assert broken._kind_mask is None
    assert [r.getMessage() for r in caplog.records if "per-kind rule plan failed" in r.getMessage()]


def test_batched_parsing_and_rendering_equal_one_at_a_time(synthetic: Path) -> None:
    """The plan parses all rules in one query and renders a branch's in one: the same trees and text as one by one.

    A text DuckDB cannot parse, in the batch, fails the batch: each is then parsed
    alone and only that one is None; an unrenderable tree, likewise, is None alone.
    """
    from tetrapipe.transforms.sqltree import SqlTrees, string_node

    texts = [f"({r.compiled.condition})" for r in _rules(REPO / "rules", synthetic)]
    batched, single = SqlTrees(), SqlTrees()
    batched.parse_all(texts)
    assert len(batched._parsed) == len(set(texts))  # all parsed by the one query
    for case in ([*texts, "((("], texts):
        fresh = SqlTrees()
        fresh.parse_all(case)
        got = [fresh.parse(t) for t in case]
        want = [single.parse(t) for t in case]
        assert got == want
    assert single.parse("(((") is None and batched.parse(texts[0]) == single.parse(texts[0])
    trees = [single.parse(t) for t in texts]
    items = [(p, p["expr"]) for p in trees if p is not None]
    rendered = batched.render_all(items)
    assert rendered == [single.render(p, e) for p, e in items] and None not in rendered
    bad = {"class": "NO_SUCH_CLASS", "type": "X", "alias": ""}
    mixed = batched.render_all([items[0], (items[1][0], bad), (items[2][0], string_node("it's"))])
    assert mixed == [rendered[0], None, "'it''s'"]


class _RecordingConnection:
    """A real DuckDB connection that notes the statements it prepares (what is measured here is DuckDB's work)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.prepared: list[str] = []

    def execute(self, sql: str, *args: object) -> duckdb.DuckDBPyConnection:
        if sql.startswith("PREPARE "):
            self.prepared.append(sql.split()[1])
        return self.con.execute(sql, *args)

    def register(self, name: str, source: object) -> None:
        self.con.register(name, source)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)


def test_each_statement_is_prepared_once_and_only_for_the_kinds_a_batch_holds(synthetic: Path, tmp_path: Path) -> None:
    """Preparing the rules' mask took ~0.2 s: every source is registered before any statement is prepared (a
    registration afterwards makes DuckDB prepare them all again), and a kind no batch holds costs nothing."""
    from tetrapipe.transforms.duckslot import PreparedSlots

    rules = _rules(REPO / "rules", synthetic)
    batches = _events(_real_lines() + _generated_lines(tmp_path, 2000), 400)
    detector = Detector(rules)
    recording = _RecordingConnection(detector._con)
    detector._statements = PreparedSlots(recording, "_tp_test_")
    alerts = _alerts(detector, batches)
    assert len(batches) > 4 and len(alerts) > 50
    assert len(recording.prepared) == len(set(recording.prepared))  # nothing prepared twice
    plan = detector._kind_mask
    assert plan is not None
    held = {k for b in batches for k in b.column("kind").to_pylist()}
    kinds_run = {plan.kinds[plan.slots.index(key[1])] for key in detector._statements._names if key[0:1] == ("kind",)}
    assert kinds_run == held & set(plan.kinds) and kinds_run != set(plan.kinds)
    assert alerts == _alerts(Detector(rules, per_kind=False), batches)


def test_alert_rows_come_in_the_backtest_order(synthetic: Path, tmp_path: Path) -> None:
    """The grouping is sorted in Arrow, not DuckDB: rows still come by time, rule and dedup key, as group_sql's do."""
    rules = _rules(REPO / "rules", synthetic)
    detector = Detector(rules)
    seen = 0
    for batch in _events(_real_lines() + _generated_lines(tmp_path, 2000), 500):
        rows = detector.evaluate(batch).to_pylist()
        keys = [(r["time"] is None, r["time"] or 0, r["rule_id"], r["dedup_key"]) for r in rows]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        seen += len(rows)
    detector.close()
    assert seen > 50


class _Always(BranchPick):
    """Runs one variant wherever a kind has it (a real BranchPick otherwise)."""

    def __init__(self, alternatives: list[bool], variant: int) -> None:
        super().__init__(alternatives)
        self.forced = [variant if alt else 0 for alt in alternatives]

    def variant(self, n: int, rows: int) -> int:
        return self.forced[n]


@pytest.mark.parametrize("variant", [0, 1])
def test_alerts_are_the_same_whichever_variant_runs(synthetic: Path, tmp_path: Path, variant: int) -> None:
    rules = _rules(REPO / "rules", synthetic)
    batches = _events(_real_lines() + _generated_lines(tmp_path, 1500), 500)
    detector = Detector(rules)
    plan = detector._kind_mask
    assert plan is not None and any(b is not None for b in plan.by_row)
    detector._pick = (plan, _Always([b is not None for b in plan.by_row], variant))
    got = _alerts(detector, batches)
    assert len(got) > 50
    assert got == _alerts(Detector(rules, per_kind=False), batches)


def test_live_alert_rows_equal_the_backtest_statements_on_one_batch(synthetic: Path, tmp_path: Path) -> None:
    """The live grouping names each group's first event by position and builds its message apart (alertrows):
    every column of every alert row equals what the backtest's single match + group statements compute.

    One batch, so that no follow-up rows or held windows differ by construction; rules without new terms,
    whose first sightings the backtest decides in a statement of its own. A single matching row in a batch of
    thousands alerts too (a rule on one binary).
    """
    rules = [r for r in _rules(REPO / "rules", synthetic) if not r.compiled.term]
    (batch,) = _events(_real_lines() + _generated_lines(tmp_path, 2500), 10_000)
    binaries = batch.column("process_binary").to_pylist()
    execs = [b for b, k in zip(binaries, batch.column("kind").to_pylist(), strict=True) if k == "process_exec"]
    rare = min(set(execs) - {None}, key=binaries.count)
    assert binaries.count(rare) == 1 and batch.num_rows > 2000
    rules.append(_rules_from_text(tmp_path, rare)[0])
    detector = Detector(rules, max_event_ids=None)
    live = detector.evaluate(batch)
    detector.close()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("events", batch)
    matches = f"({match_sql(rules, 'events')})"
    want = con.execute(group_sql(matches, rules_table_sql(rules), None)).to_arrow_table()
    names = live.schema.names
    assert sorted(map(repr, live.to_pylist())) == sorted(map(repr, want.select(names).cast(live.schema).to_pylist()))
    assert "lone-binary" in live.column("rule_id").to_pylist() and live.num_rows > 50


def _rules_from_text(tmp_path: Path, binary: str) -> list[Rule]:
    root = tmp_path / "lone"
    root.mkdir()
    (root / "lone.yaml").write_text(
        textwrap.dedent(
            f"""\
            id: lone-binary
            title: one binary
            description: matches one row of a large batch
            severity: low
            event: process_exec
            condition: "process_binary = '{binary.replace("'", "''")}'"
            output: "{{process_binary}} ran in {{pod}}"
            """
        ),
        encoding="utf-8",
    )
    return _rules(root)
