"""``rules coverage --policies``: files of several YAML documents, and what a misplaced argument is called.

Upstream's ``file-block-kubectl-exec-access.yaml`` is a Pod and a
TracingPolicy separated by ``---``; it was refused as "invalid YAML: but found
another document" and its policy ignored. Every document is read now, the
TracingPolicy ones used, other Kubernetes objects left out. The tests run the
real CLI from an empty working directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

#: upstream's examples/tracingpolicy/file-block-kubectl-exec-access.yaml, shortened: a Pod, then the policy
POD_AND_POLICY = """\
# Demo of restricting file access from kubectl exec processes.
apiVersion: v1
kind: Pod
metadata:
  name: bigsecret
  labels:
    app: "bigsecret"
spec:
  containers:
  - image: ubuntu
    name: mycontainer
---
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "enforce-security"
spec:
  podSelector:
    matchLabels:
      app: "bigsecret"
  kprobes:
  - call: "security_file_open"
    syscall: false
    args:
    - index: 0
      type: "file"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Equal"
        values:
        - "/secretfile"
      matchActions:
      - action: Sigkill
---
"""

#: upstream's examples/tracingpolicy/security-socket-connect.yaml: index 1 listed first
SOCKET_CONNECT = """\
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: "security-socket-connect"
spec:
  kprobes:
  - call: "security_socket_connect"
    syscall: false
    args:
    - index: 1
      type: "sockaddr"
    - index: 2
      type: "int"
"""


def _coverage(cwd: Path, policies: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETRAPIPE_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tetrapipe",
            "rules",
            "coverage",
            "--rules",
            str(REPO / "rules"),
            "--policies",
            policies,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_every_document_of_a_policy_file_is_read_and_other_kinds_left_out(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "file-block-kubectl-exec-access.yaml").write_text(POD_AND_POLICY)
    for given in (policies, policies / "file-block-kubectl-exec-access.yaml"):  # a directory, and one file
        res = _coverage(tmp_path, given)
        assert res.returncode == 0, res.stderr
        assert "invalid YAML" not in res.stderr and "policy problem" not in res.stderr, res.stderr
        assert "enforce-security" in res.stdout, res.stdout
        assert "bigsecret" not in res.stdout + res.stderr  # the Pod is no policy, and no problem either
        # the policy hooks security_file_open and no shipped rule reads it
        assert "enforce-security: security_file_open" in res.stdout, res.stdout


def test_a_broken_document_after_the_first_is_blamed_at_its_own_line(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "two.yaml").write_text(POD_AND_POLICY.replace('name: "enforce-security"', "name: [oops"))
    res = _coverage(tmp_path, policies)
    line = POD_AND_POLICY.splitlines().index("spec:", 10) + 1  # the flow list left open is noticed at the next key
    assert f"two.yaml:{line}: invalid YAML" in res.stderr, res.stderr
    assert line > 12, "a line of the second document, counted from the top of the file"


def test_a_misplaced_argument_is_named_by_the_index_the_file_gives(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "security-socket-connect.yaml").write_text(SOCKET_CONNECT)
    res = _coverage(tmp_path, policies)
    assert res.returncode == 0, res.stderr
    assert (
        "security-socket-connect.yaml:10: security_socket_connect: the argument at position 0 has index 1, "
        "tetrapipe needs index 0 there" in res.stderr
    ), res.stderr
    assert "list argument index 0 at position 0" not in res.stderr
