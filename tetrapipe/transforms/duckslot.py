"""Small DuckDB helpers of the detector: a swappable Arrow source for prepared statements, bits, a warning.

Kept apart so that :mod:`tetrapipe.transforms.detect` reads as the detector.
"""

from __future__ import annotations

import warnings

import pyarrow as pa


def quiet_arrow_copy_warning() -> None:
    """Silence DuckDB's "extra copy" warning for this module's cursor reads, and only those.

    The detector reads its small results as Arrow from the cursor
    (``con.execute(...).to_arrow_table()``), which DuckDB warns copies the rows
    once more; for a few thousand rows that copy is cheaper than what the warning
    recommends (``con.sql``, which binds the statement once more). Called per
    detector, not only at import, because test runners reset the filters;
    ``filterwarnings`` replaces an identical filter, so the list does not grow.
    """
    warnings.filterwarnings(
        "ignore",
        message="Arrow output on a DB-API result makes an extra copy",
        category=UserWarning,
        module=r"tetrapipe\.transforms\.detect",
    )


class ArrowSlot:
    """A registered Arrow source whose table is swapped per batch (see ``tetrapipe.transforms.detect.Detector._run``).

    DuckDB reads it through the Arrow PyCapsule interface at each scan, so a
    statement prepared against it reads the current table without being bound
    again; the schema must not change (the detector re-prepares if it does).
    """

    def __init__(self, schema: pa.Schema) -> None:
        self.empty = schema.empty_table()
        self.table = self.empty

    def __arrow_c_schema__(self) -> object:
        return self.table.schema.__arrow_c_schema__()

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return self.table.__arrow_c_stream__(requested_schema)


def set_bits(mask: int) -> list[int]:
    """Positions of the set bits of a non-negative int, lowest first."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


__all__ = ["ArrowSlot", "quiet_arrow_copy_warning", "set_bits"]
