"""The normalizer: raw lines in, event rows and rejects out, one DuckDB query a batch.

See :mod:`tetrapipe.transforms.normalize` for why, and ``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from tetrapipe.schema import EVENT_SCHEMA, REJECT_SCHEMA
from tetrapipe.sqltext import sql_string
from tetrapipe.transforms.duckslot import PreparedSlots
from tetrapipe.transforms.normalize.canonical import canonical_line
from tetrapipe.transforms.normalize.queries import CAREFUL_SQL, FAST_SQL, REREAD_SQL
from tetrapipe.transforms.normalize.shape import OBJECT_COLUMNS, ShapeVerdict, shape_verdict

#: rows per Arrow record batch handed to DuckDB: several batches let it use every core
_SCAN_CHUNK = 4096
#: distinct line shapes remembered; Tetragon's output has a few hundred
_MAX_SHAPES = 100_000
#: Optimizer passes left out. Why: the DuckDB client binds, plans and optimizes a prepared
#: statement again at every EXECUTE (~20 ms a batch for these queries), and these passes
#: buy them nothing: no join to order or pick a build side for (but a 17-name IN list), no
#: stored data whose statistics prune anything, nothing materialized, and expressions
#: already written the way they should run (no constant to fold beyond what binding does).
#: Measured: ~5 ms less a batch (~20% of a stream's micro-batch), the same rows.
_SKIPPED_OPTIMIZERS = (
    "expression_rewriter",
    "statistics_propagation",
    "join_order",
    "build_side_probe_side",
    "compressed_materialization",
)
#: the batch's columns, as every query reads them
_BATCH_SCHEMA = pa.schema([("_i", pa.int64()), ("source_offset", pa.int64()), ("raw", pa.large_string())])


@dataclass
class Normalized:
    """One batch after normalization: the events, and the lines that were not events."""

    events: pa.Table
    rejects: pa.Table


class Normalizer:
    """Turns batches of raw Tetragon JSON lines into event rows.

    Holds one in-memory DuckDB connection for its whole life: planning the
    query once and reusing the connection is what keeps small batches (a
    stream processor's micro-batches) cheap.
    """

    def __init__(self, threads: int | None = None) -> None:
        self._con = duckdb.connect(":memory:")
        if threads:
            self._con.execute(f"SET threads = {int(threads)}")
        self._con.execute("SET TimeZone = 'UTC'")
        known = {row[0] for row in self._con.execute("SELECT name FROM duckdb_optimizers()").fetchall()}
        skipped = [name for name in _SKIPPED_OPTIMIZERS if name in known]  # names differ between DuckDB versions
        if skipped:
            self._con.execute(f"SET disabled_optimizers = {sql_string(','.join(skipped))}")
        #: what each line shape seen so far says, by fingerprint (see :func:`shape_verdict`)
        self._verdicts: dict[str, ShapeVerdict] = {}
        # Each query is prepared once, against a registered source whose table is swapped
        # per batch. Why: binding and planning the ~17 KB queries cost ~50 ms of CPU a
        # call (``con.sql`` binds twice: once for the schema, once to run): ~4.5 µs an
        # event at ingest's ~11k lines a batch, far more for a stream's small batches.
        self._prepared = PreparedSlots(self._con, "_tetrapipe_normalize_")
        self._prepared.register({"batch": _BATCH_SCHEMA})

    def close(self) -> None:
        self._con.close()

    def _query(self, sql: str, batch: pa.Table) -> pa.Table:
        """Run ``sql`` (prepared on first use) over ``batch``, which has the columns of :data:`_BATCH_SCHEMA`."""
        batch = batch.cast(_BATCH_SCHEMA) if batch.schema != _BATCH_SCHEMA else batch
        return self._prepared.run(sql, sql, {"batch": batch}, _arrow, relation=True)

    def _run(self, sql: str, batch: pa.Table, source: str) -> pa.Table:
        batch = pa.Table.from_batches(batch.to_batches(max_chunksize=_SCAN_CHUNK), schema=batch.schema)
        # the input's name is set here, not bound: the prepared statement stays the same for every input
        out = self._query(sql, batch)
        i = out.schema.get_field_index("source")
        return out.set_column(i, out.field(i), pa.repeat(pa.scalar(source, out.field(i).type), out.num_rows))

    def _fast(self, batch: pa.Table, source: str, reread: bool = False) -> pa.Table | None:
        """The fast query's rows that are done (their shape is plain); a line of invalid JSON is left out."""
        sql = REREAD_SQL if reread else FAST_SQL
        try:
            out = self._run(sql, batch, source)
        except duckdb.InvalidInputException:
            # some line is not valid JSON: run the others, the careful query explains that one
            valid = self._query("SELECT json_valid(raw) AS ok FROM batch", batch).column("ok")
            batch = batch.filter(pc.fill_null(valid, False))
            if batch.num_rows == 0:
                return None
            out = self._run(sql, batch, source)
        if "label_keys" in out.column_names:  # the first pass leaves the labels map to be built here
            i = out.schema.get_field_index("pod_labels")
            labels = labels_map(out.column("label_keys"), out.column("label_values"), out.field(i).type)
            out = out.set_column(i, out.field(i), labels).drop_columns(["label_keys", "label_values"])
        # each row's shape as JSON text (see queries.SHAPE_CTE): equal exactly when the shapes are
        encoded = pc.dictionary_encode(out.column("shape").combine_chunks())
        out = out.drop_columns(["shape"])
        which = encoded.indices.to_numpy(zero_copy_only=False)
        verdicts = []
        for text in encoded.dictionary.to_pylist():
            verdict = self._verdicts.get(text)
            if verdict is None:
                verdict = shape_verdict(orjson.loads(text))
                if len(self._verdicts) >= _MAX_SHAPES:  # a pathological stream: start over rather than grow
                    self._verdicts.clear()
                self._verdicts[text] = verdict
            verdicts.append(verdict)
        if all(v.plain and not v.nulls for v in verdicts):
            return out
        rows = np.array(verdicts, dtype=object)[which]
        for column, _ in OBJECT_COLUMNS:
            void = np.array([column in v.nulls for v in rows], dtype=bool)
            if void.any():
                i = out.schema.get_field_index(column)
                nulls = pa.nulls(len(void), out.field(i).type)
                out = out.set_column(i, column, pc.if_else(pa.array(void), nulls, out.column(i)))
        if reread:  # a re-serialized line is read as it is now, whatever its shape says
            return out
        keep = np.array([v.plain for v in rows], dtype=bool)
        return out if keep.all() else out.filter(pa.array(keep))

    def normalize(self, raw: pa.Array, offsets: pa.Array, source: str) -> Normalized:
        """Normalize ``raw`` (strings, one event each) read at ``offsets`` of ``source``.

        ``raw`` must be valid UTF-8 (see :func:`tetrapipe.sources.lines.split_lines`).
        Never raises for what the lines say: a line DuckDB cannot handle at all is
        found by bisecting the batch and becomes a reject.
        """
        if len(raw) == 0:
            return Normalized(EVENT_SCHEMA.empty_table(), REJECT_SCHEMA.empty_table())
        try:
            return self._normalize(raw, offsets, source)
        except (duckdb.Error, pa.ArrowException) as exc:
            if len(raw) == 1:
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                return Normalized(
                    EVENT_SCHEMA.empty_table(),
                    make_rejects(source, offsets.to_pylist(), [f"could not be normalized: {message}"], raw.to_pylist()),
                )
        mid = len(raw) // 2
        head = self.normalize(raw.slice(0, mid), offsets.slice(0, mid), source)
        tail = self.normalize(raw.slice(mid), offsets.slice(mid), source)
        return Normalized(pa.concat_tables([head.events, tail.events]), pa.concat_tables([head.rejects, tail.rejects]))

    def _normalize(self, raw: pa.Array, offsets: pa.Array, source: str) -> Normalized:
        n = len(raw)
        raw = raw.cast(pa.large_string()) if raw.type != pa.large_string() else raw
        order = pa.array(np.arange(n, dtype=np.int64))
        batch = pa.table({"_i": order, "source_offset": offsets, "raw": raw})
        first = self._fast(batch, source)
        parts = [first] if first is not None else []
        warnings: dict[int, list[str]] = {}
        if first is None or first.num_rows < n:
            # the rest: lines whose first key is not a known kind, lines in another key
            # order or with a repeated key, invalid lines. Re-serialize what parses.
            mask = np.ones(n, dtype=bool)
            if first is not None:
                mask[first.column("_i").to_numpy()] = False
            rest = np.flatnonzero(mask)
            texts = raw.take(pa.array(rest)).to_pylist()
            for j, (i, text) in enumerate(zip(rest.tolist(), texts, strict=True)):
                canon = canonical_line(text)
                if canon is not None:
                    texts[j], dups = canon
                    if dups:
                        warnings[i] = [f"duplicate key {d}: last value used" for d in dups]
            again = pa.table(
                {
                    "_i": pa.array(rest, pa.int64()),
                    "source_offset": offsets.take(pa.array(rest)),
                    "raw": pa.array(texts, pa.large_string()),
                }
            )
            second = self._fast(again, source, reread=True)
            left = np.ones(len(rest), dtype=bool)
            if second is not None:
                parts.append(second)
                left[np.searchsorted(rest, second.column("_i").to_numpy())] = False
            if left.any():
                parts.append(self._run(CAREFUL_SQL, again.filter(pa.array(left)), source).drop_columns(["shape"]))
        out = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        if not _is_sorted(out.column("_i")):
            # DuckDB scans the batch's Arrow chunks on several threads and may hand
            # them back out of order; later transforms (TLS pairing a ServerHello
            # with its ClientHello, ancestry, dedup windows) need the log's order.
            # Re-serialized lines come back after the others, too.
            out = out.take(pc.sort_indices(out.column("_i")))
        order = out.column("_i")
        if warnings:
            idx = order.to_pylist()
            out = out.set_column(
                out.schema.get_field_index("warnings"),
                "warnings",
                pa.array([warnings.get(i) for i in idx], pa.list_(pa.string())),
            )
        reject = out.column("reject")
        ok = pc.is_null(reject)
        raw_col = (
            batch.column("raw").take(order) if out.num_rows != n or not _is_identity(order) else batch.column("raw")
        )
        all_ok = reject.null_count == out.num_rows
        events = (out if all_ok else out.filter(ok)).drop_columns(["reject", "_i"])
        events = events.append_column("raw", raw_col if all_ok else pc.filter(raw_col, ok)).cast(EVENT_SCHEMA)
        rejects = REJECT_SCHEMA.empty_table()
        if events.num_rows < n:
            bad = pc.invert(ok)
            bad_raw = pc.filter(raw_col, bad).to_pylist()
            rejects = make_rejects(
                source,
                pc.filter(out.column("source_offset"), bad).to_pylist(),
                [_explain(r, line) for r, line in zip(pc.filter(reject, bad).to_pylist(), bad_raw, strict=True)],
                bad_raw,
            )
        return Normalized(events, rejects)


def labels_map(keys: pa.ChunkedArray, values: pa.ChunkedArray, map_type: pa.DataType) -> pa.Array:
    """Each row's labels map from its keys and values (lists of the same object's), NULL
    where either is NULL or their lengths differ (a value that is no object).

    Why here and not in the query: DuckDB's JSON-to-MAP cast costs ~1 µs a line, and
    Arrow's map is the two lists side by side, so building it costs next to nothing. The
    rows the first pass keeps have no repeated label key (see :func:`shape_verdict`).
    """
    keys, values = keys.combine_chunks(), values.combine_chunks()
    key_counts = pc.list_value_length(keys)
    ok = pc.fill_null(pc.equal(key_counts, pc.list_value_length(values)), False)
    counts = np.where(ok.to_numpy(zero_copy_only=False), pc.fill_null(key_counts, 0).to_numpy(), 0)
    offsets = np.zeros(len(keys) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    out = pa.MapArray.from_arrays(
        pa.array(offsets),
        pc.list_flatten(keys.filter(ok)),
        pc.list_flatten(values.filter(ok)),
        type=map_type,
    )
    return out if pc.all(ok).as_py() else pc.if_else(ok, out, pa.nulls(len(keys), map_type))


def _arrow(result: duckdb.DuckDBPyRelation) -> pa.Table:
    return result.to_arrow_table()


def _is_sorted(order: pa.ChunkedArray) -> bool:
    arr = order.to_numpy()
    return bool(len(arr) < 2 or np.all(arr[1:] > arr[:-1]))


def _is_identity(order: pa.ChunkedArray) -> bool:
    arr = order.to_numpy()
    return bool(len(arr) == 0 or (arr[0] == 0 and np.all(np.diff(arr) == 1)))


def _explain(reason: str, line: str) -> str:
    """Make 'invalid JSON' say what is wrong and where, the way a person fixing it needs."""
    if reason != "invalid JSON":
        return reason
    if line.count("\x00") * 3 >= len(line) > 0:
        # each character followed (or preceded) by a NUL byte: a line of a UTF-16 file, which PowerShell's
        # `>` writes; read as UTF-8 it is valid text but no JSON, and every line says so: say why once here
        return "invalid JSON: a NUL byte between characters, as UTF-16 text is written (convert the file to UTF-8)"
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        # the parser ran out of text (not: stopped at one stray character before the end, '{"a":1}}')
        if exc.pos >= len(line.rstrip()) and line.lstrip().startswith("{"):
            return f"truncated JSON: ends after {len(line)} characters (no closing brace)"
        if exc.msg == "unexpected content after document" and line[exc.pos : exc.pos + 1] in ("{", "["):
            # several events in one Kafka record (or on one line): say so, a person fixes the shipper
            return f"invalid JSON: a second JSON document at character {exc.pos + 1} (one event per line, and per Kafka record)"
        return f"invalid JSON: {exc.msg} at character {exc.pos + 1}"
    return reason


def make_rejects(source: str, offsets: list[int | None], reasons: list[str], raws: list[str]) -> pa.Table:
    """Build a rejects table; the rejection time is now, so the rejects view shows when it happened."""
    import datetime as _dt

    now = _dt.datetime.now(_dt.UTC).replace(tzinfo=None)
    n = len(reasons)
    return pa.table(
        {
            "time": pa.array([now] * n, pa.timestamp("us")),
            "source": pa.array([source] * n, pa.string()),
            "source_offset": pa.array(offsets, pa.int64()),
            "reason": pa.array(reasons, pa.string()),
            "raw": pa.array(raws, pa.string()),
        },
        schema=REJECT_SCHEMA,
    )


#: every character ``str.strip()`` removes (``str.isspace``), as an RE2 class: a line of nothing
#: else is blank (tests/test_normalize_lines.py checks the list against Python's own)
WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_BLANK_LINE = f"^[{WHITESPACE}]*$"


def _arrow_lines(lines: list[bytes], offsets: pa.Array) -> tuple[pa.Array, pa.Array] | None:
    """Kafka values as one Arrow string array, without a Python step per line; None when one needs that step.

    The same lines as the per-line path below would give (tested): UTF-8
    checked by Arrow's cast, the newline stripped, blank lines left out. A
    value that is not UTF-8, or a record without a value, is left to the
    per-line path, which says which and why.
    """
    try:
        arr = pa.array(lines, pa.large_binary())
        if arr.null_count:
            return None
        arr = arr.cast(pa.large_string())
    except (pa.ArrowException, TypeError, ValueError):
        return None
    arr = pc.utf8_rtrim(arr, characters="\r\n")
    blank = pc.match_substring_regex(arr, _BLANK_LINE)
    if not pc.any(blank).as_py():
        return arr, offsets
    keep = pc.invert(blank)
    return arr.filter(keep), offsets.filter(keep)


def normalize_lines(
    lines: list[str] | list[bytes],
    source: str = "<inline>",
    first_offset: int = 1,
    normalizer: Normalizer | None = None,
    offsets: list[int] | None = None,
) -> Normalized:
    """Normalize a small list of lines (rule tests, gRPC, Kafka micro-batches).

    ``offsets`` gives each line's position (Kafka offsets); by default lines
    are numbered from ``first_offset``. Lines that are not UTF-8 (bytes that
    do not decode, or text with lone surrogates) and Kafka records without a
    value become rejects instead of reaching DuckDB. A batch of bytes (the
    processor's) goes through :func:`_arrow_lines`: no Python step per line.
    """
    numbers = pa.array(
        offsets if offsets is not None else np.arange(first_offset, first_offset + len(lines)), pa.int64()
    )
    fast = _arrow_lines(lines, numbers) if lines and isinstance(lines[0], bytes) else None  # type: ignore[arg-type]
    bad: list[tuple[int, str, str]] = []
    if fast is not None:
        texts, kept = fast
    else:
        texts, kept, bad = _python_lines(lines, numbers.to_pylist())
    own = normalizer is None
    normalizer = normalizer or Normalizer()
    try:
        result = normalizer.normalize(texts, kept, source)
    finally:
        if own:
            normalizer.close()
    if bad:
        extra = make_rejects(source, [b[0] for b in bad], [b[1] for b in bad], [b[2] for b in bad])
        result.rejects = pa.concat_tables([result.rejects, extra])
    return result


#: bits of a line's offset that :func:`normalize_groups` leaves to the offset itself (its group rides above)
GROUP_SHIFT = 48


def normalize_groups(groups: list[tuple[str, list[bytes], list[int]]], normalizer: Normalizer) -> Normalized:
    """Lines of several sources (a micro-batch's Kafka partitions: source, values, offsets) in ONE pass.

    Why one pass: a pass costs ~30 ms of CPU whatever its size (DuckDB binds
    and plans the prepared query again at every EXECUTE, duckdb#17237), and a
    replica reading six partitions paid it six times a micro-batch: 6 x 20
    records took ~200 ms of CPU against ~45 ms in one pass (measured). Each
    line's group rides through the pass in its offset's high bits, and each
    row gets its own source and offset back; events and rejects are what
    one :func:`normalize_lines` per group gives, in the same order.
    """
    arrays = [np.asarray(offsets, dtype=np.int64) for _, _, offsets in groups]
    fits = all(not len(a) or (a.min() >= 0 and a.max() >> GROUP_SHIFT == 0) for a in arrays)
    if len(groups) == 1 or not fits:
        parts = [normalize_lines(lines, source=src, normalizer=normalizer, offsets=offs) for src, lines, offs in groups]
        return Normalized(pa.concat_tables([x.events for x in parts]), pa.concat_tables([x.rejects for x in parts]))
    lines = [line for _, values, _ in groups for line in values]
    tagged = np.concatenate([a | np.int64(g << GROUP_SHIFT) for g, a in enumerate(arrays)])
    both = normalize_lines(lines, source=groups[0][0], normalizer=normalizer, offsets=tagged)  # type: ignore[arg-type]
    names = pa.array([src for src, _, _ in groups], pa.string())
    # events come back in line order, so group by group; rejects as the pass found them (the normalizer's,
    # then the values it never got): a stable sort by group puts them as one pass per group would
    return Normalized(_untag(both.events, names), _untag(both.rejects, names, regroup=True))


def _untag(table: pa.Table, names: pa.Array, regroup: bool = False) -> pa.Table:
    """Each row's source (its group's) and offset, from the tagged offset :func:`normalize_groups` gave it."""
    if not table.num_rows:
        return table
    tagged = table.column("source_offset")
    group = pc.shift_right(tagged, GROUP_SHIFT)
    i, j = table.schema.get_field_index("source"), table.schema.get_field_index("source_offset")
    table = table.set_column(i, table.field(i), names.take(group).cast(table.field(i).type))
    table = table.set_column(j, table.field(j), pc.bit_wise_and(tagged, (1 << GROUP_SHIFT) - 1))
    return table.take(pc.sort_indices(group)) if regroup else table


def _python_lines(
    lines: list[str] | list[bytes], numbers: list[int]
) -> tuple[pa.Array, pa.Array, list[tuple[int, str, str]]]:
    """Line by line: text lines, and any batch :func:`_arrow_lines` leaves (a line it cannot take says why here)."""
    texts: list[str] = []
    kept: list[int] = []
    bad: list[tuple[int, str, str]] = []
    for off, line in zip(numbers, lines, strict=True):
        if line is None:
            bad.append((off, "not a Tetragon event: a Kafka record without a value (a tombstone)", ""))
            continue
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad.append((off, f"not UTF-8: byte at character {exc.start + 1}", line.decode("utf-8", "replace")))
                continue
        else:
            try:
                line.encode("utf-8")
            except UnicodeEncodeError as exc:
                bad.append(
                    (
                        off,
                        f"not UTF-8: lone surrogate at character {exc.start + 1}",
                        line.encode("utf-8", "replace").decode("utf-8"),
                    )
                )
                continue
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        texts.append(line)
        kept.append(off)
    return pa.array(texts, pa.large_string()), pa.array(kept, pa.int64()), bad
