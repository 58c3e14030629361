"""Chunks of complete lines: what every line source hands on, and the splitter that cuts them.

A chunk carries its lines, how many source bytes they took, and where the
source stands after them (what a checkpoint stores once they are safe). The
follower (:mod:`tetrapipe.sources.follow`), the pipe reader
(:mod:`tetrapipe.sources.stdin`) and the gRPC stream
(:mod:`tetrapipe.sources.grpc`) all produce them; see docs/ARCHITECTURE.md.

Lines are split with ``bytes.split`` rather than :mod:`tetrapipe.sources.lines`
(Arrow arrays): the Kafka producer wants one ``bytes`` object per event, and
splitting in C straight into those objects is the cheapest way there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

DEFAULT_CHUNK_BYTES = 1024 * 1024
# Kafka's default message.max.bytes is 1048588 for a whole record batch; a line
# above this could never be delivered, so it is set aside at the source.
DEFAULT_MAX_LINE_BYTES = 1_000_000


@dataclass(slots=True)
class Reject:
    """A line that was read but not forwarded, and why (reported with its place)."""

    source: str
    line_no: int
    reason: str
    preview: bytes = b""


@dataclass(slots=True)
class Chunk:
    """Complete lines read together, and where the source stands after them.

    ``position`` is what a checkpoint stores once every line of this chunk
    (and of all chunks before it) is safe; ``None`` for a source that cannot
    resume (stdin, gRPC).
    """

    lines: list[bytes]
    nbytes: int  # source bytes consumed by this chunk (newlines, blank and skipped lines included)
    position: dict[str, Any] | None = None
    source: str = ""
    line_nos: list[int] | None = None  # 1-based line of each entry of ``lines`` (when asked for)
    rejects: list[Reject] = field(default_factory=list)
    spool_seq: int | None = None  # set when the chunk was read back from the disk spool


class LineSplitter:
    """Cut a byte stream into complete lines, keeping the unfinished tail for later.

    ``consumed`` counts bytes of finished lines (skipped over-long lines
    included): exactly the offset to resume from. ``line`` counts lines.
    """

    def __init__(
        self,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        *,
        line: int = 0,
        skipping: bool = False,
        want_line_nos: bool = False,
        source: str = "",
    ) -> None:
        self.max_line_bytes = max_line_bytes
        self.carry = b""
        self.line = line
        self.skipping = skipping  # inside an over-long line: drop bytes up to its newline
        self.want_line_nos = want_line_nos
        self.source = source

    @property
    def pending_bytes(self) -> int:
        return len(self.carry)

    def feed(self, data: bytes, *, final: bool = False) -> tuple[list[bytes], int, list[int] | None, list[Reject]]:
        """Add ``data``; return (lines, bytes consumed, line numbers, rejects).

        ``final``: no more data will come (a finished file): an unterminated
        last line is returned as a line.
        """
        buf = self.carry + data if self.carry else data
        self.carry = b""
        rejects: list[Reject] = []
        consumed = 0
        start = 0
        if self.skipping:
            nl = buf.find(b"\n")
            if nl < 0:
                self.skipping = not final
                if final:
                    self.line += 1
                return [], len(buf), [] if self.want_line_nos else None, rejects
            start = nl + 1
            consumed = start
            self.skipping = False
            self.line += 1
        cut = buf.rfind(b"\n", start) + 1
        if cut <= start:
            cut = start
        end = len(buf) if final else cut
        tail: bytes | None = None
        if start == 0 and end == cut and cut:
            # the usual case: one split of the whole buffer, whose last piece is the unfinished
            # line (a slice would copy the buffer first: ~20% of the collector's reading time)
            lines: list[bytes] = buf.split(b"\n")
            tail = lines.pop()
        else:
            lines = buf[start:end].split(b"\n") if end > start else []
            if lines and end == cut:
                lines.pop()  # the empty piece after the last newline
        consumed += end - start
        first_no = self.line + 1
        self.line += len(lines)
        line_nos: list[int] | None = list(range(first_no, first_no + len(lines))) if self.want_line_nos else None
        if lines and (not all(lines) or b"\r" in lines):  # both checks run in C
            lines, line_nos = self._drop_blank(lines, line_nos)
        if lines and max(map(len, lines)) > self.max_line_bytes:
            lines, line_nos = self._drop_long(lines, line_nos, first_no, rejects)
        if tail is None:
            tail = buf[end:]
        if len(tail) > self.max_line_bytes:  # (after the whole lines' rejects: rejects come in line order)
            rejects.append(
                Reject(self.source, self.line + 1, f"line longer than {self.max_line_bytes} bytes, skipped", tail[:200])
            )
            consumed += len(tail)
            self.skipping = True
        else:
            self.carry = tail
        return lines, consumed, line_nos, rejects

    @staticmethod
    def _drop_blank(lines: list[bytes], nos: list[int] | None) -> tuple[list[bytes], list[int] | None]:
        keep = [i for i, ln in enumerate(lines) if ln and ln != b"\r"]
        return [lines[i] for i in keep], ([nos[i] for i in keep] if nos is not None else None)

    def _drop_long(
        self, lines: list[bytes], nos: list[int] | None, first_no: int, rejects: list[Reject]
    ) -> tuple[list[bytes], list[int] | None]:
        limit = self.max_line_bytes
        out, out_nos = [], []
        for i, ln in enumerate(lines):
            no = nos[i] if nos is not None else -1
            if len(ln) > limit:
                rejects.append(
                    Reject(
                        self.source,
                        no if no > 0 else first_no + i,
                        f"line longer than {limit} bytes ({len(ln)}), skipped",
                        ln[:200],
                    )
                )
            else:
                out.append(ln)
                out_nos.append(no)
        return out, (out_nos if nos is not None else None)


def last_line_end(fd: int, size: int) -> int:
    """The offset just after the last newline in the first ``size`` bytes of ``fd`` (0 if there is none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - 64 * 1024)
        block = os.pread(fd, pos - start, start)
        nl = block.rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
        pos = start
    return 0
