"""The shipped rules: their own tests pass, and the two first detections fire exactly where they should.

Ground truth: samples/README.md ("Ground truth: scenario/tenant-jobs.log" and "What
correct rules find in them" for the real events).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from conftest import REPO, SAMPLES

from tetrapipe.cli import cli
from tetrapipe.ruleset import load_ruleset
from tetrapipe.ruleset.testing import EventSource, run_tests
from tetrapipe.transforms.detect import Detector

RULES = REPO / "rules"
SCENARIO = SAMPLES / "scenario" / "tenant-jobs.log"
REAL_DOCS = SAMPLES / "real" / "events-docs.log"
REAL_MORE = SAMPLES / "real" / "events-docs-more.log"


@pytest.fixture(scope="module")
def ruleset():
    rs = load_ruleset([RULES])
    assert not rs.issues, "\n".join(map(str, rs.issues))
    return rs


@pytest.fixture(scope="module")
def fired(ruleset) -> dict[tuple[str, str], list[int]]:
    """(log name, rule id) -> the source lines of every event of every alert, all shipped rules at once."""
    source = EventSource()
    logs = {p.name: p for p in (SCENARIO, REAL_DOCS, REAL_MORE)}
    source.prepare([(name, p.read_text().splitlines(), name) for name, p in logs.items()])
    out: dict[tuple[str, str], list[int]] = {}
    for name in logs:
        detector = Detector(ruleset, max_event_ids=None)
        batches, rejected = source.get(name)
        assert not rejected
        for batch in batches:
            offsets = dict(
                zip(batch.column("event_id").to_pylist(), batch.column("source_offset").to_pylist(), strict=True)
            )
            for alert in detector.evaluate(batch).to_pylist():
                out.setdefault((name, alert["rule_id"]), []).extend(offsets[e] for e in alert["event_ids"])
        detector.close()
    return {k: sorted(v) for k, v in out.items()}


def test_every_shipped_rule_test_passes(ruleset) -> None:
    report = run_tests(ruleset)
    bad = [f"{r.nodeid}: {r.reason}\n" + "\n".join(r.diff) for r in report.results if r.status != "passed"]
    assert not bad, "\n\n".join(bad)
    assert report.count("passed") == len(report.results) >= 24


def test_at_least_twelve_rules_each_with_a_firing_and_a_quiet_test(ruleset) -> None:
    assert len(ruleset.rules) >= 12
    for rule in ruleset.rules:
        fires = [t for t in rule.tests if (t.expect.count or 0) > 0 or t.expect.lines]
        quiet = [t for t in rule.tests if t.expect.count == 0]
        assert fires and quiet, f"{rule.id} needs a test that fires and one that does not"
        assert rule.description and rule.severity and rule.output


def test_late_shell_fires_exactly_on_the_ground_truth(fired) -> None:
    assert fired[("tenant-jobs.log", "late-shell-in-container")] == [95, 118]
    assert fired[("events-docs.log", "late-shell-in-container")] == [10, 16, 19]
    assert ("events-docs-more.log", "late-shell-in-container") not in fired


def test_passwd_rule_fires_exactly_on_the_ground_truth(fired) -> None:
    assert fired[("tenant-jobs.log", "passwd-shadow-tampering")] == [107]
    assert fired[("events-docs.log", "passwd-shadow-tampering")] == [5]
    assert fired[("events-docs-more.log", "passwd-shadow-tampering")] == [1, 5, 10]


def test_the_scenario_story_raises_what_an_analyst_expects(fired) -> None:
    story = {rule: lines for (log, rule), lines in fired.items() if log == "tenant-jobs.log"}
    assert story["reverse-shell"] == [116, 117, 118]
    assert story["sensitive-file-read"] == [109, 110]
    assert story["interactive-shell-in-container"] == [95]
    assert story["weak-tls"] == [88]
    assert story["download-to-tmp"] == [112]
    # the payload run from /tmp and copied below /usr/local/bin; the three chains, each naming its steps
    assert story["exec-from-tmp"] == [128]
    assert story["write-below-binary-dirs"] == [130]
    assert story["chain-shell-download-exec"] == [95, 112, 128]
    assert story["chain-reverse-shell"] == [117, 118]
    assert story["chain-bindir-write-exec"] == [130, 132]
    assert story["chain-cred-read-new-dest"] == [110, 113]
    assert set(story) == {
        "exec-from-tmp",
        "write-below-binary-dirs",
        "chain-shell-download-exec",
        "chain-reverse-shell",
        "chain-bindir-write-exec",
        "chain-cred-read-new-dest",
        "late-shell-in-container",
        "passwd-shadow-tampering",
        "reverse-shell",
        "sensitive-file-read",
        "interactive-shell-in-container",
        "weak-tls",
        "download-to-tmp",
        "first-outbound-connection",
    }


def test_cli_rules_test_reads_like_pytest_and_exits_zero() -> None:
    result = CliRunner().invoke(cli, ["rules", "test", str(RULES)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert any(line.endswith("PASSED") and "::late-shell-in-container::" in line for line in lines)
    assert " passed, 0 failed in " in lines[-1]


def test_cli_rules_test_a_single_file_runs_only_its_tests() -> None:
    result = CliRunner().invoke(cli, ["rules", "test", str(RULES / "passwd-shadow-tampering.yaml"), "-q"])
    assert result.exit_code == 0, result.output
    n = len(load_ruleset([RULES]).get("passwd-shadow-tampering").tests)
    assert f"{n} passed, 0 failed" in result.output


def test_cli_rules_list_names_the_policies(ruleset) -> None:
    result = CliRunner().invoke(cli, ["rules", "list", "--rules", str(RULES), "--format", "json"])
    assert result.exit_code == 0, result.output
    import json

    rows = {r["id"]: r for r in json.loads(result.output)}
    assert rows["passwd-shadow-tampering"]["policies"] == ["file-monitoring"]
    assert rows["late-shell-in-container"]["params"] == {"threshold": "5m"}
    table = CliRunner().invoke(cli, ["rules", "list", "--rules", str(RULES)])
    assert "file-monitoring" in table.output and "late-shell-in-container" in table.output


def test_cli_rules_lint_is_clean_on_the_shipped_rules() -> None:
    result = CliRunner().invoke(cli, ["rules", "lint", str(RULES)])
    assert result.exit_code == 0, result.output
    assert "0 errors" in result.output


def test_cli_rules_show_prints_runnable_sql(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["rules", "show", "late-shell-in-container", "--rules", str(RULES)])
    assert result.exit_code == 0, result.output
    assert "INTERVAL '300000000 microseconds'" in result.output
    sql = result.output.split("-- the events it matches")[1].split("-- message")[0].strip()
    import duckdb

    from tetrapipe.schema import EVENT_SCHEMA

    con = duckdb.connect()
    con.register("events", EVENT_SCHEMA.empty_table())
    assert con.sql(sql).fetchall() == []


def test_default_rules_directory_and_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tetrapipe.ruleset.locate import resolve_rules_dir
    from tetrapipe.transforms.chain import build_transforms

    monkeypatch.chdir(tmp_path)  # no ./rules here: the rules of the source tree / the installed package
    assert resolve_rules_dir(None).resolve() == RULES.resolve()
    monkeypatch.setenv("TETRAPIPE_RULES", str(RULES))
    assert resolve_rules_dir(None) == RULES
    assert resolve_rules_dir("none") is None
    transforms, detector = build_transforms("none")
    assert detector is None and [type(t).__name__ for t in transforms] == ["AncestryTransform", "TlsTransform"]
    transforms, detector = build_transforms(str(RULES))
    assert isinstance(detector, Detector) and transforms[-1] is detector
    assert [type(t).__name__ for t in transforms] == ["AncestryTransform", "TlsTransform", "Detector"]


def test_a_broken_rules_directory_stops_ingest_with_file_and_line(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.yaml").write_text(
        "id: bad\ntitle: t\ndescription: d\nseverity: high\nevent: process_exec\n"
        "condition: procss_name = 'sh'\noutput: x\n"
    )
    result = CliRunner().invoke(
        cli, ["ingest", str(REAL_MORE), "--lake", str(tmp_path / "lake"), "--rules", str(rules)]
    )
    assert result.exit_code != 0
    assert f"{rules / 'bad.yaml'}:6: unknown column procss_name (did you mean process_name?)" in result.output


def test_detector_adds_alerts_to_the_transform_output(ruleset) -> None:
    source = EventSource()
    source.prepare([("s", SCENARIO.read_text().splitlines(), "s")])
    batch = source.get("s")[0][0]
    detector = Detector(ruleset)
    events, extra = detector(batch)
    assert events is batch
    from tetrapipe.schema import ALERT_SCHEMA

    assert extra["alerts"].schema == ALERT_SCHEMA
    assert detector.stats.batches == 1 and detector.stats.by_rule["late-shell-in-container"] == 2
    assert detector(batch.slice(0, 0)) == (batch.slice(0, 0), {})
    empty = Detector([])
    assert empty(batch) == (batch, {})


def test_inline_events_that_are_not_tetragon_events_are_a_test_error(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "id: r\ntitle: t\ndescription: d\nseverity: low\nevent: process_exec\ncondition: \"process_name = 'sh'\"\n"
        'output: x\ntests:\n  - name: typo\n    events: [\'{"process_exec": {"process": {}}, "time": "yesterday"}\']\n'
        "    expect: {count: 0}\n"
    )
    report = run_tests(load_ruleset([tmp_path]))
    assert [r.status for r in report.results] == ["error"]
    assert "event 1 is not a Tetragon event (not a Tetragon event: bad time yesterday)" in report.results[0].reason


def test_alerts_table_roundtrip_through_pyarrow(ruleset) -> None:
    source = EventSource()
    source.prepare([("d", REAL_DOCS.read_text().splitlines(), "d")])
    alerts = Detector(ruleset).evaluate(source.get("d")[0][0])
    assert isinstance(alerts, pa.Table) and alerts.num_rows > 0
    assert all(aid and len(aid) == 20 for aid in alerts.column("alert_id").to_pylist())
