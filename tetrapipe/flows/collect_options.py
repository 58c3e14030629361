"""What ``tetrapipe collect`` is told: its source (a file, stdin or Tetragon's gRPC stream) and its options.

Apart from :mod:`tetrapipe.flows.collect` (the loop) so that the command
line and tests name a collector's settings without the loop's machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from tetrapipe.flows.collect_state import default_state_dir
from tetrapipe.sources.chunks import DEFAULT_CHUNK_BYTES, DEFAULT_MAX_LINE_BYTES, Chunk


class Source(Protocol):
    label: str

    def read(self) -> Chunk | None: ...

    def lag_bytes(self) -> int: ...

    def close(self) -> None: ...


def source_kind(spec: str) -> tuple[str, str]:
    """``file`` / ``stdin`` / ``grpc`` and the path or address, from a SOURCE argument."""
    if spec == "-":
        return "stdin", "-"
    low = spec.lower()
    if low.startswith("file://"):
        path = spec[len("file://") :]
        if not path.startswith("/"):
            raise ValueError(
                f"{spec!r}: a file URL needs an absolute path (file:///var/run/cilium/tetragon/tetragon.log)"
            )
        return "file", path
    if low.startswith(("grpc://", "unix://", "unix:", "tcp://")):
        return "grpc", spec
    if "://" in spec:
        raise ValueError(
            f"{spec!r}: unknown source scheme (use a path, file://, grpc://HOST:PORT, unix:///SOCKET or -)"
        )
    return "file", spec


@dataclass
class CollectOptions:
    """Everything ``tetrapipe collect`` takes besides Kafka's settings."""

    source: str
    start: str = "checkpoint"
    state_dir: str = field(default_factory=lambda: str(default_state_dir()))
    node_name: str = ""
    headers: bool = False
    buffer_bytes: int = 32 * 1024 * 1024
    spool_bytes: int = 1024 * 1024 * 1024
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    checkpoint_interval: float = 0.05  # least time between checkpoint writes (bounds fsyncs to 20/s)
    stats_interval: float = 30.0
    poll_interval: float = 0.1
    stall_seconds: float = 5.0  # no acknowledgement for this long with data pending: spool
    drain_timeout: float = 10.0
    exit_at_eof: bool = False
    grpc_options: dict[str, Any] = field(default_factory=dict)
