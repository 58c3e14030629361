"""``tetrapipe process``: Kafka -> transforms -> lake, alerts topic, dead letters.

Exactly once into the lake (see :mod:`tetrapipe.lake.positions`): each
partition's records are a batch of their own; its segments carry the offsets
they cover and the events segment is written last as the commit. On start
and on every assignment the processor seeks each partition to just after the
offset the lake holds, so the lake, not Kafka's committed offsets, decides
where to resume. Kafka offsets are still committed after each batch, so
consumer-lag monitoring works as usual.

Partitions are keyed by node (docs/ARCHITECTURE.md), so everything a per-node process
table needs arrives in one partition, at one processor.

Offsets that move backwards are never followed silently. When the lake holds a
partition beyond the broker's end (the topic was deleted and created again, a
new cluster) or behind its beginning (retention removed records the lake never
had), the processor logs it, counts it in
``tetrapipe_process_offset_resets_total{reason}``, and does what
``on_offset_reset`` says: ``fail`` (the default: stop, exit non-zero, a human
decides), ``earliest`` or ``latest`` (continue from there; a recreated topic
becomes a new epoch of the partition, see :mod:`tetrapipe.lake.positions`).

Optionally (``events_topic``) every committed batch's enriched events -- the
rows of its lake ``events`` segment -- are also produced, keyed by node, so a
forwarder can stream them to a SIEM without reading the lake
(:mod:`tetrapipe.flows.process_outputs`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import pyarrow as pa

from tetrapipe.flows.batch import BatchTransform, apply_transforms
from tetrapipe.flows.dedup import EventDedup
from tetrapipe.flows.process_outputs import ProcessOutputs
from tetrapipe.flows.transforms import restore_transforms
from tetrapipe.lake import Lake
from tetrapipe.lake.positions import committed_offsets, lake_positions, remove_uncommitted, segment_name
from tetrapipe.metrics import Health, PipelineMetrics, new_registry
from tetrapipe.sources.kafka import broker_has, new_consumer, rebalance_listener
from tetrapipe.transforms.normalize import Normalizer, normalize_lines

log = logging.getLogger("tetrapipe.process")


class OffsetsMovedError(RuntimeError):
    """The broker's offsets for a partition are not where the lake left them, and the policy says stop."""


FETCH_PARTITION_BYTES = 16 * 1024 * 1024
FETCH_MAX_BYTES = 64 * 1024 * 1024


@dataclass
class ProcessStats:
    batches: int = 0
    records: int = 0
    events: int = 0
    rejects: int = 0
    duplicates: int = 0  # events the lake already held (sent again by a restarted collector), not stored again
    alerts: int = 0
    streamed: int = 0  # enriched events produced to the events topic
    oversized: int = 0  # enriched events too large for a Kafka record (logged, not streamed; in the lake)
    last_batch_seconds: float = 0.0
    by_partition: dict[int, int] = field(default_factory=dict)  # partition -> last committed offset
    first_record_at: float | None = None  # monotonic: when the first record arrived (startup excluded)
    last_commit_at: float | None = None  # monotonic: when the last batch was committed

    @property
    def records_per_second(self) -> float:
        """Throughput from the first record fetched to the last commit: the rate without startup and idling."""
        if self.first_record_at is None or self.last_commit_at is None or self.last_commit_at <= self.first_record_at:
            return 0.0
        return self.records / (self.last_commit_at - self.first_record_at)


