"""The detection engine: dedup across micro-batches, new terms, exceptions, backtest == live, junit."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner
from conftest import REPO, SAMPLES

from tetrapipe.cli import cli
from tetrapipe.flows.ingest import ingest
from tetrapipe.lake import Lake, views
from tetrapipe.ruleset import load_ruleset
from tetrapipe.ruleset.backtest import backtest
from tetrapipe.sources.files import expand_inputs
from tetrapipe.transforms.chain import build_transforms
from tetrapipe.transforms.detect import Detector
from tetrapipe.transforms.normalize import normalize_lines

RULES = REPO / "rules"


def shell_exec(i: int, at: dt.datetime, pod: str = "web", binary: str = "/bin/sh") -> str:
    return json.dumps(
        {
            "process_exec": {
                "process": {
                    "exec_id": f"azE6{i:08d}",
                    "pid": 1000 + i,
                    "binary": binary,
                    "arguments": "-c true",
                    "start_time": at.isoformat() + "Z",
                    "pod": {
                        "namespace": "shop",
                        "name": pod,
                        "container": {
                            "id": f"containerd://{pod}",
                            "name": pod,
                            "image": {"name": "nginx:1.27"},
                            "start_time": "2026-03-10T09:00:00Z",
                        },
                    },
                },
                "parent": {"binary": "/usr/bin/runc"},
            },
            "node_name": "k1",
            "time": at.isoformat() + "Z",
        }
    )


def connect(i: int, at: dt.datetime, binary: str, daddr: str, pod: str = "web-5f7c8d9b6-x4k2p") -> str:
    return json.dumps(
        {
            "process_kprobe": {
                "process": {
                    "exec_id": f"azI6{i:08d}",
                    "pid": 2000 + i,
                    "binary": binary,
                    "start_time": at.isoformat() + "Z",
                    "pod": {
                        "namespace": "shop",
                        "name": pod,
                        "container": {
                            "id": f"containerd://{pod}",
                            "name": "web",
                            "image": {"name": "nginx:1.27"},
                            "start_time": "2026-03-10T09:00:00Z",
                        },
                    },
                },
                "function_name": "tcp_connect",
                "args": [
                    {
                        "sock_arg": {
                            "family": "AF_INET",
                            "saddr": "10.0.0.5",
                            "sport": 40000,
                            "daddr": daddr,
                            "dport": 443,
                        }
                    }
                ],
                "action": "KPROBE_ACTION_POST",
                "policy_name": "connect",
            },
            "node_name": "k1",
            "time": at.isoformat() + "Z",
        }
    )


@pytest.fixture(scope="module")
def shipped():
    return load_ruleset([RULES])


def test_a_shell_storm_across_batches_is_one_alert_whose_counts_add_up(shipped) -> None:
    announced = []
    detector = Detector([shipped.get("late-shell-in-container")], on_new_alerts=announced.append)
    t0 = dt.datetime(2026, 3, 10, 10, 0, 0)
    lines = [shell_exec(i, t0 + dt.timedelta(seconds=i)) for i in range(30)]
    rows = []
    for start in (0, 10, 20):  # three micro-batches of the same storm, all in one 1h window
        rows += detector.evaluate(normalize_lines(lines[start : start + 10]).events).to_pylist()
    assert len(rows) == 3 and len({r["alert_id"] for r in rows}) == 1
    assert [r["count"] for r in rows] == [10, 10, 10]
    assert sum(len(a) for a in announced) == 1, "follow-ups are not announced as new alerts"
    folded = fold_alerts(__import__("pyarrow").Table.from_pylist(rows))
    assert len(folded) == 1 and folded[0]["count"] == 30
    assert folded[0]["time"] == t0 and folded[0]["last_time"] == t0 + dt.timedelta(seconds=29)
    # the next window (tumbling, aligned on the epoch) is a new alert
    later = detector.evaluate(normalize_lines([shell_exec(99, t0 + dt.timedelta(hours=1))]).events).to_pylist()
    assert later[0]["alert_id"] != rows[0]["alert_id"] and len(announced) == 2


def test_new_terms_remember_what_they_saw_across_batches(shipped) -> None:
    rule = shipped.get("first-outbound-connection")
    detector = Detector([rule])
    t0 = dt.datetime(2026, 3, 10, 10, 0, 0)
    first = [
        connect(1, t0, "/usr/bin/curl", "198.51.100.1"),
        connect(2, t0, "/usr/bin/curl", "198.51.100.2"),
        connect(3, t0, "/usr/local/bin/node", "198.51.100.3"),
    ]
    a1 = detector.evaluate(normalize_lines(first).events).to_pylist()
    assert sorted(a["process_binary"] for a in a1) == ["/usr/bin/curl", "/usr/local/bin/node"]
    again = [
        connect(4, t0 + dt.timedelta(minutes=5), "/usr/bin/curl", "198.51.100.9"),
        connect(5, t0 + dt.timedelta(minutes=5), "/usr/bin/curl", "198.51.100.9", pod="web-5f7c8d9b6-zzzzz"),
        connect(6, t0 + dt.timedelta(minutes=5), "/usr/bin/nc", "198.51.100.9"),
    ]
    a2 = detector.evaluate(normalize_lines(again).events).to_pylist()
    assert [a["process_binary"] for a in a2] == ["/usr/bin/nc"], "another pod of the same workload is not new"
    small = Detector([rule], new_terms_capacity=1)
    small.evaluate(normalize_lines(first).events)
    assert len(small._seen_terms) == 1  # bounded: the oldest terms are forgotten


def test_exceptions_allow_by_image_glob_list_and_condition(tmp_path: Path) -> None:
    (tmp_path / "lib.yaml").write_text("lists:\n  debug_pods: [toolbox]\n")
    (tmp_path / "r.yaml").write_text(
        textwrap.dedent("""\
        id: shells
        title: t
        description: d
        severity: low
        event: process_exec
        condition: process_name = 'sh'
        output: "{pod}"
        dedup: {fields: [exec_id]}
        exceptions:
          - name: nginx images
            images: ['nginx:*']
            namespaces: [shop]
          - name: debug pods
            pods: ['@debug_pods']
          - name: early
            when: process_start_time < TIMESTAMP '2026-03-10 09:30:00'
        """)
    )
    rs = load_ruleset([tmp_path])
    assert not rs.issues, rs.issues
    t0 = dt.datetime(2026, 3, 10, 10, 0, 0)
    lines = [
        shell_exec(1, t0),
        shell_exec(2, t0, pod="toolbox"),
        shell_exec(3, t0, pod="api"),
        shell_exec(4, dt.datetime(2026, 3, 10, 9, 10)),
    ]
    lines[2] = lines[2].replace("nginx:1.27", "ghcr.io/acme/api:1")
    lines[3] = lines[3].replace("nginx:1.27", "ghcr.io/acme/api:1").replace('"web"', '"w2"')
    alerts = Detector(rs).evaluate(normalize_lines(lines).events).to_pylist()
    assert [a["pod"] for a in alerts] == ["api"]


@pytest.fixture(scope="module")
def live_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """The samples ingested with the shipped rules, the scenario cut in three files so that the
    /etc/shadow reads (109|110) and the reverse shell (116|117-118) span micro-batches."""
    d = tmp_path_factory.mktemp("live")
    lines = (SAMPLES / "scenario" / "tenant-jobs.log").read_text().splitlines(keepends=True)
    parts = []
    for i, (a, b) in enumerate(((0, 109), (109, 116), (116, len(lines)))):
        part = d / f"tenant-jobs-{i}.log"
        part.write_text("".join(lines[a:b]))
        parts.append(str(part))
    lake = Lake(d / "lake")
    transforms, detector = build_transforms(str(RULES))
    ingest(expand_inputs([str(SAMPLES / "real"), *parts]), lake, transforms=transforms)
    assert detector.stats.batches == 5
    return lake


#: one row per alert from the ``alerts`` table, whose follow-up rows (same alert_id) are summed
ALERT_SUMMARY_SQL = """
SELECT alert_id, any_value(rule_id) AS rule_id, arg_min(title, time) AS title, arg_min(severity, time) AS severity,
       arg_min(mitre, time) AS mitre, arg_min(tags, time) AS tags,
       min(time) AS time, max(last_time) AS last_time,
       arg_min(node_name, time) AS node_name, arg_min(namespace, time) AS namespace, arg_min(pod, time) AS pod,
       arg_min(container_name, time) AS container_name, arg_min(image, time) AS image,
       arg_min(exec_id, time) AS exec_id, arg_min(process_binary, time) AS process_binary,
       arg_min(arguments, time) AS arguments, arg_min(parent_binary, time) AS parent_binary,
       arg_min(ancestor_binaries, time) AS ancestor_binaries, arg_min(message, time) AS message,
       any_value(dedup_key) AS dedup_key, sum(count)::BIGINT AS count, count(*) AS rows,
       flatten(list(event_ids ORDER BY time)) AS event_ids
