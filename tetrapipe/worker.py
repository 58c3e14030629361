"""One background thread that runs jobs in the order they were handed over.

Ingest is a pipeline of stages (read, normalize, transforms, Parquet write) and
most of their time is spent in DuckDB, numpy, Arrow and zstd, which release the
GIL: a stage on its own thread overlaps the others on a second core. Order
matters (the process table must see a parent before its child, a segment's
commit records how far the input has been read), so each stage is a single
thread fed by a small queue, which also bounds the memory held in flight.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


class OrderedWorker:
    """Runs submitted callables one after the other on a daemon thread.

    The first failure is sticky: every job queued after it is skipped (a later
    segment must not be committed past one that was lost), and the error is
    raised in the caller once, at the next :meth:`submit` or at :meth:`close`.
    """

    def __init__(self, name: str, max_pending: int = 1) -> None:
        self._q: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._raised = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            if self._error is not None:
                continue
            try:
                job()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self._error = exc

    def _check(self) -> None:
        if self._error is not None and not self._raised:
            self._raised = True
            raise self._error

    @property
    def failed(self) -> bool:
        return self._error is not None

    def submit(self, job: Callable[[], None]) -> None:
        """Queue ``job`` (blocks while the queue is full); raises an earlier job's error instead."""
        self._check()
        if self._error is None:
            self._q.put(job)

    def flush(self) -> None:
        """Wait until every job queued so far has run (or been skipped after a failure)."""
        done = threading.Event()
        self.submit(done.set)
        while not done.wait(0.1):
            if self._error is not None:
                break
        self._check()

    def close(self) -> None:
        """Wait for every queued job; raise the first failure if it was not raised yet."""
        self._q.put(None)
        self._thread.join()
        self._check()


def in_thread(work: Callable[[], T], name: str) -> Future[T]:
    """``work()`` on a thread of its own; its result, or the exception it raised, from the future.

    Why: a command starts what it needs only later (its rules, checked and
    planned) while it reads and normalizes its first events, which run mostly
    outside the GIL. Not a daemon: an interpreter leaving while DuckDB works on
    the thread waits for it rather than pulling the library from under it.
    """
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever reads the future
            future.set_exception(exc)

    threading.Thread(target=run, name=name).start()
    return future


__all__ = ["OrderedWorker", "in_thread"]
