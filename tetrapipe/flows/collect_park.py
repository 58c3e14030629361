"""Parking: a stream's events on their way into the collector's spool, within its bound.

A stream (stdin, gRPC) cannot be read again, so when Kafka stalls, and at
exit, the chunks its producer holds unacknowledged go to the disk spool
(:mod:`tetrapipe.flows.collect`). The spool is bounded (``--spool-bytes``)
and the bound is a promise about disk use, so what does not fit is *held*
here, in memory and in order, instead of being written past it: the
collector reads nothing more while anything is held (backpressure: the
stream waits in its pipe, or in Tetragon's buffer), and writes the held
lines as the spool frees room, or hands them straight to a producer once
Kafka acknowledges again and the spool has nothing older to send. A chunk
read for the spool that does not fit waits here the same way. Only what is
still held when the process ends is lost (a stream's; a file reads it
again), and that is counted. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tetrapipe.flows.collect_state import Ticket
from tetrapipe.sinks.kafka import ChunkProducer, Pending
from tetrapipe.sinks.spool import DiskSpool


@dataclass(slots=True)
class Held:
    """Lines bound for the spool that do not fit in it yet, oldest first."""

    lines: list[bytes]
    nbytes: int
    source: str
    start: int  # source bytes before them (the batch header's "total")
    sent: int  # how many of them (the first ones) a producer had: Kafka may hold those already
    ticket: Ticket


def is_stream_chunk(entry: Pending) -> bool:
    """A chunk read from the source and handed to the producer directly (not read back from the spool)."""
    return entry.chunk.spool_seq is None and isinstance(entry.ticket, Ticket)


class Parking:
    """The held queue of one collector: what goes to its spool next, written as room allows."""

    def __init__(self, spool: DiskSpool, sink: ChunkProducer, *, split: bool) -> None:
        self.spool = spool
        self.sink = sink
        # a stream's entry may go to the spool in parts (what is held may be lost); a file's goes whole,
        # so the checkpoint that covers its batch covers all of it (a file reads the rest again anyway)
        self.split = split
        self.held: deque[Held] = deque()
        self.spooled = 0  # lines written to the spool, ever

    @property
    def events(self) -> int:
        return sum(len(h.lines) for h in self.held)

    @property
    def nbytes(self) -> int:
        return sum(h.nbytes for h in self.held)

    def take_from_sink(self) -> int:
        """Take the stream's unacknowledged chunks from the producer to the front of the queue; how many.

        They go first: anything held already was read after them (it is held
        because it came while they were in the producer, or is a later chunk
        that waited for room). The sink forgets them
        (:meth:`~tetrapipe.sinks.kafka.ChunkProducer.release`) so its producer
        never delivers its copies behind the spool's back.
        """
        left = self.sink.unacked(is_stream_chunk)
        taken = []
        for u in left:
            ticket = u.entry.ticket
            start = ticket.total_end - u.entry.chunk.nbytes
            taken.append(Held(u.lines, u.nbytes, u.entry.chunk.source, start, u.maybe_sent, ticket))
        self.sink.release([u.entry for u in left])
        self.held.extendleft(reversed(taken))
        return len(taken)

    def place(self, submit: Callable[[Held], bool] | None = None) -> int:
        """Move held lines on, oldest first: to the producer (``submit`` says whether it took them), else the spool.

        Lines go to the spool as far as its bound allows, for a stream the
        first part of an entry if that is all that fits (its ``sent`` lines
        are its first ones, so the count goes with them). An entry wholly on
        disk has its ticket safe. Returns the lines written to the spool
        (:attr:`spooled` counts them too). A write error is raised, as a
        spool write's is.
        """
        spool = self.spool
        written = 0
        while self.held:
            h = self.held[0]
            if submit is not None and h.lines and submit(h):
                self.held.popleft()
                continue
            n = spool.fitting(h.lines, self._meta(h)) if h.lines and spool.enabled else 0
            if n < len(h.lines) and not self.split:
                break
            if n:
                piece = h.lines[:n]
                piece_bytes = h.nbytes if n == len(h.lines) else sum(len(ln) + 1 for ln in piece)
                meta = {**self._meta(h), "nbytes": piece_bytes, "sent": min(h.sent, n)}
                if spool.put_batch(piece, meta) is None:  # cannot happen: fitting() said it fits
                    break
                written += n
                self.spooled += n
                h.lines, h.sent, h.nbytes = h.lines[n:], max(h.sent - n, 0), h.nbytes - piece_bytes
            if h.lines:
                break  # the rest waits for room
            h.ticket.spool_upto = spool.next_seq
            h.ticket.safe = True
            self.held.popleft()
        return written

    @staticmethod
    def _meta(h: Held) -> dict[str, object]:
        return {"source": h.source, "total": h.start, "nbytes": h.nbytes, "sent": h.sent}
