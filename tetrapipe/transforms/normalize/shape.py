"""A line's shape (the key lists of the objects columns are read from) and what it says.

The fast query lists them; Python judges each distinct shape once. Why: see
"Duplicate keys" in :mod:`tetrapipe.transforms.normalize`. See ``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from tetrapipe.proto import tetragon_pb2
from tetrapipe.transforms.normalize.canonical import message_fields
from tetrapipe.transforms.normalize.fields import BODY_KINDS

# Objects whose key lists are listed on every line (one more parse, with constant
# paths): name -> (path below the event key, the message whose order its keys follow).
# Together with the argument lists, the ancestors and the namespaces (listed apart,
# only on lines that have them) they hold every field a column is read from.
READ_OBJECTS: dict[str, tuple[str, str]] = {
    "process": ("process", "Process"),
    "pod": ("process.pod", "Pod"),
    "container": ("process.pod.container", "Container"),
    "image": ("process.pod.container.image", "Image"),
    "security_context": ("process.pod.container.security_context", "SecurityContext"),
    "credentials": ("process.process_credentials", "ProcessCredentials"),
    "binary_properties": ("process.binary_properties", "BinaryProperties"),
    "cap": ("process.cap", "Capabilities"),
    "ns": ("process.ns", "Namespaces"),
    "parent": ("parent", "Process"),
}
#: all the key lists of ``ks``: the line, the event body, the read objects, the labels
#: (a map: keys sorted) and the return value (an argument)
KEY_OBJECTS = ["top", "body", *READ_OBJECTS, "labels", "return"]


def key_paths(prefix: str) -> list[str]:
    return (
        ["$", prefix]
        + [f"{prefix}.{p}" for p, _ in READ_OBJECTS.values()]
        + [f"{prefix}.process.pod.pod_labels", f"{prefix}.return"]
    )


_MESSAGES_BY_KIND = {
    f.name: f.message_type.name
    for f in tetragon_pb2.GetEventsResponse.DESCRIPTOR.fields
    if f.containing_oneof is not None
}
_ARGUMENT_MEMBERS: dict[str, list[str] | None] = {
    f.name: ([g.name for g in f.message_type.fields] if f.message_type is not None else None)
    for f in tetragon_pb2.KprobeArgument.DESCRIPTOR.fields
}


def _repeats(keys: list[str] | None) -> bool:
    return keys is not None and len(set(keys)) != len(keys)


def _follows(keys: list[str] | None, order: list[str]) -> bool:
    """``keys`` are some of ``order``'s, in its order, each once."""
    if not keys:
        return True
    rank = {k: i for i, k in enumerate(order)}
    ranks = [rank.get(k, -1) for k in keys]
    return -1 not in ranks and all(a < b for a, b in itertools.pairwise(ranks))


def _one_argument(keys: list[str]) -> bool:
    """A KprobeArgument: one member of its ``arg`` oneof, then maybe its ``label``."""
    if not keys or keys[0] not in _ARGUMENT_MEMBERS or keys[0] == "label":
        return False
    return len(keys) == 1 or (len(keys) == 2 and keys[1] == "label")


def _arguments_canonical(elements: list[list[str]] | None, values: list[list[str]] | None, braces: int | None) -> bool:
    """An argument list as Tetragon writes it: one member per element (then maybe ``label``),
    each member's value in its message's order, and no object deeper than that (counted by
    ``{``, which a string value holding one only overcounts)."""
    if elements is None:
        return True
    members = [m for e in elements for m in e]
    values = values or []
    if len(values) != len(members) or not all(_one_argument(e) for e in elements):
        return False
    for member, keys in zip(members, values, strict=True):
        order = _ARGUMENT_MEMBERS[member]
        if keys and (order is None or not _follows(keys, order)):
            return False
    objects = len(elements) + sum(1 for v in values if v)
    return braces is not None and braces <= objects


#: columns read from an object-valued field, and that field's key list in ``ks``
OBJECT_COLUMNS = (("pod_labels", "labels"), ("host_namespaces", "ns"), ("return_value", "return"))


@dataclass(frozen=True)
class ShapeVerdict:
    """What a line's shape says: can it be read as it is, and which columns must be NULL."""

    plain: bool
    nulls: tuple[str, ...] = ()


def shape_verdict(shape: dict) -> ShapeVerdict:
    """Judge a line by its shape (a row of the fast query's ``shape`` column).

    The line is *plain* (read as it is) when no object a column is read from
    repeats a key, and the JSON kept as text (arguments, return value, the body
    of an event without a process) is in canonical order; the labels map is
    sorted, as protojson writes it. Else it is re-serialized first. An
    object-valued field whose value is no object (its key list is empty, yet
    its text is not ``{}``) has its column NULL.
    """
    kind, ks = shape["kind"], shape["ks"]
    nulls = tuple(
        column
        for (column, name), empty in zip(OBJECT_COLUMNS, shape["empty"], strict=True)
        if ks[KEY_OBJECTS.index(name)] == [] and empty != "1"
    )
    top = ks[0] or []
    # the query renamed the line's first key to __event__: a second key of that name is a repeat too
    if _repeats([kind, *top[1:]]) or any(_repeats(keys) for keys in ks[1:]):
        return ShapeVerdict(False, nulls)
    labels = ks[KEY_OBJECTS.index("labels")]
    if labels and labels != sorted(labels):
        return ShapeVerdict(False, nulls)
    if kind in BODY_KINDS and not _follows(ks[1], message_fields(_MESSAGES_BY_KIND[kind])):
        return ShapeVerdict(False, nulls)
    if any(_repeats(keys) for keys in (shape["anc"] or []) + (shape["nsk"] or [])):
        return ShapeVerdict(False, nulls)
    plain = _arguments_canonical(shape["ak"], shape["av"], shape["ab"]) and _arguments_canonical(
        shape["rk"], shape["rv"], shape["rb"]
    )
    return ShapeVerdict(plain, nulls)
