"""The sequence rules' step bits come from the per-kind mask statements (maskplan._step_bits), not a scan of their own.

The detector's per-kind statements compute each sequence rule's ``_q`` bits
for their kind's rows, so the batch is not scanned once more for the chains.
The bits must be those of the chains' own statement
(:func:`tetrapipe.ruleset.sequence.steps_sql`, which the flat path and the
backtest keep using): the same step rows, in the same order, hence the same
chain alerts, over the scenario's events and a generated stream of chains
split over micro-batches and out of order.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from conftest import SAMPLES
from test_chains import RULES, generated_stream
from test_detect_scale import _events

from tetrapipe.ruleset import load_ruleset
from tetrapipe.transforms.detect import Detector
from tetrapipe.transforms.maskplan import kind_mask_sql, split_by_kind


def _batches() -> list[pa.Table]:
    lines, _want = generated_stream(40)
    scenario = [ln for p in sorted(SAMPLES.glob("scenario/*.log")) for ln in p.read_text().splitlines() if ln.strip()]
    return _events(scenario + lines, 37)


def _chain_rows(detector: Detector, batches: list[pa.Table]) -> list[pa.Table]:
    out = []
    for batch in batches:
        alerts = detector.evaluate(batch)
        out.append(
            alerts.filter(pa.array([r.startswith("chain-") for r in alerts.column("rule_id").to_pylist()], pa.bool_()))
        )
    detector.close()
    return out


def test_step_bits_of_the_per_kind_statements_equal_the_chains_own_statement() -> None:
    rs = load_ruleset([RULES])
    rules = [r for r in rs.enabled() if r.sequence is None]
    sequences = [r for r in rs.enabled() if r.sequence is not None]
    plan = kind_mask_sql(rules, "_batch", sequences)
    reference = Detector(sequences).chains
    assert reference is not None
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    steps = 0
    for batch in _batches():
        batch = batch.append_column("_i", pa.array(np.arange(batch.num_rows, dtype=np.int64)))
        con.register("_chain_rows", batch)
        want = con.execute(reference.batch_sql("_chain_rows")).fetchall()
        for name, part in split_by_kind(batch, plan).items():
            con.register(name, part)
        qs = ", ".join(f"_q{r}" for r in range(len(sequences)))
        any_q = " OR ".join(f"_q{r} <> 0" for r in range(len(sequences)))
        got = con.execute(f"SELECT _i, {qs} FROM ({plan.sql}) WHERE {any_q} ORDER BY _i").fetchall()
        assert got == sorted(want)
        steps += len(want)
    assert steps > 100


def test_chain_alerts_are_the_same_from_the_plans_step_bits_as_from_the_chains_statement(tmp_path: Path) -> None:
    rules = load_ruleset([RULES]).enabled()
    batches = _batches()
    planned = Detector(rules)
    got = _chain_rows(planned, batches)
    assert "chains" not in planned._statements._names  # the chains' own statement never ran
    want = _chain_rows(Detector(rules, per_kind=False), batches)  # the flat mask: the chains' statement
    assert [t.to_pylist() for t in got] == [t.to_pylist() for t in want]
    assert sum(t.num_rows for t in got) >= 30  # the generated chains and the scenario's fired
