"""TLS visibility: fill the TLS columns of events, and count handshakes per window.

Two inputs give TLS facts:

* open-source Tetragon with ``tracing-policies/tls-handshake.yaml``: kprobe
  events whose ``bytes_arg`` holds the first bytes a process wrote to / read
  from a socket. A ClientHello (write) gives the SNI; the ServerHello (read)
  on the same process and file descriptor gives the negotiated version and
  cipher, and is the row that carries all three. The destination comes from
  the event's own socket fields, else from the process's latest connect.
* Isovalent Enterprise ``tls`` events. Their field names are not publicly
  documented, so they are read tolerantly: the first string values under keys
  naming a version, a cipher and a server name. Everything stays in ``raw``.

Finding candidate rows is vectorized (a substring test on ``args`` for the
base64 of a handshake record header, ``FgM``); only those rows are decoded in
Python, so the transform costs nothing on batches without TLS. Connect rows
(one event in six) only move a process's latest destination: Arrow finds each
process's last one, and Python reads the connects of a process only when the
batch has a handshake of that process (in order with it), and ``raw`` (~2.4 KB
a row) only for ``tls`` events. The filled columns are written back by mask.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections import OrderedDict

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tetrapipe.schema import TLS_STATS_SCHEMA
from tetrapipe.transforms.tls_ciphers import VERSIONS, cipher_code
from tetrapipe.transforms.tls_handshake import parse_hello

# base64 of 0x16 0x03: a TLS handshake record, in a bytes argument as Tetragon encodes it
HANDSHAKE_B64 = '"bytes_arg":"FgM'
CONNECT_FUNCTIONS = ("tcp_connect", "security_socket_connect", "tcp_sendmsg")
_MAX_STATE = 100_000


def _first_bytes_arg(args: list) -> bytes | None:
    for a in args:
        b64 = a.get("bytes_arg") or (a.get("truncated_bytes_arg") or {}).get("bytes_arg")
        if isinstance(b64, str) and b64.startswith("FgM"):
            try:
                return base64.b64decode(b64)
            except ValueError:
                return None
    return None


def _first_int_arg(args: list) -> int | None:
    for a in args:
        if "int_arg" in a:
            return a["int_arg"]
    return None


def _tolerant_tls_fields(body: dict) -> tuple[str | None, str | None, str | None]:
    """(version, cipher, sni) from an enterprise ``tls`` event, by key names; unverified schema."""
    found: dict[str, str] = {}

    def walk(obj: object) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                key = k.lower()
                if isinstance(v, str):
                    if "version" in key and "version" not in found:
                        found["version"] = v
                    elif "cipher" in key and "cipher" not in found:
                        found["cipher"] = v
                    elif ("sni" in key or "server_name" in key) and "sni" not in found:
                        found["sni"] = v
                elif k not in ("process", "parent", "ancestors"):
                    walk(v)

    walk(body)
    version = found.get("version")
    if version and version.upper().startswith("TLS") and " " not in version:
        version = "TLS " + version[3:].lstrip("_v").replace("_", ".")  # TLSv1.3 / TLS1_3 -> TLS 1.3
    return version, found.get("cipher"), found.get("sni")


#: the columns the transform fills, in the order of its per-row update tuples
_COLUMNS = ("tls_version", "tls_cipher", "tls_cipher_code", "tls_sni", "daddr", "dport")


class _Lru(OrderedDict):
    def remember(self, key: object, value: object) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > _MAX_STATE:
            self.popitem(last=False)


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _indices(mask: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The positions where ``mask`` is true, as one int64 array."""
    return _array(pc.indices_nonzero(mask)).cast(pa.int64())


