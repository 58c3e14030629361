"""The native, OCSF and ECS mappings on every event and alert the samples produce.

Rows come from a real ingest of ``samples/`` (the Tetragon docs' events and the
scenario), so every kind the pipeline emits is formatted. OCSF output is
checked against the required attributes and enumerations of the published
OCSF 1.3 classes (Process Activity 1007, File System Activity 1001, Network
Activity 4001, Detection Finding 2004, Base Event 0); ECS output against the
ECS 8.11 required fields and its allowed ``event.kind`` / ``event.category`` /
``event.type`` values, including which types each category allows.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import SAMPLES

from tetrapipe.formats import get_formatter, to_cef, to_ecs, to_native, to_ocsf, to_slack


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Native rows (as Arrow hands them to the router) of the samples: events and alerts."""
    return ingested_rows(tmp_path_factory.mktemp("formats") / "lake", SAMPLES)


def ingested_rows(lake: Path, *paths: Path) -> dict[str, list[dict[str, Any]]]:
    """``tetrapipe ingest`` of each path into ``lake`` (the real pipeline), then its events and alerts."""
    from tetrapipe.lake import connect

    for path in paths:
        subprocess.run(
            [sys.executable, "-m", "tetrapipe", "ingest", str(path), "--lake", str(lake), "-q"],
            check=True,
            capture_output=True,
            timeout=120,
        )
    con = connect(str(lake))
    try:
        events = con.sql("SELECT * FROM events ORDER BY time, event_id").to_arrow_table().to_pylist()
        alerts = con.sql("SELECT * FROM alerts ORDER BY time, alert_id").to_arrow_table().to_pylist()
    finally:
        con.close()
    assert len(events) > 100 and len(alerts) > 20
    return {"events": events, "alerts": alerts}


