"""The detection end of the transform chain: load the rules, build the detector.

:func:`tetrapipe.flows.transforms.build_transforms` puts it behind ancestry and TLS.
"""

from __future__ import annotations

import os

from tetrapipe.errors import UsageProblem
from tetrapipe.ruleset import RulesError, load_ruleset
from tetrapipe.ruleset.locate import resolve_rules_dir
from tetrapipe.transforms.detect import Detector


def load_detector(rules_dir: str | os.PathLike[str] | None, **kwargs) -> Detector | None:  # noqa: ANN003
    """The detector for ``rules_dir`` (None: the default rules directory; 'none': no detection).

    Rules that do not load stop the command with every error listed (file,
    line, reason): running with a silently smaller rule set is worse.
    """
    root = resolve_rules_dir(rules_dir)
    if root is None:
        return None
    if not root.exists():
        raise UsageProblem(f"rules directory {root} does not exist (--rules DIR, or 'none' to disable)")
    rs = load_ruleset([root])
    if rs.errors:
        raise RulesError(rs.errors)
    return Detector(rs, **kwargs)


__all__ = ["load_detector"]
