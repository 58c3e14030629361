"""The history: where events, alerts, rejects and TLS statistics are kept, and how they are read.

Write side and read side live in one package because they share one layout
(one Delta table per kind of row, see :mod:`.store`):

* :mod:`.store`: :class:`Lake`, whose ``commit`` is the one way rows reach
  the lake;
* :mod:`.positions`: the positions (Delta app transactions) each commit
  carries, so the lake itself says where a flow resumes;
* :mod:`.maintenance`: ``OPTIMIZE`` (under a lease, so two optimizers never
  store a row twice), ``VACUUM``, retention by date, history and stats;
  :mod:`.migrate` turns the old Parquet-segment layout into Delta tables;
* :mod:`.views`: :class:`~.views.LakeViews` and :func:`connect`, a DuckDB
  connection whose views are the history (each table's snapshot as an Arrow
  dataset built by :mod:`.scan`, so date and time filters prune files; a data
  file that cannot be read is named and left out); :mod:`.asof` resolves
  ``--as-of`` (time travel); :func:`read_rows` replays a table in time order;
  :mod:`.query` runs ``tetrapipe query`` and :mod:`.hunts` holds the saved hunts;
* :mod:`.state`: the reads a restarted flow hands its stateful transforms
  (transforms never open the lake themselves).

Most users only read: they need :class:`Lake` and :func:`connect`, both
importable from here. The names from :mod:`.views` are loaded on first use
so that a command which never queries does not pay for importing DuckDB. See
``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tetrapipe.lake.positions import Position
from tetrapipe.lake.store import DEFAULT_LAKE, LAKE_ENV, Lake

if TYPE_CHECKING:
    from tetrapipe.lake.hunts import Hunt, saved_hunts
    from tetrapipe.lake.views import VIEW_DOCS, connect, read_rows

#: names imported when first asked for, by module: DuckDB is a heavy import, and the hunts'
#: ``importlib.resources`` is a few milliseconds that a query of SQL (not of a hunt) need not pay
_LAZY = {
    "VIEW_DOCS": "views",
    "connect": "views",
    "read_rows": "views",
    "Hunt": "hunts",
    "saved_hunts": "hunts",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"tetrapipe.lake.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_LAKE",
    "LAKE_ENV",
    "VIEW_DOCS",
    "Hunt",
    "Lake",
    "Position",
    "connect",
    "read_rows",
    "saved_hunts",
]
