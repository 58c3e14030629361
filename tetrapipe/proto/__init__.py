"""Tetragon's gRPC event API as tetrapipe describes it.

``tetragon.proto`` is tetrapipe's own description of the messages of the
``tetragon`` protobuf package (same names and numbers as the agent, so the
wire format and the JSON export match). ``tetragon_pb2`` /
``tetragon_pb2_grpc`` are generated from it and committed; regenerate with
``python -m tetrapipe.proto.regenerate`` (``--check`` verifies them).

Nothing is imported here on purpose: the regeneration tool must work even
when the committed stubs are stale or missing.
"""
