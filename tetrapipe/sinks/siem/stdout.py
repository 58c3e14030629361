"""Standard output sink: one JSON document per line, for ``kubectl logs`` collection and pipes.

A closed pipe (the reader went away) is transient like any peer failure:
retried, then spooled when a spool is configured, counted and logged as
dropped when not.
"""

from __future__ import annotations

import sys
from typing import Any, BinaryIO

from tetrapipe.sinks.siem.base import DeliveringSink, Delivery, TransientError
from tetrapipe.sinks.siem.records import record_body


class StdoutSink(DeliveringSink):
    def __init__(
        self, name: str, *, stream: BinaryIO | None = None, delivery: Delivery | None = None, **kw: Any
    ) -> None:
        if delivery is None:
            delivery = Delivery(batch_size=100, linger_seconds=0.0)
        super().__init__(name, delivery, **kw)
        self.stream = stream

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        out = self.stream if self.stream is not None else sys.stdout.buffer
        try:
            out.write(b"".join(record_body(r) + b"\n" for r in records))
            out.flush()
        except (OSError, ValueError) as exc:  # BrokenPipeError, or a closed stream
            raise TransientError(f"stdout: {exc}") from exc
