"""The ``date`` partition of a row is its time's day, whatever the time: the same text as formatting each row."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from tetrapipe.lake.store import with_date
from tetrapipe.schema import PARTITION_TIME, SCHEMAS

#: 0001-01-01 and 9999-12-31T23:59:59.999999, the range a microsecond timestamp formats in
_FIRST_US, _LAST_US = -62_135_596_800_000_000, 253_402_300_799_999_999
_DAY = 86_400_000_000
_EDGES = [0, -1, 1, -_DAY, -_DAY - 1, _DAY - 1, _DAY, _FIRST_US, _LAST_US]


def _rows(name: str, micros: list[int | None]) -> pa.Table:
    schema = SCHEMAS[name]
    times = pa.array(micros, pa.int64()).cast(pa.timestamp("us"))
    columns = {
        f.name: times.cast(f.type) if f.name == PARTITION_TIME[name] else pa.nulls(len(micros), f.type) for f in schema
    }
    return pa.table(columns, schema=schema)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["events", "alerts"]),
    st.lists(st.one_of(st.none(), st.sampled_from(_EDGES), st.integers(_FIRST_US, _LAST_US)), max_size=40),
)
def test_the_date_is_each_rows_own_formatted_day(name: str, micros: list[int | None]) -> None:
    rows = _rows(name, micros)
    got = with_date(name, rows).column("date")
    want = pc.strftime(pc.cast(rows.column(PARTITION_TIME[name]), pa.timestamp("us")), format="%Y-%m-%d")
    assert got.to_pylist() == want.to_pylist()
    assert got.type == pa.string()
