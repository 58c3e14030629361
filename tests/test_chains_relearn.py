"""Re-learning a first-seen rule without editing it: an override's first_seen.since, written by ``rules relearn``."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO
from test_chains import T0, _exec
from test_chains_first_seen import _ingest, _lines, _same_as_backtest

from tetrapipe.cli import cli
from tetrapipe.lake import Lake, connect
from tetrapipe.ruleset import load_ruleset
from tetrapipe.ruleset.baseline import baseline_sql

RULE = "new-binary-in-image"
SINCE = T0 + dt.timedelta(hours=3)

#: (minutes after T0, binary) in one image. Before SINCE: /usr/bin/old is learned in the image's first hour.
#: After SINCE (a re-learn): a new hour of learning from the first run at or after it (/usr/bin/app at 3 h),
#: then /usr/bin/old, seen only before SINCE, is new again (4 h 10); its second run and app are not.
RUNS = [(0, "/usr/bin/app"), (10, "/usr/bin/old"), (120, "/usr/bin/app")]
LATER = [
    (180, "/usr/bin/app"),
    (210, "/usr/bin/app"),
    (250, "/usr/bin/old"),
    (260, "/usr/bin/app"),
    (270, "/usr/bin/old"),
]
OLD_AGAIN = len(RUNS) + 3  # line of /usr/bin/old at 4 h 10


def _lines_of(runs: list[tuple[int, str]], first_pid: int) -> str:
    return "".join(
        _exec(T0 + dt.timedelta(minutes=m), first_pid + k, b, "", 400_000, "/bin/sh") + "\n"
        for k, (m, b) in enumerate(runs)
    )


def _own_rules(tmp_path: Path) -> Path:
    """A team's rules directory: a copy of the shipped rules (the shipped file is not edited)."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    return rules


def _relearn(rules: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["rules", "relearn", *args, "--rules", str(rules)])
    return result.exit_code, result.output


def _history_then_restart(tmp_path: Path, rules_after: Path) -> Lake:
    """History ingested with the shipped rules, then the rest after a restart with ``rules_after``."""
    log, lake = tmp_path / "tetragon.log", Lake(tmp_path / "lake")
    log.write_text(_lines_of(RUNS, 400_001))
    _ingest(log, lake, REPO / "rules")
    with log.open("a") as f:
        f.write(_lines_of(LATER, 400_101))
    _ingest(log, lake, rules_after)
    return lake


def test_relearn_writes_an_override_and_a_value_seen_before_since_alerts_after_the_new_learning_period(
    tmp_path: Path,
) -> None:
    rules = _own_rules(tmp_path)
    shipped = (rules / f"{RULE}.yaml").read_text()
    code, output = _relearn(rules, RULE, "--since", SINCE.isoformat(sep=" "))
    assert code == 0, output
    assert f"{RULE} learns again from {SINCE.isoformat(sep=' ')}" in output
    assert (rules / f"{RULE}.yaml").read_text() == shipped  # the rule file is not edited
    assert load_ruleset([rules]).get(RULE).first_seen.since == SINCE.isoformat(sep=" ")
    lake = _history_then_restart(tmp_path, rules)
    assert _lines(lake) == [OLD_AGAIN]
    _same_as_backtest(lake, rules)
    # the baseline query of the relearned rule starts at since: app learned at 3 h, old new at 4 h 10
    rs = load_ruleset([rules])
    con = connect(lake)
    try:
        rows = con.execute(baseline_sql(rs.get(RULE), rs)).fetchall()
    finally:
        con.close()
    at = {b: (first - T0, learned) for _image, b, first, _n, learned in rows}
    assert at == {"/usr/bin/app": (dt.timedelta(hours=3), True), "/usr/bin/old": (dt.timedelta(minutes=250), False)}


def test_without_relearn_the_old_baseline_holds(tmp_path: Path) -> None:
    lake = _history_then_restart(tmp_path, _own_rules(tmp_path))
    assert _lines(lake) == []


