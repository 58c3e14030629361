"""tracing-policies/tls-handshake.yaml emits what the TLS transform reads."""

from __future__ import annotations

import json

import yaml
from conftest import REPO, SAMPLES

ALLOWED_ARG_KEYS = {"index", "type", "sizeArgIndex", "returnCopy", "maxData", "label", "resolve"}


def test_policy_structure_matches_the_transform() -> None:
    policy = yaml.safe_load((REPO / "tracing-policies" / "tls-handshake.yaml").read_text())
    assert policy["apiVersion"] == "cilium.io/v1alpha1" and policy["kind"] == "TracingPolicy"
    assert policy["metadata"]["name"] == "tls-handshake"
    calls = {k["call"]: k for k in policy["spec"]["kprobes"]}
    assert set(calls) == {"sys_write", "sys_read"}
    for call in calls.values():
        assert call["syscall"] is True
        args = {a["index"]: a for a in call["args"]}
        assert set().union(*(a.keys() for a in call["args"])) <= ALLOWED_ARG_KEYS
        assert args[0]["type"] == "int"  # the fd, read by the transform as the first int_arg
        assert args[1]["type"] == "char_buf"  # arrives as bytes_arg
    assert calls["sys_read"]["args"][1].get("returnCopy") is True and calls["sys_read"].get("return") is True
    assert calls["sys_write"]["args"][1]["sizeArgIndex"] == 3


def test_scenario_events_have_the_policy_shape() -> None:
    for line in (SAMPLES / "scenario" / "tenant-jobs.log").read_text().splitlines():
        ev = json.loads(line)
        k = ev.get("process_kprobe")
        if k and k.get("policy_name") == "tls-handshake":
            assert k["function_name"] in ("__x64_sys_write", "__x64_sys_read")
            assert list(k["args"][0]) == ["int_arg"] and list(k["args"][1]) == ["bytes_arg"]
            assert list(k["args"][2]) == ["size_arg"] and isinstance(k["args"][2]["size_arg"], str)
