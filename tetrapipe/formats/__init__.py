"""Output formats for SIEM sinks: native tetrapipe JSON, OCSF 1.x, ECS, CEF, and chat messages.

Each format is a pure function from one native row (a dict with the columns
of :mod:`tetrapipe.schema`, an event or an alert) to one JSON-ready dict, so
it can be tested without a sink and a sink never cares which format it ships
(CEF, a line of text, comes in an envelope dict: see :mod:`tetrapipe.formats.cef`).
``tetrapipe/formats/README.md`` documents every mapping field by field.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from tetrapipe.formats.cef import to_cef
from tetrapipe.formats.ecs import to_ecs
from tetrapipe.formats.native import to_native
from tetrapipe.formats.ocsf import to_ocsf
from tetrapipe.formats.slack import to_slack
from tetrapipe.formats.values import event_time, is_alert

Formatter = Callable[[dict[str, Any]], dict[str, Any]]

FORMATS: dict[str, Callable[..., dict[str, Any]]] = {
    "native": to_native,
    "ocsf": to_ocsf,
    "ecs": to_ecs,
    "cef": to_cef,
    "slack": to_slack,
}


def get_formatter(name: str, *, include_raw: bool = False) -> Formatter:
    """The mapping called ``name``; ``include_raw`` keeps the original Tetragon JSON in the output."""
    try:
        fn = FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; choose one of {', '.join(FORMATS)}") from None
    return partial(fn, include_raw=include_raw)


__all__ = [
    "FORMATS",
    "Formatter",
    "event_time",
    "get_formatter",
    "is_alert",
    "to_cef",
    "to_ecs",
    "to_native",
    "to_ocsf",
    "to_slack",
]
