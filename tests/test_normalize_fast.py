"""One Normalizer, many batches: its prepared queries give every batch the rows a fresh one would.

The normalizer prepares its queries once and swaps the batch they read (see
``Normalizer.__init__``), and sets each row's ``source`` itself instead of binding it.
These tests try to make that reuse leak: a batch seeing another's lines or name, a failed
batch breaking the next, an input name that would be SQL if it were pasted in.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from conftest import REAL_LOGS

from tetrapipe.transforms.normalize import Normalizer, normalize_lines

LINES = [line for p in REAL_LOGS for line in p.read_text().splitlines() if line.strip()]


def _same(a: pa.Table, b: pa.Table) -> None:
    """Equal tables but for the rejects' time (when they were made)."""
    assert a.drop_columns(["time"]).to_pylist() == b.drop_columns(["time"]).to_pylist()


def _fresh(lines: list[str], source: str) -> tuple[pa.Table, pa.Table]:
    got = normalize_lines(lines, source=source)
    return got.events, got.rejects


@pytest.fixture
def normalizer() -> Normalizer:
    n = Normalizer()
    yield n
    n.close()


def test_batches_through_one_normalizer_read_as_through_fresh_ones(normalizer: Normalizer) -> None:
    """Big, small, repeated and one-line batches, each its own rows and its own source name, in order."""
    batches = [LINES, LINES[3:5], LINES[:1], LINES, LINES[10:40]]
    for n, lines in enumerate(batches):
        source = f"input-{n}.log"
        got = normalize_lines(lines, source=source, normalizer=normalizer)
        events, rejects = _fresh(lines, source)
        assert got.events == events
        _same(got.rejects, rejects)
        assert set(got.events.column("source").to_pylist()) == {source}


@pytest.mark.parametrize(
    "source",
    [
        "it's.log",
        "'); DROP TABLE batch; --",
        "$source",
        "NULL",
        "/var/log/tetragon/tétragon \u2028 export.log",
        "",
    ],
)
def test_an_input_name_is_kept_as_it_is_whatever_it_holds(normalizer: Normalizer, source: str) -> None:
    """The name is data, set on the rows after the query: no quoting of it can change the query or the name."""
    bad = '{"process_exec":'
    got = normalize_lines([LINES[0], bad, LINES[1]], source=source, normalizer=normalizer)
    assert got.events.column("source").to_pylist() == [source, source]
    assert got.rejects.column("source").to_pylist() == [source]
    again = normalize_lines(LINES[:3], source="next.log", normalizer=normalizer)  # the connection still works
    assert again.events.column("source").to_pylist() == ["next.log"] * 3


def test_a_batch_duckdb_fails_on_does_not_break_the_next(normalizer: Normalizer) -> None:
    """Invalid JSON (the fast query raises) and a line no query can take, then plain batches: each as if alone."""
    invalid = [LINES[0], '{"process_exec":{"process":', LINES[2]]
    odd = [LINES[0], '{"process_exec":{"process":{"exec_id":"x","pid":1e999999}}}', "[1,2]", '"text"']
    for lines in (invalid, LINES[:6], odd, LINES[6:9], invalid):
        got = normalize_lines(lines, source="s.log", normalizer=normalizer)
        events, rejects = _fresh(lines, "s.log")
        assert got.events == events
        _same(got.rejects, rejects)


def test_the_batch_may_come_as_string_or_large_string(normalizer: Normalizer) -> None:
    """The prepared queries read one column type: a batch of the other is cast, not refused or misread."""
    offsets = pa.array(range(1, 6), pa.int64())
    small = normalizer.normalize(pa.array(LINES[:5], pa.string()), offsets, "a.log")
    large = normalizer.normalize(pa.array(LINES[:5], pa.large_string()), offsets, "a.log")
    assert small.events == large.events
    assert small.events.num_rows == 5


def _with_labels(labels_json: str) -> str:
    """A real exec line whose pod's labels are ``labels_json`` (JSON text, repeats allowed)."""
    line = next(x for x in LINES if '"pod_labels":{' in x and x.startswith('{"process_exec"'))
    start = line.index('"pod_labels":{') + len('"pod_labels":')
    end = line.index("}", start) + 1
    return line[:start] + labels_json + line[end:]


@pytest.mark.parametrize(
    ("labels_json", "want"),
    [
        ('{"b":"1","a":"2"}', [("a", "2"), ("b", "1")]),
        ('{"a":"2","b":"1"}', [("a", "2"), ("b", "1")]),
        ('{"app":"x","App":"y","\u00e9":"z","e":"w"}', [("App", "y"), ("app", "x"), ("e", "w"), ("\u00e9", "z")]),
        ('{"\U0001f600":"1","\uffff":"2"}', [("\uffff", "2"), ("\U0001f600", "1")]),
        ('{"b":"1","a":"2","b":"3"}', [("a", "2"), ("b", "3")]),
        ('{"a":"1","a":"2"}', [("a", "2")]),
        ('{"a\\u0062":"1","aa":"2"}', [("aa", "2"), ("ab", "1")]),
        ("{}", []),
    ],
)
def test_labels_come_sorted_by_key_whatever_order_the_line_has(
    normalizer: Normalizer, labels_json: str, want: list[tuple[str, str]]
) -> None:
    """The first pass does not sort the labels: only lines whose labels are sorted already may keep its rows."""
    for _ in range(2):  # and again, once the line's shape is known
        got = normalize_lines([_with_labels(labels_json)], normalizer=normalizer)
        assert got.rejects.num_rows == 0
        assert got.events.column("pod_labels").to_pylist() == [want]
