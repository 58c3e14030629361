"""The agent's address and the ``GetEventsRequest``: Tetragon's own filter syntax, checked before sending.

See :mod:`tetrapipe.sources.grpc.stream` for the source and docs/ARCHITECTURE.md for its place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from google.protobuf import json_format

from tetrapipe.proto import tetragon_pb2


def parse_address(address: str) -> str:
    """A gRPC channel target for an agent address.

    Accepts ``host:port`` (Tetragon's ``--server-address`` default is
    ``localhost:54321``), ``grpc://host:port`` / ``tcp://host:port``, and
    ``unix:///var/run/tetragon/tetragon.sock`` (the Helm default since 1.7);
    other gRPC target schemes (``unix:``, ``unix-abstract:``, ``dns:``,
    ``ipv4:``, ``ipv6:``) pass through untouched.
    """
    addr = (address or "").strip()
    if not addr:
        raise ValueError("empty Tetragon gRPC address (expected host:port or unix:///path)")
    lower = addr.lower()
    for scheme in ("grpc://", "tcp://"):
        if lower.startswith(scheme):
            rest = addr[len(scheme) :].rstrip("/")
            if not rest:
                raise ValueError(f"no host:port in Tetragon gRPC address {address!r}")
            return rest
    if lower.startswith(("grpcs://", "https://", "tls://")):
        raise ValueError(f"TLS Tetragon addresses are not supported yet: {address!r}")
    if lower.startswith(("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:")):
        if lower.startswith("unix:") and addr[len("unix:") :].strip("/") == "":
            raise ValueError(f"no socket path in Tetragon gRPC address {address!r}")
        return addr
    if "://" in addr:
        raise ValueError(f"unsupported scheme in Tetragon gRPC address {address!r} (use host:port, grpc:// or unix://)")
    return addr


def _json_objects(text: str | bytes, what: str) -> list[dict[str, Any]]:
    """Objects from the flag syntax: one JSON object per line (or one JSON array)."""
    raw = text.decode() if isinstance(text, bytes) else text
    stripped = raw.strip()
    if not stripped:
        return []
    if stripped.startswith("["):
        try:
            arr = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{what}: not valid JSON: {exc}") from exc
        if not all(isinstance(o, dict) for o in arr):
            raise ValueError(f"{what}: a JSON array of objects is expected")
        return arr
    out = []
    for n, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{what}, line {n}: not valid JSON ({exc}): {line.strip()[:200]}") from exc
        if not isinstance(obj, dict):
            raise ValueError(f"{what}, line {n}: a JSON object is expected, got {line.strip()[:200]}")
        out.append(obj)
    return out


def _as_list(spec: Any, what: str) -> list[Any]:
    if spec is None:
        return []
    if isinstance(spec, str | bytes):
        return _json_objects(spec, what)
    if isinstance(spec, Mapping) or hasattr(spec, "DESCRIPTOR"):
        return [spec]
    if isinstance(spec, Iterable):
        out: list[Any] = []
        for item in spec:
            out.extend(_as_list(item, what) if isinstance(item, str | bytes) else [item])
        return out
    raise TypeError(f"{what}: expected a dict, a list of dicts or JSON text, got {type(spec).__name__}")


def parse_filters(spec: Any, what: str = "filter") -> list[tetragon_pb2.Filter]:
    """Filters in ``--export-allowlist`` syntax -> ``tetragon.Filter`` messages.

    ``{"event_set": ["PROCESS_EXEC"], "namespace": ["default"]}`` becomes a
    Filter with those two criteria; unknown keys and bad enum names raise
    ``ValueError`` naming the offending filter (the agent would reject them too).
    """
    out = []
    for i, item in enumerate(_as_list(spec, what), start=1):
        if isinstance(item, tetragon_pb2.Filter):
            out.append(item)
            continue
        msg = tetragon_pb2.Filter()
        try:
            json_format.ParseDict(dict(item), msg)
        except json_format.ParseError as exc:
            raise ValueError(f"{what} #{i} {dict(item)!r}: {exc}") from exc
        out.append(msg)
    return out


def _snake_case(path: str) -> str:
    # Accept the protojson lowerCamelCase spelling too (processExecId -> process_exec_id).
    return "".join("_" + c.lower() if c.isupper() else c for c in path)


def parse_field_filters(spec: Any) -> list[tetragon_pb2.FieldFilter]:
    """Field filters in ``--field-filters`` syntax -> ``tetragon.FieldFilter`` messages.

    ``"fields"`` is a comma-separated string (or a list) of snake_case paths
    relative to the event, e.g. ``"process.exec_id,process.parent_exec_id"``;
    they are kept snake_case in the FieldMask, as the agent expects.
    """
    out = []
    for i, item in enumerate(_as_list(spec, "field filter"), start=1):
        if isinstance(item, tetragon_pb2.FieldFilter):
            out.append(item)
            continue
        obj = dict(item)
        fields = obj.pop("fields", None)
        msg = tetragon_pb2.FieldFilter()
        try:
            json_format.ParseDict(obj, msg)
        except json_format.ParseError as exc:
            raise ValueError(f"field filter #{i} {dict(item)!r}: {exc}") from exc
        if fields is not None:
            if isinstance(fields, str):
                paths = fields.split(",")
            elif isinstance(fields, Iterable):
                paths = list(fields)
            else:
                raise ValueError(f"field filter #{i}: 'fields' must be a string or a list, got {fields!r}")
            for p in paths:
                p = str(p).strip()
                if p:
                    msg.fields.paths.append(_snake_case(p))
            if not msg.fields.paths:
                raise ValueError(f"field filter #{i}: 'fields' names no field")
        out.append(msg)
    return out


def build_request(
    allow_list: Any = None,
    deny_list: Any = None,
    field_filters: Any = None,
) -> tetragon_pb2.GetEventsRequest:
    """The ``GetEventsRequest`` for the given filters (see ``parse_filters``)."""
    req = tetragon_pb2.GetEventsRequest()
    req.allow_list.extend(parse_filters(allow_list, "allow_list filter"))
    req.deny_list.extend(parse_filters(deny_list, "deny_list filter"))
    req.field_filters.extend(parse_field_filters(field_filters))
    return req
