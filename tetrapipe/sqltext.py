"""Values and names written into SQL text: the one place that quotes them.

DuckDB statements here are built as text wherever a value cannot be a bound
parameter: a prepared statement that every batch reuses, a view over a list of
files, a rule's compiled predicate, a list literal in a plan. Every such value
goes through these functions, so a quote inside a pod name, a path or a rule's
string can only ever end up as data, never as SQL.
"""

from __future__ import annotations

from collections.abc import Iterable


def sql_string(text: str) -> str:
    """``text`` as a SQL string literal (a single quote inside is doubled)."""
    return "'" + text.replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (a double quote inside is doubled)."""
    return '"' + name.replace('"', '""') + '"'


def sql_string_list(items: Iterable[str]) -> str:
    """``items`` as a DuckDB list literal of strings."""
    return "[" + ", ".join(sql_string(i) for i in items) + "]"


__all__ = ["sql_ident", "sql_string", "sql_string_list"]
