"""Run converted Sigma rules on labelled events in the real engine: firing events must fire, quiet ones not.

The rules are written with :mod:`tetrapipe.ruleset.sigma.write` into a scratch
directory with the events as ordinary rule tests, loaded and run by
``tetrapipe rules test``'s own runner, normalizer included. Used by the
generated firing tests, the suite and the SigmaHQ measurement (bench/sigmahq.py).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from tetrapipe.ruleset.loader import load_ruleset
from tetrapipe.ruleset.sigma.convert import Converted
from tetrapipe.ruleset.sigma.write import write_rules
from tetrapipe.ruleset.testing import TestReport, run_tests


@dataclass
class Labelled:
    """A converted rule with events that must make it fire and events that must leave it quiet."""

    converted: Converted
    firing: list[str]
    quiet: list[str]


def with_tests(item: Labelled) -> Converted:
    """The converted rule with a firing test (each firing event alerts) and a quiet test (no alert)."""
    tests = []
    if item.firing:
        tests.append(
            {
                "name": "labelled firing events",
                "events": "\n".join(item.firing) + "\n",
                "expect": {"count": len(item.firing), "lines": list(range(1, len(item.firing) + 1))},
            }
        )
    if item.quiet:
        tests.append({"name": "labelled quiet events", "events": "\n".join(item.quiet) + "\n", "expect": {"count": 0}})
    doc = {**item.converted.document, "tests": tests}
    return Converted(item.converted.source, item.converted.rule_id, doc)


def run_labelled(items: list[Labelled]) -> TestReport:
    """Every labelled rule's tests, run together; a rule that does not load is an ``error`` result."""
    with tempfile.TemporaryDirectory(prefix="tetrapipe-sigma-check-") as tmp:
        out = Path(tmp) / "rules"
        write_rules([with_tests(i) for i in items], out)
        return run_tests(load_ruleset([out]))


__all__ = ["Labelled", "run_labelled", "with_tests"]