FROM alerts
GROUP BY alert_id
"""


def fold_alerts(table: pa.Table) -> list[dict]:
    """Alert rows folded per alert_id in Python (first row's fields, counts summed), in time order."""
    out: dict[str, dict] = {}
    for row in sorted(table.to_pylist(), key=lambda r: (r["time"] is None, r["time"] or dt.datetime.min)):
        cur = out.get(row["alert_id"])
        if cur is None:
            out[row["alert_id"]] = dict(row)
        else:
            cur["count"] += row["count"]
            cur["event_ids"] = cur["event_ids"] + row["event_ids"]
            if row["last_time"] is not None and (cur["last_time"] is None or row["last_time"] > cur["last_time"]):
                cur["last_time"] = row["last_time"]
    return list(out.values())


def _comparable(rows: list[dict]) -> set[tuple]:
    return {
        (
            r["alert_id"],
            r["rule_id"],
            r["count"],
            r["time"],
            r["last_time"],
            r["message"],
            r["exec_id"],
            tuple(sorted(r["event_ids"])),
        )
        for r in rows
    }


def test_backtest_over_the_history_gives_the_live_alerts(live_lake: Lake, shipped) -> None:
    con = views.connect(live_lake)
    try:
        live_rows = con.sql("SELECT * FROM alerts").to_arrow_table()
        summary = con.sql(ALERT_SUMMARY_SQL).to_arrow_table()
    finally:
        con.close()
    assert live_rows.num_rows > summary.num_rows, "some alerts span micro-batches (follow-up rows)"
    live = fold_alerts(live_rows.drop_columns(["date"]))
    back = backtest(live_lake, shipped.enabled(), max_event_ids=None).to_pylist()
    assert _comparable(live) == _comparable(back)
    assert summary.num_rows == len(back)
    assert sorted(summary.column("count").to_pylist()) == sorted(r["count"] for r in back)


def test_backtest_since_and_cli(live_lake: Lake, shipped) -> None:
    recent = backtest(live_lake, shipped.enabled(), since="2026-01-01")
    assert set(recent.column("rule_id").to_pylist()) >= {"late-shell-in-container", "passwd-shadow-tampering"}
    assert all(t >= dt.datetime(2026, 1, 1) for t in recent.column("time").to_pylist())
    result = CliRunner().invoke(
        cli,
        [
            "rules",
            "backtest",
            "--lake",
            str(live_lake.root),
            "--rules",
            str(RULES),
            "--since",
            "2026-03-10",
            "--rule",
            "late-shell-in-container",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["rule_id"] for r in rows} == {"late-shell-in-container"} and all(r["stored"] for r in rows)
    table = CliRunner().invoke(cli, ["rules", "backtest", "--lake", str(live_lake.root), "--rules", str(RULES)])
    assert table.exit_code == 0 and "passwd-shadow-tampering" in table.output


def test_a_restarted_detector_seeded_from_the_lake_does_not_repeat_itself(live_lake: Lake, shipped) -> None:
    announced = []
    detector = Detector(shipped, on_new_alerts=announced.append)
    from tetrapipe.flows.transforms import read_state

    state = read_state(live_lake, detector.state_request())
    assert state.terms
    detector.restore(state)
    events = normalize_lines((SAMPLES / "scenario" / "tenant-jobs.log").read_text().splitlines()).events
    from tetrapipe.transforms.ancestry import AncestryTransform

    events, _ = AncestryTransform()(events)
    rows = detector.evaluate(events).to_pylist()
    assert "first-outbound-connection" not in {r["rule_id"] for r in rows}
    assert not announced, "alerts already in the lake are follow-ups, not news"


def _failing_rules(d: Path) -> Path:
    (d / "r.yaml").write_text(
        textwrap.dedent("""\
        id: shells
        title: t
        description: d
        severity: low
        event: process_exec
        condition: process_name = 'sh'
        output: "{process_binary} in {pod}"
        tests:
          - name: fires
            events: |
              %s
            expect: {count: 1}
          - name: wrong on purpose
            events: |
              %s
            expect:
              count: 2
              alerts:
                - {pod: nowhere}
        """)
        % (shell_exec(1, dt.datetime(2026, 3, 10, 10)), shell_exec(2, dt.datetime(2026, 3, 10, 10)))
    )
    (d / "bad.yaml").write_text(
        "id: bad\ntitle: t\ndescription: d\nseverity: low\nevent: process_exec\ncondition: pid\noutput: x\n"
    )
    return d


def test_cli_failure_shows_a_diff_and_exits_one(tmp_path: Path) -> None:
    d = _failing_rules(tmp_path)
    result = CliRunner().invoke(cli, ["rules", "test", str(d)])
    assert result.exit_code == 1
    out = result.output
    assert "::shells::fires PASSED" in out and "::shells::wrong on purpose FAILED" in out
    assert "-count: 2" in out and "+count: 1" in out and "-  pod: nowhere" in out and "+  pod: web" in out
    assert f"{d / 'bad.yaml'}:6: condition is BIGINT, not a boolean expression" in out
    assert out.strip().splitlines()[-1].strip("─ ").startswith("1 passed, 1 failed, 1 error in")


def test_junit_is_valid_xml_with_the_right_counts(tmp_path: Path) -> None:
    d = _failing_rules(tmp_path)
    report = tmp_path / "junit.xml"
    result = CliRunner().invoke(cli, ["rules", "test", str(d), "--format", "junit", "-o", str(report)])
    assert result.exit_code == 1
    root = ET.parse(report).getroot()
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["fires"].find("failure") is None and cases["fires"].get("classname") == "rules.shells"
    failure = cases["wrong on purpose"].find("failure")
    assert failure.get("message").startswith("expected 2 alerts, got 1") and "+count: 1" in failure.text
    assert cases["load"].find("error") is not None
    ok = CliRunner().invoke(cli, ["rules", "test", str(RULES / "late-shell-in-container.yaml"), "--format", "junit"])
    assert ok.exit_code == 0
    suite = ET.fromstring(ok.output).find("testsuite")
    assert suite.get("failures") == "0" and int(suite.get("tests")) >= 2


@pytest.mark.parametrize(
    ("text", "chunks"),
    [
        ("a = 'x'", [("code", "a = "), ("string", "'x'")]),
        ("'it''s' || b", [("string", "'it''s'"), ("code", " || b")]),
        ("'a'''", [("string", "'a'''")]),  # a doubled quote, then the closing one
        ("'ab''", [("string", "'ab''")]),  # unterminated: the rest of the text
        (
            '"Col""x" = 1 -- why\nAND c',
            [("string", '"Col""x"'), ("code", " = 1 "), ("comment", "-- why")] + [("code", "\nAND c")],
        ),
        ("x - -1 --", [("code", "x - -1 "), ("comment", "--")]),
        ("'--' \"'\" '\"'", [("string", "'--'"), ("code", " "), ("string", '"\'"'), ("code", " "), ("string", "'\"'")]),
        ("", []),
    ],
)
def test_scan_sql_tells_code_from_strings_and_comments(text: str, chunks: list[tuple[str, str]]) -> None:
    """Every later step (macro expansion, the column scan, the SELECT check) reads only the code chunks."""
    from tetrapipe.ruleset.compiler import scan_sql

    assert list(scan_sql(text)) == chunks
    assert "".join(c for _, c in scan_sql(text)) == text


def test_sql_words_are_the_identifiers_of_code_and_quoted_names_only() -> None:
    """The detector registers only the columns a rule's text names: words in strings or comments are not columns."""
    import re

    from tetrapipe.ruleset.compiler import scan_sql, sql_words

    text = "Process_Binary ILIKE '%pid%' AND \"Namespace\" = 'uid''s' -- cwd\nOR b.arguments||x IS NULL AND y'q'z"
    assert sql_words(text) == {"process_binary", "ilike", "and", "namespace", "or", "b", "arguments", "x", "is"} | {
        "null",
        "y",
        "z",
    }
    for t in [text, "'open", '"a b" c', "a--b\nc", "'it''s' d", ""]:  # as the chunks of scan_sql say
        chunks = [c for k, c in scan_sql(t) if k == "code" or c.startswith('"')]
        assert sql_words(t) == {w.lower() for c in chunks for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", c)}


def test_junit_of_hostile_event_data_is_valid_xml_and_shows_escapes() -> None:
    """A failing test's diff quotes alert messages, and so event data: an escape sequence, BEL, a bidi override,
    U+FFFF or a lone surrogate from a pod name made the report invalid XML (expat refuses it) and raw on a terminal."""
    from tetrapipe.ruleset.junit import to_junit
    from tetrapipe.ruleset.testing import TestReport, TestResult

    pod = "crawler-\x1b]0;pwned\x07\u202eexe\uffff\ud800"
    report = TestReport(
        [
            TestResult(
                "r1",
                f"fires on {pod}",
                Path("r1.yaml"),
                3,
                "failed",
                reason=f"expected 1 alert, got 0 ({pod})",
                diff=[f"- message: shell in {pod}", "+ (none)"],
            ),  # fmt: skip
            TestResult("r2", "loads", Path(f"bad\udcff{pod}.yaml"), None, "error", reason=f"cannot load {pod}"),
        ],
        0.1,
    )
    xml = to_junit(report)
    root = ET.fromstring(xml.encode("utf-8"))  # expat: the whole document is well-formed XML
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and "\\x1b]0;pwned\\x07\\u202eexe\\uffff\\ud800" in failure.text
    assert not any(c in xml for c in "\x1b\x07\u202e\uffff")
    error = root.find("testsuite/testcase/error")
    assert error is not None and "cannot load crawler-\\x1b" in error.get("message")


def test_a_test_log_whose_events_hold_unicode_line_separators_reads_one_event_a_line(tmp_path: Path) -> None:
    """A JSON string may hold U+0085, U+2028 or U+2029 raw (a process argument with one); ``splitlines`` cut the
    line there, so the rule's test log lost that event (two invalid halves) and its test failed for no reason."""
    d = tmp_path / "rules"
    d.mkdir()
    line = json.loads((SAMPLES / "scenario" / "tenant-jobs.log").read_text(encoding="utf-8").split("\n")[94])
    line["process_exec"]["process"]["arguments"] = "-c 'echo a\u2028b\x85c\u2029d'"
    (d / "shell.log").write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    (d / "shell.yaml").write_text(
        "id: odd-args\ntitle: t\ndescription: d\nseverity: low\nevent: [process_exec]\n"
        "condition: contains(arguments, 'echo a')\noutput: '%process_binary'\n"
        "tests:\n  - name: fires\n    log: shell.log\n    expect: {count: 1}\n"
    )
    result = CliRunner().invoke(cli, ["rules", "test", str(d)])
    assert result.exit_code == 0, result.output
    assert "1 passed, 0 failed" in result.output
