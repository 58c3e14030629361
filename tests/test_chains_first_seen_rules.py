"""The shipped first-seen rules for destinations and TLS keep their baseline and learning clock across a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO
from test_chains_first_seen import _ingest, _lines, _same_as_backtest

from tetrapipe.lake import Lake
from tetrapipe.ruleset import load_ruleset


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
