"""The transforms every ingesting command runs, in data-flow order, and the detector at their end.

ancestry (fill each event's ancestor chain) -> tls (handshakes to TLS columns)
-> detection (rules), so that a rule can read ``ancestor_binaries`` or
``tls_cipher`` on the same batch. ``ingest``, ``run`` and ``process`` all get
their transforms here, which is what makes a live alert and a backtest of the
same events agree. The chain starts with no memory: a flow restores the
stateful ones from the history (``tetrapipe.flows.transforms.restore_transforms``).
See ``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

import datetime as dt
import os

from tetrapipe.errors import UsageProblem
from tetrapipe.ruleset import RulesError, load_ruleset
from tetrapipe.ruleset.locate import resolve_rules_dir
from tetrapipe.transforms.base import BatchTransform
from tetrapipe.transforms.detect import Detector

#: ``tls_stats`` window when none is given (the issue's and the tutorial's per-minute view)
DEFAULT_TLS_WINDOW = dt.timedelta(minutes=1)


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


def build_transforms(
    rules_dir: str | os.PathLike[str] | None = None,
    *,
    tls_window: dt.timedelta | None = None,
) -> tuple[list[BatchTransform], Detector | None]:
    """``([ancestry, tls, detector], detector)``; ``rules_dir='none'``: ``([ancestry, tls], None)``.

    ``tls_window``: the tumbling window of ``tls_stats`` rows. The ancestry
    table and the detector start empty: a command that continues a history
    hands them its state with ``tetrapipe.flows.transforms.restore_transforms``.
    """
    from tetrapipe.transforms.ancestry import AncestryTransform
    from tetrapipe.transforms.tls import TlsTransform

    transforms: list[BatchTransform] = [AncestryTransform(), TlsTransform(tls_window or DEFAULT_TLS_WINDOW)]
    detector = load_detector(rules_dir)
    if detector is not None:
        transforms.append(detector)
    return transforms, detector


__all__ = ["DEFAULT_TLS_WINDOW", "build_transforms", "load_detector"]
