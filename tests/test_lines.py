"""The line reader: every line once, in order, whatever the chunking; bad lines reported, not lost."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from tetrapipe.sources.lines import read_line_batches


def _collect(data: bytes, **kw: object) -> tuple[list[tuple[int, str]], list[tuple[int, str]], int]:
    good, bad, total = [], [], 0
    for b in read_line_batches(io.BytesIO(data), **kw):
        good += list(zip(b.line_nos.to_pylist(), b.raw.to_pylist(), strict=False))
        bad += [(x.line_no, x.reason) for x in b.bad]
        total = b.lines_total
    return good, bad, total


def test_blank_crlf_partial_last_line() -> None:
    good, bad, total = _collect(b'{"a":1}\n\n{"b":2}\r\n{"c":3}')
    assert [n for n, _ in good] == [1, 3, 4]
    assert good[2][1] == '{"c":3}'  # a file without a final newline still gives its last line
    assert bad == [] and total == 4


def test_follower_never_emits_half_a_line() -> None:
    good, _, _ = _collect(b'{"a":1}\n{"half', final_partial_line=False)
    assert good == [(1, '{"a":1}')]


def test_non_utf8_and_oversized_lines_are_reported_with_line_numbers() -> None:
    data = b'{"a":1}\n\xff\xfe\n' + b"x" * 100 + b'\n{"b":2}\n'
    good, bad, total = _collect(data, chunk_bytes=16, max_line_bytes=40)
    assert [n for n, _ in good] == [1, 4]
    assert bad[0][0] == 2 and bad[0][1].startswith("not UTF-8")
    assert bad[1][0] == 3 and bad[1][1].startswith("line longer than 40 bytes")
    assert total == 4


def test_skip_lines_already_ingested() -> None:
    data = b"".join(b'{"n":%d}\n' % i for i in range(1, 11))
    good, _, total = _collect(data, chunk_bytes=20, skip_lines=7)
    assert [n for n, _ in good] == [8, 9, 10] and total == 10


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(
        st.text(
            alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), min_size=1, max_size=30
        ),
        min_size=0,
        max_size=40,
    ),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_any_chunking_gives_the_same_lines(lines: list[str], chunk: int) -> None:
    data = "".join(line + "\n" for line in lines).encode()
    good, bad, total = _collect(data, chunk_bytes=chunk, max_line_bytes=10_000)
    assert bad == []
    expected = [(i + 1, line) for i, line in enumerate(lines)]
    assert good == expected and total == len(lines)


def test_a_long_line_across_chunks_grows_the_buffer() -> None:
    """A line longer than the read-ahead slack, cut by a chunk boundary, once made the buffer resize fail."""
    long = b'{"x":"' + b"y" * 200_000 + b'"}'
    data = b'{"a":1}\n' + long + b'\n{"b":2}\n'
    good, bad, total = _collect(data, chunk_bytes=4096, max_line_bytes=1_000_000)
    assert [n for n, _ in good] == [1, 2, 3] and good[1][1] == long.decode()
    assert bad == [] and total == 3
