"""The detection end of the transform chain: load the rules, build the detector.

``tetrapipe.pipeline.build_transforms`` calls :func:`default_transforms` and
keeps the detector (it adds ancestry and TLS itself); the rule test runner and
the benchmark use the whole chain returned here, so a rule test sees exactly
the columns live detection sees.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from tetrapipe.ingest import BatchTransform
from tetrapipe.ruleset import RulesError, load_ruleset
from tetrapipe.ruleset.locate import resolve_rules_dir
from tetrapipe.transforms.detect import Detector


def load_detector(rules_dir: str | os.PathLike[str] | None, **kwargs) -> Detector | None:  # noqa: ANN003
    """The detector for ``rules_dir`` (None/'none' as in :func:`default_transforms`).

    Rules that do not load stop the command with every error listed (file,
    line, reason): running with a silently smaller rule set is worse.
    """
    root = resolve_rules_dir(rules_dir)
    if root is None:
        return None
    if not root.exists():
        raise click.ClickException(f"rules directory {root} does not exist (--rules DIR, or 'none' to disable)")
    rs = load_ruleset([root])
    if rs.errors:
        raise RulesError(rs.errors)
    return Detector(rs, **kwargs)


def default_transforms(rules_dir: str | os.PathLike[str] | None = None, *, lake=None,  # noqa: ANN001
                       **kwargs) -> tuple[list[BatchTransform], Detector | None]:  # noqa: ANN003
    """``([ancestry, tls, detector], detector)``; ``rules_dir='none'`` gives ``([ancestry, tls], None)``.

    ``lake``: seed the detector's new-terms and dedup state from that history.
    """
    from tetrapipe.transforms.ancestry import AncestryTransform
    from tetrapipe.transforms.tls import TlsTransform

    transforms: list[BatchTransform] = [AncestryTransform(), TlsTransform()]
    detector = load_detector(rules_dir, **kwargs)
    if detector is not None:
        if lake is not None and Path(getattr(lake, "root", lake)).exists():
            detector.seed_from_lake(lake)
        transforms.append(detector)
    return transforms, detector


__all__ = ["default_transforms", "load_detector"]
