"""The loops that wire a source to transforms and sinks: ingest, run, process, collect, forward.

Each flow owns its loop, its source positions and its signals; sources,
transforms and sinks never call each other. See ``docs/ARCHITECTURE.md``.
"""
