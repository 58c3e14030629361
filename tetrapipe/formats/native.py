"""The native format: the tetrapipe row itself, as JSON.

Column names and meanings are those of :mod:`tetrapipe.schema` (``tetrapipe
query --schema`` prints them), so a SIEM search written against the lake reads
the same fields here. Only the encoding changes: times become RFC 3339 UTC
strings, pod labels a JSON object, NULLs are left out (a missing key means the
same as NULL: Tetragon did not say), and ``raw`` (the original Tetragon JSON,
often half of the bytes) is kept only when asked for.

Two keys are added so a consumer can tell records apart without guessing:
``record_type`` (``alert`` or ``event``) and ``schema`` (``tetrapipe/1``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tetrapipe.formats.values import as_map, is_alert, iso8601

SCHEMA_TAG = "tetrapipe/1"
_MAP_COLUMNS = ("pod_labels",)


def to_native(row: dict[str, Any], *, include_raw: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"record_type": "alert" if is_alert(row) else "event", "schema": SCHEMA_TAG}
    for key, value in row.items():
        if value is None or (key == "raw" and not include_raw):
            continue
        if isinstance(value, datetime):
            value = iso8601(value)
        elif key in _MAP_COLUMNS:
            value = as_map(value)
        out[key] = value
    return out
