"""Quoting for SQL text: whatever a value holds, DuckDB reads back exactly that value, never SQL."""

from __future__ import annotations

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from tetrapipe.sqltext import sql_ident, sql_string, sql_string_list

#: any text DuckDB can hold (no NUL, no lone surrogate), with quotes and SQL's own characters favoured
_text = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=30
) | st.sampled_from(["'", "''", '"', "'; DROP TABLE t; --", "a'b\"c", "\\'", "$$", "é\u202e", ""])


@settings(max_examples=100, deadline=None)
@given(value=_text, items=st.lists(_text, max_size=5))
def test_duckdb_reads_back_exactly_the_value(value: str, items: list[str]) -> None:
    con = duckdb.connect()
    try:
        assert con.execute(f"SELECT {sql_string(value)}").fetchone() == (value,)
        assert con.execute(f"SELECT {sql_string_list(items)}::VARCHAR[]").fetchone() == (items,)
        if value:  # an identifier cannot be empty
            assert [d[0] for d in con.execute(f"SELECT 1 AS {sql_ident(value)}").description] == [value]
    finally:
        con.close()