def test_relearn_now_and_again_replaces_its_own_override(tmp_path: Path) -> None:
    rules = _own_rules(tmp_path)
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    assert _relearn(rules, RULE, "--since", "2026-03-01")[0] == 0
    code, output = _relearn(rules, RULE)  # --since now
    assert code == 0, output
    assert "(was 2026-03-01 00:00:00)" in output
    since = dt.datetime.fromisoformat(load_ruleset([rules]).get(RULE).first_seen.since)
    assert before <= since <= dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert [p.name for p in rules.glob("relearn-*.yaml")] == [f"relearn-{RULE}.yaml"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["late-shell-in-container"], "late-shell-in-container is not a first-seen rule"),
        (["new-binary-in-imag"], "did you mean 'new-binary-in-image'?"),
        ([RULE, "--since", "yesterday"], "'yesterday' is not a date or time"),
    ],
)
def test_relearn_refuses_what_it_cannot_do_and_writes_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    rules = _own_rules(tmp_path)
    code, output = _relearn(rules, *args)
    assert code == 2 and message in " ".join(output.split())
    assert not list(rules.glob("relearn-*.yaml"))


def test_an_override_s_first_seen_is_checked_where_it_is_written(tmp_path: Path) -> None:
    rules = _own_rules(tmp_path)
    (rules / "mine.yaml").write_text("override: new-binary-in-image\nfirst_seen:\n  since: soon\n")
    (rules / "other.yaml").write_text("override: late-shell-in-container\nfirst_seen:\n  learn: 2h\n")
    issues = {(i.path.name, i.line, i.reason) for i in load_ruleset([rules]).errors}
    assert ("mine.yaml", 3, "first_seen since 'soon' is not a date or time (2026-03-10 09:00)") in issues
    assert any(p == "other.yaml" and line == 3 and "learn" in m for p, line, m in issues), issues
    assert any(p == "other.yaml" and "not a first-seen rule" in m for p, _, m in issues), issues


def test_relearn_leaves_the_installed_package_and_a_later_override_alone(tmp_path: Path) -> None:
    import tetrapipe

    inside = Path(tetrapipe.__file__).parent / "lake" / "hunts"  # any directory of the package itself
    code, output = _relearn(inside, RULE)
    assert code == 2 and "shipped in the installed package" in " ".join(output.split())
    assert not list(inside.glob("relearn-*.yaml"))
    # an override of the rule sorted after relearn-*.yaml sets since too: the new file would not count
    rules = _own_rules(tmp_path)
    (rules / "zz-local.yaml").write_text(f"override: {RULE}\nfirst_seen:\n  since: '2026-01-01'\n")
    code, output = _relearn(rules, RULE, "--since", "2026-03-01")
    assert code == 2 and "did not take effect" in " ".join(output.split())
    assert not list(rules.glob("relearn-*.yaml"))
    assert load_ruleset([rules]).get(RULE).first_seen.since == "2026-01-01 00:00:00"


@pytest.mark.parametrize(
    "written",
    ["2026-03-10T11:00:00+02:00", "2026-03-10T09:00:00Z", "2026-03-10T04:00:00-05:00", "2026-03-10 09:00:00"],
)
def test_a_since_with_an_offset_is_read_in_utc(tmp_path: Path, written: str) -> None:
    """``since: 2026-03-10T11:00:00+02:00`` (a YAML timestamp) is 09:00 UTC: the baseline starts there, not at 11:00."""
    rules = _own_rules(tmp_path)
    (rules / "mine.yaml").write_text(f"override: {RULE}\nfirst_seen:\n  since: {written}\n")
    assert load_ruleset([rules]).get(RULE).first_seen.since == "2026-03-10 09:00:00"
    code, _ = _relearn(rules, RULE, "--since", written)
    assert code == 0
    assert load_ruleset([rules]).get(RULE).first_seen.since == "2026-03-10 09:00:00"
