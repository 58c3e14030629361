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
    since = parse_since(ctx, raw)
    if since is False:
        return None
    if "threshold" in doc or "sequence" in doc:
        ctx.error(raw.line, "first_seen cannot be combined with threshold or sequence")
        return None
    return FirstSeen(key, value, int(seconds), since)


def since_text(value: object) -> str:
    """A ``since`` as the rule compiler writes it (``2026-03-10 09:00:00``, UTC); ValueError when not a time.

    A time with an offset (``09:00+02:00``, or YAML's own timestamp) is turned to UTC
    here: DuckDB's TIMESTAMP literal would drop the offset without a word.
    """
    when = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when.isoformat(sep=" ")


def parse_since(ctx: FileCheck, raw: located.Located) -> str | None | bool:
    """``first_seen.since`` normalized, None when absent, False (after an error at its line) when not a time."""
    since = raw.get("since")
    if since is None:
        return None
    try:
        return since_text(since)
    except ValueError:
        ctx.error(raw.line_of("since"), f"first_seen since {since!r} is not a date or time (2026-03-10 09:00)")
        return False


def parse_first_seen_override(ctx: FileCheck, doc: located.Located, rule: FirstSeen | None, rule_id: str) -> None:
    """An override's ``first_seen: {since: ...}``: re-learn a shipped first-seen rule without editing it.

    Only ``since`` may change: a different key, value or learning period is
    another rule (copy it), while a new baseline date is local operations.
    """
    raw = ctx.mapping(doc, "first_seen")
    if raw is None:
        return
    ctx.keys(raw, {"since"}, "an override's first_seen")
    if rule is None:
        ctx.error(raw.line, f"rule {rule_id} is not a first-seen rule (no first_seen: to re-learn)")
        return
    since = parse_since(ctx, raw)
    if isinstance(since, str):
        rule.since = since


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


__all__ = ["parse_first_seen", "parse_first_seen_override", "parse_since", "parse_threshold", "since_text"]
