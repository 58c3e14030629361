"""Tetragon's own key order (protojson, from tetrapipe's ``.proto``), and re-serializing a line in it.

Why: see "Key order" and "Duplicate keys" in :mod:`tetrapipe.transforms.normalize`.
See ``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import orjson
from google.protobuf.descriptor import Descriptor

from tetrapipe.proto import tetragon_pb2
from tetrapipe.schema import ENVELOPE_KEYS, OSS_KINDS
from tetrapipe.transforms.normalize.fields import ENTERPRISE_BODIES

_MESSAGES = tetragon_pb2.DESCRIPTOR.message_types_by_name


def message_fields(message: str) -> list[str]:
    """Field names of a message in declaration order: the order protojson writes."""
    return [f.name for f in _MESSAGES[message].fields]


@dataclass
class _Order:
    """How to order one object's keys, and what its values are."""

    rank: dict[str, int] = field(default_factory=dict)
    children: dict[str, _Order | None] = field(default_factory=dict)  # object-valued fields (and list elements)
    maps: frozenset[str] = frozenset()  # fields that are maps: entries sorted by key


_orders: dict[str, _Order] = {}


def _order_of(desc: Descriptor) -> _Order:
    order = _orders.get(desc.full_name)
    if order is not None:
        return order
    order = _Order(rank={f.name: i for i, f in enumerate(desc.fields)})
    _orders[desc.full_name] = order  # before the children: types may refer to each other
    maps = set()
    for f in desc.fields:
        mt = f.message_type
        if mt is None:
            continue
        if mt.GetOptions().map_entry:
            maps.add(f.name)
            value = mt.fields_by_name["value"].message_type
            order.children[f.name] = _order_of(value) if value is not None else None
        else:
            order.children[f.name] = _order_of(mt)
    order.maps = frozenset(maps)
    return order


_RESPONSE = _order_of(tetragon_pb2.GetEventsResponse.DESCRIPTOR)
_PROCESS = _order_of(tetragon_pb2.Process.DESCRIPTOR)
_ENVELOPE = [k for k in message_fields("GetEventsResponse") if k in ENVELOPE_KEYS]


def _enterprise_order(keys: list[str]) -> _Order:
    return _Order(rank={k: i for i, k in enumerate(keys)}, children={"process": _PROCESS, "parent": _PROCESS})


_BODIES: dict[str, _Order] = {
    **{k: _RESPONSE.children[k] for k in OSS_KINDS},  # type: ignore[misc]
    **{k: _enterprise_order(v) for k, v in ENTERPRISE_BODIES.items()},
}

_MAX_WARNINGS = 10


class _Pairs(list):
    """A JSON object as parsed: its (key, value) pairs, repeats included."""


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _decode(line: str) -> object:
    return json.loads(line, object_pairs_hook=_Pairs, parse_constant=_reject_constant)


def _last_wins(pairs: _Pairs, path: str, dups: list[str]) -> dict:
    obj: dict = {}
    for key, value in pairs:
        if key in obj and len(dups) < _MAX_WARNINGS:
            dups.append(f"{path}.{key}" if path else key)
        obj[key] = value  # the last value wins, as in every other JSON reader
    return obj


def _canonical_object(pairs: _Pairs, order: _Order | None, path: str, dups: list[str]) -> dict:
    obj = _last_wins(pairs, path, dups)
    if order is None:
        keys = list(obj)  # not a Tetragon message: its order is all there is to go by
    else:
        known = sorted((k for k in obj if k in order.rank), key=order.rank.__getitem__)
        keys = known + [k for k in obj if k not in order.rank]
    out = {}
    for key in keys:
        child = order.children.get(key) if order is not None else None
        sub = f"{path}.{key}" if path else key
        value = obj[key]
        if order is not None and key in order.maps and isinstance(value, _Pairs):
            entries = _last_wins(value, sub, dups)  # a map: entries sorted by key, as protojson writes them
            out[key] = {k: _canonical_value(entries[k], child, f"{sub}.{k}", dups) for k in sorted(entries)}
        else:
            out[key] = _canonical_value(value, child, sub, dups)
    return out


def _canonical_value(value: object, order: _Order | None, path: str, dups: list[str]) -> object:
    if isinstance(value, _Pairs):
        return _canonical_object(value, order, path, dups)
    if isinstance(value, list):
        return [_canonical_value(v, order, f"{path}[{i}]", dups) for i, v in enumerate(value)]
    return value


def canonical_line(line: str) -> tuple[str, list[str]] | None:
    """``line`` in Tetragon's key order, repeated keys resolved to their last value.

    Returns the new text and the repeated keys (paths such as
    ``process_exec.process.binary``), or None when the line is not a JSON
    object (the careful query then says what is wrong with it). The event key
    comes first (the first key that is not an envelope key, the same rule as
    the careful query), then the envelope in declaration order, then any
    other key. Within a message, unknown keys follow the known ones in the
    order they came; objects that are no message (a wrong-typed value) and
    maps (sorted, as protojson writes them) aside.
    """
    try:
        doc = _decode(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, _Pairs):
        return None
    dups: list[str] = []
    seen = _last_wins(doc, "", dups)
    kind = next((k for k in seen if k not in ENVELOPE_KEYS), None)
    out: dict = {}
    if kind is not None:
        out[kind] = _canonical_value(seen[kind], _BODIES.get(kind), kind, dups)
    for key in _ENVELOPE:
        if key in seen:
            value = seen[key]
            if key in _RESPONSE.maps and isinstance(value, _Pairs):
                entries = _last_wins(value, key, dups)
                out[key] = {k: _canonical_value(entries[k], None, f"{key}.{k}", dups) for k in sorted(entries)}
            else:
                out[key] = _canonical_value(value, _RESPONSE.children.get(key), key, dups)
    for key in seen:
        if key not in out:
            out[key] = _canonical_value(seen[key], None, key, dups)
    try:
        text = orjson.dumps(out).decode()
    except (orjson.JSONEncodeError, TypeError):  # integers beyond 64 bits, lone surrogates
        text = json.dumps(out, separators=(",", ":"), ensure_ascii=True)
    return text, dups


# ---------------------------------------------------------------------------
# The queries
# ---------------------------------------------------------------------------
