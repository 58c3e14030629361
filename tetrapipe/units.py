"""The units every layer reads from people: durations, byte sizes and the severity scale.

Each is written by hand in several places (a rule's dedup window and
parameters, a config file's ``tls_window``, ``--late-after`` on the command
line, ``--buffer-bytes``, a sink's ``min_severity``), so each has one grammar
here; two spellings that parse differently in two commands would be a bug a
user finds in production. Nothing in this module imports the rest of the
project. See docs/ARCHITECTURE.md for where it sits.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

# --- durations --------------------------------------------------------------------------------

#: a number and an optional unit; a bare number is seconds
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|d|w)?\s*$", re.IGNORECASE)
_SECONDS_PER = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def _match_seconds(text: str, *, unit_required: bool, bare: str | None = None) -> float | None:
    m = _DURATION.match(text)
    if not m or (unit_required and m.group(2) is None):
        return None
    unit = m.group(2).lower() if m.group(2) else bare
    return float(m.group(1)) * _SECONDS_PER[unit]


def parse_duration(text: str, *, bare: str = "s") -> dt.timedelta:
    """``90s``, ``5m``, ``2h``, ``1d``, ``1w``, ``1.5h``, ``250ms``; a bare number is in ``bare`` (seconds).

    ``bare="d"`` is for an option whose help speaks in days (``lake
    retention --keep 90``): there a bare 90 meant 90 seconds, which is never
    what was asked. Raises ValueError with the accepted forms, which callers
    show as is.
    """
    seconds = _match_seconds(text, unit_required=False, bare=bare.lower())
    if seconds is None:
        raise ValueError(f"not a duration: {text!r} (try 90s, 5m, 2h, 1d)")
    return dt.timedelta(seconds=seconds)


def duration_seconds(value: Any) -> float | None:
    """Seconds in a value read from YAML (a number is seconds, ``5m`` is 300); None if not a duration.

    Rule files hold durations as numbers or strings; a boolean is neither,
    although Python counts it as an int.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return _match_seconds(value, unit_required=False)
    return None


def is_duration_text(value: Any) -> bool:
    """A string that spells a duration with its unit (``5m``, not ``5``).

    A rule parameter such as ``"5"`` stays the string it is; only a value
    with a unit is meant as a length of time.
    """
    return isinstance(value, str) and _match_seconds(value, unit_required=True) is not None


# --- sizes ------------------------------------------------------------------------------------

_SIZE_FACTOR = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str | int) -> int:
    """``64M``, ``1G``, ``512k``, ``64MiB``, ``1.5G`` or plain bytes (binary multiples).

    Raises ValueError naming the accepted forms.
    """
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    factor = _SIZE_FACTOR.get(t[-1:], 1)
    try:
        return int(float(t[:-1] if factor > 1 else t) * factor)
    except ValueError:
        raise ValueError(f"{text!r} is not a size (e.g. 64M, 1G)") from None


# --- severities -------------------------------------------------------------------------------

#: the severity scale of rules and alerts, lowest first; the index is the rank filters compare
SEVERITIES = ("info", "low", "medium", "high", "critical")
#: severity name -> rank (0 info .. 4 critical)
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


def severity_rank(name: str | None) -> int:
    """0 (info) .. 4 (critical); unknown or missing severities rank as info, never above it."""
    return SEVERITY_RANK.get((name or "info").lower(), 0)


def most_severe_first(name: str | None) -> int:
    """A sort key: critical first, info last, a severity this version does not know after all of them."""
    return -SEVERITY_RANK.get(name, -1) if name is not None else 1


__all__ = [
    "SEVERITIES",
    "SEVERITY_RANK",
    "duration_seconds",
    "is_duration_text",
    "most_severe_first",
    "parse_duration",
    "parse_size",
    "severity_rank",
]
