"""Lines from a pipe: ``kubectl logs -f … -c export-stdout | tetrapipe collect -`` (gzip'd or not).

See docs/ARCHITECTURE.md for where this source sits in the data flow.
"""

from __future__ import annotations

import os
import select
from typing import Any, BinaryIO

from tetrapipe.sources.chunks import DEFAULT_CHUNK_BYTES, DEFAULT_MAX_LINE_BYTES, Chunk, LineSplitter, Reject
from tetrapipe.sources.streams import GZIP_MAGIC


class StreamFollower:
    """Lines from a pipe (``kubectl logs -f … -c export-stdout | tetrapipe collect -``).

    Non-blocking (``select``) so the collector keeps acknowledging and
    reporting while the pipe is quiet. A pipe cannot be resumed, so chunks
    carry no position; ``exhausted`` turns true at end of input.
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        line_nos: bool = False,
        label: str = "<stdin>",
        wait_seconds: float = 0.05,
    ) -> None:
        self.stream = stream
        self.fd = stream.fileno()
        self.chunk_bytes = chunk_bytes
        self.splitter = LineSplitter(max_line_bytes, want_line_nos=line_nos, source=label)
        self.label = label
        self.wait_seconds = wait_seconds
        self.exhausted = False
        self._head: bytes | None = b""  # the first bytes, until two tell whether it is gzip (then None)
        self._gzip = False
        self._gz: Any = None  # the gzip member being inflated (None between members)
        self._read = 0  # bytes read from the pipe
        self._fault: str | None = None

    def read(self) -> Chunk | None:
        if self.exhausted:
            return None
        ready, _, _ = select.select([self.fd], [], [], self.wait_seconds)
        if not ready:
            return None
        raw = os.read(self.fd, self.chunk_bytes)
        self._read += len(raw)
        if self._head is not None:
            if raw and len(self._head + raw) < 2:
                self._head += raw  # one byte so far: the next one tells whether it is gzip
                return None
            raw, self._head = self._head + raw, None
            self._gzip = raw[:2] == GZIP_MAGIC  # a gzip'd log piped in
        if not raw:
            return self._end()
        data = self._inflate(raw) if self._gzip else raw
        if self._fault is not None:
            return self._end(data)
        if not data:
            return None  # (gzip: a header, or a block not inflated yet)
        lines, consumed, nos, rejects = self.splitter.feed(data)
        if not (lines or rejects):
            return None
        return Chunk(lines, consumed, None, self.label, nos, rejects)

    def _inflate(self, data: bytes) -> bytes:
        """Inflate what came through the pipe: gzip members one after the other, zero padding between them."""
        import zlib

        out: list[bytes] = []
        while data:
            if self._gz is None:
                data = data.lstrip(b"\0")
                if not data:
                    break
                self._gz = zlib.decompressobj(wbits=31)
            try:
                out.append(self._gz.decompress(data))
            except zlib.error as exc:  # the pipe's data is damaged from here on: what came before is kept
                self._fault = f"corrupt gzip: {exc} (in the data after byte {self._read - len(data)} of {self.label})"
                break
            if not self._gz.eof:
                break
            data, self._gz = self._gz.unused_data, None
        return b"".join(out)

    def _end(self, data: bytes = b"") -> Chunk | None:
        """End of input (or of what can be read of it): the last line, or the fault that ended it."""
        self.exhausted = True
        if self._fault is None and self._gzip and self._gz is not None:
            self._fault = f"truncated gzip: stream ends at byte {self._read} of {self.label}"
        lines, consumed, nos, rejects = self.splitter.feed(data, final=self._fault is None)
        if self._fault is not None:  # the unfinished line of a broken stream is half a line: a reject
            sp = self.splitter
            rejects.append(Reject(self.label, sp.line + 1, self._fault, sp.carry[:200]))
            consumed += sp.pending_bytes
            sp.carry, sp.skipping = b"", False
        return Chunk(lines, consumed, None, self.label, nos, rejects) if (lines or rejects) else None

    def lag_bytes(self) -> int:
        return self.splitter.pending_bytes

    def close(self) -> None:
        pass
