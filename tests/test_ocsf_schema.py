"""tetrapipe's OCSF output against the official OCSF 1.3.0 schema (issue 18 item 5), offline.

The schema is the one the OCSF server exports for 1.3.0, as the ``ocsf-json-schema`` package carries it (with
the OCSF licence, Apache-2.0); that package turns a class plus the profiles a record claims into a JSON Schema
(draft 2020-12) and ``jsonschema`` validates the record against it. That covers what the OCSF server checks
structurally: unknown attributes (``additionalProperties: false`` on every class and object), required
attributes, types, enums, object constraints (``at_least_one``, ``just_one``) and profile gating (an attribute
a profile adds is unknown unless the record names the profile). What JSON Schema cannot say is checked
here from the same schema: a profile the class does not support, and enum captions (``type_name`` must be
the caption of ``type_uid``, as every ``*_id`` sibling must be its id's caption unless the id is 99, Other).

Every event kind of samples/ (the scenario and Tetragon's recorded events) and every alert is checked.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
from conftest import SAMPLES
from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema
from test_formats import ingested_rows

from tetrapipe.formats import to_ocsf
from tetrapipe.formats.ocsf import OCSF_VERSION

SCHEMA: dict[str, Any] = get_ocsf_schema(version="1.3.0")
EMBEDDED = OcsfJsonSchemaEmbedded(SCHEMA)


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Native rows of every sample event and alert, as the forwarder hands them to the formatter."""
    tmp = tmp_path_factory.mktemp("ocsf")
    # the samples hold no enforced event: the scenario's file and connect kprobes again, as Tetragon
    # reports them when the policy's action is Sigkill or Override
    scenario = (SAMPLES / "scenario" / "tenant-jobs.log").read_text().splitlines()
    file_hook = next(x for x in scenario if '"security_file_permission"' in x and "KPROBE_ACTION_POST" in x)
    connect_hook = next(x for x in scenario if '"tcp_connect"' in x and "KPROBE_ACTION_POST" in x)
    enforced = tmp / "enforced.log"
    lines = []
    for line, action in ((file_hook, "KPROBE_ACTION_SIGKILL"), (connect_hook, "KPROBE_ACTION_OVERRIDE")):
        event = json.loads(line)
        event["process_kprobe"]["action"] = action
        event["time"] = "2026-03-11T08:00:00.000Z"  # a later event, not a duplicate of the scenario's
        lines.append(json.dumps(event))
    enforced.write_text("\n".join(lines) + "\n")
    got = ingested_rows(tmp / "lake", SAMPLES, enforced)
    return got["events"] + got["alerts"]


@cache
def _validator(class_name: str, profiles: tuple[str, ...]) -> Draft202012Validator:
    return Draft202012Validator(EMBEDDED.get_class_schema(class_name, list(profiles)))


def _class_name(class_uid: int) -> str:
    return EMBEDDED.lookup_class_name_from_uid(class_uid)


def _captions(definition: dict[str, Any], record: dict[str, Any], path: str) -> list[str]:
    """Enum siblings that are not their id's caption, recursively through the objects the record holds."""
    problems = []
    attributes = definition.get("attributes", {})
    for name, value in record.items():
        attr = attributes.get(name)
        if attr is None:
            continue
        if attr.get("enum") and attr.get("sibling") and attr["sibling"] in record:
            caption = attr["enum"].get(str(value), {}).get("caption")
            other = int(value) == 99 and name != "type_uid"  # 99: the sibling carries the source's own word
            if caption is not None and not other and record[attr["sibling"]] != caption:
                problems.append(
                    f"{path}{attr['sibling']} {record[attr['sibling']]!r} is not {caption!r} ({name} {value})"
                )
        if attr.get("type") == "object_t":
            obj = SCHEMA["objects"].get(attr.get("object_type"), {})
            for i, item in enumerate(value if isinstance(value, list) else [value]):
                if isinstance(item, dict):
                    problems += _captions(obj, item, f"{path}{name}{f'[{i}]' if isinstance(value, list) else ''}.")
    return problems


def ocsf_problems(record: dict[str, Any]) -> list[str]:
    """Everything the OCSF 1.3.0 schema says is wrong with one record (empty: valid)."""
    try:
        class_name = _class_name(record["class_uid"])
    except (KeyError, ValueError) as exc:
        return [f"class_uid: {exc}"]
    definition = SCHEMA["classes"][class_name]
    profiles = tuple(sorted(record.get("metadata", {}).get("profiles") or []))
    problems = [
        f"profile {p!r} is not one {class_name} supports ({', '.join(definition.get('profiles') or [])})"
        for p in profiles
        if p not in (definition.get("profiles") or [])
    ]
    for error in _validator(class_name, profiles).iter_errors(record):
        where = "/".join(str(p) for p in error.absolute_path) or "(record)"
        problems.append(f"{where}: {error.message[:200]}")
    problems += _captions(definition, record, "")
    return problems


def test_the_packaged_schema_is_the_version_tetrapipe_claims() -> None:
    assert SCHEMA["version"] == OCSF_VERSION == "1.3.0"


