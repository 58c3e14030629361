"""The transforms every ingesting command runs, in data-flow order.

ancestry (fill each event's ancestor chain) -> tls (handshakes to TLS columns)
-> detection (rules), so that a rule can read ``ancestor_binaries`` or
``tls_cipher`` on the same batch. ``ingest``, ``run`` and ``process`` all get
their transforms here, which is what makes a live alert and a backtest of the
same events agree.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from tetrapipe.flows.ingest import BatchTransform

#: ``tls_stats`` window when none is given (the issue's and the tutorial's per-minute view)
DEFAULT_TLS_WINDOW = dt.timedelta(minutes=1)


def build_transforms(
    rules_dir: str | os.PathLike[str] | None = None,
    *,
    lake=None,  # noqa: ANN001
    tls_window: dt.timedelta | None = None,
) -> tuple[list[BatchTransform], object | None]:
    """``([ancestry, tls, detector], detector)``; ``rules_dir='none'``: ``([ancestry, tls], None)``.

    ``lake``: rebuild the process table from the lake's recent history and seed
    the detector's dedup windows and new terms from it, so a restarted command
    knows the processes that started before it and does not repeat its alerts.
    ``tls_window``: the tumbling window of ``tls_stats`` rows.
    """
    from tetrapipe.transforms.ancestry import AncestryTransform
    from tetrapipe.transforms.pipeline import load_detector
    from tetrapipe.transforms.tls import TlsTransform

    history = lake is not None and Path(getattr(lake, "root", lake)).exists()
    transforms: list[BatchTransform] = [
        AncestryTransform.from_lake(lake) if history else AncestryTransform(),
        TlsTransform(tls_window or DEFAULT_TLS_WINDOW),
    ]
    detector = load_detector(rules_dir)
    if detector is not None:
        if history:
            detector.seed_from_lake(lake)
        transforms.append(detector)
    return transforms, detector
