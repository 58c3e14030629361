"""Process ancestry: a bounded, live process table and every event's ancestor chain.

Why a table: Tetragon sends the full chain (``ancestors``) only when it runs with
``--enable-ancestors`` (off by default) and then not for every event kind; every
event does carry its process and its parent. A table keyed by ``exec_id`` that
learns ``process -> parent`` links from every event can walk the rest of the
chain, so rules can say "any ancestor is a web server" on any event kind.

What the table learns from one event (all of it vectorized over a batch):

* the process: ``exec_id -> parent_exec_id``, binary, pid;
* the parent: ``parent_exec_id`` with its binary and pid, and its own parent when
  the event carries ``ancestors`` (their first element is the grandparent);
* Tetragon's ``ancestors`` list, when present: each element's parent is the next;
* ``process_exit``: the process exited at the event's time (eviction clock).

Which events are enriched: rows with an ``exec_id`` and a ``parent_exec_id`` whose
``ancestor_exec_ids`` is NULL get ``ancestor_exec_ids`` / ``ancestor_binaries``
filled (nearest first, starting above the parent, as Tetragon orders them); rows
whose Tetragon ``ancestors`` were present keep them as sent. A missing
``parent_binary`` / ``parent_pid`` is filled from the table too.

Where the chain ends, and the gap markers (documented in the README):

* at the top: a process with host pid <= 2 (init, kthreadd; Tetragon's own
  ``ancestors`` stop there too). The chain is complete; an empty list means
  the parent is itself the top.
* an element whose binary is NULL is a process known only by its exec_id (a
  parent that started before tetrapipe did, or whose events are still to come);
  the walk goes on above it when its parent is known.
* a NULL exec_id as the last element: the chain is cut there, because the
  parent of the element before it is not known (yet), or the walk hit the depth
  limit or a cycle in corrupt data.

Out of order is normal: the whole batch is learned before any row is enriched,
so a child before its parent in one batch gets the full chain; across batches,
rows written before the parent showed up keep their gap markers (written rows
are never rewritten) and later events of the same process get the full chain.

Why columnar: the budget is about 3 µs per event at 70k events/s. Python never
loops over events: each exec_id column is made distinct with Arrow's dictionary
encoding, the distinct ids are hashed with polars and looked up in an
open-addressing numpy hash index; the table is a set of numpy arrays (parent
pointers, interned binary ids, pids, times) and exec_id strings live in one byte
arena; chains are walked for the batch's distinct parents with numpy gathers
and become Arrow list columns without a per-row step. Python only touches the
distinct binaries and node names of a batch, and (once per unknown parent) the
raw JSON of one event to read the grandparent's exec_id, which the event
schema does not carry.

Bounded memory: an exited process is evicted ``grace`` after its exit, in event
time per node (replaying an old log behaves like the live stream), once no live
child references it (as Tetragon's own cache does with its refcount); a
process that never exits stays. ``max_entries`` is a hard cap that evicts the
least recently seen processes first (their children's chains then end with a
NULL exec_id). About 180 bytes per process with 40-60 character exec_ids:
1,000,000 processes that never exit take ~170 MB (bench/bench_ancestry.py).

Keys: ``exec_id`` alone. Tetragon exec_ids are ``base64(node:ktime:pid)``, so they
embed the node and ids of different nodes do not collide. Two different
exec_ids with the same 64-bit hash would be detected (the stored string is
compared) and the newcomer left unenriched, never merged.

The package, in the order the data goes through it: :mod:`.index` (slot codes,
the numpy hash index, the string interner), :mod:`.batch` (one batch's columns,
made distinct once), :mod:`.table` (the table's storage, lookups, eviction),
:mod:`.learn` (what a batch teaches it, the chains it writes back) and
:mod:`.transform` (the pipeline step, restored from the history a flow hands
it). See ``docs/ARCHITECTURE.md``.
"""

from tetrapipe.transforms.ancestry.index import FORGOTTEN_PARENT, NO_PARENT, UNKNOWN_PARENT, exec_id_pid
from tetrapipe.transforms.ancestry.table import ProcessInfo, ProcessTable, TableStats
from tetrapipe.transforms.ancestry.transform import AncestryTransform, enrich_all

__all__ = [
    "AncestryTransform",
    "ProcessTable",
    "ProcessInfo",
    "TableStats",
    "exec_id_pid",
    "enrich_all",
    "NO_PARENT",
    "UNKNOWN_PARENT",
    "FORGOTTEN_PARENT",
]