def test_every_sample_event_kind_and_every_alert_is_valid_ocsf(rows: list[dict[str, Any]]) -> None:
    """All records valid; each event kind and alerts are among them (so no kind escapes the check)."""
    invalid: dict[str, list[str]] = {}
    kinds: dict[str, int] = {}
    for row in rows:
        what = "alert" if row.get("rule_id") else str(row.get("kind"))
        kinds[what] = kinds.get(what, 0) + 1
        problems = ocsf_problems(to_ocsf(row))
        if problems:
            invalid.setdefault(what, []).extend(problems[:3])
    assert {"alert", "process_exec", "process_exit", "process_kprobe", "process_throttle"} <= kinds.keys(), kinds
    assert not invalid, {k: v[:6] for k, v in invalid.items()}


def test_the_validator_catches_unknown_attributes_profile_gating_constraints_and_captions(
    rows: list[dict[str, Any]],
) -> None:
    """The check fails where the schema says so, on real records made wrong one way at a time."""
    exec_row = next(r for r in rows if r.get("kind") == "process_exec" and r.get("pod"))
    good = to_ocsf(exec_row)
    assert ocsf_problems(good) == []

    unknown = {**good, "pod_name": "web-0"}
    assert any("pod_name" in p and "Additional properties" in p for p in ocsf_problems(unknown))

    nested_unknown = {**good, "process": {**good["process"], "namespace": "shop"}}
    assert any(p.startswith("process:") and "namespace" in p for p in ocsf_problems(nested_unknown))

    gated = {**good, "action_id": 2, "action": "Denied"}  # a security_control attribute, profile not claimed
    assert any("action" in p and "Additional properties" in p for p in ocsf_problems(gated))
    claimed = {
        **gated,
        "metadata": {**good["metadata"], "profiles": [*good["metadata"]["profiles"], "security_control"]},
    }
    assert ocsf_problems(claimed) == []

    unsupported = {**good, "class_uid": 0, "category_uid": 0, "type_uid": 99, "activity_id": 99}
    assert any("profile 'host' is not one base_event supports" in p for p in ocsf_problems(unsupported))

    no_identifier = {**good, "device": {"type_id": 0, "type": "Unknown"}}
    assert any(p.startswith("device:") for p in ocsf_problems(no_identifier))  # at_least_one of ip, name, ...

    no_pid_nor_uid = {**good, "actor": {"process": {"name": "bash"}}}
    assert any(p.startswith("actor/process:") for p in ocsf_problems(no_pid_nor_uid))

    caption = {**good, "type_name": "Process Activity: Start"}
    assert "type_name 'Process Activity: Start' is not 'Process Activity: Launch' (type_uid 100701)" in ocsf_problems(
        caption
    )
    other = {**good, "activity_id": 99, "activity_name": "setns", "type_uid": 100799, "type_name": "x"}
    assert ocsf_problems(other) == ["type_name 'x' is not 'Process Activity: Other' (type_uid 100799)"]


def test_enforced_events_claim_the_security_control_profile(rows: list[dict[str, Any]]) -> None:
    """Sigkill/Override events carry action/disposition, which the security_control profile adds."""
    enforced = [r for r in rows if not r.get("rule_id") and str(r.get("action")).endswith(("SIGKILL", "OVERRIDE"))]
    assert len(enforced) == 2, [r.get("action") for r in rows]
    assert {to_ocsf(r)["class_uid"] for r in enforced} == {1001, 4001}  # a file and a network activity
    for row in enforced:
        doc = to_ocsf(row)
        assert doc["action_id"] == 2 and doc["disposition_id"] == 2
        assert "security_control" in doc["metadata"]["profiles"]
        assert ocsf_problems(doc) == []


def test_a_row_without_a_node_name_still_names_its_device() -> None:
    """device needs one identifier: without node_name it is the node inside the exec_id; an agent that
    knew no node (exec_id ``:ktime:pid``, in Tetragon's recorded events) gives a device named unknown."""
    import base64

    row = {"event_id": "e1", "kind": "process_exec", "time": "2026-03-10T12:00:00Z", "pid": 7}
    with_node = {**row, "exec_id": base64.b64encode(b"kind-worker:1007201:7").decode(), "process_binary": "/bin/true"}
    doc = to_ocsf(with_node)
    assert doc["device"]["hostname"] == "kind-worker" and ocsf_problems(doc) == []
    without = {**row, "exec_id": base64.b64encode(b":1007201:7").decode(), "process_binary": "/bin/true"}
    doc = to_ocsf(without)
    assert doc["device"] == {"type_id": 0, "type": "Unknown", "name": "unknown"} and ocsf_problems(doc) == []


def test_throttle_events_are_base_events_without_device_or_profiles(rows: list[dict[str, Any]]) -> None:
    """Base Event has no device and supports neither host nor container: the node is kept under unmapped."""
    throttle = [r for r in rows if r.get("kind") == "process_throttle"]
    assert throttle
    for row in throttle:
        doc = to_ocsf(row)
        assert doc["class_uid"] == 0 and "device" not in doc and "profiles" not in doc["metadata"]
        assert doc["type_name"] == "Base Event: Other" and doc["activity_name"] == "process_throttle"
        assert doc["unmapped"]["node_name"] == row["node_name"]