def _all(rows: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return rows["events"] + rows["alerts"]


# --- OCSF ----------------------------------------------------------------------------------------

#: OCSF 1.3: class -> (category_uid, required attributes beyond the base event's, allowed activity ids)
OCSF_CLASSES: dict[int, tuple[int, set[str], set[int]]] = {
    0: (0, set(), {0, 99}),
    1001: (1, {"actor", "device", "file"}, {0, *range(1, 15), 99}),
    1007: (1, {"actor", "device", "process"}, {0, 1, 2, 3, 4, 5, 99}),
    2004: (2, {"finding_info"}, {0, 1, 2, 3, 99}),
    4001: (4, {"src_endpoint", "dst_endpoint"}, {0, 1, 2, 3, 4, 5, 6, 7, 99}),
}
#: required by the base event (every class)
OCSF_BASE_REQUIRED = {"activity_id", "category_uid", "class_uid", "metadata", "severity_id", "time", "type_uid"}


def _check_ocsf(doc: dict[str, Any]) -> None:
    missing = OCSF_BASE_REQUIRED - doc.keys()
    assert not missing, f"missing base attributes {missing}: {doc}"
    cls = doc["class_uid"]
    assert cls in OCSF_CLASSES, cls
    category, required, activities = OCSF_CLASSES[cls]
    assert doc["category_uid"] == category
    assert not required - doc.keys(), f"class {cls} misses {required - doc.keys()}"
    assert doc["activity_id"] in activities, (cls, doc["activity_id"])
    assert doc["type_uid"] == cls * 100 + doc["activity_id"]
    assert doc["severity_id"] in range(0, 7) or doc["severity_id"] == 99
    assert isinstance(doc["time"], int) and doc["time"] > 1_500_000_000_000  # epoch milliseconds
    # metadata object: version and product required; product needs vendor_name
    assert doc["metadata"]["version"].startswith("1.")
    assert doc["metadata"]["product"]["vendor_name"]
    if "device" in doc:
        assert "type_id" in doc["device"]  # device: type_id required
    if "file" in doc:
        assert {"name", "type_id"} <= doc["file"].keys()  # file: name and type_id required
    if cls == 2004:
        assert {"uid", "title"} <= doc["finding_info"].keys()  # finding_info: uid and title required
        assert "type_id" in doc["finding_info"]["analytic"]  # analytic: type_id required
        for ev in doc["finding_info"].get("related_events", []):
            assert "uid" in ev
    for proc in _processes(doc):
        if "file" in proc:
            assert {"name", "type_id"} <= proc["file"].keys()
        image = (proc.get("container") or {}).get("image")
        if image:
            assert "uid" in image  # image: uid required
        assert isinstance(proc.get("lineage", []), list)
    if cls in (1001, 1007, 4001):
        assert doc["actor"].get("process"), "the actor names the process"
    _no_nulls(doc)


def _processes(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for holder in (doc, doc.get("actor") or {}):
        p = holder.get("process")
        if p:
            out.append(p)
            if p.get("parent_process"):
                out.append(p["parent_process"])
    return out


def _no_nulls(obj: Any, path: str = "") -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert v is not None and v != {} and v != [], f"empty value at {path}.{k}"
            _no_nulls(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _no_nulls(v, f"{path}[{i}]")


def test_ocsf_every_sample_row_has_its_class_required_attributes(rows: dict) -> None:
    classes: dict[int, int] = {}
    for row in _all(rows):
        doc = to_ocsf(row)
        _check_ocsf(doc)
        classes[doc["class_uid"]] = classes.get(doc["class_uid"], 0) + 1
        orjson.dumps(doc)  # JSON-ready
    # the samples exercise all four classes the issue names
    assert {1001, 1007, 2004, 4001} <= classes.keys(), classes
    assert classes[2004] == len(rows["alerts"])


def test_ocsf_class_by_kind(rows: dict) -> None:
    by_kind: dict[str, set[tuple[int, int]]] = {}
    for row in rows["events"]:
        doc = to_ocsf(row)
        by_kind.setdefault(row["kind"], set()).add((doc["class_uid"], doc["activity_id"]))
    assert by_kind["process_exec"] == {(1007, 1)}
    assert by_kind["process_exit"] == {(1007, 2)}
    assert by_kind["process_connect"] == {(4001, 1)}
    assert by_kind["process_close"] == {(4001, 2)}
    assert by_kind["process_listen"] == {(4001, 7)}
    assert by_kind["process_throttle"] == {(0, 99)}
    kprobe_classes = {c for c, _ in by_kind["process_kprobe"]}
    assert 1001 in kprobe_classes  # file hooks (fd_install, security_file_permission)


def test_ocsf_exec_fields(rows: dict) -> None:
    row = next(r for r in rows["events"] if r["kind"] == "process_exec" and r.get("pod") and r.get("parent_binary"))
    doc = to_ocsf(row)
    assert doc["process"]["file"]["path"] == row["process_binary"]
    assert doc["process"]["uid"] == row["exec_id"]
    assert doc["process"]["pid"] == row["pid"]
    assert doc["actor"]["process"]["file"]["path"] == row["parent_binary"]  # the launcher is the actor
    assert doc["process"]["lineage"][-1] == row["parent_binary"]
    assert doc["device"]["hostname"] == row["node_name"]
    assert doc["unmapped"]["k8s"]["namespace"] == row["namespace"]
    assert doc["metadata"]["uid"] == row["event_id"]


def test_ocsf_network_and_detection_fields(rows: dict) -> None:
    conn = next(r for r in rows["events"] if r["kind"] == "process_connect")
    doc = to_ocsf(conn)
    assert doc["dst_endpoint"]["ip"] == conn["daddr"] and doc["dst_endpoint"]["port"] == conn["dport"]
    assert doc["connection_info"]["protocol_name"] == "tcp" and doc["connection_info"]["protocol_num"] == 6
    assert doc["connection_info"]["direction_id"] == 2
    alert = next(a for a in rows["alerts"] if a.get("mitre"))
    f = to_ocsf(alert)
    assert f["finding_info"]["analytic"]["uid"] == alert["rule_id"]
    assert f["finding_info"]["uid"] == alert["alert_id"]
    assert f["severity_id"] == ["info", "low", "medium", "high", "critical"].index(alert["severity"]) + 1
    assert {a["technique"]["uid"] for a in f["finding_info"]["attacks"]} == {t.split(".")[0] for t in alert["mitre"]}


# --- ECS -----------------------------------------------------------------------------------------

ECS_KINDS = {"alert", "enrichment", "event", "metric", "state", "pipeline_error", "signal", "asset"}
#: ECS 8.11: event.category -> the event.type values it allows
ECS_CATEGORY_TYPES = {
    "process": {"access", "change", "end", "info", "start"},
    "file": {"access", "change", "creation", "deletion", "info"},
    "network": {"access", "allowed", "connection", "denied", "end", "info", "protocol", "start"},
    "host": {"access", "change", "end", "info", "start"},
    "intrusion_detection": {"allowed", "denied", "info"},
}


def _check_ecs(doc: dict[str, Any]) -> None:
    assert doc["@timestamp"].endswith("Z")
    assert doc["ecs"]["version"] == "8.11.0"
    event = doc["event"]
    assert event["kind"] in ECS_KINDS
    assert event["category"] and event["type"]
    for cat in event["category"]:
        assert cat in ECS_CATEGORY_TYPES, cat
        assert set(event["type"]) <= ECS_CATEGORY_TYPES[cat], (cat, event["type"])
    if event["kind"] == "alert":
        assert 1 <= event["severity"] <= 5 and doc["rule"]["id"]
    if "process" in doc and "args" in doc["process"]:
        assert doc["process"]["args_count"] == len(doc["process"]["args"])
    _no_nulls(doc)


def test_ecs_every_sample_row(rows: dict) -> None:
    cats = set()
    for row in _all(rows):
        doc = to_ecs(row)
        _check_ecs(doc)
        cats.update(doc["event"]["category"])
    assert {"process", "file", "network", "host", "intrusion_detection"} <= cats


def test_ecs_fields(rows: dict) -> None:
    ex = next(r for r in rows["events"] if r["kind"] == "process_exec" and r.get("container_id"))
    doc = to_ecs(ex)
    assert doc["process"]["executable"] == ex["process_binary"]
    assert doc["process"]["entity_id"] == ex["exec_id"]
    assert doc["container"]["id"] == ex["container_id"].split("://", 1)[-1]
    assert doc["orchestrator"]["namespace"] == ex["namespace"]
    assert doc["host"]["name"] == ex["node_name"]
    alert = rows["alerts"][0]
    a = to_ecs(alert)
    assert a["event"]["kind"] == "alert" and a["rule"]["id"] == alert["rule_id"]
    assert a["event"]["id"] == alert["alert_id"]


def test_enforcement_denied_only_where_ecs_allows_it() -> None:
    base = {
        "event_id": "e1",
        "time": "2026-01-01T00:00:00Z",
        "exec_id": "x",
        "process_binary": "/bin/cat",
        "node_name": "n",
        "action": "KPROBE_ACTION_SIGKILL",
    }
    file_doc = to_ecs({**base, "kind": "process_kprobe", "file_path": "/etc/shadow", "file_access": "read"})
    assert file_doc["event"]["outcome"] == "failure" and "denied" not in file_doc["event"]["type"]
    net_doc = to_ecs(
        {
            **base,
            "kind": "process_kprobe",
            "function_name": "tcp_connect",
            "daddr": "10.0.0.1",
            "dport": 443,
            "protocol": "IPPROTO_TCP",
        }
    )
    assert "denied" in net_doc["event"]["type"]
    _check_ecs(file_doc)
    _check_ecs(net_doc)
    o = to_ocsf({**base, "kind": "process_kprobe", "file_path": "/etc/shadow", "file_access": "read"})
    assert o["action_id"] == 2 and o["disposition_id"] == 2


# --- CEF ------------------------------------------------------------------------------------------

#: the CEF extension dictionary keys the mapping may write (ArcSight CEF standard), plus its two own keys
CEF_STANDARD_KEYS = {
    "rt",
    "start",
    "end",
    "dvchost",
    "externalId",
    "cat",
    "msg",
    "act",
    "reason",
    "cnt",
    "rawEvent",
    "sproc",
    "spid",
    "suid",
    "src",
    "dst",
    "spt",
    "dpt",
    "proto",
    "dhost",
    "app",
    "fname",
    "filePath",
    *(f"cs{i}" for i in range(1, 7)),
    *(f"cs{i}Label" for i in range(1, 7)),
    "cn1",
    "cn1Label",
    "flexString1",
    "flexString1Label",
    "flexString2",
    "flexString2Label",
    "c6a2",
    "c6a2Label",
    "c6a3",
    "c6a3Label",
}
CEF_OWN_KEYS = {"tetrapipeFileAccess", "tetrapipeTlsCipher"}
_UNESCAPE = {"\\": "\\", "=": "=", "|": "|", "n": "\n", "r": "\r"}


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """A CEF 0 reader written from the specification, independent of the writer: header and extension."""
    assert line.startswith("CEF:0|"), line[:20]
    header: list[str] = []
    field, i = "", len("CEF:")
    while len(header) < 7:
        ch = line[i]
        if ch == "\\":
            assert line[i + 1] in "\\|", f"bad header escape at {i}: {line[i : i + 2]!r}"
            field += line[i + 1]
            i += 2
            continue
        if ch == "|":
            header.append(field)
            field = ""
        else:
            assert ch not in "\r\n"
            field += ch
        i += 1
    ext, out = line[i:], {}
    keys = list(re.finditer(r"(?:^| )([A-Za-z0-9_]+)=", ext))
    for k, nxt in zip(keys, [*keys[1:], None], strict=True):
        raw = ext[k.end() : nxt.start() if nxt else len(ext)]
        assert "\n" not in raw and "\r" not in raw, "a line break inside an extension value"
        value, j = "", 0
        while j < len(raw):
            if raw[j] == "\\":
                value += _UNESCAPE[raw[j + 1]]
                j += 2
            else:
                assert raw[j] != "=", f"unescaped = in {k.group(1)}: {raw!r}"
                value += raw[j]
                j += 1
        assert k.group(1) not in out, f"key {k.group(1)} twice"
        out[k.group(1)] = value
    return header, out


def _check_cef(record: dict[str, Any], row: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    header, ext = parse_cef(record["cef"])
    version, vendor, product, _dv, signature, name, severity = header
    assert (version, vendor, product) == ("0", "tetrapipe", "tetrapipe")
    assert signature and name and 0 <= int(severity) <= 10
    assert set(ext) <= CEF_STANDARD_KEYS | CEF_OWN_KEYS, set(ext) - CEF_STANDARD_KEYS - CEF_OWN_KEYS
    for key in ext:  # every custom field is labelled, every label names a present field
        if key.endswith("Label"):
            assert key[: -len("Label")] in ext, key
        elif re.fullmatch(r"(cs|cn|c6a|flexString)\d", key):
            assert f"{key}Label" in ext, key
    assert int(ext["rt"]) > 1_500_000_000_000
    assert record["record_type"] == ("alert" if "rule_id" in row and "kind" not in row else "event")
    return header, ext


def test_cef_every_sample_row_is_valid_cef(rows: dict) -> None:
    names = set()
    for row in _all(rows):
        header, ext = _check_cef(to_cef(row), row)
        names.add(header[5])
        if row.get("node_name"):
            assert ext["dvchost"] == row["node_name"]
        if row.get("process_binary"):
            assert ext["sproc"] == row["process_binary"]
            assert ext["flexString1"].startswith(row["process_binary"])
        if row.get("namespace"):
            assert ext["cs1"] == row["namespace"] and ext["cs1Label"] == "k8sNamespace"
    assert {"Process started", "Process exited", "File write"} <= names


def test_cef_fields_of_alerts_files_and_connections(rows: dict) -> None:
    alert = next(a for a in rows["alerts"] if a["rule_id"] == "passwd-shadow-tampering")
    rec = to_cef(alert)
    header, ext = _check_cef(rec, alert)
    assert header[4] == "passwd-shadow-tampering" and header[5] == alert["title"] and header[6] == "8"
    assert ext["msg"] == alert["message"] and ext["cnt"] == str(alert["count"])
    assert ext["cs6Label"] == "mitreTechniques" and ext["cs6"].split(",") == list(alert["mitre"])
    assert ext["externalId"] == alert["alert_id"] and ext["cat"] == "alert"
    assert (rec["rule_id"], rec["severity"], rec["node_name"]) == (
        "passwd-shadow-tampering",
        "high",
        alert["node_name"],
    )
    write = next(r for r in rows["events"] if r.get("file_path") == "/etc/passwd" and r.get("file_access") == "write")
    header, ext = _check_cef(to_cef(write), write)
    assert header[4] == f"process_kprobe:{write['function_name']}" and header[5] == "File write"
    assert (ext["fname"], ext["filePath"], ext["tetrapipeFileAccess"]) == ("passwd", "/etc/passwd", "write")
    assert ext["act"] == write["action"]
    conn = next(r for r in rows["events"] if r.get("daddr") and r.get("dport"))
    _, ext = _check_cef(to_cef(conn), conn)
    assert (ext["dst"], ext["dpt"], ext["proto"]) == (conn["daddr"], str(conn["dport"]), "TCP")
    tls = next(r for r in rows["events"] if r.get("tls_cipher"))
    _, ext = _check_cef(to_cef(tls), tls)
    assert ext["tetrapipeTlsCipher"] == tls["tls_cipher"] and ext["app"] == tls["tls_version"]
    assert ext["cn1Label"] == "tlsCipherCode" and ext["cn1"] == str(tls["tls_cipher_code"])


def test_cef_escapes_what_the_specification_says() -> None:
    row = {
        "event_id": "e|1",
        "time": "2026-01-01T00:00:00Z",
        "kind": "process_exec",
        "node_name": "n1",
        "exec_id": "eA==",
        "process_binary": "/bin/a|b",
        "arguments": 'x=1 "two words" back\\slash\nnext',
        "message": "line one\r\nline two",
        "saddr": "fd00::1",
        "daddr": "fd00::2",
        "sport": 1,
        "dport": 2,
    }
    rec = to_cef(row)
    assert "\n" not in rec["cef"] and "\r" not in rec["cef"]
    header, ext = parse_cef(rec["cef"])
    assert header[4] == "process_exec" and header[5] == "Process started"
    assert ext["flexString1"] == '/bin/a|b x=1 "two words" back\\slash\nnext'
    assert ext["msg"] == "line one\r\nline two" and ext["cs4"] == "eA=="
    assert (ext["c6a2"], ext["c6a3"], ext["c6a2Label"]) == ("fd00::1", "fd00::2", "sourceIPv6Address")
    assert "src" not in ext and "dst" not in ext
    alert = to_cef({"rule_id": "r", "title": "a|b\\c", "severity": "critical", "time": "2026-01-01T00:00:00Z"})
    assert parse_cef(alert["cef"])[0][5:] == ["a|b\\c", "10"]
    assert "\\|" in alert["cef"] and "\\\\" in alert["cef"]


def test_cef_raw_is_opt_in(rows: dict) -> None:
    ev = rows["events"][0]
    assert "rawEvent" not in parse_cef(to_cef(ev)["cef"])[1]
    assert parse_cef(get_formatter("cef", include_raw=True)(ev)["cef"])[1]["rawEvent"] == ev["raw"]


# --- slack -----------------------------------------------------------------------------------------


def test_slack_message_for_every_sample_row(rows: dict) -> None:
    for row in _all(rows):
        msg = to_slack(row)
        assert set(msg) == {"text"} and msg["text"].strip()
        assert "<" not in msg["text"] and ">" not in msg["text"]  # Slack's control characters, always escaped
    alert = next(a for a in rows["alerts"] if a["rule_id"] == "passwd-shadow-tampering")
    head, message, where = to_slack(alert)["text"].split("\n")
    assert head == f":red_circle: *HIGH* `passwd-shadow-tampering` {alert['title']}"
    assert message == alert["message"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert where.startswith(f"_{alert['namespace']}/{alert['pod']} on {alert['node_name']}, ")
    conn = next(r for r in rows["events"] if r.get("daddr") and r.get("dport") and r.get("process_binary"))
    assert f" → {conn['daddr']}:{conn['dport']}" in to_slack(conn)["text"]


# --- native and JSON round trips -------------------------------------------------------------------


def test_native_drops_nulls_and_raw_and_tags_records(rows: dict) -> None:
    ev = rows["events"][0]
    doc = to_native(ev)
    assert doc["record_type"] == "event" and doc["schema"] == "tetrapipe/1"
    assert "raw" not in doc and None not in doc.values()
    assert get_formatter("native", include_raw=True)(ev)["raw"] == ev["raw"]
    assert to_native(rows["alerts"][0])["record_type"] == "alert"


@pytest.mark.parametrize("fmt", ["native", "ocsf", "ecs", "cef", "slack"])
def test_format_is_the_same_after_a_json_round_trip(rows: dict, fmt: str) -> None:
    """A row read back from JSON lines (stdin, Kafka, the spool) formats exactly like the Arrow row."""
    formatter = get_formatter(fmt)
    for row in _all(rows)[::7]:
        again = orjson.loads(orjson.dumps(to_native(row)))
        again.pop("record_type")
        again.pop("schema")
        assert formatter(again) == formatter(row) | (
            {"record_type": formatter(row)["record_type"], "schema": "tetrapipe/1"} if fmt == "native" else {}
        )


def test_raw_opt_in_per_format(rows: dict) -> None:
    ev = rows["events"][0]
    assert "raw_data" not in to_ocsf(ev) and to_ocsf(ev, include_raw=True)["raw_data"] == ev["raw"]
    assert "original" not in to_ecs(ev)["event"] and to_ecs(ev, include_raw=True)["event"]["original"] == ev["raw"]


def test_unknown_format_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown format 'leef'.*native, ocsf, ecs, cef"):
        get_formatter("leef")


def test_formats_readme_documents_every_class_and_column() -> None:
    """The field-by-field tables mention every event and alert column."""
    from tetrapipe.schema import ALERT_COLUMNS, EVENT_COLUMNS

    text = (Path(__file__).resolve().parents[1] / "tetrapipe" / "formats" / "README.md").read_text()
    for uid in ("1007", "1001", "4001", "2004"):
        assert f"({uid})" in text
    skip = {
        "event_id",
        "hook_path",
        "args",
        "return_value",
        "ancestor_exec_ids",
        "euid",
        "auid",
        "binary_setuid",
        "host_namespaces",
        "privileges_changed",
        "return_action",
        "sock_state",
    }
    for col in [*EVENT_COLUMNS, *ALERT_COLUMNS]:
        if col.name in skip:
            continue
        assert f"`{col.name}`" in text, col.name
