"""Micro-batches a processor has transformed and sent on, waiting for their lake commit.

Why a processor does not commit every micro-batch: every Delta commit adds an
entry to each table's log, and delta-rs lists the log on every commit (about
10-15 us per entry, measured with deltalake 1.6.6). A replica that commits
once a second writes 86,400 entries a day per table; one that commits every
``commit_max_seconds`` (10 s by default) writes 8,640, and the day of log the
tables keep (:data:`tetrapipe.lake.store.TABLE_PROPERTIES`) stays small
enough that a commit costs the same at the end of a day as at its start.

Alerts and streamed events still leave for Kafka as each micro-batch ends:
only the lake waits. Memory stays bounded: the stage is committed as soon as
it holds ``batch_max_records`` records, so under load every full micro-batch
is still committed at once, as before. What the stage holds is not in the
lake yet, so a crash loses nothing: the records are consumed again from the
positions the lake holds, and their alerts are sent again under the same
alert ids (Kafka outputs are at least once, the lake exactly once).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pyarrow as pa

from tetrapipe.flows.process_config import ProcessStats
from tetrapipe.lake.positions import Position
from tetrapipe.metrics import PipelineMetrics


@dataclass
class Stage:
    """Tables of one or more micro-batches and, per partition, the position their commit will carry."""

    parts: dict[str, list[pa.Table]] = field(default_factory=dict)
    positions: dict[int, Position] = field(default_factory=dict)
    #: partition -> (first record, last record) of everything staged: the lake's offsets and the metrics
    ends: dict[int, tuple[object, object]] = field(default_factory=dict)
    records: int = 0
    dedup_tokens: list[int] = field(default_factory=list)
    started: float | None = None  # monotonic: when the first micro-batch was staged
    work_seconds: float = 0.0  # time spent transforming what is staged (the batch-duration metric)

    def __bool__(self) -> bool:
        return self.started is not None

    def add(
        self,
        tables: dict[str, pa.Table | None],
        positions: dict[int, Position],
        batch: dict[int, list],
        dedup_token: int | None,
        seconds: float,
    ) -> None:
        """Stage one transformed micro-batch; a partition's newer position replaces its older one."""
        if self.started is None:
            self.started = time.monotonic()
        for name, rows in tables.items():
            if rows is not None and (rows.num_rows or name == "events"):  # (events: kept empty for its schema)
                self.parts.setdefault(name, []).append(rows)
        self.positions.update(positions)
        for p, records in batch.items():
            first = self.ends[p][0] if p in self.ends else records[0]
            self.ends[p] = (first, records[-1])
            self.records += len(records)
        if dedup_token is not None:
            self.dedup_tokens.append(dedup_token)
        self.work_seconds += seconds

    def due(self, max_seconds: float, max_records: int) -> bool:
        """Time to commit: the oldest staged micro-batch is ``max_seconds`` old, or the stage is full."""
        if self.started is None:
            return False
        return self.records >= max_records or time.monotonic() - self.started >= max_seconds

    def table(self, name: str) -> pa.Table | None:
        """All staged rows of table ``name``; None when no micro-batch had any.

        The joined table replaces its parts, so the commit and the metrics
        that follow it share one concatenation.
        """
        parts = self.parts.get(name)
        if not parts:
            return None
        if len(parts) > 1:
            self.parts[name] = parts = [pa.concat_tables(parts, promote_options="default")]
        return parts[0]

    def rows(self, name: str) -> int:
        return sum(t.num_rows for t in self.parts.get(name, ()))

    def count(self, stats: ProcessStats, metrics: PipelineMetrics, commit_seconds: float) -> None:
        """Add this stage, now committed, to the run's stats and metrics (they count what the lake holds)."""
        stats.batches += 1
        stats.records += self.records
        stats.events += self.rows("events")
        stats.rejects += self.rows("rejects")
        stats.alerts += self.rows("alerts")
        stats.last_batch_seconds = self.work_seconds + commit_seconds
        stats.last_commit_at = time.monotonic()
        stamps = [r.timestamp for pair in self.ends.values() for r in pair]  # type: ignore[attr-defined]
        stamps = [t for t in stamps if t is not None and t >= 0]
        metrics.batch(
            records=self.records,
            events=self.rows("events"),
            rejects=self.rows("rejects"),
            seconds=stats.last_batch_seconds,
            alerts=self.table("alerts"),
            oldest_timestamp=min(stamps) / 1000 if stamps else None,
        )


__all__ = ["Stage"]
