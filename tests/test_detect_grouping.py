"""The live grouping (``ruleset.plan.live_group_sql``) over more rules than one mask column holds.

A match's rules are found by crossing the matching rows with the matched
rules' constants and testing each rule's bit, in whichever ``_m{g}`` column
holds it. With 70 rules the bits span two columns (62 a column): every alert
row must still equal what the backtest's statements compute, and rules in the
second column must alert too.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import duckdb
from test_detect_scale import _events, _generated_lines

from tetrapipe.ruleset import load_ruleset
from tetrapipe.ruleset.plan import MASK_BITS, group_sql, match_sql, rules_table_sql
from tetrapipe.transforms.detect import Detector

#: binaries the generated events run often (each rule keys on another dedup field and window)
_FIELDS = ["exec_id", "container_id", "process_binary", "node_name", "pod"]


def _rules(root: Path, n: int) -> list:
    root.mkdir()
    for k in range(n):
        field = _FIELDS[k % len(_FIELDS)]
        window = ["1m", "10m", "1h"][k % 3]
        (root / f"many-{k:03d}.yaml").write_text(
            textwrap.dedent(
                f"""\
                id: many-{k:03d}
                title: rule {k}
                description: one of many rules over the same execs (two mask columns)
                severity: low
                event: process_exec
                condition: "process_binary IS NOT NULL AND length(process_binary) % {k % 4 + 1} = 0"
                output: "{k} {{process_binary}} in {{pod}}"
                dedup:
                  fields: [{field}]
                  window: {window}
                """
            ),
            encoding="utf-8",
        )
    rs = load_ruleset([root])
    assert not rs.errors, rs.errors
    return rs.enabled()


def test_alert_rows_of_rules_in_two_mask_columns_equal_the_backtest_statements(tmp_path: Path) -> None:
    rules = _rules(tmp_path / "rules", 70)
    assert len(rules) > MASK_BITS
    (batch,) = _events(_generated_lines(tmp_path, 1500), 10_000)
    detector = Detector(rules, max_event_ids=None)
    live = detector.evaluate(batch)
    detector.close()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("events", batch)
    want = con.execute(group_sql(f"({match_sql(rules, 'events')})", rules_table_sql(rules), None)).to_arrow_table()
    names = live.schema.names
    assert sorted(map(repr, live.to_pylist())) == sorted(map(repr, want.select(names).cast(live.schema).to_pylist()))
    fired = set(live.column("rule_id").to_pylist())
    assert {"many-000", "many-061", "many-062", "many-069"} <= fired  # both columns' first and last rules
    assert live.num_rows > 200
