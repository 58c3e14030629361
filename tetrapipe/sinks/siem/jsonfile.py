"""JSON-lines file sink with size-based rotation, for a log shipper (Filebeat, Vector, the
Splunk forwarder) that already tails files, or for an audit copy.

``path`` grows to ``max_bytes``, then is renamed ``path.1`` (``path.1`` to
``path.2`` ..., keeping ``backups`` of them) and a new ``path`` is started:
the rename-and-create scheme every tailer follows. A batch is never split
across two files, so a file always ends on a complete line; a write cut short
(a kill, a full disk) leaves a partial one, which is cut off when the file is
opened again, so the batch written again does not start glued to it. A write
error (disk full, permissions) is transient: the batch is retried, then spooled.

Every file this sink creates (the first one, and each new one after a
rotation) and any directory created for it is owner-only, as they hold
alerts: a shipper that tails them runs as the same user. A file that already
exists when the sink starts keeps its mode.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, BinaryIO

from tetrapipe.fsutil import cut_partial_line, open_private, private_dirs
from tetrapipe.sinks.siem.base import DeliveringSink, Delivery, TransientError
from tetrapipe.sinks.siem.records import record_body

log = logging.getLogger("tetrapipe.sinks.file")


class JsonFileSink(DeliveringSink):
    def __init__(
        self,
        name: str,
        *,
        path: str,
        max_bytes: int = 100 * 1024 * 1024,
        backups: int = 5,
        fsync: bool = False,
        delivery: Delivery | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(name, delivery, **kw)
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = fsync
        self._file: BinaryIO | None = None

    def _open(self) -> BinaryIO:
        if self._file is None:
            private_dirs(self.path.parent)
            # a tailer only takes complete lines, so it never read a fragment a cut-short write left
            if cut := cut_partial_line(self.path):
                log.error("file %s: cutting a partial line at its end (%d bytes, a write cut short)", self.path, cut)
            self._file = open_private(self.path)
        return self._file

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.backups <= 0:
            self.path.unlink(missing_ok=True)
            return
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.path.exists():
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def _deliver(self, records: list[dict[str, Any]]) -> None:
        data = b"".join(record_body(r) + b"\n" for r in records)
        try:
            f = self._open()
            size = f.tell()
            if size and size + len(data) > self.max_bytes:
                self._rotate()
                f = self._open()
            f.write(data)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        except OSError as exc:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError:
                    pass
                self._file = None
            raise TransientError(f"file {self.path}: {exc}") from exc

    def _close_peer(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
