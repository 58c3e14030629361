"""Byte chunks -> Arrow arrays of lines, with line numbers, without a Python loop.

A 2 GB export log has a million lines; touching each one from Python costs more
than the whole normalization in DuckDB. So lines are found with numpy (one
vectorized scan for newlines), the newline bytes are squeezed out in one copy,
and the result is handed to Arrow as a string array over that buffer. Only the
rare bad line (not UTF-8, too long) is looked at one by one.

A line over ``max_line_bytes`` is set aside whether it arrives whole in one
chunk or cut across several: the limit is a promise about what reaches the
normalizer, not an artefact of the read size. An input that breaks (a gzip cut
short, a read error) ends with one bad line saying why, after every complete
line before the break; the unfinished line is not counted as consumed, so a
complete copy of the input read later still delivers it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from tetrapipe.sources.streams import InputFault, StreamPause, StreamStopped

NEWLINE = 10
DEFAULT_CHUNK_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024


@dataclass
class BadLine:
    """A line that never reached the normalizer, and why."""

    line_no: int
    reason: str
    raw: str


@dataclass
class LineBatch:
    """Complete lines read from one input, in order."""

    raw: pa.Array  # large_string, one line each, newline removed, valid UTF-8
    line_nos: pa.Array  # int64, 1-based line number of each line in its input
    bad: list[BadLine] = field(default_factory=list)
    lines_total: int = 0  # lines consumed so far in this input, blank and bad ones included
    bytes_total: int = 0  # bytes consumed so far in this input (uncompressed)
    #: the input broke here: this batch's last bad line says why, and no batch follows
    fault: InputFault | None = None
    #: bytes of a last line the input ended without its newline (``final_partial_line``): a writer may still be
    #: writing it, so a reader that cannot take it as an event keeps it for a later read (flows.ingest)
    open_end: int = 0

    def __len__(self) -> int:
        return len(self.raw)


def split_lines(
    data: bytes | memoryview, first_line_no: int, max_line_bytes: int | None = None
) -> tuple[pa.Array, pa.Array, list[BadLine], int]:
    """Split ``data`` (complete lines, the last one may lack its newline).

    Returns the non-blank lines as valid UTF-8 strings, their line numbers,
    the lines that were not UTF-8 or longer than ``max_line_bytes``, and the
    number of lines consumed.
    """
    if not len(data):
        return _EMPTY_RAW, _EMPTY_NOS, [], 0
    buf = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buf == NEWLINE)
    size = len(buf)
    ends = newlines if buf[-1] == NEWLINE else np.append(newlines, size)
    n_lines = len(ends)
    starts = np.empty(n_lines, dtype=np.int64)
    starts[0] = 0
    starts[1:] = newlines[: n_lines - 1] + 1
    lengths = ends - starts
    # a line holding nothing, or only the "\r" of a CRLF file, is not an event
    blank = lengths == 0
    lone_cr = (lengths == 1) & (buf[np.minimum(starts, size - 1)] == 13)
    if lone_cr.any():
        blank |= lone_cr
    # newline bytes squeezed out at memcpy speed (bytes.replace is C), then one offsets array
    squeezed = bytes(data).replace(b"\n", b"") if len(newlines) else bytes(data)
    if lone_cr.any():
        keep_bytes = np.repeat(~lone_cr, lengths)
        squeezed = np.frombuffer(squeezed, dtype=np.uint8)[keep_bytes].tobytes()
        lengths = np.where(lone_cr, 0, lengths)
    too_long: list[BadLine] = []
    if max_line_bytes is not None and n_lines and int(lengths.max()) > max_line_bytes:
        over = lengths > max_line_bytes
        for i in np.flatnonzero(over).tolist():
            preview = bytes(buf[starts[i] : starts[i] + 200]).decode("utf-8", errors="replace") + "..."
            too_long.append(
                BadLine(int(i) + first_line_no, f"line longer than {max_line_bytes} bytes, skipped", preview)
            )
        # dropped like blank lines: their bytes leave the squeezed buffer
        keep_bytes = np.repeat(~over, lengths)
        squeezed = np.frombuffer(squeezed, dtype=np.uint8)[keep_bytes].tobytes()
        lengths = np.where(over, 0, lengths)
        blank |= over
    keep = ~blank
    kept_lengths = lengths[keep] if blank.any() else lengths
    offsets = np.zeros(len(kept_lengths) + 1, dtype=np.int64)
    np.cumsum(kept_lengths, out=offsets[1:])
    raw = pa.LargeStringArray.from_buffers(len(kept_lengths), pa.py_buffer(offsets), pa.py_buffer(squeezed))
    line_nos = (np.flatnonzero(keep) if blank.any() else np.arange(n_lines)).astype(np.int64) + first_line_no
    bad: list[BadLine] = []
    try:
        raw.validate(full=True)
    except pa.ArrowInvalid:
        raw, line_nos, bad = _drop_invalid_utf8(raw, line_nos)
    if too_long:
        bad = sorted(bad + too_long, key=lambda b: b.line_no)
    return raw, pa.array(line_nos, pa.int64()), bad, n_lines


def _drop_invalid_utf8(raw: pa.Array, line_nos: np.ndarray) -> tuple[pa.Array, np.ndarray, list[BadLine]]:
    """Slow path, only for a chunk that holds a non-UTF-8 line: find and set aside those lines."""
    offsets = np.frombuffer(raw.buffers()[1], dtype=np.int64)[: len(raw) + 1]
    data = raw.buffers()[2].to_pybytes()
    good: list[str] = []
    good_nos: list[int] = []
    bad: list[BadLine] = []
    for i in range(len(raw)):
        chunk = data[offsets[i] : offsets[i + 1]]
        try:
            good.append(chunk.decode("utf-8"))
            good_nos.append(int(line_nos[i]))
        except UnicodeDecodeError as exc:
            reason = f"not UTF-8: byte 0x{chunk[exc.start]:02x} at character {exc.start + 1}"
            if exc.start == 0 and chunk[:2] in UTF16_BOMS:
                # PowerShell 5's `>` opens the file so: the advice every later line of it gets belongs here too
                reason += ", a UTF-16 byte order mark, as UTF-16 text is written (convert the file to UTF-8)"
            bad.append(BadLine(int(line_nos[i]), reason, chunk.decode("utf-8", errors="replace")))
    return pa.array(good, pa.large_string()), np.array(good_nos, dtype=np.int64), bad


#: what some Windows tools write before UTF-8 text; at the start of an input it is no part of a line
UTF8_BOM = b"\xef\xbb\xbf"
#: what opens a UTF-16 file (little- and big-endian): no UTF-8, and a reason of its own
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def read_line_batches(
    stream: BinaryIO,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    skip_lines: int = 0,
    final_partial_line: bool = True,
    start_line: int = 0,
    start_byte: int = 0,
    cut_at_line: int | None = None,
) -> Iterator[LineBatch]:
    """Read ``stream`` to its end as batches of complete lines.

    Lines numbered ``<= skip_lines`` are consumed but not returned (they were
    ingested before). ``start_line``/``start_byte``: the stream was already
    positioned there (a resumed file), so numbering continues. ``final_partial_line``: a last line without newline is
    returned (a file that simply lacks its final newline); a follower that
    expects more data passes False, never emits half a line, and resumes from
    ``bytes_total``, which then excludes the unfinished line.

    Batch boundaries depend only on the content from the previous boundary:
    each batch is the complete lines of the next ``chunk_bytes`` (more only
    for a line longer than that). A reader started at any boundary therefore
    cuts where any other reader of the same input cuts, which the lake's
    exactly-once positions rely on (two ingests of one file commit the same
    chunks). ``cut_at_line``: a batch also ends after that line (a resumed
    input whose later chunk some table already holds is re-read in the same
    chunks).

    Long because it is one loop over chunks with its carry-over state (the
    partial line, the line and byte counters, an over-long line being skipped)
    held in locals: the reader of a 4 MiB-line edge case sees it all in one place.
    """
    buf = bytearray(chunk_bytes + 64 * 1024)
    view = memoryview(buf)
    carry_len = 0  # bytes of an unfinished line kept at the start of buf
    line_no = start_line  # lines consumed so far (the stream was positioned after start_line lines)
    byte_no = start_byte
    oversized: BadLine | None = None  # a too-long line being skipped to its end
    fault: InputFault | None = None
    stopped = False  # a paced stream's stop: the end, without its unfinished line
    while True:
        if carry_len + chunk_bytes > len(buf):  # a long line: grow (bounded by max_line_bytes)
            # a new buffer, not buf.extend(): a bytearray cannot be resized while views of it exist
            grown = bytearray(carry_len + chunk_bytes)
            grown[:carry_len] = view[:carry_len]
            view.release()
            buf, view = grown, memoryview(grown)
        # the window starts at the last boundary: reading chunk_bytes less what is carried over from it keeps
        # the next boundary a function of the content alone (see the docstring)
        want = chunk_bytes - carry_len if carry_len < chunk_bytes else chunk_bytes
        try:
            got = _read_into(stream, view[carry_len : carry_len + want])
        except StreamStopped:
            stopped, got = True, 0
        except InputFault as exc:
            fault, got = exc, 0
        except OSError as exc:  # a dying disk, a dropped mount: this input ends here, the others go on
            fault, got = InputFault(f"read failed: {exc.strerror or exc}"), 0
        eof = got == 0
        data_len = carry_len + got
        start = 0
        if byte_no == 0 and line_no == 0 and data_len >= 3 and bytes(view[:3]) == UTF8_BOM:
            # a UTF-8 byte order mark opens the input, not its first line (Notepad and PowerShell's
            # `Set-Content -Encoding utf8` write one): skipped, and counted in the bytes read
            start = byte_no = len(UTF8_BOM)
        if oversized is not None and fault is None:
            cut = bytes(view[:data_len]).find(b"\n")
            if cut < 0 and not eof:
                byte_no += data_len
                carry_len = 0
                continue
            consumed = data_len if cut < 0 else cut + 1
            byte_no += consumed
            line_no += 1
            start = consumed
            yield LineBatch(_EMPTY_RAW, _EMPTY_NOS, [oversized], line_no, byte_no)
            oversized = None
        if eof:
            # a broken input's unfinished line is not a line: it goes with the fault, below
            end = data_len if final_partial_line and fault is None and not stopped else start
        else:
            end = buf.rfind(b"\n", start, data_len) + 1
            if end == 0:
                end = start
        cut = False
        if end > start and cut_at_line is not None and line_no < cut_at_line and fault is None:
            newlines = np.flatnonzero(np.frombuffer(view[start:end], dtype=np.uint8) == 10)
            need = cut_at_line - line_no
            if need <= len(newlines) and start + int(newlines[need - 1]) + 1 < end:
                end, cut = start + int(newlines[need - 1]) + 1, True
            del newlines
        open_end = 0
        if eof and end > start and view[end - 1] != 10:
            open_end = end - (buf.rfind(b"\n", start, end) + 1 or start)
        if end > start:
            raw, nos, bad, consumed = split_lines(view[start:end], line_no + 1, max_line_bytes)
            line_no += consumed
            byte_no += end - start
            if skip_lines and len(nos) and nos[0].as_py() <= skip_lines:
                first = int(np.searchsorted(nos.to_numpy(), skip_lines, side="right"))
                raw, nos = raw.slice(first), nos.slice(first)
            if skip_lines:
                bad = [b for b in bad if b.line_no > skip_lines]
            if len(raw) or bad:
                yield LineBatch(raw, nos, bad, line_no, byte_no, open_end=open_end)
        if fault is not None:
            if line_no + 1 > skip_lines:  # (else a complete copy of this input already delivered that line)
                partial = (
                    oversized.raw
                    if oversized is not None
                    else bytes(view[start:data_len][:200]).decode("utf-8", errors="replace")
                )
                yield LineBatch(
                    _EMPTY_RAW, _EMPTY_NOS, [BadLine(line_no + 1, str(fault), partial)], line_no, byte_no, fault
                )
            return
        rest = data_len - end
        if eof and not cut:
            break
        if rest > max_line_bytes and not cut:
            oversized = BadLine(
                line_no + 1,
                f"line longer than {max_line_bytes} bytes, skipped",
                bytes(view[end : end + 200]).decode("utf-8", errors="replace") + "...",
            )
            byte_no += rest
            carry_len = 0
        else:
            buf[:rest] = bytes(view[end:data_len])  # small; bytes() avoids an overlapping copy
            carry_len = rest


def _read_into(stream: BinaryIO, target: memoryview) -> int:
    """Fill ``target`` as far as the stream allows now (a pipe returns what it has).

    A fault after some bytes came in (an :class:`InputFault`, an I/O error) is
    left for the next call, which meets it again, so those bytes are not lost
    with it. A paced stream's pause returns what came in (when nothing did, the
    read waits on); its stop is raised once nothing read is left to return.
    """
    readinto = getattr(stream, "readinto", None)
    if readinto is None:
        data = stream.read(len(target))
        target[: len(data)] = data
        return len(data)
    total = 0
    while total < len(target):
        try:
            n = readinto(target[total:])
        except StreamStopped:
            if total:
                break
            raise
        except StreamPause:
            if total:
                break
            continue
        except (InputFault, OSError):
            if total:
                break
            raise
        if not n:
            break
        total += n
    return total


_EMPTY_RAW = pa.array([], pa.large_string())
_EMPTY_NOS = pa.array([], pa.int64())


def prefetch(batches: Iterator[LineBatch], depth: int = 1) -> Iterator[LineBatch]:
    """Read and split the next chunk on a thread while the caller normalizes this one.

    DuckDB releases the GIL while it runs, so reading, newline search and UTF-8
    validation of chunk N+1 overlap the normalization of chunk N. ``depth``
    bounds the memory held ahead: the reader starts a chunk only when fewer
    than ``depth`` read chunks wait for the caller (a queue slot alone would
    let one more sit in the reader's hands, ~24 MB of lines each at ingest's
    chunk size). An exception in the reader is re-raised here.
    """
    import queue
    import threading

    q: queue.Queue[tuple[str, object]] = queue.Queue()
    ahead = threading.Semaphore(depth)  # a permit a chunk read and not yet taken by the caller
    stop = threading.Event()

    def run() -> None:
        try:
            it = iter(batches)
            while True:
                while not ahead.acquire(timeout=0.2):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                item = next(it, None)
                if item is None:
                    break
                q.put(("item", item))
                del item  # (held by the queue alone: the caller's is the only reference once taken)
            q.put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(("error", exc))

    t = threading.Thread(target=run, name="line-reader", daemon=True)
    t.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value  # type: ignore[misc]
            ahead.release()
            yield value  # type: ignore[misc]
            del value
    finally:
        stop.set()


def numbered_lines(paths: list[str]) -> Iterator[tuple[str, int, bytes]]:
    """``(path, line number, line)`` of each file in turn, ``-`` being standard input; the simple reader.

    For inputs read once, start to end, a line at a time (``tetrapipe
    forward``'s JSON lines); a file is closed as soon as it is read, standard
    input never.
    """
    for path in paths:
        stream: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 - closed below
        try:
            yield from ((path, n, line) for n, line in enumerate(stream, start=1))
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