@dataclass
class ProcessorConfig:
    bootstrap: str
    topic: str = "tetragon.events"
    group: str = "tetrapipe-processor"
    alerts_topic: str | None = "tetrapipe.alerts"
    events_topic: str | None = None  # enriched events of every committed batch (None: not streamed)
    dead_letter_topic: str | None = "tetragon.events.dlq"
    batch_max_records: int = 20_000
    batch_max_seconds: float = 1.0
    client_id: str = "tetrapipe-process"
    exit_at_eof: bool = False
    kafka_options: dict = field(default_factory=dict)  # passed to kafka-python (TLS/SASL ...)
    compact_every_seconds: float = 600.0  # merge small segments this often (0: never)
    stall_seconds: float = 120.0  # /healthz fails when the loop has not come round for this long
    on_offset_reset: str = "fail"  # the lake is ahead of the broker or behind its retention: fail|earliest|latest


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
        self._consumer = None
        self._outputs: ProcessOutputs | None = None
        self._assigned: set[int] = set()
        self._joined = False  # the group gave this member its (possibly empty) share at least once
        self._lake_next: dict[int, int | None] = {}  # partition -> next offset the lake needs (None: unknown yet)
        self._epoch: dict[int, int] = {}  # partition -> epoch its segments are written in (sinks.offsets)
        self._verify: set[int] = set()  # partitions whose lake position is still to be checked against the broker
        self._last_lag_update = 0.0
        self.registry = registry if registry is not None else new_registry()
        self.metrics = PipelineMetrics(self.registry)  # type: ignore[arg-type]
        self.health = health or Health(stall_seconds=config.stall_seconds)
        self.health.add_check("group", self._ready_group)
        self.health.add_check("kafka", self._ready_kafka)

    # --- readiness (run in the metrics server's thread: read state only) ----------------------

    def _ready_group(self) -> tuple[bool, str]:
        if not self._joined:
            return False, f"not yet a member of consumer group {self.config.group!r}"
        return True, f"owns partitions {sorted(self._assigned)} of {self.config.topic}"

    def _ready_kafka(self) -> tuple[bool, str]:
        consumer = self._consumer
        if consumer is None:
            return False, "not connected yet"
        client = getattr(consumer, "_client", None)  # kafka-python keeps its connections there
        try:
            brokers = list(client.cluster.brokers())  # type: ignore[union-attr]
            ids = [getattr(b, "node_id", None) if hasattr(b, "node_id") else b.nodeId for b in brokers]
            up = [i for i in ids if client.connected(i)]  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - another kafka-python version: fall back on the bootstrap link
            return bool(consumer.bootstrap_connected()), "bootstrap connection"
        return bool(up), f"connected to {len(up)} of {len(brokers)} broker(s)"

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
        )
        self._outputs = ProcessOutputs(
            self.config.bootstrap,
            self.config.client_id,
            alerts_topic=self.config.alerts_topic,
            dead_letter_topic=self.config.dead_letter_topic,
            events_topic=self.config.events_topic,
            options=opts,
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
            for gauge in (self.metrics.lag, self.metrics.lake_offset):
                try:
                    gauge.remove(self.config.topic, str(p))
                except KeyError:
                    pass
        self.metrics.assigned.set(len(self._assigned))

    def _assign(self, partitions: set[int]) -> None:
        """Resume each partition right after what the lake holds; drop a crash's orphans first."""
        from kafka import TopicPartition

        removed = remove_uncommitted(self.lake, self.config.topic, partitions)
        if removed:
            log.warning("removed %d segment(s) of batches that never committed", len(removed))
        positions = lake_positions(self.lake, self.config.topic)
        for p in partitions:
            tp = TopicPartition(self.config.topic, p)
            if p in positions:
                epoch, last = positions[p]
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
        if self.restore and self.lake.segments("events"):
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
        from kafka.errors import OffsetOutOfRangeError

        self._connect()
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
                every = self.config.compact_every_seconds
                if every and time.monotonic() - last_compaction >= every:
                    self._compact()
                    last_compaction = time.monotonic()
                if not polled:
                    self.metrics.idle()
                    idle_polls += 1
                    if self.config.exit_at_eof and idle_polls >= 3 and self._at_end():
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
        position the policy chose.
        """
        from kafka import TopicPartition

        parts = sorted(self._verify & self._assigned)
        self._verify.clear()
        if not parts:
            return polled
        tps = {p: TopicPartition(self.config.topic, p) for p in parts}
        begins = self._consumer.beginning_offsets(list(tps.values()))
        ends = self._consumer.end_offsets(list(tps.values()))
        policy = self.config.on_offset_reset
        for p, tp in tps.items():
            nxt = self._lake_next.get(p)
            begin, end = begins[tp], ends[tp]
            if nxt is None or begin <= nxt <= end:
                continue
            if nxt > end and broker_has(self.config.bootstrap, self.config.kafka_options, tp, nxt - 1):
                continue  # a stale end offset (some brokers report it short of the last batch), not a new topic
            if nxt > end:
                reason = "lake_ahead"
                what = (
                    f"partition {p} of {self.config.topic}: the lake holds offsets up to {nxt - 1} but the broker's "
                    f"end is {end} (topic deleted and created again? another cluster?)"
                )
            else:
                reason = "retention_passed"
                what = (
                    f"partition {p} of {self.config.topic}: the lake needs offset {nxt} but the broker begins at "
                    f"{begin}: {begin - nxt} records were removed by retention before the lake had them"
                )
            self.metrics.offset_resets.labels(self.config.topic, str(p), reason).inc()
            if policy == "fail":
                log.error("%s; stopping (--on-offset-reset earliest|latest to continue)", what)
                raise OffsetsMovedError(f"{what}; rerun with --on-offset-reset earliest or latest to continue")
            target = begin if policy == "earliest" else end
            if reason == "lake_ahead":
                self._epoch[p] = self._epoch.get(p, 0) + 1  # the new topic's offsets are a new series
            log.warning(
                "%s; continuing from the %s offset %d (epoch %d) as --on-offset-reset %s says",
                what,
                policy,
                target,
                self._epoch[p],
                policy,
            )
            self._consumer.seek(tp, target)
            self._lake_next[p] = target
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
        """Merge this lake's small segments; other replicas may do the same (a lock serializes them)."""
        from tetrapipe.lake.maintenance import compact

        try:
            result = compact(self.lake)
            if result.merged_files:
                log.info("compacted %d segments into %d", result.merged_files, result.into)
        except Exception:
            log.warning("compaction failed", exc_info=True)

    def _at_end(self) -> bool:
        """The whole topic is in the lake, not only my partitions.

        After a crash the dead member keeps its partitions until its session
        times out; a restarted processor that looked only at its own
        assignment would stop while part of the topic is still unread.
        """
        from kafka import TopicPartition

        if any(self._pending.values()) or not self._joined or self._verify:
            return False  # before the group gave this member its share, the lake's positions are not checked yet
        parts = self._consumer.partitions_for_topic(self.config.topic) or set()
        if not parts:
            return False
        tps = [TopicPartition(self.config.topic, p) for p in parts]
        ends = self._consumer.end_offsets(tps)
        done = committed_offsets(self.lake, self.config.topic)
        # my own partitions: where this run is (after an offset reset that is not the lake's newest segment yet)
        nxt = {p: n for p, n in self._lake_next.items() if n is not None and p in self._assigned}
        return all(nxt.get(tp.partition, done.get(tp.partition, -1) + 1) >= ends[tp] for tp in tps)

    def _flush(self, force: bool = False) -> None:
        for partition in sorted(self._pending):
            records = self._pending.get(partition) or []
            if records:
                self._write_partition(partition, records)
                self._pending[partition] = []

    def _write_partition(self, partition: int, records: list) -> None:
        """Normalize, transform and commit one partition's records (one exactly-once unit)."""
        started = time.perf_counter()
        topic = self.config.topic
        source = f"kafka:{topic}/{partition}"
        first, last = records[0].offset, records[-1].offset
        norm = normalize_lines(
            [r.value for r in records], source=source, normalizer=self._normalizer, offsets=[r.offset for r in records]
        )
        events, rejects = norm.events, norm.rejects
        # a collector restarted after a crash sends again what Kafka may already hold (at least once):
        # an event whose event_id the lake has is not stored, alerted on or streamed a second time
        events, dropped = self._dedup.drop_seen(events)
        self.stats.duplicates += dropped
        events, extra, _ = apply_transforms(self.transforms, events)  # a failure leaves the batch uncommitted
        name = segment_name(topic, partition, first, last, self._epoch.get(partition, 0))
        meta = {"kafka": orjson.dumps({"topic": topic, "partition": partition, "first": first, "last": last}).decode()}
        for table_name, table in (("rejects", rejects), *extra.items()):
            self.lake.write(table_name, table, meta, segment=name)
        alerts = extra.get("alerts")
        if self._outputs is not None:
            self._outputs.send(partition, rejects, alerts, events)
            self.stats.streamed = self._outputs.counts.streamed
            self.stats.oversized = self._outputs.counts.oversized
        self.lake.write("events", events, meta, segment=name, keep_empty=True)  # the commit
        self._commit_kafka(partition, last)
        self.stats.batches += 1
        self.stats.records += len(records)
        self.stats.events += events.num_rows
        self.stats.rejects += rejects.num_rows
        self.stats.alerts += alerts.num_rows if alerts is not None else 0
        self.stats.by_partition[partition] = last
        self.stats.last_batch_seconds = time.perf_counter() - started
        self.stats.last_commit_at = time.monotonic()
        self._lake_next[partition] = last + 1
        stamps = [r.timestamp for r in (records[0], records[-1]) if r.timestamp is not None and r.timestamp >= 0]
        self.metrics.batch(
            records=len(records),
            events=events.num_rows,
            rejects=rejects.num_rows,
            seconds=self.stats.last_batch_seconds,
            alerts=alerts,
            oldest_timestamp=min(stamps) / 1000 if stamps else None,
        )
        self.metrics.lake_offset.labels(topic, str(partition)).set(last)
        self.metrics.process_table(self.transforms)
        self.health.heartbeat()
        if alerts is not None and alerts.num_rows and self.on_alerts:
            self.on_alerts(alerts)

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
