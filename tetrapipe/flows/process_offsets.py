"""Where a newly assigned partition resumes when the broker no longer has the lake's next offset.

The lake says where each partition resumes (the position its last commit
carries). That offset can be gone: the topic was deleted and created again
(the lake is *ahead* of the broker's end), or retention removed records the
lake never got (the lake is *behind* the broker's beginning). Either is worth
stopping for by default; ``--on-offset-reset earliest|latest`` continues.
This module decides; :class:`tetrapipe.flows.process.Processor` seeks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tetrapipe.flows.process_config import OffsetsMovedError, ProcessorConfig
from tetrapipe.metrics import PipelineMetrics
from tetrapipe.sources.kafka import broker_has

log = logging.getLogger("tetrapipe.process")


@dataclass
class OffsetReset:
    partition: int
    offset: int  # where the partition continues
    epoch: int  # the epoch its commits are written in from now on (lake.positions)


def offset_resets(
    consumer: object,
    config: ProcessorConfig,
    parts: list[int],
    lake_next: dict[int, int | None],
    epochs: dict[int, int],
    metrics: PipelineMetrics,
) -> list[OffsetReset]:
    """The partitions among ``parts`` whose lake position the broker cannot serve, and where each continues.

    Raises :class:`OffsetsMovedError` under the ``fail`` policy. Each reset is
    counted in ``tetrapipe_process_offset_resets_total`` with its reason.
    """
    from kafka import TopicPartition

    tps = {p: TopicPartition(config.topic, p) for p in parts}
    begins = consumer.beginning_offsets(list(tps.values()))  # type: ignore[attr-defined]
    ends = consumer.end_offsets(list(tps.values()))  # type: ignore[attr-defined]
    out = []
    for p, tp in tps.items():
        nxt = lake_next.get(p)
        begin, end = begins[tp], ends[tp]
        if nxt is None or begin <= nxt <= end:
            continue
        if nxt > end and broker_has(config.bootstrap, config.kafka_options, tp, nxt - 1, client=config.kafka_client):
            continue  # a stale end offset (some brokers report it short of the last batch), not a new topic
        if nxt > end:
            reason = "lake_ahead"
            what = (
                f"partition {p} of {config.topic}: the lake holds offsets up to {nxt - 1} but the broker's "
                f"end is {end} (topic deleted and created again? another cluster?)"
            )
        else:
            reason = "retention_passed"
            what = (
                f"partition {p} of {config.topic}: the lake needs offset {nxt} but the broker begins at "
                f"{begin}: {begin - nxt} records were removed by retention before the lake had them"
            )
        metrics.offset_resets.labels(config.topic, str(p), reason).inc()
        if config.on_offset_reset == "fail":
            log.error("%s; stopping (--on-offset-reset earliest|latest to continue)", what)
            raise OffsetsMovedError(f"{what}; rerun with --on-offset-reset earliest or latest to continue")
        target = begin if config.on_offset_reset == "earliest" else end
        epoch = epochs.get(p, 0) + (1 if reason == "lake_ahead" else 0)  # a new topic's offsets are a new series
        log.warning(
            "%s; continuing from the %s offset %d (epoch %d) as --on-offset-reset %s says",
            what,
            config.on_offset_reset,
            target,
            epoch,
            config.on_offset_reset,
        )
        out.append(OffsetReset(p, target, epoch))
    return out


__all__ = ["OffsetReset", "offset_resets"]
