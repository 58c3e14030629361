"""Tetragon's gRPC API as a source: the request (:mod:`.request`), the stream and its buffer
(:mod:`.stream`), the reader thread that reconnects (:mod:`.reconnect`), and the wire format to
export JSON (:mod:`.codec`). See docs/ARCHITECTURE.md.
"""

from tetrapipe.sources.grpc.reconnect import GET_EVENTS_METHOD, RETRYABLE, GrpcSourceError
from tetrapipe.sources.grpc.request import build_request, parse_address, parse_field_filters, parse_filters
from tetrapipe.sources.grpc.stream import DEFAULT_ADDRESS, GrpcSource

__all__ = [
    "DEFAULT_ADDRESS",
    "GET_EVENTS_METHOD",
    "RETRYABLE",
    "GrpcSource",
    "GrpcSourceError",
    "build_request",
    "parse_address",
    "parse_field_filters",
    "parse_filters",
]
