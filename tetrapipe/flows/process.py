"""``tetrapipe process``: Kafka -> transforms -> lake, alerts topic, dead letters.

Exactly once into the lake, by Delta app transactions (see
:mod:`tetrapipe.lake.positions`): every commit of a batch carries, for each
partition in it, the position ``kafka:<topic>:<partition>`` = its epoch and
last offset. A batch commits ``rejects``, ``alerts``, ``tls_stats`` and
``events`` in that order, one Delta commit per table, and a table that
already holds the batch's positions skips it: each table is exactly-once on
its own. On every assignment the processor seeks each partition to just
after the version the ``events`` table holds, so the lake, not Kafka's
committed offsets, decides where to resume (Kafka offsets are still committed
after each commit, for consumer-lag monitoring).

A crash between two tables' commits leaves the earlier tables one batch
ahead of ``events``. That batch is consumed again and must not straddle what
they hold: a partition's records up to the highest version any table holds
(its *cap*) are committed in batches of that partition alone that end at or
before the cap, so such a table holds all of each one and skips it, and the
rest commit it. Replicas of one group on one lake need nothing shared but
the lake: appends of different partitions never conflict, and a replica
that lost a partition without noticing (a rebalance while it stalled) finds
the ``events`` table moved on before it commits and gives the records up.

Partitions are keyed by node (docs/ARCHITECTURE.md), so everything a per-node process
table needs arrives in one partition, at one processor.

Micro-batches are transformed, and their alerts and events sent on, as they
fill; their lake commit waits up to ``commit_max_seconds`` so a quiet topic
does not write a log entry a second (:mod:`tetrapipe.flows.process_stage`).
Offsets that move backwards are never followed silently
(:mod:`tetrapipe.flows.process_offsets`). Optionally (``events_topic``) the
enriched events go to a topic too, keyed by node, so a forwarder can stream
them to a SIEM without reading the lake (:mod:`tetrapipe.flows.process_outputs`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

import pyarrow as pa

from tetrapipe.errors import TetrapipeError
from tetrapipe.flows.batch import BatchTransform, apply_transforms
from tetrapipe.flows.dedup import EventDedup
from tetrapipe.flows.process_config import (
    FETCH_MAX_BYTES,
    FETCH_PARTITION_BYTES,
    OffsetsMovedError,
    ProcessorConfig,
    ProcessStats,
)
from tetrapipe.flows.process_offsets import offset_resets
from tetrapipe.flows.process_outputs import ProcessOutputs
from tetrapipe.flows.process_stage import Stage
from tetrapipe.flows.transforms import restore_transforms
from tetrapipe.lake import Lake
from tetrapipe.lake.positions import (
    Position,
    decode_kafka_version,
    kafka_committed,
    kafka_committed_offsets,
    kafka_position,
)
from tetrapipe.lake.store import COMMIT_ORDER
from tetrapipe.metrics import Health, PipelineMetrics, new_registry
from tetrapipe.sources.kafka import consumer_connected, new_consumer, rebalance_listener
from tetrapipe.transforms.normalize import Normalizer, normalize_groups

log = logging.getLogger("tetrapipe.process")


class Processor:
    """One processor replica of a consumer group.

    ``registry`` / ``health``: where its metrics and liveness go (a fresh
    registry by default; :func:`tetrapipe.metrics.serve_process_metrics`
    serves them). ``restore``: on every assignment, give the stateful
    transforms their memory back from the lake. New partitions bring new
    nodes: the process table and the detector's open windows and seen terms
    are rebuilt, so a replica taking over a partition neither loses ancestor
    chains nor announces an old connection as new again.
    """

    def __init__(
        self,
        config: ProcessorConfig,
        lake: Lake,
        transforms: list[BatchTransform],
        on_alerts: Callable[[pa.Table], None] | None = None,
        on_assign: Callable[[set[int]], None] | None = None,
        *,
        restore: bool = False,
        registry: object | None = None,
        health: Health | None = None,
    ) -> None:
        self.config = config
        self.lake = lake
        self.transforms = transforms
        self.on_alerts = on_alerts
        self.on_assign = on_assign
        self.restore = restore
        self.stats = ProcessStats()
        self._stop = threading.Event()
        self._normalizer = Normalizer()
        self._dedup = EventDedup(lake)
        self._pending: dict[int, list] = {}  # partition -> records not yet written
        self._stage = Stage()  # micro-batches transformed and sent on, not yet committed to the lake
        self._consumer = None
        self._outputs: ProcessOutputs | None = None
        self._assigned: set[int] = set()
        self._joined = False  # the group gave this member its (possibly empty) share at least once
        self._lake_next: dict[int, int | None] = {}  # partition -> next offset the lake needs (None: unknown yet)
        self._epoch: dict[int, int] = {}  # partition -> epoch its commits are written in (lake.positions)
        self._held: dict[int, int | None] = {}  # partition -> version the events table holds, as this replica knows
        self._cap: dict[int, int] = {}  # partition -> version a table other than events holds beyond it (a crash's)
        self._verify: set[int] = set()  # partitions whose lake position is still to be checked against the broker
        self._last_lag_update = 0.0
        self.registry = registry if registry is not None else new_registry()
        self.metrics = PipelineMetrics(self.registry)  # type: ignore[arg-type]
        self.health = health or Health(stall_seconds=config.stall_seconds)
        self.health.add_check("group", self._ready_group)
        self.health.add_check("kafka", lambda: consumer_connected(self._consumer))

    # --- readiness (run in the metrics server's thread: read state only) ----------------------

    def _ready_group(self) -> tuple[bool, str]:
        if not self._joined:
            return False, f"not yet a member of consumer group {self.config.group!r}"
        return True, f"owns partitions {sorted(self._assigned)} of {self.config.topic}"

    # --- lifecycle ----------------------------------------------------------------------

    def stop(self, *_: object) -> None:
        """Finish the batch in hand, write it, then return from run()."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def _connect(self) -> None:
        opts = dict(self.config.kafka_options)
        # fetch sizes: one fetch should bring a whole micro-batch (20,000 x ~2 KB) so that the next fetch,
        # sent as soon as records are handed out, overlaps with transforming this one; --kafka-option overrides
        # "none": an out-of-range position raises instead of kafka-python quietly jumping to the beginning;
        # _check_positions decides what happens, by the on_offset_reset policy
        tuning = {
            "max_partition_fetch_bytes": FETCH_PARTITION_BYTES,
            "fetch_max_bytes": FETCH_MAX_BYTES,
            **opts,
            "auto_offset_reset": "none",
        }
        self._consumer = new_consumer(
            self.config.bootstrap,
            group=self.config.group,
            client_id=self.config.client_id,
            max_poll_records=self.config.batch_max_records,
            options=tuning,
            client=self.config.kafka_client,
        )
        self._outputs = ProcessOutputs(
            self.config.bootstrap,
            self.config.client_id,
            alerts_topic=self.config.alerts_topic,
            dead_letter_topic=self.config.dead_letter_topic,
            events_topic=self.config.events_topic,
            options=opts,
            client=self.config.kafka_client,
        )
        listener = rebalance_listener(self._assign, self._revoke)
        self._consumer.subscribe([self.config.topic], listener=listener)

    def _revoke(self, gone: set[int]) -> None:
        """Partitions handed to another member: write what is in hand, forget their positions and gauges."""
        self._flush(force=True)
        self._assigned -= gone
        for p in gone:
            self._pending.pop(p, None)
            self._lake_next.pop(p, None)
            self._held.pop(p, None)
            self._cap.pop(p, None)
            for gauge in (self.metrics.lag, self.metrics.lake_offset):
                try:
                    gauge.remove(self.config.topic, str(p))
                except KeyError:
                    pass
        self.metrics.assigned.set(len(self._assigned))

    def _assign(self, partitions: set[int]) -> None:
        """Resume each partition right after what the events table holds; note where other tables are ahead."""
        from kafka import TopicPartition

        topic = self.config.topic
        held = kafka_committed(self.lake, topic, partitions, "events")
        for table in ("rejects", "alerts", "tls_stats"):
            for p, version in kafka_committed(self.lake, topic, partitions, table).items():
                if version > held.get(p, -1) and version > self._cap.get(p, -1):
                    self._cap[p] = version
        for p in sorted(self._cap.keys() & partitions):
            epoch, last = decode_kafka_version(self._cap[p])
            log.warning(
                "partition %d of %s: a batch up to offset %d (epoch %d) reached some tables but not events "
                "(a crash between commits); it is consumed again and each table keeps what it holds",
                p,
                topic,
                last,
                epoch,
            )
        for p in partitions:
            tp = TopicPartition(topic, p)
            self._held[p] = held.get(p)
            if p in held:
                epoch, last = decode_kafka_version(held[p])
                self._epoch[p] = epoch
                self._consumer.seek(tp, last + 1)
                self._lake_next[p] = last + 1
                self.metrics.lake_offset.labels(self.config.topic, str(p)).set(last)
                self._verify.add(p)  # against the broker's offsets, outside this callback (see run)
            else:
                self._epoch[p] = 0
                self._consumer.seek_to_beginning(tp)
                self._lake_next[p] = None  # the first record fetched tells where the partition begins
        self._assigned |= partitions
        self._joined = True
        self.metrics.assigned.set(len(self._assigned))
        if self.restore and self.lake.table("events") is not None:
            restore_transforms(self.transforms, self.lake)
        if self.on_assign:
            self.on_assign(partitions)
        self.metrics.process_table(self.transforms)
        self.health.heartbeat()  # rebuilding the process table can take a while; that is not a stall

    def close(self) -> None:
        for closer in (self._consumer, self._outputs):
            if closer is not None:
                try:
                    closer.close()
                except Exception:
                    log.debug("close failed", exc_info=True)
        self._normalizer.close()
        self._dedup.close()

    # --- the loop -----------------------------------------------------------------------

    def run(self) -> ProcessStats:
        from kafka.errors import KafkaError, OffsetOutOfRangeError

        try:
            self._connect()
        except KafkaError as exc:
            # no broker answered at start (a pod up before Kafka): a sentence, not a traceback, and exit 1
            # for its Deployment or compose to restart it; a broker lost while running is waited for instead
            self.close()
            raise TetrapipeError(f"cannot reach Kafka at {self.config.bootstrap}: {exc}") from exc
        batch_started = time.monotonic()
        last_compaction = time.monotonic()
        idle_polls = 0
        try:
            while not self._stop.is_set():
                self.health.heartbeat()
                try:
                    polled = self._consumer.poll(timeout_ms=200, max_records=self.config.batch_max_records)
                except OffsetOutOfRangeError as exc:  # retention passed us while running (auto reset is off)
                    self._verify |= {tp.partition for tp in exc.args[0]} if exc.args else set(self._assigned)
                    polled = {}
                if self._verify:
                    polled = self._check_positions(polled)
                if polled and self.stats.first_record_at is None:
                    self.stats.first_record_at = time.monotonic()
                for tp, records in polled.items():
                    self._pending.setdefault(tp.partition, []).extend(records)
                    if self._lake_next.get(tp.partition, 0) is None:
                        self._lake_next[tp.partition] = records[0].offset
                self._update_lag()
                n_pending = sum(len(v) for v in self._pending.values())
                due = time.monotonic() - batch_started >= self.config.batch_max_seconds
                if n_pending >= self.config.batch_max_records or (due and n_pending):
                    self._flush()
                    batch_started = time.monotonic()
                elif self._stage.due(self.config.commit_max_seconds, self.config.batch_max_records):
                    self._commit_stage()
                every = self.config.compact_every_seconds
                if every and time.monotonic() - last_compaction >= every:
                    self._compact()
                    last_compaction = time.monotonic()
                if not polled:
                    self.metrics.idle()
                    idle_polls += 1
                    if self.config.exit_at_eof and idle_polls >= 3:
                        if self._stage and not any(self._pending.values()):
                            self._commit_stage()  # nothing more is coming: the stage would only wait
                        if self._at_end():
                            break
                else:
                    idle_polls = 0
            self._flush(force=True)
        finally:
            self.close()
        return self.stats

    def _check_positions(self, polled: dict) -> dict:
        """Compare where the lake resumes each newly assigned partition with the broker's offsets; apply the policy.

        Runs after ``poll`` (the rebalance callback must not make requests of
        its own). Records fetched from a partition whose position was wrong
        are dropped: after a reset the partition is fetched again from the
        position the policy chose (:mod:`tetrapipe.flows.process_offsets`).
        """
        from kafka import TopicPartition

        parts = sorted(self._verify & self._assigned)
        self._verify.clear()
        if not parts:
            return polled
        self._commit_stage()  # what is staged commits at the positions it was consumed from
        for reset in offset_resets(self._consumer, self.config, parts, self._lake_next, self._epoch, self.metrics):
            p = reset.partition
            self._epoch[p] = reset.epoch
            self._consumer.seek(TopicPartition(self.config.topic, p), reset.offset)
            self._lake_next[p] = reset.offset
            self._pending.pop(p, None)
            polled = {k: v for k, v in polled.items() if k.partition != p}
        return polled

    def _update_lag(self, every: float = 1.0) -> None:
        """Consumer lag per partition against the lake, from the high watermarks fetches bring (no request)."""
        from kafka import TopicPartition

        now = time.monotonic()
        if now - self._last_lag_update < every:
            return
        self._last_lag_update = now
        for p in sorted(self._assigned):
            nxt = self._lake_next.get(p)
            try:
                hw = self._consumer.highwater(TopicPartition(self.config.topic, p))
            except Exception:  # noqa: BLE001 - revoked between the poll and now
                continue
            if hw is not None and nxt is not None:
                self.metrics.lag.labels(self.config.topic, str(p)).set(max(0, hw - nxt))

    def _compact(self) -> None:
        """Merge the small files a batch a second leaves (Delta OPTIMIZE); appends of any replica go on meanwhile."""
        from tetrapipe.lake.maintenance import optimize

        try:
            # wait=0: when another replica holds a table's optimize lease, it is doing this very work; waiting
            # for it would stall this replica's batches for up to a minute
            for result in optimize(self.lake, wait=0):
                if result.files_removed:
                    log.info("optimized %s: %d files into %d", result.table, result.files_removed, result.files_added)
        except TetrapipeError as exc:
            log.info("optimize left to another replica: %s", exc)
        except Exception:
            log.warning("optimize failed", exc_info=True)

    def _at_end(self) -> bool:
        """The whole topic is in the lake, not only my partitions.

        After a crash the dead member keeps its partitions until its session
        times out; a restarted processor that looked only at its own
        assignment would stop while part of the topic is still unread.
        """
        from kafka import TopicPartition

        if any(self._pending.values()) or self._stage or not self._joined or self._verify:
            return False  # before the group gave this member its share, the lake's positions are not checked yet
        parts = self._consumer.partitions_for_topic(self.config.topic) or set()
        if not parts:
            return False
        tps = [TopicPartition(self.config.topic, p) for p in parts]
        ends = self._consumer.end_offsets(tps)
        done = kafka_committed_offsets(self.lake, self.config.topic, parts)
        # my own partitions: where this run is (after an offset reset, ahead of what the events table says)
        nxt = {p: n for p, n in self._lake_next.items() if n is not None and p in self._assigned}
        return all(nxt.get(tp.partition, done.get(tp.partition, -1) + 1) >= ends[tp] for tp in tps)

    def _flush(self, force: bool = False) -> None:
        """Transform every partition's records in hand as one micro-batch, and commit the stage when due.

        Records re-consumed up to a cap are a micro-batch of their own,
        committed alone. ``force`` (revoke, stop): commit whatever is staged.
        """
        batch: dict[int, list] = {}
        for partition in sorted(self._pending):
            records = self._pending.get(partition) or []
            cap = self._cap_offset(partition)
            if cap is not None and records and records[0].offset <= cap:
                # committed alone and never across the cap: a table holding the cap holds all of this batch
                head = [r for r in records if r.offset <= cap]
                self._commit_stage()
                self._stage_batch({partition: head})
                self._commit_stage()
                records = records[len(head) :]
                self._pending[partition] = records
            if records:
                batch[partition] = records
        if batch:
            self._stage_batch(batch)
            for partition in batch:
                self._pending[partition] = []
        if force or self._stage.due(self.config.commit_max_seconds, self.config.batch_max_records):
            self._commit_stage()

    def _cap_offset(self, partition: int) -> int | None:
        """The last offset of a batch some tables hold and ``events`` does not (a crash's), while still ahead."""
        cap = self._cap.get(partition)
        if cap is None:
            return None
        epoch, last = decode_kafka_version(cap)
        nxt = self._lake_next.get(partition)
        if epoch == self._epoch.get(partition, 0) and (nxt is None or nxt <= last):
            return last
        if epoch > self._epoch.get(partition, 0):
            log.warning(
                "partition %d of %s: tables hold epoch %d beyond the events table's epoch %d; offsets reset "
                "differently this time, the batch they hold is not re-formed",
                partition,
                self.config.topic,
                epoch,
                self._epoch.get(partition, 0),
            )
        del self._cap[partition]
        return None

    def _drop_stage(self, moved: set[int], now: dict[int, int]) -> None:
        """Forget the staged micro-batches: another replica committed some of their partitions meanwhile.

        A replica that stalled past its session can still hold records of a
        partition the group gave to another member; the events table then no
        longer holds what this replica last saw. The staged rows mix
        partitions, so none of them is committed: every staged
        partition is consumed again from where the lake holds it (the moved
        ones from where the other replica got to), and the stateful transforms
        are rebuilt from the lake, which never saw the dropped rows. ``now``
        is what the events table holds per staged partition, as the commit
        just read it.
        """
        from kafka import TopicPartition

        parts = sorted(self._stage.positions)
        log.warning(
            "partitions %s of %s were committed by another processor while %d records of partitions %s waited "
            "for their lake commit; those records are consumed again",
            sorted(moved),
            self.config.topic,
            self._stage.records,
            parts,
        )
        for p in parts:
            self._pending.pop(p, None)
            self._held[p] = now.get(p)
            nxt = decode_kafka_version(now[p])[1] + 1 if p in now else self._stage.ends[p][0].offset
            self._lake_next[p] = nxt
            try:
                self._consumer.seek(TopicPartition(self.config.topic, p), nxt)
            except Exception:  # no longer assigned: nothing to seek
                log.debug("cannot seek partition %d", p, exc_info=True)
        for token in self._stage.dedup_tokens:
            self._dedup.release(token)
        self._stage = Stage()
        if self.restore and self.lake.table("events") is not None:
            restore_transforms(self.transforms, self.lake)

    def _stage_batch(self, batch: dict[int, list]) -> None:
        """Normalize and transform one micro-batch, send its outputs on, and stage it for the lake.

        Whether another replica took a partition meanwhile is checked once, at
        the commit (:meth:`_commit_stage`): reading the events table's snapshot
        lists its log, which at one micro-batch a second would cost more than
        the rare stalled replica it catches earlier.
        """
        started = time.perf_counter()
        topic = self.config.topic
        positions = {
            p: kafka_position(topic, p, records[-1].offset, self._epoch.get(p, 0)) for p, records in batch.items()
        }
        # every partition in one pass: a pass has a fixed cost (normalize_groups says why)
        groups = [(f"kafka:{topic}/{p}", [r.value for r in rs], [r.offset for r in rs]) for p, rs in batch.items()]
        norm = normalize_groups(groups, self._normalizer)
        events, rejects = norm.events, norm.rejects
        # a collector restarted after a crash sends again what Kafka may already hold (at least once):
        # an event whose event_id the lake has, or a staged batch holds, is not stored, alerted on or streamed twice
        events, dropped = self._dedup.drop_seen(events)
        self.stats.duplicates += dropped
        events, extra, _ = apply_transforms(self.transforms, events)  # a failure leaves the batch unstaged
        token = self._dedup.hold(events.column("event_id")) if events.num_rows else None
        alerts = extra.get("alerts")
        if self._outputs is not None:
            self._outputs.send(rejects, alerts, events)
            self.stats.streamed = self._outputs.counts.streamed
            self.stats.oversized = self._outputs.counts.oversized
        tables = {"rejects": rejects, "alerts": alerts, "tls_stats": extra.get("tls_stats"), "events": events}
        self._stage.add(tables, positions, batch, token, time.perf_counter() - started)
        if alerts is not None and alerts.num_rows and self.on_alerts:
            self.on_alerts(alerts)

    def _commit_stage(self) -> None:
        """Commit what is staged: one commit per table carrying one position per partition.

        In the order rejects, alerts, tls_stats, events (the resume point),
        unless another replica has committed one of the staged partitions
        since this one last looked (:meth:`_drop_stage`).
        """
        if not self._stage:
            return
        stage = self._stage
        now = kafka_committed(self.lake, self.config.topic, stage.positions, "events")
        moved = {p for p, v in now.items() if v != self._held.get(p)}
        if moved:
            self._drop_stage(moved, now)
            return
        started = time.perf_counter()
        positions = [stage.positions[p] for p in sorted(stage.positions)]
        for name in COMMIT_ORDER:
            rows = stage.table(name)
            if name == "events" or (rows is not None and rows.num_rows):
                self._commit(name, rows, positions)  # (events with no rows too: its positions are the resume point)
        for token in stage.dedup_tokens:
            self._dedup.release(token)
        self._stage = Stage()
        self._committed(stage, time.perf_counter() - started)

    def _commit(self, name: str, rows: pa.Table, positions: list[Position]) -> None:
        if not self.lake.commit(name, rows, positions):
            log.info("the %s table already holds this batch (%s): not written again", name, positions)

    def _committed(self, stage: Stage, commit_seconds: float) -> None:
        """Book-keeping once the events table holds the stage: offsets, stats, metrics."""
        topic = self.config.topic
        for partition, pos in stage.positions.items():
            last = stage.ends[partition][1].offset
            self._commit_kafka(partition, last)
            self._held[partition] = pos.version
            self._lake_next[partition] = last + 1
            self.stats.by_partition[partition] = last
            self.metrics.lake_offset.labels(topic, str(partition)).set(last)
        stage.count(self.stats, self.metrics, commit_seconds)
        self.metrics.process_table(self.transforms)
        self.health.heartbeat()

    def _commit_kafka(self, partition: int, last: int) -> None:
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        try:
            self._consumer.commit({TopicPartition(self.config.topic, partition): OffsetAndMetadata(last + 1, "", -1)})
        except Exception:
            log.warning(
                "could not commit offset %d of partition %d to Kafka (lake is committed)",
                last,
                partition,
                exc_info=True,
            )


__all__ = ["OffsetsMovedError", "Processor", "ProcessorConfig", "ProcessStats"]
