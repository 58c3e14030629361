"""The ordered background stage under ingest: order, flush, and a failure that stops what follows."""

from __future__ import annotations

import threading
import time

import pytest

from tetrapipe.worker import OrderedWorker


def test_jobs_run_in_order_and_flush_waits_for_them() -> None:
    worker = OrderedWorker("test", max_pending=2)
    seen: list[int] = []
    for i in range(50):
        worker.submit(lambda i=i: (time.sleep(0.001), seen.append(i)))
    worker.flush()
    assert seen == list(range(50))
    worker.close()


def test_a_failure_skips_every_later_job_and_is_raised_once() -> None:
    worker = OrderedWorker("test", max_pending=4)
    gate = threading.Event()
    ran: list[int] = []

    def fail() -> None:
        gate.wait(5)
        raise ValueError("segment 2 could not be written")

    worker.submit(lambda: ran.append(1))
    worker.submit(fail)
    worker.submit(lambda: ran.append(3))  # queued behind the failure: must never run
    gate.set()
    with pytest.raises(ValueError, match="segment 2"):
        worker.flush()
    worker.submit(lambda: ran.append(4))  # after the failure: refused quietly, already reported
    worker.close()  # raised once, not again
    assert ran == [1]
    assert worker.failed
