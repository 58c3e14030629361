"""``normalize_lines`` on a batch of Kafka values: the Arrow path must give what the line-by-line path gives.

The processor hands every micro-batch's record values to ``normalize_lines``.
It used to decode, strip and test each one in Python (issue 19: no Python step
per event in the hot loop); now a batch of bytes becomes one Arrow array, and
only a batch holding a value that is not UTF-8, or a record without a value,
takes the line-by-line path. These tests try to make the two disagree.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import REAL_LOGS
from hypothesis import given, settings
from hypothesis import strategies as st

from tetrapipe.transforms.normalize import Normalizer
from tetrapipe.transforms.normalize.normalizer import (
    _BLANK_LINE,
    GROUP_SHIFT,
    _arrow_lines,
    _python_lines,
    normalize_groups,
    normalize_lines,
)

REAL = [line.encode() for p in REAL_LOGS for line in p.read_text().splitlines() if line.strip()]
EVERY_SPACE = sorted(c for c in map(chr, range(0x110000)) if c.isspace())


def _rows(table: pa.Table, drop: tuple[str, ...] = ()) -> list[dict]:
    return table.drop_columns([c for c in drop if c in table.column_names]).to_pylist()


def _by_lines(lines: list[bytes], offsets: list[int], normalizer: Normalizer) -> tuple[list[dict], list[dict]]:
    """The reference: the line-by-line path, whatever the batch holds."""
    texts, kept, bad = _python_lines(lines, offsets)
    result = normalizer.normalize(texts, kept, "kafka:t/0")
    rejects = _rows(result.rejects, ("time",))
    rejects += [{"source": "kafka:t/0", "source_offset": o, "reason": r, "raw": raw} for o, r, raw in bad]
    return _rows(result.events), rejects


def test_the_blank_class_is_every_character_python_strips() -> None:
    """A line of any of Python's whitespace is blank; one more character makes it a line."""
    blank = pc.match_substring_regex(pa.array(EVERY_SPACE + ["".join(EVERY_SPACE)]), _BLANK_LINE)
    assert all(blank.to_pylist())
    near = ["a", " x ", "\u200b", "\ufeff", "{}", "\x00"]  # zero-width space and BOM are not whitespace
    assert not any(pc.match_substring_regex(pa.array(near), _BLANK_LINE).to_pylist())


def test_a_tombstone_is_a_reject_and_costs_only_itself() -> None:
    """A Kafka record without a value (anyone may produce one) used to crash the processor's batch."""
    lines = [REAL[0], None, REAL[1], b"", b" \r\n"]
    result = normalize_lines(lines, source="kafka:t/0", offsets=[10, 11, 12, 13, 14])  # type: ignore[list-item]
    assert result.events.column("source_offset").to_pylist() == [10, 12]
    assert [(r["source_offset"], r["reason"]) for r in result.rejects.to_pylist()] == [
        (11, "not a Tetragon event: a Kafka record without a value (a tombstone)")
    ]


def test_a_batch_of_plain_values_takes_the_arrow_path() -> None:
    """The fast path is really taken (a test that it agrees would pass if it never ran)."""
    offsets = pa.array(range(len(REAL)), pa.int64())
    fast = _arrow_lines(REAL, offsets)
    assert fast is not None and fast[0].to_pylist() == [line.decode() for line in REAL]
    assert _arrow_lines([REAL[0], b"\xff"], pa.array([0, 1], pa.int64())) is None
    assert _arrow_lines([REAL[0], None], pa.array([0, 1], pa.int64())) is None  # type: ignore[list-item]


_valid = st.one_of(
    st.sampled_from(REAL),
    st.sampled_from(REAL).map(lambda b: b + b"\r"),
    st.sampled_from(REAL).map(lambda b: b + b"\r\n\n"),
    st.sampled_from(REAL).map(lambda b: b" \t" + b),
    st.lists(st.sampled_from(EVERY_SPACE), max_size=4).map(lambda cs: "".join(cs).encode()),
    st.sampled_from([b"", b"not json", b"{}", b"[1]", b'{"process_exec": 1}', "\u00e9\u2028".encode()]),
    st.text(max_size=12).map(lambda t: t.encode("utf-8", "surrogatepass")).filter(lambda b: _utf8(b)),
)
#: anything a Kafka value can be: not UTF-8 (encoded surrogates too), or no value at all
_any = st.one_of(_valid, st.sampled_from([b"\xff\xfe", b"\xed\xa0\x80", b"\xc0\xaf", None]), st.binary(max_size=12))


