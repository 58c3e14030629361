"""A rule that does not parse, names a column that does not exist, or is not boolean is
rejected at load with its file, its line and the reason; so are the other mistakes a rule
author makes (typos in keys, unknown macros, broken macros, duplicate ids)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tetrapipe.ruleset import load_ruleset

HEADER = """\
id: {id}
title: A rule
description: What it finds and why.
severity: high
event: process_exec
"""


def write(d: Path, name: str, body: str, rid: str | None = None) -> Path:
    p = d / name
    text = (HEADER.format(id=rid or p.stem) if rid is not False else "") + textwrap.dedent(body)
    p.write_text(text)
    return p


def only_error(d: Path) -> str:
    rs = load_ruleset([d])
    assert len(rs.errors) == 1, "\n".join(map(str, rs.issues))
    return str(rs.errors[0])


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "broken.yaml",
        """\
        condition: process_name = 'sh'
        output: "x
        tests: []
        """,
    )
    msg = only_error(tmp_path)
    assert msg == (
        f"{p}:7: invalid YAML: found unexpected end of stream (while scanning a quoted scalar that starts on line 7)"
    ), msg


def test_unknown_column_points_at_the_line_that_names_it(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "col.yaml",
        """\
        condition: |
          container_id IS NOT NULL
          AND procss_name IN ('sh', 'bash')
        output: x
        """,
    )
    assert only_error(tmp_path) == f"{p}:8: unknown column procss_name (did you mean process_name?)"


def test_non_boolean_condition_is_rejected(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "nb.yaml",
        """\
        condition: process_binary || arguments
        output: x
        """,
    )
    assert only_error(tmp_path) == (
        f"{p}:6: condition is VARCHAR, not a boolean expression (compare it with something, e.g. ... = 'x')"
    )


def test_sql_syntax_error_and_aggregate(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "syn.yaml",
        """\
        condition: |
          process_name = 'sh'
          AND AND pid > 1
        output: x
        """,
    )
    assert only_error(tmp_path) == f"{p}:8: SQL syntax error at or near 'AND'"
    p.unlink()
    write(tmp_path, "agg.yaml", "condition: count(*) > 1\noutput: x\n")
    assert "aggregate" in only_error(tmp_path).lower()


def test_typo_in_a_key_and_bad_severity_and_mitre(tmp_path: Path) -> None:
    p = tmp_path / "typo.yaml"
    p.write_text(
        "id: typo\ntitle: t\ndescription: d\nseverity: urgent\nevent: process_exec\n"
        "conditon: process_name = 'sh'\noutput: x\nmitre: [T59]\n"
    )
    rs = load_ruleset([tmp_path])
    got = sorted(str(i) for i in rs.errors)
    assert f"{p}:4: severity 'urgent' is not one of info, low, medium, high, critical" in got
    assert f"{p}:6: unknown key 'conditon' in a rule (did you mean 'condition'?)" in got
    assert f"{p}:1: missing required key 'condition'" in got
    assert any(e.startswith(f"{p}:8: MITRE ATT&CK id 'T59'") for e in got)


def test_duplicate_ids_name_both_places(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "condition: process_name = 'sh'\noutput: x\n", rid="same")
    b = write(tmp_path, "b.yaml", "condition: process_name = 'sh'\noutput: x\n", rid="same")
    assert only_error(tmp_path) == f"{b}:1: duplicate rule id 'same' (also {a}:1)"


def test_unknown_list_or_macro_and_unknown_param(tmp_path: Path) -> None:
    (tmp_path / "lib.yaml").write_text("lists:\n  shells: [sh, bash]\n")
    p = write(tmp_path, "m.yaml", "condition: |\n  process_name IN @shell\n  AND pid > ${limit}\noutput: x\n")
    assert only_error(tmp_path) == f"{p}:7: unknown list or macro @shell (did you mean @shells?)"
    p.write_text(p.read_text().replace("@shell\n", "@shells\n"))
    assert only_error(tmp_path) == f"{p}:8: unknown parameter ${{limit}}: add it under params:"


def test_an_error_inside_a_macro_is_reported_at_the_macro(tmp_path: Path) -> None:
    lib = tmp_path / "lib.yaml"
    lib.write_text("macros:\n  in_container:\n    description: x\n    condition: |\n      containr_id IS NOT NULL\n")
    write(tmp_path, "uses.yaml", 'condition: "@in_container"\noutput: x\n')
    rs = load_ruleset([tmp_path])
    got = [str(e) for e in rs.errors]
    assert f"{lib}:5: macro @in_container: unknown column containr_id (did you mean container_id?)" in got
    assert any("uses broken macro(s) @in_container" in e for e in got)


def test_bad_output_placeholder_dedup_field_and_exception(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "o.yaml",
        """\
        condition: process_name = 'sh'
        output: "{proces_binary} ran"
        dedup:
          fields: [pod, nod_name]
          window: soon
        exceptions:
          - name: nothing listed
        """,
    )
    got = sorted(str(i) for i in load_ruleset([tmp_path]).errors)
    assert f"{p}:10: dedup window 'soon' is not a duration (e.g. 10m, 1h, 30s)" in got
    assert any("exception nothing listed lists nothing to allow" in g for g in got)


def test_bad_output_and_dedup_column_after_parse(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "o.yaml",
        """\
        condition: process_name = 'sh'
        output: "{proces_binary} ran"
        dedup:
          fields: [pod, nod_name]
        """,
    )
    got = sorted(str(i) for i in load_ruleset([tmp_path]).errors)
    assert f"{p}:7: output names unknown column {{proces_binary}} (did you mean process_binary?)" in got
    assert f"{p}:9: dedup names unknown column nod_name (did you mean node_name?)" in got


def test_one_bad_rule_does_not_hide_the_good_ones(tmp_path: Path) -> None:
    write(tmp_path, "good.yaml", "condition: process_name = 'sh'\noutput: x\n")
    write(tmp_path, "bad.yaml", "condition: nope = 1\noutput: x\n")
    rs = load_ruleset([tmp_path])
    assert [r.id for r in rs.rules] == ["good"] and len(rs.errors) == 1


def test_overrides_tune_a_rule_without_editing_it(tmp_path: Path) -> None:
    write(
        tmp_path,
        "r.yaml",
        """\
        params: {threshold: 5m}
        condition: process_start_time - container_start_time > ${threshold}
        output: x
        """,
    )
    (tmp_path / "local.yaml").write_text(
        "override: r\nseverity: low\nparams: {threshold: 1h}\nparams_by_namespace: {ci: {threshold: 2h}}\n"
        "exceptions:\n  - name: debug images\n    images: ['busybox:*']\n"
    )
    rs = load_ruleset([tmp_path])
    assert not rs.issues
    r = rs.get("r")
    assert r.severity == "low" and r.params == {"threshold": "1h"}
    assert "WHEN 'ci' THEN INTERVAL '7200000000 microseconds'" in r.compiled.condition
    assert "ELSE INTERVAL '3600000000 microseconds'" in r.compiled.condition
    assert "image LIKE 'busybox:%'" in r.compiled.exceptions
    (tmp_path / "local.yaml").write_text("override: rr\nenabled: false\n")
    assert str(load_ruleset([tmp_path]).errors[0]).endswith("override of unknown rule 'rr' (did you mean 'r'?)")


@pytest.mark.parametrize(
    "value,sql",
    [
        ("90s", "INTERVAL '90000000 microseconds'"),
        (3, "3"),
        ("x'y", "'x''y'"),
        (["a", "b"], "['a', 'b']"),
        (True, "TRUE"),
    ],
)
def test_param_literals(value, sql) -> None:
    from tetrapipe.ruleset.compiler import param_literal

    assert param_literal(value) == sql


def test_references_inside_strings_and_comments_are_left_alone() -> None:
    from tetrapipe.ruleset.compiler import Scope, expand
    from tetrapipe.ruleset.model import ListDef

    scope = Scope({"shells": ListDef("shells", ["sh"], Path("l"), 1)}, {}, {}, {})
    assert (
        expand("arguments = '@shells' AND process_name IN @shells -- @nothing", scope).strip()
        == "arguments = '@shells' AND process_name IN ['sh']"
    )
    assert expand("list_a @> list_b AND x <@ y", scope) == "list_a @> list_b AND x <@ y"


def _issues_alone(d: Path) -> tuple[list[str], dict]:
    """The issues and compiled rules of ``d`` with each rule compiled alone, in a validator of its own."""
    from tetrapipe.ruleset.compiler import Scope, Validator, compile_rule

    rs = load_ruleset([d], compile_rules=False)
    issues = [str(i) for i in rs.issues]
    for rule in rs.rules:
        validator = Validator()
        try:
            scope = Scope(rs.lists, rs.macros, rule.params, rule.params_by_namespace)
            lines = rule.path.read_text(encoding="utf-8").splitlines()
            issues += [str(i) for i in compile_rule(rule, scope, validator, lines)]
        finally:
            validator.close()
    return sorted(issues), {r.id: r.compiled for r in rs.rules if r.compiled is not None}


@pytest.mark.parametrize("broken", ["mixed", "aliases"])
def test_binding_rules_together_reports_exactly_what_binding_each_alone_does(tmp_path: Path, broken: str) -> None:
    """Loading binds many rules per statement (for speed); a broken one must cost only itself, with its own error.

    Good rules around broken ones (an aggregate, a window, UNNEST, an unknown
    column, a non-boolean, a bad exception, a constant that cannot be cast), or
    around rules that name the batched statement's own ``_tp_v`` aliases (which
    DuckDB would resolve to another rule's expression there): the issues equal
    those of each rule compiled alone in a fresh validator, and the good rules
    compile to the same SQL.
    """
    if broken == "mixed":
        bodies = {
            "agg": "condition: count(*) > 1\noutput: x\n",
            "win": "condition: row_number() OVER () > 1\noutput: x\n",
            "unn": "condition: unnest([1, 2]) > 1\noutput: x\n",
            "col": "condition: procss_name = 'sh'\noutput: x\n",
            "nb": "condition: process_binary || arguments\noutput: x\n",
            "cast": "condition: process_name = 'sh' AND CAST('x' AS INTEGER) = 1\noutput: x\n",
            "exc": "condition: process_name = 'sh'\noutput: x\nexceptions:\n  - name: bad\n    when: no_such_col = 1\n",
            "out": "condition: process_name = 'sh'\noutput: '{no_such_column}'\n",
            "excagg": "condition: process_name = 'sh'\noutput: x\nexceptions:\n  - name: agg\n    when: count(*) > 0\n",
        }
    else:  # only these broken, so that the statements binding them together succeed without the guard
        bodies = {
            "zalias": "condition: _tp_v0 IS NULL AND process_name = 'sh'\noutput: x\n",
            "zalias2": "condition: 'x' = \"_TP_V1\"\noutput: x\n",
            "zexc": "condition: process_name = 'sh'\noutput: x\nexceptions:\n  - name: a\n    when: _tp_v1 = _tp_v2\n",
        }
    expected_bad = set(bodies) - {"cast"}
    for n in range(80):  # enough good rules for several statements of 64
        bodies[f"good{n:02d}"] = f"condition: process_name = 'p{n}' AND arguments ILIKE '%{n}%'\noutput: x {n}\n"
    for name, body in bodies.items():
        write(tmp_path, f"{name}.yaml", body)
    together = load_ruleset([tmp_path])
    issues, compiled = _issues_alone(tmp_path)
    assert sorted(str(i) for i in together.issues) == issues
    assert {Path(i.split(":")[0]).stem for i in issues} - {"cast"} == expected_bad
    assert len(compiled) >= 80 and {r.id: r.compiled for r in together.rules} == compiled
