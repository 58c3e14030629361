"""The detector's per-kind rule plan, written on a thread of its own (split out of :mod:`.detect`).

Writing the plan of 189 rules takes ~0.3 s, half of it in DuckDB (which lets
other threads run): the detector starts it when it is built, and the command
reads and normalizes its first events meanwhile. A plan that cannot be
written costs speed only: the detector then tests every rule in one statement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial

import duckdb

from tetrapipe.transforms.maskplan import KindMask
from tetrapipe.worker import in_thread

#: the detector's logger: this is its work
log = logging.getLogger("tetrapipe.detect")


def planned(write: Callable[[], KindMask]) -> KindMask | None:
    """``write()``, or None (and a warning) if the planner met a parse tree it did not expect."""
    try:
        return write()
    except (KeyError, IndexError, TypeError, ValueError, duckdb.Error) as exc:
        # costs speed, never detection: mask_sql tests every rule
        log.warning("rules not planned per event kind (%s): one statement tests every rule", exc)
        return None


def in_background(write: Callable[[], KindMask]) -> Future[KindMask | None]:
    """:func:`planned` on a thread of its own; its result (or an unexpected exception) from the future."""
    return in_thread(partial(planned, write), "tetrapipe-rule-plan")


__all__ = ["in_background", "planned"]
