"""Saved hunts: named SQL over the lake's views, one ``<name>.sql`` file each, shipped in the wheel.

A hunt is a file rather than a string in code so that an analyst can read it,
copy it into ``tetrapipe query`` and change it; its first comment line is the
description ``tetrapipe query --hunts`` lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Hunt:
    name: str
    description: str
    sql: str


def saved_hunts() -> dict[str, Hunt]:
    """The shipped hunts by name (file name without ``.sql``), in name order."""
    out: dict[str, Hunt] = {}
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        sql = entry.read_text(encoding="utf-8")
        first = sql.splitlines()[0] if sql else ""
        desc = first[2:].strip() if first.startswith("--") else ""
        out[entry.name[:-4]] = Hunt(entry.name[:-4], desc, sql)
    return out


__all__ = ["Hunt", "saved_hunts"]
