"""Detection rules as data: loading, compiling to DuckDB SQL, linting, testing.

``load_ruleset(paths)`` reads rule, library (lists, macros) and override
files and compiles every rule; what is wrong is reported with file and line.
The engine that runs compiled rules is :mod:`tetrapipe.transforms.detect`
(live) and :mod:`tetrapipe.ruleset.backtest` (history).
"""

from __future__ import annotations

from tetrapipe.errors import TetrapipeError
from tetrapipe.ruleset.loader import load_ruleset
from tetrapipe.ruleset.model import SEVERITIES, Issue, Rule, RuleSet


class RulesError(TetrapipeError):
    """Rules that do not load: every problem, one ``file:line: reason`` a line."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        lines = "\n".join(f"  {i}" for i in issues)
        super().__init__(f"{len(issues)} problem{'s' if len(issues) != 1 else ''} in the rules:\n{lines}")

    @property
    def message(self) -> str:
        return str(self)


__all__ = ["SEVERITIES", "Issue", "Rule", "RuleSet", "RulesError", "load_ruleset"]
