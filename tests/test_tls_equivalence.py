"""The vectorised TLS transform gives what a row-by-row reading of the same events gives, however batched.

The transform reads only the rows a handshake needs (issue 19: it used to
copy the ``raw`` column of every connect row into Python). The reference
below is the plain reading of the rules in :mod:`tetrapipe.transforms.tls`,
row after row over every row: a TLS event's fields, a process's latest
destination, a ClientHello's SNI remembered for the ServerHello on the same
process and descriptor. Both read the scenario's real handshakes and
connects, with some handshakes stripped of their socket (so the destination
must come from an earlier connect, possibly in an earlier batch), and
enterprise ``tls`` events, cut into batches at random places.
"""

from __future__ import annotations

import json
from collections import OrderedDict

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from conftest import SAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tetrapipe.transforms.normalize import normalize_lines
from tetrapipe.transforms.tls import (
    _COLUMNS,
    CONNECT_FUNCTIONS,
    HANDSHAKE_B64,
    TlsTransform,
    _first_bytes_arg,
    _first_int_arg,
    _tolerant_tls_fields,
)
from tetrapipe.transforms.tls_ciphers import cipher_code
from tetrapipe.transforms.tls_handshake import parse_hello


def reference(batches: list[pa.Table]) -> list[dict]:
    """Every row, in order, with the TLS columns a row-by-row reading fills in."""
    last_connect: OrderedDict = OrderedDict()
    client_hello: dict = {}
    out = []
    for batch in batches:
        for row in batch.to_pylist():
            fill: tuple | None = None
            if row["kind"] == "tls":
                version, cipher, sni = _tolerant_tls_fields(orjson.loads(row["raw"]).get("tls", {}))
                fill = (version, cipher, cipher_code(cipher), sni, None, None)
            else:
                hs = row["args"] is not None and HANDSHAKE_B64 in row["args"]
                connect = row["kind"] == "process_connect" or (
                    row["function_name"] in CONNECT_FUNCTIONS and row["daddr"] is not None
                )
                if (hs or connect) and row["daddr"] is not None and row["exec_id"]:
                    last_connect[row["exec_id"]] = (row["daddr"], row["dport"])
                if hs:
                    args = orjson.loads(row["args"])
                    data = _first_bytes_arg(args)
                    hello = parse_hello(data) if data else None
                    if hello is not None:
                        key = (row["exec_id"], _first_int_arg(args))
                        dest = (row["daddr"], row["dport"]) if row["daddr"] else last_connect.get(row["exec_id"])
                        daddr, dport = dest or (None, None)
                        if hello.kind == "client_hello":
                            client_hello[key] = hello.sni
                            fill = (None, None, None, hello.sni, daddr, dport)
                        elif not hello.hello_retry:
                            sni = client_hello.get(key)
                            fill = (hello.version_name, hello.cipher_name, hello.cipher, sni, daddr, dport)
            if fill is not None:
                for name, value in zip(_COLUMNS, fill, strict=True):
                    if value is not None and row[name] is None:
                        row[name] = value
            out.append(row)
    return out


def _tls_event(n: int) -> str:
    proc = {"exec_id": f"dGxzLXt7{n}", "pid": 7, "binary": "/usr/bin/curl", "start_time": "2026-03-10T09:00:00Z"}
    body = {"process": proc, "version": "TLSv1.3", "cipher_suite": "TLS_AES_128_GCM_SHA256", "sni": f"h{n}.example"}
    return json.dumps({"tls": body, "node_name": "n", "time": f"2026-03-10T09:00:0{n}Z"})


def events() -> pa.Table:
    lines = (SAMPLES / "scenario" / "tenant-jobs.log").read_text().splitlines()
    lines += [_tls_event(n) for n in range(3)]
    table = normalize_lines(lines).events
    handshakes = pc.fill_null(pc.match_substring(table.column("args"), HANDSHAKE_B64), False)
    assert pc.sum(handshakes).as_py() >= 10  # the scenario's real handshakes are in
    # every other handshake loses its socket fields: its destination must come from an earlier connect
    positions = pc.indices_nonzero(handshakes).to_pylist()[::2]
    strip = [i in set(positions) for i in range(table.num_rows)]
    for name in ("daddr", "dport"):
        col = table.column(name)
        nulls = pa.nulls(table.num_rows, col.type)
        table = table.set_column(table.schema.get_field_index(name), name, pc.if_else(strip, nulls, col))
    return table


EVENTS = events()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=EVENTS.num_rows - 1), max_size=12, unique=True))
def test_any_batching_gives_the_row_by_row_answer(cuts: list[int]) -> None:
    edges = [0, *sorted(cuts), EVENTS.num_rows]
    batches = [EVENTS.slice(a, b - a) for a, b in zip(edges, edges[1:], strict=False)]
    tls = TlsTransform()
    got = []
    for batch in batches:
        out, _ = tls(batch)
        assert out.schema == batch.schema and out.num_rows == batch.num_rows
        got += out.to_pylist()
    want = reference(batches)
    assert sum(1 for r in want if r["tls_version"]) >= 5  # negotiated handshakes, not only empty rows
    assert got == want


def test_a_handshake_without_a_socket_takes_its_process_s_connect_from_an_earlier_batch() -> None:
    """The case the vectorised lookup must not miss: the connect and the handshake in different batches."""
    handshakes = pc.fill_null(pc.match_substring(EVENTS.column("args"), HANDSHAKE_B64), False)
    stripped = pc.and_(handshakes, pc.is_null(EVENTS.column("daddr")))
    first = pc.indices_nonzero(stripped).to_pylist()[0]
    tls = TlsTransform()
    tls(EVENTS.slice(0, first))
    out, _ = tls(EVENTS.slice(first, 1))
    (row,) = out.to_pylist()
    assert row["daddr"] is not None and row["daddr"] == reference([EVENTS])[first]["daddr"]
