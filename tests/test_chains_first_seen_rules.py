"""The shipped first-seen rules for destinations and TLS across a restart; any first-seen rule's baseline query."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO
from test_chains_first_seen import _ingest, _lines, _same_as_backtest, stream

from tetrapipe.lake import Lake, connect, saved_hunts
from tetrapipe.ruleset import load_ruleset
from tetrapipe.ruleset.baseline import baseline_sql


@pytest.mark.parametrize("rule_id", ["new-destination-for-workload", "new-tls-for-service"])
@pytest.mark.parametrize("cut", [1, 3])
def test_a_restart_inside_or_after_the_learning_day_changes_nothing(tmp_path: Path, rule_id: str, cut: int) -> None:
    """The rule file's own firing test, ingested in two runs: cut 1 restarts inside the first key's learning
    day (the clock must come from the lake, not restart), cut 3 after the baseline is complete.

    Failed before the key hashes were kept as uint64: another new-terms rule matching the same batch
    turned them into floats, so a restored key never matched its live one and learned all over again."""
    firing = load_ruleset([REPO / "rules"]).get(rule_id).tests[0]
    lines = firing.events
    assert firing.expect.count == 2 and len(lines) > cut
    log, lake = tmp_path / "tetragon.log", Lake(tmp_path / "lake")
    log.write_text("\n".join(lines[:cut]) + "\n")
    _ingest(log, lake, REPO / "rules")
    assert _lines(lake, rule_id) == [n for n in firing.expect.lines if n <= cut]
    with log.open("a") as f:
        f.write("\n".join(lines[cut:]) + "\n")
    _ingest(log, lake, REPO / "rules")
    assert _lines(lake, rule_id) == firing.expect.lines
    _same_as_backtest(lake, REPO / "rules", rule_id)


def _query(lake: Lake, sql: str) -> list[tuple]:
    con = connect(lake)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_the_baseline_query_of_any_first_seen_rule_agrees_with_the_saved_hunt_and_the_alerts(tmp_path: Path) -> None:
    rs = load_ruleset([REPO / "rules"])
    lines, want = stream()
    log, lake = tmp_path / "tetragon.log", Lake(tmp_path / "lake")
    log.write_text("\n".join(lines) + "\n")
    _ingest(log, lake, REPO / "rules")
    hunt = _query(lake, saved_hunts()["first-seen-binaries"].sql)
    generic = _query(lake, baseline_sql(rs.get("new-binary-in-image"), rs))
    assert generic == hunt and sum(1 for *_x, learned in generic if not learned) == len(want)
    # the destinations rule, on its own firing events: not learned = what alerted (and the repeat), per workload
    rule = rs.get("new-destination-for-workload")
    lake2 = Lake(tmp_path / "lake2")
    (tmp_path / "dest.log").write_text("\n".join(rule.tests[0].events) + "\n")
    _ingest(tmp_path / "dest.log", lake2, REPO / "rules")
    rows = {
        (wl, daddr, dport): (n, learned)
        for _ns, wl, daddr, dport, _t, n, learned in _query(lake2, baseline_sql(rule, rs))
    }
    assert rows == {
        ("crawler", "140.82.112.6", 443): (2, True),
        ("crawler", "151.101.1.69", 443): (1, True),
        ("crawler", "203.0.113.7", 4444): (2, False),
        ("crawler", "140.82.112.6", 8443): (1, False),
        ("api", "203.0.113.7", 4444): (1, True),
    }
