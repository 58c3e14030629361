"""Tetragon JSON lines -> rows of the event schema, a whole batch at a time.

Why SQL and not a Python loop: parsing and flattening 2 KB Tetragon events one
by one in Python tops out near 70k events/s on one core, while DuckDB's JSON
functions do the same work vectorized, in C++, on every core (~150k events/s
on two). So the normalizer is one generated DuckDB query over an Arrow batch of
raw lines. Every event kind is handled by the same query: the line's event key
(``process_exec``, ``process_kprobe``, ...) is renamed ``__event__`` by a
prefix rewrite and fields are looked up under it
(``$.__event__.process.binary``), so one list of constant paths serves every
kind, and kinds this module has never heard of (a future kind) still get their
process, pod and socket columns, and their JSON is kept in ``raw``.

Lines that are not Tetragon events are not dropped: they come back as rejects
with the reason (invalid or truncated JSON, not an object, no event key, bad
time) and where they were read.

Any input, any fault: never a crash, never a blank field
--------------------------------------------------------

**Key order.** A row depends on what a line says, not on how its keys are
ordered: ``jq -S`` output, ``{"time":…,"node_name":…,"process_exec":…}`` and
Tetragon's own order give the same row (``raw`` aside, which is kept as read).
Fields are found by path, so order only matters where JSON *text* becomes a
column or part of the ``event_id`` (``args``, ``return_value``, the body of
events without a process). Tetragon's exporter (Go protojson) writes every
object in the order its fields are declared in the ``.proto`` and map entries
sorted by key; that order is the canonical one. Lines in it (all of
Tetragon's, and tetrapipe's own gRPC codec output) are read as they are, so
the ``event_id`` of an event never changes; any other line is first
re-serialized in canonical order (known fields in declaration order, unknown
ones after them as they came, map entries sorted) by :func:`canonical_line`,
in Python: ~70 µs a line, paid only by lines that need it.

**Wrong JSON types.** A value of an unexpected type (``"args":"notalist"``, an
object where Tetragon sends a string) never fails the query: list, map and
JSON columns are NULL unless the value has the right type (a string that
merely looks like an array or an object is not one); number, boolean and time
columns are NULL unless the value converts; text columns keep the value as
text (an object becomes its JSON). The event is kept. If DuckDB still raises
on a batch, :meth:`Normalizer.normalize` bisects the batch until the
offending line stands alone and rejects it with DuckDB's message ("could not
be normalized: …"); every other line is normalized as usual, in order.

**Duplicate keys.** DuckDB's JSON functions take the FIRST value of a
duplicated key; Go, orjson, Python, jq and the SIEMs downstream take the
LAST. A line like ``{"process":{"binary":"/bin/bash","binary":"/usr/bin/true"}}``
would show ``/bin/bash`` to tetrapipe's rules and ``/usr/bin/true`` to anything
reading ``raw``: a detection-evasion gap. So the fast query lists the keys of
every object a column is read from (the line, the event, the process and its
pod, container, image, credentials, capabilities and namespaces, the parent,
the argument list, the return value, the ancestors): that line *shape* is
judged once per distinct shape, and Tetragon's lines have a few hundred (see
:func:`shape_verdict`). Why not a cheaper guess (counting ``"binary":``): any
count can be matched by a crafted line; listing keys is exact and costs one
more parse of each line, the price of this check: ~7 µs of the ~25 µs one
core spends on a 2 KB event (bench/gen_events.py lines; ~18 µs without it,
as before this check): ~3-4 µs for the parse that lists the keys, ~2 µs for
the argument, return value and ancestor lists of the lines that have them,
~1.3 µs to hand the lists over as one JSON text a line, which is its own exact
fingerprint (JSON says where every key starts and ends; handing over the nested
lists and fingerprinting them in Python cost ~7% more of the first pass's CPU).
Judging the lists in SQL instead
costs more (DuckDB's list functions on nested lists: +6-9 µs), and a test
on the raw text cannot be both exact and cheaper than a parse (README,
"Performance"). A line with a repeat is
re-serialized by Python's parser, which keeps the last value, and the event
records it in the ``warnings`` column (``duplicate key
process_exec.process.binary: last value used``). Why a column and not a
reject: the event is real and wanted (rules still run on it, with the values
every other reader sees); the finding travels with it to the lake and the
SIEM, where a rule or a query (``WHERE warnings IS NOT NULL``) can alert on a
tampered or mangled log; and the rejects table keeps meaning "lines that are
not events". A repeat in an object no column is read from changes no column;
it is reported when the line was re-serialized anyway.

**Time.** ``time`` stays a microsecond TIMESTAMP (see tetrapipe/schema.py for
why); ``time_ns`` keeps Tetragon's nanoseconds, so events of one process in
the same microsecond keep their order.
"""

from tetrapipe.transforms.normalize.canonical import canonical_line
from tetrapipe.transforms.normalize.normalizer import (
    Normalized,
    Normalizer,
    make_rejects,
    normalize_groups,
    normalize_lines,
)
from tetrapipe.transforms.normalize.queries import CAREFUL_SQL, FAST_SQL
from tetrapipe.transforms.normalize.shape import ShapeVerdict, shape_verdict

__all__ = [
    "CAREFUL_SQL",
    "FAST_SQL",
    "Normalized",
    "Normalizer",
    "ShapeVerdict",
    "canonical_line",
    "make_rejects",
    "normalize_groups",
    "normalize_lines",
    "shape_verdict",
]
