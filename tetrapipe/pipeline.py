"""The transforms every ingesting command runs, in data-flow order.

ancestry (fill each event's ancestor chain) -> tls (handshakes to TLS columns)
-> detection (rules), so that a rule can read ``ancestor_binaries`` or
``tls_cipher`` on the same batch. ``ingest``, ``run`` and ``process`` all get
their transforms here, which is what makes a live alert and a backtest of the
same events agree.
"""

from __future__ import annotations

import logging

from tetrapipe.ingest import BatchTransform

log = logging.getLogger("tetrapipe.pipeline")


def build_transforms(rules_dir: str | None = None, *, lake=None) -> tuple[list[BatchTransform], object | None]:  # noqa: ANN001
    """The transform chain and the detector (None when detection is off or not installed).

    ``lake``: rebuild the process table from the lake's recent history and seed
    the detector's dedup windows and new terms from it, so a restarted command
    knows the processes that started before it and does not repeat its alerts.
    """
    transforms: list[BatchTransform] = []
    try:
        from tetrapipe.transforms.ancestry import AncestryTransform
    except ImportError:  # pragma: no cover - a build without the ancestry module
        AncestryTransform = None  # noqa: N806
    if AncestryTransform is not None:
        transforms.append(AncestryTransform.from_lake(lake) if lake is not None else AncestryTransform())
    from tetrapipe.transforms.tls import TlsTransform

    transforms.append(TlsTransform())
    detector = None
    if rules_dir != "none":
        try:
            from tetrapipe.transforms import pipeline as detection
        except ImportError:
            detection = None
        if detection is not None:
            extra, detector = detection.default_transforms(rules_dir, lake=lake)
            transforms.extend(t for t in extra if type(t).__name__ not in ("AncestryTransform", "TlsTransform"))
    return transforms, detector
