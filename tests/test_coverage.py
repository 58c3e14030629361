"""tetrapipe rules coverage: the ATT&CK matrix of the rules in use, in the terminal and as one self-contained
page (checked in headless Chromium), and what a cluster's TracingPolicies let fire."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO

from tetrapipe.ruleset import load_ruleset
from tetrapipe.ruleset.attack import TACTICS, TECHNIQUES
from tetrapipe.ruleset.coverage import against_policies, load_cluster_policies, matrix
from tetrapipe.ruleset.coverage_html import render_html
from tetrapipe.ruleset.policies import load_policies

CLI = [sys.executable, "-m", "tetrapipe", "rules", "coverage"]


def _shipped_techniques() -> set[str]:
    rs = load_ruleset([REPO / "rules"])
    return {t for r in rs.enabled() for t in r.mitre}


def test_coverage_of_the_shipped_rules_against_the_shipped_policies() -> None:
    run = subprocess.run(
        [*CLI, "--rules", str(REPO / "rules"), "--policies", str(REPO / "tracing-policies")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    wanted = _shipped_techniques()
    assert len(wanted) >= 10
    listed = set(re.findall(r"^  (T\d{4}(?:\.\d{3})?): ", run.stdout, re.M))
    assert listed == wanted, wanted ^ listed
    assert "rules that cannot fire: none" in run.stdout
    assert "Execution" in run.stdout and "Unix Shell" in run.stdout


def _kubectl_list(tmp_path: Path, *docs: dict) -> Path:
    """What ``kubectl get tracingpolicies -A -o yaml`` prints: a List of the cluster's objects."""
    path = tmp_path / "tp.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": list(docs), "metadata": {}}))
    return path


def test_a_cluster_without_file_monitoring_and_with_a_hook_nobody_reads(tmp_path: Path) -> None:
    connect = yaml.safe_load((REPO / "tracing-policies" / "connect.yaml").read_text())
    close = {
        "apiVersion": "cilium.io/v1alpha1",
        "kind": "TracingPolicy",
        "metadata": {"name": "tcp-close-watch"},
        "spec": {"kprobes": [{"call": "tcp_close", "syscall": False, "args": [{"index": 0, "type": "sock"}]}]},
    }
    renamed = yaml.safe_load((REPO / "tracing-policies" / "privileges-raise.yaml").read_text())
    renamed["metadata"]["name"] = "our-setuid-watch"  # same hooks, another name: the rules needing them still fire
    listing = _kubectl_list(tmp_path, connect, close, renamed)
    cluster, issues = load_cluster_policies(listing)
    assert issues == [] and sorted(cluster) == ["connect", "our-setuid-watch", "tcp-close-watch"]
    rs = load_ruleset([REPO / "rules"])
    rules = rs.enabled()
    cov = matrix(rules)
    shipped, _ = load_policies(REPO / "tracing-policies")
    against_policies(cov, rules, cluster, shipped)
    cannot = dict(cov.cannot_fire)
    needs_files = {r.id for r in rules if "file-monitoring" in r.policies}
    assert needs_files and needs_files <= set(cannot)
    assert all("requires policy 'file-monitoring'" in cannot[r] for r in needs_files)
    assert not any(r.id in cannot for r in rules if r.policies == ["privileges-raise"])
    assert ("tcp-close-watch", "tcp_close") in cov.unread_hooks
    assert not any(name == "connect" for name, _ in cov.unread_hooks)
    # the CLI says the same
    run = subprocess.run(
        [*CLI, "--rules", str(REPO / "rules"), "--policies", str(listing)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and "tcp-close-watch: tcp_close" in run.stdout, run.stdout + run.stderr
    assert f"rules that cannot fire: {len(cannot)}" in run.stdout


def test_the_attack_table_is_consistent() -> None:
    """Every technique in tetrapipe's table belongs to known tactics; every shipped technique is in it."""
    assert all(tactics and set(tactics) <= set(TACTICS) for _, tactics in TECHNIQUES.values())
    missing = _shipped_techniques() - set(TECHNIQUES)
    assert not missing, f"add {sorted(missing)} (id, name, tactics) to tetrapipe/ruleset/attack.py TECHNIQUES"


def _chromium():
    path = REPO / "scripts" / "check_tree_html.py"
    spec = importlib.util.spec_from_file_location("check_tree_html", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.chromium_dump_dom


def test_html_page_in_headless_chromium(tmp_path: Path) -> None:
    """One self-contained page: every (tactic, technique) cell with its rules, the policy findings; a technique
    tetrapipe's table does not know lands under its parent's tactic, else the tactic its rule's tags name;
    markup in names stays text."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "odd.yaml").write_text(
        "id: odd-technique\ntitle: '<b>x</b>'\ndescription: d\nseverity: low\nevent: process_exec\n"
        "condition: process_binary = '/x'\noutput: '{process_binary}'\nmitre: [T1059.999, T9999]\ntags: [discovery]\n"
        "requires: {policies: [file-monitoring]}\n"
    )
    rs = load_ruleset([REPO / "rules", rules_dir])
    assert rs.errors == []
    rules = rs.enabled()
    cov = matrix(rules)
    cluster, _ = load_cluster_policies(REPO / "tracing-policies" / "connect.yaml")
    against_policies(cov, rules, cluster, load_policies(REPO / "tracing-policies")[0])
    page = tmp_path / "coverage.html"
    page.write_text(render_html(cov, title="<script>alert(1)</script> coverage"))
    dom = _chromium()(page, profile=tmp_path / "profile")
    cells = set(re.findall(r'<div class="tech" data-tactic="([^"]+)" data-technique="([^"]+)">', dom))
    assert cells == set(cov.cells) and ("TA0002", "T1059.999") in cells  # T1059's tactic, by its parent
    assert ("TA0007", "T9999") in cells  # unknown to the table: the rule's tactic tag (discovery)
    headers = re.findall(r'<th data-tactic="([^"]+)">', dom)
    assert headers == [t for t, _ in cov.tactics()]
    assert "<script>alert" not in dom and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    cannot = re.findall(r"<tr><td>([a-z0-9._-]+)</td><td>requires policy", dom)
    assert "odd-technique" in cannot and len(cannot) == len(cov.cannot_fire)
