"""Property tests of the normalizer: any key order, any wrong type, never an exception.

Why properties and not more examples: the faults are combinatorial (which
object is reordered, which value has which wrong type, next to which other
line), and the hand-written tests in test_normalize.py only pin the cases we
thought of. Hypothesis draws the rest from every real event we have:
samples/real (or the shared copy) and the tenant-jobs scenario.

Each example normalizes a whole batch (all the real events permuted, or
several mutated lines among good ones) so a few dozen examples cover a lot
while the file stays fast.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest
from conftest import REAL_LOGS, REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_normalizer import assert_same_output, reference_normalize

from tetrapipe.transforms.normalize import Normalizer, normalize_lines

SCENARIO = REPO / "samples" / "scenario" / "tenant-jobs.log"
LINES = [line for p in [*REAL_LOGS, SCENARIO] for line in p.read_text().splitlines() if line.strip()]
ENVELOPE = ("node_name", "time", "cluster_name", "node_labels", "aggregation_info")

_COMMON = dict(
    deadline=None,
    database=None,  # the working tree is shared: a failure prints its example instead
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def normalizer() -> Iterator[Normalizer]:
    n = Normalizer()
    yield n
    n.close()


@pytest.fixture(scope="module")
def originals(normalizer: Normalizer) -> list[dict]:
    result = normalize_lines(LINES, normalizer=normalizer)
    assert result.rejects.num_rows == 0 and result.events.num_rows == len(LINES) > 150
    return result.events.to_pylist()


def _without_raw(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "raw"}


def _shuffled(value: object, rng: random.Random) -> object:
    """``value`` with the keys of every object, at every depth, in a random order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: _shuffled(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


@settings(max_examples=12, **_COMMON)
@given(seed=st.integers(0, 2**32 - 1), spaces=st.booleans())
def test_key_order_never_changes_a_row(normalizer: Normalizer, originals: list[dict], seed: int, spaces: bool) -> None:
    """Every real event with its keys shuffled at every level gives the very row of the original, event_id included."""
    rng = random.Random(seed)
    separators = (", ", ": ") if spaces else (",", ":")
    lines = [json.dumps(_shuffled(json.loads(line), rng), separators=separators) for line in LINES]
    result = normalize_lines(lines, normalizer=normalizer)
    assert result.rejects.num_rows == 0
    rows = result.events.to_pylist()
    assert [r["raw"] for r in rows] == lines
    for got, want in zip(rows, originals, strict=True):
        assert _without_raw(got) == _without_raw(want)


# --- any value of another JSON type at any path ----------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["[1,2]", '{"a":1}', "", "null", "true", "2024-01-01T00:00:00Z", "-1", "1e999", "\\", '"']),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__  # str, list, dict


@st.composite
def _mutation(draw: st.DrawFn) -> tuple[int, list[str | int], str]:
    """A real line with the value at some path replaced by a value of another JSON type."""
    index = draw(st.integers(0, len(LINES) - 1))
    doc = json.loads(LINES[index])
    path: list[str | int] = []
    node: object = doc
    while True:
        children = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not children or (path and draw(st.integers(0, 3)) == 0):
            break
        key = draw(st.sampled_from(children))
        path.append(key)
        node = node[key]  # type: ignore[index]
    new = draw(_VALUES.filter(lambda v: _json_type(v) != _json_type(node)))
    if not path:
        return index, path, json.dumps(new)
    parent: object = doc
    for key in path[:-1]:
        parent = parent[key]  # type: ignore[index]
    parent[path[-1]] = new  # type: ignore[index]
    return index, path, json.dumps(doc)


@settings(max_examples=25, **_COMMON)
@given(mutations=st.lists(_mutation(), min_size=1, max_size=6), good=st.integers(0, len(LINES) - 1))
def test_a_wrong_type_anywhere_is_an_event_or_a_reject_never_an_exception(
    normalizer: Normalizer, originals: list[dict], mutations: list[tuple[int, list[str | int], str]], good: int
) -> None:
    """Each mutated line is one event or one reject with a reason; the good lines around it are untouched."""
    lines = [LINES[good]]
    for _, _, line in mutations:
        lines += [line, LINES[good]]
    result = normalize_lines(lines, normalizer=normalizer, first_offset=0)
    events = {r["source_offset"]: r for r in result.events.to_pylist()}
    rejects = {r["source_offset"]: r for r in result.rejects.to_pylist()}
    assert len(events) + len(rejects) == len(lines) and not events.keys() & rejects.keys()
    for offset in range(0, len(lines), 2):
        assert _without_raw(events[offset]) | {"source_offset": None} == _without_raw(originals[good]) | {
            "source_offset": None
        }
    for n, (index, path, line) in enumerate(mutations):
        offset = 2 * n + 1
        if offset in rejects:
            assert rejects[offset]["reason"] and rejects[offset]["raw"] == line
            continue
        row, want = events[offset], originals[index]
        assert row["raw"] == line
        top = path[0] if path else None
        if top not in ENVELOPE and len(path) > 1:
            assert row["kind"] == want["kind"]
        if top != "time":
            assert row["time"] == want["time"] and row["time_ns"] == want["time_ns"]
        if top != "node_name":
            assert row["node_name"] == want["node_name"]
        for column in ("args", "return_value"):  # JSON kept as text is JSON of the right type, or NULL
            if row[column] is not None:
                assert isinstance(json.loads(row[column]), list if column == "args" else dict)
        if top == want["kind"] and len(path) > 1 and path[1] != "process":  # the process is read as it was
            assert (row["exec_id"], row["process_binary"]) == (want["exec_id"], want["process_binary"])


# --- a key given twice -------------------------------------------------------------------------


def _dump(value: object) -> str:
    """JSON text of ``value``, where an object may be a list of (key, value) pairs: repeats allowed."""
    if isinstance(value, _Pairs):
        return "{" + ",".join(json.dumps(k) + ":" + _dump(v) for k, v in value) + "}"
    if isinstance(value, dict):
        return _dump(_Pairs(value.items()))
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    return json.dumps(value)


class _Pairs(list):
    pass


@st.composite
def _repeat(draw: st.DrawFn) -> tuple[int, str, str, str]:
    """A real line with one key of one object given twice: (line index, the line, its last-wins reading, path)."""
    index = draw(st.integers(0, len(LINES) - 1))
    doc = json.loads(LINES[index])
    objects: list[tuple[str, dict]] = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            if node:
                objects.append((path, node))
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(doc, "")
    path, obj = draw(st.sampled_from(objects))
    key = draw(st.sampled_from(sorted(obj)))
    other = draw(_VALUES.filter(lambda v: v != obj[key]))
    first = draw(st.booleans())  # the extra value before the real one (which then wins) or after it
    pairs = _Pairs()
    for k, v in obj.items():
        if k == key and first:
            pairs.append((k, other))
        pairs.append((k, v))
        if k == key and not first:
            pairs.append((k, other))
    if not first:
        obj[key] = other
    last_wins = json.dumps(doc)
    # swap the object for its pairs, then write the line with the repeat

    def replace(node: object) -> object:
        if node is obj:
            return _Pairs((k, replace(v)) for k, v in pairs)
        if isinstance(node, dict):
            return {k: replace(v) for k, v in node.items()}
        if isinstance(node, list):
            return [replace(v) for v in node]
        return node

    return index, _dump(replace(doc)), last_wins, f"{path}.{key}" if path else key


#: objects every line is checked in (their keys are what columns are read from)
_CHECKED = ("", ".process", ".process.pod", ".process.pod.container", ".process.pod.container.image", ".parent")


@settings(max_examples=25, **_COMMON)
@given(repeats=st.lists(_repeat(), min_size=1, max_size=8))
def test_a_repeated_key_reads_as_its_last_value(
    normalizer: Normalizer, repeats: list[tuple[int, str, str, str]]
) -> None:
    """Columns show what every other JSON reader sees (the last value), and the repeat is flagged where it is read."""
    with_repeats = normalize_lines([r[1] for r in repeats], normalizer=normalizer)
    plain = normalize_lines([r[2] for r in repeats], normalizer=normalizer)
    assert with_repeats.rejects.column("source_offset").to_pylist() == plain.rejects.column("source_offset").to_pylist()
    wanted = {r["source_offset"]: r for r in plain.events.to_pylist()}
    for got in with_repeats.events.to_pylist():
        _, line, _, path = repeats[got["source_offset"] - 1]
        want = wanted[got["source_offset"]]
        assert got["raw"] == line
        assert {k: v for k, v in got.items() if k not in ("raw", "warnings")} == {
            k: v for k, v in want.items() if k not in ("raw", "warnings")
        }
        kind = path.split(".")[0]
        if "." not in path or any(path.rsplit(".", 1)[0] == kind + suffix for suffix in _CHECKED):
            assert f"duplicate key {path}: last value used" in (got["warnings"] or []), (path, got["warnings"])


# --- the same rows as the reference queries ----------------------------------------------------


@pytest.fixture(scope="module")
def reference() -> Iterator[Normalizer]:
    n = Normalizer()
    yield n
    n.close()


@settings(max_examples=20, **_COMMON)
@given(
    mutations=st.lists(_mutation(), max_size=4),
    repeats=st.lists(_repeat(), max_size=3),
    seed=st.integers(0, 2**32 - 1),
    picks=st.lists(st.integers(0, len(LINES) - 1), min_size=1, max_size=4),
)
def test_any_line_reads_as_with_the_reference_queries(
    normalizer: Normalizer,
    reference: Normalizer,
    mutations: list[tuple[int, list[str | int], str]],
    repeats: list[tuple[int, str, str, str]],
    seed: int,
    picks: list[int],
) -> None:
    """Wrong types, repeated keys, shuffled keys, real lines: the whole output is the reference's (tests/reference_normalizer.py)."""
    rng = random.Random(seed)
    shuffled = [json.dumps(_shuffled(json.loads(LINES[i]), rng)) for i in picks]
    lines = [m[2] for m in mutations] + [r[1] for r in repeats] + shuffled + [LINES[i] for i in picks]
    rng.shuffle(lines)
    got = normalize_lines(lines, normalizer=normalizer, first_offset=0)
    assert_same_output(got, reference_normalize(lines, reference, first_offset=0))


def _at_offset(text: str, minutes: int) -> str:
    """An RFC 3339 ``...Z`` time written as the same instant at ``minutes`` from UTC (``+05:30``), digits kept."""
    import datetime as dt

    head, dot, fraction = text[:-1].partition(".")
    when = dt.datetime.fromisoformat(head) + dt.timedelta(minutes=minutes)
    sign = "+" if minutes >= 0 else "-"
    return f"{when:%Y-%m-%dT%H:%M:%S}{dot}{fraction}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@settings(max_examples=12, **_COMMON)
@given(minutes=st.integers(-14 * 60, 14 * 60))
def test_a_time_written_at_any_offset_gives_the_same_row(
    normalizer: Normalizer, originals: list[dict], minutes: int
) -> None:
    """Every real event with its times written at another UTC offset reads as the original, event_id included."""
    lines = []
    for line in LINES:
        event = json.loads(line)
        body = next(v for k, v in event.items() if k not in ENVELOPE)
        holders = [event, *(body.get(k) for k in ("process", "parent"))]
        pod = (body.get("process") or {}).get("pod") or {}
        for holder, key in [
            *((h, "time" if h is event else "start_time") for h in holders),
            (pod.get("container"), "start_time"),
        ]:
            if isinstance(holder, dict) and str(holder.get(key, "")).endswith("Z"):
                holder[key] = _at_offset(holder[key], minutes)
        lines.append(json.dumps(event, separators=(",", ":")))
    result = normalize_lines(lines, normalizer=normalizer)
    assert result.rejects.num_rows == 0
    for got, want in zip(result.events.to_pylist(), originals, strict=True):
        assert _without_raw(got) == _without_raw(want)
