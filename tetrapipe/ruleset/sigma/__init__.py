"""Sigma rules in, tetrapipe rules out (``tetrapipe rules import-sigma``), through pySigma.

``pipeline`` maps Sigma's Linux taxonomy to Tetragon's events, ``backend`` is
the pySigma backend writing DuckDB conditions, ``convert`` turns whole rule
files into rule documents, ``write`` puts them into a rules directory (all or
nothing). See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from tetrapipe.ruleset.sigma.convert import Converted, ImportReport, SigmaRefused, convert_rule, import_sigma

__all__ = ["Converted", "ImportReport", "SigmaRefused", "convert_rule", "import_sigma"]
