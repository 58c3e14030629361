"""Byte streams over inputs: gzip inflated as it is read, a sniffed head put back, a first line read ahead.

A gzip input is inflated by :class:`GzipStream` rather than :mod:`gzip`, so
that a file cut short (Tetragon still compressing a backup, a disk that filled
up, a copy interrupted) yields every line it holds and then one
:class:`InputFault` that says where the compressed data ends. Which inputs to
read is :mod:`tetrapipe.sources.files`; see docs/ARCHITECTURE.md.

A pipe that stays open (``kubectl logs -f … | tetrapipe run -``) is read
*paced* inside :func:`paced_streams`: a read returns what the pipe holds
instead of waiting for a whole chunk, what was read is handed on every
pace's seconds, full chunk or not (:class:`StreamPause`), and a stop ends the
stream (:class:`StreamStopped`). Outside it, a pipe is read to fill each read, as a
file is (``tetrapipe ingest -``).
"""

from __future__ import annotations

import os
import select
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"


class StreamPause(Exception):
    """A paced stream's chunk has been filling long enough: what was read so far goes on now.

    Raised by a read every ``chunk_seconds`` from the stream's first byte on,
    whether data is flowing or not: a reader holding bytes hands them on, one
    holding none reads on. Why a steady beat rather than a clock started by
    each chunk's first byte: bytes handed out may wait in a wrapper (the first
    line read ahead, a gzip block inflated) before they reach the reader that
    makes the chunk, where the stream cannot see them. Not a fault: the stream
    goes on.
    """


class StreamStopped(StreamPause):
    """The stop of a paced stream was set: it ends here, and every later read says so again.

    Unlike its end of input, a line it was in the middle of is unfinished, not
    a last line without its newline: a reader leaves it unread (a stream read
    again from its start delivers it whole).
    """


@dataclass(frozen=True)
class Pace:
    """How a stream opened inside :func:`paced_streams` is read (see the module docstring)."""

    stop: threading.Event
    #: what was read goes on this often, a full chunk or not (a full one goes on at once)
    chunk_seconds: float
    #: called while a read waits for data (a quiet pipe): the waiting reader is alive, not stuck
    on_wait: Callable[[], None] | None = None


#: the pace of the streams opened now (set by :func:`paced_streams`, read when a stream is opened)
_pace: Pace | None = None
#: how often a paced read waiting for data looks at its stop
_STOP_CHECK_SECONDS = 0.1


