"""rules lint flags what can never match: bare names against absolute paths, user names against uids, hooks
that no TracingPolicy installs -- for hand-written rules and for converted Sigma rules alike."""

from __future__ import annotations

from pathlib import Path

from conftest import REPO

from tetrapipe.ruleset import load_ruleset
from tetrapipe.ruleset.lint import lint
from tetrapipe.ruleset.sigma.convert import convert_document
from tetrapipe.ruleset.sigma.write import write_rules

RULE = """\
id: {id}
title: t
description: d
severity: low
event: {event}
condition: {condition}
output: "{{process_binary}}"
"""


def _lint(tmp_path: Path, rules: dict[str, tuple[str, str]], policies: Path | None = None) -> dict[str, list[str]]:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    for rid, (event, condition) in rules.items():
        (d / f"{rid}.yaml").write_text(RULE.format(id=rid, event=event, condition=condition))
    rs = load_ruleset([d])
    assert rs.errors == [], rs.errors
    report = lint(rs, policies_dir=policies)
    out: dict[str, list[str]] = {rid: [] for rid in rules}
    for issue in report.issues:
        if issue.rule_id in out and "sample data" not in issue.reason and "no tests" not in issue.reason:
            out[issue.rule_id].append(f"{issue.level}: {issue.reason}")
    return out


def test_values_tetragon_never_emits_are_flagged(tmp_path: Path) -> None:
    got = _lint(
        tmp_path,
        {
            "bare": ("process_exec", "process_binary = 'bash'"),
            "bare-list": ("process_exec", "parent_binary IN ('/bin/sh', 'sh')"),
            "bare-lower": ("process_exec", "lower(cwd) = 'tmp'"),
            "user-name": ("process_exec", "CAST(uid AS VARCHAR) = '0' OR auid IN ('root')"),
            "fine": ("process_exec", "process_binary = '/bin/bash' OR process_binary ILIKE '%/sh' OR uid = 0"),
        },
    )
    assert len(got["bare"]) == 1 and "compared with 'bash', which can never match" in got["bare"][0]
    assert len(got["bare-list"]) == 1 and "'sh'" in got["bare-list"][0]
    assert len(got["bare-lower"]) == 1 and "cwd" in got["bare-lower"][0]
    assert len(got["user-name"]) == 1 and "numeric user ids" in got["user-name"][0]
    assert got["fine"] == []


def test_a_rule_reading_hooks_no_policy_installs_cannot_fire(tmp_path: Path) -> None:
    rules = {
        "closes": ("process_kprobe", "function_name = 'tcp_close'"),
        "connects": ("process_kprobe", "function_name IN ('tcp_connect', '__x64_sys_connect')"),
    }
    got = _lint(tmp_path, rules, REPO / "tracing-policies")
    assert got["closes"] == [
        "warning: reads tcp_close, which no TracingPolicy in the policies directory hooks: it cannot fire"
    ]
    assert got["connects"] == []
    assert _lint(tmp_path, rules, None)["closes"] == []  # no policies given: nothing to check against


def test_a_converted_sigma_rule_with_a_bare_image_is_flagged(tmp_path: Path) -> None:
    """Sigma's Image is the full path; a rule that says ``Image: bash`` converts faithfully and never fires."""
    doc = {
        "title": "bare image",
        "id": "2c3d4e5f-0000-4000-8000-000000000001",
        "logsource": {"product": "linux", "category": "process_creation"},
        "detection": {"s": {"Image": ["bash", "/usr/bin/zsh"]}, "condition": "s"},
    }
    write_rules([convert_document(doc, Path("bare.yml"))], tmp_path / "out")
    report = lint(load_ruleset([tmp_path / "out"]))
    flagged = [i.reason for i in report.issues if "can never match" in i.reason]
    assert len(flagged) == 1 and "'bash'" in flagged[0], flagged
