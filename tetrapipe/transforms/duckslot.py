"""Small DuckDB helpers of the detector and the normalizer: prepared statements over swappable Arrow sources, bits, a warning.

Kept apart so that :mod:`tetrapipe.transforms.detect` reads as the detector,
and so both run their per-batch statements the same way.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import pyarrow as pa

T = TypeVar("T")


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


class PreparedSlots:
    """Statements prepared once on a connection against :class:`ArrowSlot` sources whose tables change per call.

    Why it is one object: a registration changes the catalog, and DuckDB then
    binds every statement prepared before it again at each execution, for
    good (binding all rules cost more than running them), so a new slot
    deallocates every statement, which is prepared anew on its next use. A
    caller that knows its sources in advance registers them all with
    :meth:`register` before preparing anything: each statement is then
    prepared once (the per-kind rule mask of 150 rules took ~0.2 s to prepare).
    """

    def __init__(self, con: Any, prefix: str) -> None:
        self._con = con
        self._prefix = prefix
        self._slots: dict[str, ArrowSlot] = {}
        self._names: dict[object, str] = {}

    def register(self, schemas: dict[str, pa.Schema]) -> None:
        """Register a slot for each source not registered yet (deallocating the statements if any is new)."""
        new = [(name, schema) for name, schema in schemas.items() if name not in self._slots]
        for name, schema in new:
            slot = self._slots[name] = ArrowSlot(schema)
            self._con.register(name, slot)
        if new:
            self.deallocate()

    def run(
        self, key: object, sql: str, sources: dict[str, pa.Table], fetch: Callable[[Any], T], relation: bool = False
    ) -> T:
        """``fetch`` of the cursor of ``sql`` (prepared on the first call with ``key``) over ``sources`` (name -> table).

        A source whose columns differ from its slot's gets a slot of its own
        (a prepared statement reads the types it was bound with). ``relation``:
        ``fetch`` gets a relation (``con.sql``) rather than a cursor: its Arrow
        read does not copy the rows once more, which pays for a large result
        (the normalizer's) and not for a small one (the detector's).
        """
        for name, table in sources.items():
            slot = self._slots.get(name)
            if slot is not None and not table.schema.equals(slot.empty.schema):
                self._con.unregister(name)
                del self._slots[name]
        self.register({name: table.schema for name, table in sources.items()})
        slots = [self._slots[name] for name in sources]
        for slot, table in zip(slots, sources.values(), strict=True):
            slot.table = table
        try:
            name = self.prepare(key, sql)
            execute = self._con.sql if relation else self._con.execute
            return fetch(execute(f"EXECUTE {name}"))
        finally:
            for slot in slots:
                slot.table = slot.empty  # do not keep the tables alive between calls

    def prepare(self, key: object, sql: str) -> str:
        """The name of the statement of ``key``, prepared from ``sql`` unless it is already.

        :meth:`run` calls it; a caller that times runs calls it first, so that
        what it times is the execution alone (every source must be registered).
        """
        name = self._names.get(key)
        if name is None:
            if len(self._names) > 256:  # bounded: e.g. one per set of rules seen matching together
                self.deallocate()
            name = f"{self._prefix}{len(self._names)}"
            self._con.execute(f"PREPARE {name} AS {sql}")
            self._names[key] = name
        return name

    def deallocate(self) -> None:
        for name in self._names.values():
            self._con.execute(f"DEALLOCATE {name}")
        self._names.clear()

    def reset(self) -> None:
        """Forget every statement and slot (the sources' columns changed)."""
        self.deallocate()
        for name in self._slots:
            self._con.unregister(name)
        self._slots.clear()


def set_bits(mask: int) -> list[int]:
    """Positions of the set bits of a non-negative int, lowest first."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


__all__ = ["ArrowSlot", "PreparedSlots", "quiet_arrow_copy_warning", "set_bits"]