def _utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.fixture(scope="module")
def normalizer() -> Iterator[Normalizer]:
    """One for every example, as the processor keeps one (what it learnt of line shapes carries over)."""
    n = Normalizer()
    yield n
    n.close()


def _agree(lines: list[bytes], normalizer: Normalizer) -> None:
    offsets = list(range(100, 100 + len(lines)))
    got = normalize_lines(lines, source="kafka:t/0", normalizer=normalizer, offsets=offsets)
    want_events, want_rejects = _by_lines(lines, offsets, normalizer)
    assert _rows(got.events) == want_events
    assert _rows(got.rejects, ("time",)) == want_rejects


@settings(max_examples=25, deadline=None)
@given(lines=st.lists(_valid, min_size=1, max_size=25))
def test_the_arrow_path_gives_what_the_line_by_line_path_gives(lines: list[bytes], normalizer: Normalizer) -> None:
    """Real events, CRLF, leading blanks, every kind of whitespace line, junk: all UTF-8, so the Arrow path runs."""
    assert _arrow_lines(lines, pa.array(range(len(lines)), pa.int64())) is not None
    _agree(lines, normalizer)


@settings(max_examples=25, deadline=None)
@given(lines=st.lists(_any, min_size=1, max_size=25))
def test_any_batch_of_values_gives_what_the_line_by_line_path_gives(lines: list[bytes], normalizer: Normalizer) -> None:
    """Add values that are not UTF-8 and tombstones: whichever path runs, the rows and rejects are the same."""
    _agree(lines, normalizer)


def _per_group(groups: list[tuple[str, list, list[int]]], normalizer: Normalizer) -> tuple[list[dict], list[dict]]:
    """The reference: one ``normalize_lines`` per group, as the processor called it for each partition."""
    parts = [normalize_lines(v, source=s, normalizer=normalizer, offsets=o) for s, v, o in groups]
    return (
        [r for p in parts for r in _rows(p.events)],
        [r for p in parts for r in _rows(p.rejects, ("time",))],
    )


@settings(max_examples=25, deadline=None)
@given(
    batches=st.lists(st.lists(_any, min_size=1, max_size=12), min_size=2, max_size=5),
    starts=st.lists(st.integers(0, (1 << GROUP_SHIFT) - 100), min_size=5, max_size=5),
)
def test_partitions_in_one_pass_give_what_a_pass_per_partition_gives(
    batches: list[list[bytes]], starts: list[int], normalizer: Normalizer
) -> None:
    """A micro-batch's partitions normalized together: every row keeps its own source and offset, in order.

    Offsets run up to the largest the shared pass can carry (Kafka offsets stay far below), and the same
    offset in two partitions must not mix them up; values that are not UTF-8 and tombstones included.
    """
    groups = [
        (f"kafka:t/{p}", values, list(range(starts[p], starts[p] + len(values)))) for p, values in enumerate(batches)
    ]
    got = normalize_groups(groups, normalizer)
    want_events, want_rejects = _per_group(groups, normalizer)
    assert _rows(got.events) == want_events
    assert _rows(got.rejects, ("time",)) == want_rejects


def test_offsets_a_shared_pass_cannot_carry_take_a_pass_per_partition(normalizer: Normalizer) -> None:
    """An offset at or above 2**48 (or below 0) cannot share the pass: each group goes alone, and is right."""
    big = 1 << GROUP_SHIFT
    groups = [("kafka:t/0", [REAL[0], b"junk"], [big, big + 1]), ("kafka:t/1", [REAL[1], REAL[0]], [5, 6])]
    got = normalize_groups(groups, normalizer)
    want_events, want_rejects = _per_group(groups, normalizer)
    assert _rows(got.events) == want_events and _rows(got.rejects, ("time",)) == want_rejects
    assert got.rejects.column("source_offset").to_pylist() == [big + 1]
    assert [(r["source"], r["source_offset"]) for r in _rows(got.events)] == [
        ("kafka:t/0", big),
        ("kafka:t/1", 5),
        ("kafka:t/1", 6),
    ]