class TlsTransform:
    """BatchTransform: TLS columns on handshake events, and ``tls_stats`` rows per window."""

    def __init__(self, window: dt.timedelta = dt.timedelta(minutes=1)) -> None:
        self.window = window
        self._client_hello: _Lru = _Lru()  # (exec_id, fd) -> sni
        self._last_connect: _Lru = _Lru()  # exec_id -> (daddr, dport)

    def __call__(self, events: pa.Table) -> tuple[pa.Table, dict[str, pa.Table]]:
        if events.num_rows == 0:
            return events, {}
        kind = events.column("kind")
        exec_id = events.column("exec_id")
        daddr = events.column("daddr")
        is_hs = pc.fill_null(pc.match_substring(events.column("args"), HANDSHAKE_B64), False)
        is_tls = pc.fill_null(pc.equal(kind, "tls"), False)
        fn = events.column("function_name")
        is_connect = pc.fill_null(pc.and_(pc.is_in(fn, pa.array(CONNECT_FUNCTIONS)), pc.is_valid(daddr)), False)
        is_connect = pc.or_(is_connect, pc.fill_null(pc.equal(kind, "process_connect"), False))
        # a row that says where a process connects (a tls event never does: its fields are read apart)
        gives_dest = pc.and_(
            pc.and_(pc.or_(is_hs, is_connect), pc.invert(is_tls)),
            pc.and_(pc.is_valid(daddr), pc.fill_null(pc.not_equal(exec_id, ""), False)),
        )
        decoded = _indices(pc.or_(is_hs, is_tls))  # handshakes and tls events: decoded in Python
        dests = _indices(gives_dest)
        if len(decoded) == 0 and len(dests) == 0:
            return events, {}
        updates = self._replay(events, decoded, dests, is_tls) if len(decoded) else {}
        self._remember_last_destinations(events, dests)
        if not updates:
            return events, {}
        events = self._apply(events, updates)
        return events, {"tls_stats": self.stats(events)}

    def _replay(self, events: pa.Table, decoded: pa.Array, dests: pa.Array, is_tls: pa.ChunkedArray) -> dict:
        """Decode the handshake and tls rows, in order with the destinations of their own processes.

        Only these rows reach Python, and only the columns they need: a
        ServerHello without a socket takes the destination of its process's
        latest connect before it, so the connects of the processes that have
        a handshake in the batch are read too (``exec_id``, ``daddr``,
        ``dport``); ``raw`` is read for tls events alone.
        Returns row -> (version, cipher, cipher code, sni, daddr, dport), as in _COLUMNS.
        """
        exec_id = events.column("exec_id")
        with_hs = pc.unique(exec_id.take(decoded))
        own = dests.filter(_array(pc.fill_null(pc.is_in(exec_id.take(dests), with_hs), False)))
        both = pa.concat_arrays([decoded, own])
        at = pc.unique(both.take(pc.sort_indices(both)))  # a handshake with its own destination is in both lists
        rows = events.select(["kind", "exec_id", "args", "daddr", "dport"]).take(at).to_pylist()
        tls_at = _indices(is_tls.take(at))
        raws = dict(zip(tls_at.to_pylist(), events.column("raw").take(at.take(tls_at)).to_pylist(), strict=True))
        updates: dict[int, tuple] = {}
        for n, (i, row) in enumerate(zip(at.to_pylist(), rows, strict=True)):
            if row["kind"] == "tls":
                body = orjson.loads(raws[n]).get("tls", {})
                version, cipher, sni = _tolerant_tls_fields(body)
                updates[i] = (version, cipher, cipher_code(cipher), sni, None, None)
                continue
            if row["daddr"] is not None and row["exec_id"]:
                self._last_connect.remember(row["exec_id"], (row["daddr"], row["dport"]))
            if row["args"] is None or HANDSHAKE_B64 not in row["args"]:
                continue
            args_list = orjson.loads(row["args"])
            data = _first_bytes_arg(args_list)
            hello = parse_hello(data) if data else None
            if hello is None:
                continue
            key = (row["exec_id"], _first_int_arg(args_list))
            daddr, dport = (
                (row["daddr"], row["dport"]) if row["daddr"] else self._last_connect.get(row["exec_id"], (None, None))
            )
            if hello.kind == "client_hello":
                self._client_hello.remember(key, hello.sni)
                updates[i] = (None, None, None, hello.sni, daddr, dport)
            elif not hello.hello_retry:
                sni = self._client_hello.get(key)
                updates[i] = (hello.version_name, hello.cipher_name, hello.cipher, sni, daddr, dport)
        return updates

    def _remember_last_destinations(self, events: pa.Table, dests: pa.Array) -> None:
        """Each process's latest destination in the batch, for the handshakes of later batches.

        The last row per process is found by Arrow; Python sees one row per
        process, in the order of those last rows (the LRU's order).
        """
        if len(dests) == 0:
            return
        table = events.select(["exec_id", "daddr", "dport"]).take(dests)
        table = table.append_column("_at", pa.array(range(len(dests)), pa.int64()))
        last = table.group_by("exec_id", use_threads=False).aggregate([("_at", "max")]).column("_at_max")
        rows = table.take(last.take(pc.sort_indices(last)))  # each process's last row, in the batch's order
        for exec_id, daddr, dport in zip(
            *(rows.column(c).to_pylist() for c in ("exec_id", "daddr", "dport")), strict=True
        ):
            self._last_connect.remember(exec_id, (daddr, dport))

    @staticmethod
    def _apply(events: pa.Table, updates: dict[int, tuple]) -> pa.Table:
        """Fill each column's empty cells at the updated rows (a value the event already has is kept)."""
        n = events.num_rows
        rows = sorted(updates)
        at = pa.array(rows, pa.int64())
        for pos, name in enumerate(_COLUMNS):
            field = events.schema.field(name)
            values = pa.array([updates[i][pos] for i in rows], field.type)
            current = events.column(name)
            fill = _array(pc.and_(pc.is_valid(values), pc.is_null(current.take(at))))
            if not pc.any(fill).as_py():
                continue
            mask = np.zeros(n, dtype=bool)
            mask[at.filter(fill).to_numpy()] = True
            col = pc.replace_with_mask(current.combine_chunks(), pa.array(mask), values.filter(fill))
            events = events.set_column(events.schema.get_field_index(name), field, col)
        assert events.num_rows == n
        return events

    def stats(self, events: pa.Table) -> pa.Table:
        """Handshake counts per window; a window split across batches gives rows that add up."""
        negotiated = events.filter(pc.is_valid(events.column("tls_version")))
        if negotiated.num_rows == 0:
            return TLS_STATS_SCHEMA.empty_table()
        df = pl.from_arrow(
            negotiated.select(
                [
                    "time",
                    "namespace",
                    "workload",
                    "pod",
                    "process_name",
                    "daddr",
                    "dport",
                    "tls_sni",
                    "tls_version",
                    "tls_cipher",
                ]
            )
        )
        every = f"{int(self.window.total_seconds() * 1_000_000)}us"
        out = (
            df.with_columns(
                pl.col("time").dt.truncate(every).alias("window_start"),
                pl.coalesce("workload", "pod", "process_name").alias("workload"),
            )
            .group_by(
                ["window_start", "namespace", "workload", "daddr", "dport", "tls_sni", "tls_version", "tls_cipher"]
            )
            .agg(
                pl.len().alias("connections"),
                pl.col("time").min().alias("first_seen"),
                pl.col("time").max().alias("last_seen"),
            )
            .with_columns(
                (pl.col("window_start") + pl.duration(microseconds=int(self.window.total_seconds() * 1_000_000))).alias(
                    "window_end"
                )
            )
            .sort(["window_start", "namespace", "workload"])
        )
        table = out.to_arrow().select(TLS_STATS_SCHEMA.names)
        return table.cast(TLS_STATS_SCHEMA)


__all__ = ["TlsTransform", "VERSIONS"]
