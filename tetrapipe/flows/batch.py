"""One normalized batch through the transforms, and what a flow reports while it works.

Every flow (``ingest``, ``run``, ``process``) hands each batch of events to
the same list of transforms in turn (ancestry, TLS, detection): each returns
the events, maybe enriched, and extra tables for the lake (``alerts``,
``tls_stats``) that are merged by name. :func:`apply_transforms` is that
loop, written once. A one-shot load cannot let one bad event cost the run, so
it asks for ``isolate`` (see :func:`guarded`); the stream processor lets a
failure stop the batch uncommitted, to be consumed again after a restart.
See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import pyarrow as pa

from tetrapipe.lake import Lake, Position
from tetrapipe.lake.store import COMMIT_ORDER
from tetrapipe.sources.files import InputFile
from tetrapipe.transforms.base import BatchTransform
from tetrapipe.transforms.normalize import make_rejects
from tetrapipe.worker import OrderedWorker

#: a transform that fails on more events than this in one batch is broken: the ingest stops
MAX_TRANSFORM_REJECTS = 16

log = logging.getLogger("tetrapipe.ingest")


class TransformError(RuntimeError):
    """A transform fails on so many events of one batch that it is broken, not fed a bad event."""


class ProgressSink:
    """What a flow tells its watcher (a progress bar, the metrics) as inputs are read; by default nothing."""

    def start_input(self, inp: InputFile, size: int | None) -> None: ...
    def advance(self, position: int) -> None: ...
    def batch(self, events: pa.Table, extra: dict[str, pa.Table]) -> None: ...
    def end_input(self) -> None: ...


class LakeWriter:
    """Commits a flow's batches to the lake on a background thread while the next batch is normalized.

    Parquet encoding and zstd release the GIL, so this overlaps real work.
    One batch is up to four commits in :data:`~tetrapipe.lake.store.COMMIT_ORDER`
    (``events`` last), each carrying the batch's position, so each table
    takes the batch exactly once and a restart resumes from the ``events``
    table's position. The queue is small (bounded memory), ``on_commit`` runs
    after a batch's commits, and a commit error is re-raised in the caller at
    the next submit or at close: never swallowed, and no later batch is
    committed past the one that failed.
    """

    def __init__(self, lake: Lake, max_pending: int = 1) -> None:
        self.lake = lake
        self._worker = OrderedWorker("lake-writer", max_pending)

    def _write(
        self,
        tables: dict[str, pa.Table],
        position: Position | None,
        also: Sequence[Position],
        on_commit: Callable[[], None] | None,
    ) -> None:
        unknown = set(tables) - set(COMMIT_ORDER)
        if unknown:
            raise ValueError(f"no lake table for {sorted(unknown)}")
        for name in COMMIT_ORDER:
            rows = tables.get(name)
            if name == "events":
                if rows is not None or position is not None or also:
                    # (even with no rows: the position moves on, so a restart does not read these lines again)
                    rows = rows if rows is not None else pa.table({})
                    self.lake.commit(name, rows, position, also=also, offset_column="source_offset")
            elif rows is not None and rows.num_rows:
                offsets = "source_offset" if name == "rejects" else None
                self.lake.commit(name, rows, position, offset_column=offsets)
        if on_commit is not None:
            on_commit()

    def submit(
        self,
        tables: dict[str, pa.Table],
        position: Position | None = None,
        also: Sequence[Position] = (),
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._worker.submit(lambda: self._write(tables, position, also, on_commit))

    @property
    def failed(self) -> bool:
        """A commit failed: nothing submitted after it is committed (its ``on_commit`` never runs)."""
        return self._worker.failed

    def flush(self) -> None:
        self._worker.flush()

    def close(self) -> None:
        self._worker.close()


def concat_rows(first: pa.Table | None, more: pa.Table) -> pa.Table:
    """``more`` appended to ``first`` (which may be missing or empty)."""
    return pa.concat_tables([first, more]) if first is not None and first.num_rows else more


def apply_transforms(
    transforms: list[BatchTransform], events: pa.Table, *, isolate: bool = False
) -> tuple[pa.Table, dict[str, pa.Table], pa.Table | None]:
    """Run ``events`` through every transform in order; the events, the extra tables by name, the rejects.

    ``isolate``: a transform that raises is retried on halves of the batch
    (:func:`guarded`) and the events it cannot take come back as rejects;
    without it the exception propagates and the rejects are always None.
    """
    extra: dict[str, pa.Table] = {}
    rejects: pa.Table | None = None
    for transform in transforms:
        if isolate:
            events, produced, failed = guarded(transform, events)
            if failed is not None:
                rejects = concat_rows(rejects, failed)
        else:
            events, produced = transform(events)
        for name, table in produced.items():
            extra[name] = pa.concat_tables([extra[name], table]) if name in extra else table
    return events, extra, rejects


def transform_name(transform: BatchTransform) -> str:
    return getattr(transform, "__qualname__", None) or type(transform).__name__


def guarded(transform: BatchTransform, events: pa.Table) -> tuple[pa.Table, dict[str, pa.Table], pa.Table | None]:
    """Run ``transform``; if it raises, on halves until the events it cannot take stand alone.

    Returns the events, the extra tables, and the rejects for the events it
    failed on (None when it failed on none). Raises :class:`TransformError`
    when it fails on more than :data:`MAX_TRANSFORM_REJECTS` events.

    A stateful transform may have taken in part of the batch before it
    raised; it then sees those events again in the halves. The process
    table's entries are keyed, so that is harmless there; the detector may
    count such an event twice in an open alert. A rare, degraded case, and
    better than losing the whole batch, or the run.
    """
    try:
        out, produced = transform(events)
        return out, produced, None
    except Exception as exc:  # noqa: BLE001 - a bad event must not stop the ingest; a broken transform does below
        first = exc
    name = transform_name(transform)
    log.warning(
        "transform %s failed on a batch of %d events (%s: %s); isolating the event(s) it cannot take",
        name,
        events.num_rows,
        type(first).__name__,
        first,
    )
    log.debug("transform %s failed", name, exc_info=first)  # the traceback, for whoever debugs the transform
    failed: list[tuple[pa.Table, BaseException]] = []
    parts: list[pa.Table] = []
    extra: dict[str, list[pa.Table]] = {}

    def bisect(batch: pa.Table, known: BaseException | None) -> None:
        if known is None:
            try:
                out, produced = transform(batch)
            except Exception as exc:  # noqa: BLE001 - narrowed down below
                known = exc
            else:
                parts.append(out)
                for k, v in produced.items():
                    extra.setdefault(k, []).append(v)
                return
        if batch.num_rows <= 1:
            failed.append((batch, known))
            if len(failed) > MAX_TRANSFORM_REJECTS or batch.num_rows == 0:
                raise TransformError(
                    f"transform {name} fails on more than {MAX_TRANSFORM_REJECTS} events of one "
                    f"batch ({type(known).__name__}: {known}): it is broken, not fed a bad event; "
                    f"the ingest stops here, nothing after this batch is stored"
                ) from known
            return
        mid = batch.num_rows // 2
        bisect(batch.slice(0, mid), None)
        bisect(batch.slice(mid), None)

    bisect(events, first)
    out = pa.concat_tables(parts, promote_options="default") if parts else events.slice(0, 0)
    produced = {k: pa.concat_tables(v, promote_options="default") for k, v in extra.items()}
    if not failed:
        return out, produced, None  # it failed once, not on any one event (its halves went through)
    bad = pa.concat_tables([b for b, _ in failed])
    reasons = [f"transform {name} failed on this event: {type(e).__name__}: {e}" for _, e in failed]
    source = bad.column("source")[0].as_py() or ""  # a batch comes from one input
    return (
        out,
        produced,
        make_rejects(source, bad.column("source_offset").to_pylist(), reasons, bad.column("raw").to_pylist()),
    )


__all__ = [
    "MAX_TRANSFORM_REJECTS",
    "BatchTransform",
    "LakeWriter",
    "ProgressSink",
    "TransformError",
    "apply_transforms",
    "concat_rows",
    "guarded",
]