@contextmanager
def paced_streams(
    stop: threading.Event, chunk_seconds: float, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Streams opened in this block are read paced: handed on every ``chunk_seconds``, ended by ``stop``.

    Why a block and not an argument: a stream is opened by the ingest that
    reads it (:func:`tetrapipe.sources.files.open_input`), and only the caller
    that keeps a pipe open for hours (``tetrapipe run``) wants its reads cut
    by time; a one-shot ``ingest -`` keeps whole chunks.
    """
    global _pace
    before, _pace = _pace, Pace(stop, max(chunk_seconds, 0.01), on_wait)
    try:
        yield
    finally:
        _pace = before


def _fd_of(stream: BinaryIO) -> int | None:
    """The descriptor a paced read waits on, or None for a stream without one (read as usual)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _wait_readable(fd: int, pace: Pace, deadline: float | None) -> bool:
    """Wait for ``fd`` to have data; False at ``deadline``; StreamStopped once the stop is set."""
    while True:
        if pace.stop.is_set():
            raise StreamStopped("stopped")
        if pace.on_wait is not None:
            pace.on_wait()
        wait = _STOP_CHECK_SECONDS
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                return False
        if select.select([fd], [], [], wait)[0]:
            return True


def read_exactly(stream: BinaryIO, n: int) -> bytes:
    """``n`` bytes, or fewer at the end: a pipe may hand over one byte at a time.

    Inside :func:`paced_streams`, read from the descriptor (a buffered
    reader's buffer would hide what the paced reads wait for), and ended, short,
    by the stop.
    """
    pace, fd = _pace, _fd_of(stream)
    out = b""
    while len(out) < n:
        if pace is not None and fd is not None:
            try:
                _wait_readable(fd, pace, None)
            except StreamStopped:
                break
            more = os.read(fd, n - len(out))
        else:
            more = stream.read(n - len(out))
        if not more:
            break
        out += more
    return out


class Prefixed:
    """A stream with bytes already taken from its front put back (the sniffed magic of a pipe).

    Opened inside :func:`paced_streams`, it reads its descriptor paced (see
    the module docstring).
    """

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream
        fd = _fd_of(stream)
        self._pace = _pace if fd is not None else None
        self._fd = fd if fd is not None else -1
        self._due: float | None = None  # when the next pause is (paced; None until the first byte)

    def readinto(self, target: memoryview | bytearray) -> int:
        """What the stream holds now, up to ``len(target)``; see :meth:`_paced_readinto` for a paced one."""
        with memoryview(target) as mv, mv.cast("B") as view:
            if self._head:
                n = min(len(self._head), len(view))
                view[:n] = self._head[:n]
                self._head = self._head[n:]
                return n
            if self._pace is not None:
                return self._paced_readinto(view)
            data = self._stream.read(len(view))
            view[: len(data)] = data
            return len(data)

    def _paced_readinto(self, view: memoryview) -> int:
        """Wait for data, the next pause (StreamPause) or the stop (StreamStopped); then one read of what is there."""
        assert self._pace is not None
        if not _wait_readable(self._fd, self._pace, self._due):
            self._due = time.monotonic() + self._pace.chunk_seconds
            raise StreamPause(f"{self._pace.chunk_seconds:g} s since the last pause")
        n = os.readv(self._fd, [view])
        if n and self._due is None:
            self._due = time.monotonic() + self._pace.chunk_seconds
        return n

    def read(self, n: int = -1) -> bytes:
        if self._pace is not None and n is not None and n >= 0:
            buf = bytearray(n)
            got = self.readinto(buf)
            del buf[got:]
            return bytes(buf)
        if not self._head:
            return self._stream.read(n)
        head, self._head = self._head, b""
        if n is None or n < 0:
            return head + self._stream.read()
        if n <= len(head):
            self._head = head[n:]
            return head[:n]
        return head + self._stream.read(n - len(head))

    def seekable(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._stream.fileno()

    def close(self) -> None:
        self._stream.close()


class InputFault(Exception):
    """An input that ended abnormally; everything readable before the fault was delivered first.

    ``truncated``: the data simply stops (a gzip file cut short, or still being
    written); otherwise it is damaged or unreadable. Raised by a read once
    nothing is left to deliver, and again by any read after that.
    """

    def __init__(self, message: str, *, truncated: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated


#: compressed bytes read at a time
_GZ_READ = 256 * 1024
#: compressed bytes handed to zlib per call
_GZ_FEED = 64 * 1024
#: inflated bytes produced per zlib call at least (it bounds memory for a small read)
_GZ_OUT_MIN = 256 * 1024
#: compressed bytes per step when approaching damage
_GZ_SALVAGE_STEP = 256


class GzipStream:
    """Inflate a gzip stream (any number of members, zero padding after them) while it is read.

    Why not :class:`gzip.GzipFile`: at a cut-short end it raises EOFError and
    its buffered reader throws away what it inflated in the same call (up to a
    whole read's worth of lines), and it cannot say how far the compressed data
    went. Here every byte that inflates is handed out first; only then does a
    read raise :class:`InputFault` naming the compressed offset where the
    stream ends or the damage is. Reads fill the buffer asked for, as a file's
    do, so a gzip input is read in as few, large batches as a plain one.
    """

    def __init__(self, raw: BinaryIO, label: str) -> None:
        self._raw = raw
        self.label = label
        self._reset()

    def _reset(self) -> None:
        """At the start of the stream."""
        self._d: zlib._Decompress | None = zlib.decompressobj(wbits=31)  # None between members
        self._in = b""  # compressed bytes read and not inflated yet
        self._read = 0  # compressed bytes read from raw
        self._out = memoryview(b"")  # inflated bytes not handed out yet
        self._pos = 0  # inflated bytes handed out
        self._end = False
        self._fault: InputFault | None = None

    @property
    def fileobj(self) -> BinaryIO:
        """The compressed file underneath (its position is the compressed offset)."""
        return self._raw

    def fileno(self) -> int:
        return self._raw.fileno()

    def seekable(self) -> bool:
        return self._raw.seekable()

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        """The position in the inflated data."""
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        """Go to ``offset`` of the inflated data: forward by inflating, back by starting over (a file only)."""
        if whence != 0:
            raise OSError(f"{self.label}: a gzip stream seeks from its start only")
        if offset < self._pos:
            self._raw.seek(0)
            self._reset()
        while self._pos < offset:
            if not self.read(min(1024 * 1024, offset - self._pos)):
                break  # past the end: stays at the end, as a file would report on its next read
        return self._pos

    def readinto(self, target: memoryview | bytearray) -> int:
        """Fill ``target`` as far as the stream goes; 0 at its clean end; InputFault at a broken one."""
        with memoryview(target) as mv, mv.cast("B") as view:
            filled = 0
            while filled < len(view):
                if not self._out:
                    try:
                        if not self._inflate(len(view) - filled):
                            break
                    except (InputFault, StreamPause):
                        if filled:
                            break  # hand out what came before; the next read raises it again (a pause: goes on)
                        raise
                n = min(len(self._out), len(view) - filled)
                view[filled : filled + n] = self._out[:n]
                self._out = self._out[n:]
                filled += n
            self._pos += filled
            return filled

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read(1024 * 1024):
                parts.append(chunk)
            return b"".join(parts)
        buf = bytearray(n)
        got = self.readinto(buf)
        del buf[got:]
        return bytes(buf)

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> GzipStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, message: str, *, truncated: bool = False) -> InputFault:
        self._fault = InputFault(message, truncated=truncated)
        return self._fault

    def _more(self) -> bool:
        """Read more compressed bytes; False at the end of the file."""
        more = self._raw.read(_GZ_READ)
        if not more:
            return False
        self._read += len(more)
        self._in = self._in + more if self._in else more
        return True

    def _inflate(self, want: int) -> bool:
        """Put some inflated bytes in ``_out``; False at a clean end; InputFault at a broken one."""
        while True:
            if self._fault is not None:
                raise self._fault
            if self._end:
                return False
            if self._d is None:  # after a member: the end, zero padding, another member or garbage
                self._in = self._in.lstrip(b"\0")
                if len(self._in) < 2 and not self._more():
                    if self._in:
                        raise self._fail(
                            f"not gzip data after the end of the gzip stream at byte "
                            f"{self._read - len(self._in)} of {self.label}"
                        )
                    self._end = True
                    return False
                if len(self._in) < 2 or not self._in[:1].strip(b"\0"):
                    continue  # more padding, or half a magic number: look again
                if self._in[:2] != GZIP_MAGIC:
                    raise self._fail(
                        f"not gzip data after the end of the gzip stream at byte "
                        f"{self._read - len(self._in)} of {self.label}"
                    )
                self._d = zlib.decompressobj(wbits=31)
            if not self._in and not self._more():
                raise self._fail(f"truncated gzip: stream ends at byte {self._read} of {self.label}", truncated=True)
            at = self._read - len(self._in)
            piece, rest = self._in[:_GZ_FEED], self._in[_GZ_FEED:]
            before = self._d.copy()  # ~1 us: lets damage be approached in small steps, see _salvage
            try:
                out = self._d.decompress(piece, max(want, _GZ_OUT_MIN))
            except zlib.error as exc:
                self._d = before
                out, where = self._salvage(piece)
                self._fail(f"corrupt gzip: {exc} (at byte {at + where} of {self.label})")
                if out:
                    self._out = memoryview(out)
                    return True
                raise self._fault from None  # type: ignore[misc]
            if self._d.eof:
                self._in = self._d.unused_data + rest
                self._d = None
            else:
                self._in = self._d.unconsumed_tail + rest
            if out:
                self._out = memoryview(out)
                return True

    def _salvage(self, piece: bytes) -> tuple[bytes, int]:
        """Inflate ``piece`` in small steps up to the damage: what came out, and where the damage starts.

        A damaged block costs only what follows the damage, not the whole
        piece handed to zlib at once (whose output is lost with the error).
        """
        out: list[bytes] = []
        pos = 0
        step = _GZ_SALVAGE_STEP
        while pos < len(piece) and step:
            assert self._d is not None
            before = self._d.copy()
            try:
                out.append(self._d.decompress(piece[pos : pos + step]))
            except zlib.error:
                self._d = before
                step = 1 if step > 1 else 0  # then byte by byte, to the byte zlib stumbles on
                continue
            pos += step
        return b"".join(out), pos


class PeekableInput:
    """A binary stream whose first non-blank line has been read ahead (for the fingerprint).

    ``fault``: the input broke before that line was complete (a gzip cut short
    in its first line); the read that follows the head raises it again.
    """

    def __init__(self, stream: BinaryIO, limit: int = 4 * 1024 * 1024) -> None:
        self._stream = stream
        self.fault: InputFault | None = None
        head = b""
        while len(head) < limit:
            if any(line.strip() for line in head.split(b"\n")[:-1]):
                break  # a complete non-blank line is in hand
            try:
                more = stream.read(64 * 1024)
            except InputFault as exc:
                self.fault = exc
                break
            except StreamStopped:
                break  # (the read after the head says so again)
            except StreamPause:
                continue  # a paced pipe: the first line is not whole yet, wait on
            if not more:
                break
            head += more
        self._head = head
        self.empty = not head.strip()
        lines = head.split(b"\n")
        complete = [line for line in lines[:-1] if line.strip()]
        #: False while the first line is still being written (no newline yet)
        self.first_line_complete = bool(complete)
        self.first_line = complete[0] if complete else head.strip()

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0 or n >= len(self._head):
                head, self._head = self._head, b""
                if n < 0:
                    return head + self._stream.read()
                return head + self._rest(n - len(head))
            out, self._head = self._head[:n], self._head[n:]
            return out
        return self._stream.read(n)

    def _rest(self, n: int) -> bytes:
        """After the head: a fault is raised by the next read, once the head has been handed out."""
        try:
            return self._stream.read(n)
        except (InputFault, StreamPause):
            return b""

    def readinto(self, target: memoryview) -> int:
        """The head first, then straight into ``target`` (no intermediate copy of a whole chunk)."""
        if self._head:
            n = min(len(self._head), len(target))
            target[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        readinto = getattr(self._stream, "readinto", None)
        if readinto is not None:
            return readinto(target)
        data = self._stream.read(len(target))
        target[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
