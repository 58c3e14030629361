"""The shapes of the stateful rule kinds: ``threshold:`` and ``first_seen:`` (``sequence:`` is in sequence.py).

Checked with the file and line at fault, like every other key of a rule
(:class:`tetrapipe.ruleset.parse.FileCheck`); what they mean live is in
:mod:`tetrapipe.transforms.thresholds` and :mod:`tetrapipe.transforms.detect`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from tetrapipe.config import located
from tetrapipe.ruleset.model import FirstSeen, Threshold
from tetrapipe.units import duration_seconds

if TYPE_CHECKING:
    from tetrapipe.ruleset.parse import FileCheck


def parse_first_seen(ctx: FileCheck, doc: located.Located) -> FirstSeen | None:
    """``first_seen: {key: [fields], value: [fields], learn: 7d, since: '2026-03-10'}``."""
    raw = ctx.mapping(doc, "first_seen")
    if raw is None:
        return None
    ctx.keys(raw, {"key", "value", "learn", "since"}, "first_seen")
    key, value = ctx.strings(raw, "key"), ctx.strings(raw, "value")
    if not value:
        ctx.error(
            raw.line_of("value") if "value" in raw else raw.line, "first_seen needs value: the field(s) new for a key"
        )
        return None
    seconds = duration_seconds(raw.get("learn", "0s"))
    if seconds is None or seconds < 0:
        ctx.error(raw.line_of("learn"), f"first_seen learn {raw.get('learn')!r} is not a duration (e.g. 7d, 12h)")
        return None
    since = raw.get("since")
    if since is not None:
        try:
            since = dt.datetime.fromisoformat(str(since).replace("Z", "")).isoformat(sep=" ")
        except ValueError:
            ctx.error(raw.line_of("since"), f"first_seen since {since!r} is not a date or time (2026-03-10 09:00)")
            return None
    if "threshold" in doc or "sequence" in doc:
        ctx.error(raw.line, "first_seen cannot be combined with threshold or sequence")
        return None
    return FirstSeen(key, value, int(seconds), since)


def parse_threshold(ctx: FileCheck, doc: located.Located) -> Threshold | None:
    """``threshold: {count: N, distinct: field, by: [fields], window: 1m}``."""
    raw = ctx.mapping(doc, "threshold")
    if raw is None:
        return None
    ctx.keys(raw, {"count", "distinct", "by", "window"}, "threshold")
    count = raw.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        ctx.error(raw.line_of("count") if "count" in raw else raw.line, "threshold needs count: a number >= 1")
        return None
    distinct = raw.get("distinct")
    if distinct is not None and not isinstance(distinct, str):
        ctx.error(raw.line_of("distinct"), "threshold distinct must name one column (or @macro)")
        return None
    if "new_terms" in doc or "sequence" in doc:
        ctx.error(raw.line, "threshold cannot be combined with new_terms or sequence")
        return None
    return Threshold(count, distinct)


__all__ = ["parse_first_seen", "parse_threshold"]
