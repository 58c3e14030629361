"""The TracingPolicies in tracing-policies/: valid TracingPolicy documents whose hooks give
the arguments where tetrapipe's normalizer reads them, watching what the rules look for.

The strongest check is the last: for every hook of the file policies, an event shaped
exactly as the policy makes Tetragon print it (argument kinds in list order) goes through
the normalizer and the rules, and the passwd rule fires on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO

from tetrapipe.config import located
from tetrapipe.ruleset import load_ruleset
from tetrapipe.ruleset.policies import check_policy, check_rules_against_policies, load_policies
from tetrapipe.transforms.detect import Detector
from tetrapipe.transforms.normalize import normalize_lines

POLICIES = REPO / "tracing-policies"
RULES = REPO / "rules"


@pytest.fixture(scope="module")
def policies():
    found, issues = load_policies(POLICIES)
    assert not issues, "\n".join(map(str, issues))
    return found


def test_every_policy_is_a_valid_tracing_policy(policies) -> None:
    assert {"file-monitoring", "file-monitoring-enforce", "connect", "privileges-raise", "namespace-access"} <= set(
        policies
    )
    for p in policies.values():
        assert p.doc["apiVersion"] == "cilium.io/v1alpha1"
        assert p.kind in ("TracingPolicy", "TracingPolicyNamespaced")
        for hook in p.hooks:
            assert [a["index"] for a in hook.args] == list(range(len(hook.args))), f"{p.name} {hook.call}"


def test_rules_and_policies_agree(policies) -> None:
    rs = load_ruleset([RULES])
    assert not check_rules_against_policies(rs, policies)
    for rule in rs.rules:
        for name in rule.policies:
            assert name in policies, f"{rule.id} requires {name}"


def test_the_enforcing_variant_blocks_every_hook_it_has(policies) -> None:
    observe, enforce = policies["file-monitoring"], policies["file-monitoring-enforce"]
    assert {h.call for h in enforce.hooks} <= {h.call for h in observe.hooks}
    for hook in enforce.hooks:
        for sel in hook.selectors:
            assert [a["action"] for a in sel["matchActions"]] == ["Sigkill"], hook.call
    for hook in observe.hooks:
        assert all("matchActions" not in sel for sel in hook.selectors), "observe-only means no actions"
    assert enforce.values("security_file_permission", 0, "Equal") == {"/etc/passwd", "/etc/shadow"}
    assert {"2", "8"} <= enforce.values("security_file_permission", 1, "Mask")


@pytest.mark.parametrize(
    "mutation,expected",
    [
        (lambda kp: kp["args"].reverse(), "argument 0 must be file for tetrapipe to read it, not int"),
        (
            lambda kp: kp["selectors"][0]["matchArgs"][0].update(index=3),
            "matchArgs index 3 is not one of the hook's args",
        ),
        (
            lambda kp: kp["selectors"].extend(
                [{"matchArgs": [{"index": 0, "operator": "Prefix", "values": ["/x"]}]}] * 5
            ),
            "at most 5 selectors per hook",
        ),
        (
            lambda kp: kp["selectors"][0]["matchArgs"][0].update(operator="Equals"),
            "unknown matchArgs operator 'Equals'",
        ),
        (lambda kp: kp["args"][0].update(type="files"), "unknown arg type 'files'"),
        (lambda kp: kp["selectors"][0]["matchArgs"][0].update(operator="Mask"), "Mask needs an integer argument"),
    ],
)
def test_the_checker_catches_broken_policies(tmp_path: Path, mutation, expected: str) -> None:
    doc = located.load_yaml(POLICIES / "file-monitoring.yaml")
    mutation(doc["spec"]["kprobes"][0])
    path = tmp_path / "p.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    _, issues = check_policy(path, located.load_yaml(path))
    assert any(expected in i.reason for i in issues), [str(i) for i in issues]


_ARG_JSON = {
    "file": lambda v: {"file_arg": {"path": v, "permission": "-rw-r--r--"}},
    "path": lambda v: {"path_arg": {"path": v}},
    "dentry": lambda v: {"path_arg": {"path": v}},
    "string": lambda v: {"string_arg": v},
    "int": lambda v: {"int_arg": v},
    "uint16": lambda v: {"uint_arg": v},
}


def _event(call: str, args: list[dict], action: str, policy: str) -> str:
    """A process_kprobe event as Tetragon would print it for this hook of the policy."""
    return json.dumps(
        {
            "process_kprobe": {
                "process": {
                    "exec_id": "azE6MTox",
                    "pid": 4242,
                    "uid": 0,
                    "binary": "/usr/bin/tool",
                    "arguments": "x",
                    "start_time": "2026-03-10T10:00:00Z",
                    "pod": {
                        "namespace": "default",
                        "name": "web",
                        "container": {
                            "id": "containerd://abc",
                            "name": "web",
                            "image": {"name": "nginx:1.27"},
                            "start_time": "2026-03-10T09:00:00Z",
                        },
                    },
                },
                "parent": {"binary": "/bin/sh"},
                "function_name": f"__x64_{call}" if call.startswith("sys_") else call,
                "args": args,
                "action": action,
                "policy_name": policy,
            },
            "node_name": "k1",
            "time": "2026-03-10T10:00:01Z",
        }
    )


@pytest.mark.parametrize(
    "policy_name,action,verdict",
    [
        ("file-monitoring", "KPROBE_ACTION_POST", "observed only"),
        ("file-monitoring-enforce", "KPROBE_ACTION_SIGKILL", "BLOCKED: Tetragon killed the process"),
    ],
)
def test_each_file_hook_as_tetragon_prints_it_fires_the_passwd_rule(
    policies, policy_name: str, action: str, verdict: str
) -> None:
    rule = load_ruleset([RULES]).get("passwd-shadow-tampering")
    policy = policies[policy_name]
    lines, calls = [], []
    for hook in policy.hooks:
        for sel in hook.selectors:
            matched = {m["index"]: m for m in sel.get("matchArgs", [])}
            values = []
            for a in hook.args:
                m = matched.get(a["index"])
                if a["type"] in ("file", "path", "dentry", "string"):
                    value = "/etc/passwd" if m and "/etc/passwd" in m["values"] else "/etc"
                else:
                    value = int(m["values"][0]) if m and m["operator"] == "Mask" else 0
                values.append(_ARG_JSON[a["type"]](value))
            if any(("/etc/passwd" in m.get("values", [])) for m in matched.values()):
                lines.append(_event(hook.call, values, action, policy_name))
                calls.append(hook.call)
    assert {
        "security_file_permission",
        "sys_openat",
        "security_path_truncate",
        "security_path_unlink",
        "security_path_rename",
    } <= set(calls)
    events = normalize_lines(lines).events
    alerts = Detector([rule], max_event_ids=None).evaluate(events).to_pylist()
    fired = {e for a in alerts for e in a["event_ids"]}
    missed = [c for c, eid in zip(calls, events.column("event_id").to_pylist(), strict=True) if eid not in fired]
    assert not missed, f"hooks of {policy_name} whose events the rule does not read: {missed}"
    assert all(verdict in a["message"] for a in alerts)
