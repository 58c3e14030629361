"""The bar on the scenario sample: ``tetrapipe tree --pod <crawler pod>`` marks the late shell, with its chain right.

The expected chain is computed here independently, from the raw JSON of the
log (every ``process`` / ``parent`` / ``ancestors`` object it contains), and
compared with what the enriched events in the lake and the drawn tree say.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tetrapipe.cli import cli
from tetrapipe.commands.tree_text import render_text
from tetrapipe.flows.ingest import ingest
from tetrapipe.lake import Lake, connect
from tetrapipe.sources.files import expand_inputs
from tetrapipe.transforms.ancestry import AncestryTransform
from tetrapipe.tree import Selection, build_tree, list_pods

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "samples" / "scenario" / "tenant-jobs.log"


def links_from_raw(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """exec_id -> parent exec_id and exec_id -> binary, from every process object in the log."""
    parent: dict[str, str] = {}
    binary: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        body = next(
            (
                v
                for k, v in event.items()
                if k not in ("node_name", "time", "cluster_name", "node_labels", "aggregation_info")
            ),
            None,
        )
        if not isinstance(body, dict):
            continue
        chain = [body.get("process") or {}, body.get("parent") or {}, *(body.get("ancestors") or [])]
        for i, proc in enumerate(chain):
            eid = proc.get("exec_id")
            if not eid:
                continue
            if proc.get("binary"):
                binary.setdefault(eid, proc["binary"])
            up = proc.get("parent_exec_id") or (chain[i + 1].get("exec_id") if i + 1 < len(chain) else None)
            if up:
                parent.setdefault(eid, up)
    return parent, binary


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("scenario") / "lake")
    ingest(expand_inputs([str(SCENARIO)]), lake, transforms=[AncestryTransform()])
    return lake


def crawler_pod(lake: Lake) -> tuple[str, str]:
    con = connect(lake)
    try:
        pods = [p for p in list_pods(con, namespace="tenant-jobs") if p["pod"].startswith("crawler")]
    finally:
        con.close()
    assert pods, "no crawler pod in namespace tenant-jobs"
    pods.sort(key=lambda p: -p["late_shells"])
    return pods[0]["namespace"], pods[0]["pod"]


def test_scenario_late_shell_is_marked_with_the_right_chain(lake: Lake) -> None:
    ns, pod = crawler_pod(lake)
    view = build_tree(lake, Selection(pod=pod, namespace=ns))
    shells = [n for n in view.late_shells if n.name == "bash"]
    assert shells, f"no late bash in {ns}/{pod}: {[n.binary for n in view.late_shells]}"
    bash = max(shells, key=lambda n: len(n.children))
    assert bash.since_container_start > dt.timedelta(minutes=5)
    assert {"id", "cat", "curl", "nc"} <= {c.name for c in bash.children}
    # the chain, independently from the raw log
    parent_of, binary_of = links_from_raw(SCENARIO)
    truth = []
    cur = parent_of.get(bash.exec_id)
    while cur is not None and cur not in truth:
        if parent_of.get(cur) == cur:
            break  # the self-parented <kernel> root: Tetragon's own ancestors stop at pid 1 too
        truth.append(cur)
        cur = parent_of.get(cur)
    assert truth, "the log says nothing about the shell's parent"
    con = connect(lake)
    try:
        rows = con.sql(
            "SELECT parent_exec_id, parent_binary, ancestor_exec_ids, ancestor_binaries FROM events "
            "WHERE exec_id = $x ORDER BY time",
            params={"x": bash.exec_id},
        ).fetchall()
    finally:
        con.close()
    parent, parent_binary, ancestors, ancestor_binaries = rows[-1]  # the latest event knows the most
    assert parent == truth[0] and bash.parent_exec_id == truth[0]
    assert parent_binary == binary_of.get(truth[0])
    known = [a for a in ancestors if a is not None]
    assert known == truth[1 : 1 + len(known)]
    assert len(known) == len(truth) - 1, (known, truth)  # everything the log knows is in the chain
    assert [b for b, a in zip(ancestor_binaries, ancestors, strict=True) if a is not None] == [
        binary_of.get(a) for a in known
    ]
    # and the drawn tree: the shell's line is marked, under its parent's lineage
    text = render_text(view, width=220)
    line = next(ln for ln in text.splitlines() if bash.binary in ln and "LATE SHELL" in ln)
    assert "LATE SHELL" in line
    lineage = " ← ".join([binary_of.get(truth[0]) or "?", *[(binary_of.get(a) or "?") for a in truth[1:]]])
    assert lineage.split(" ← ")[0] in text


def test_scenario_cli(lake: Lake, tmp_path: Path) -> None:
    ns, pod = crawler_pod(lake)
    res = CliRunner().invoke(cli, ["tree", "--lake", str(lake.root), "--pod", pod, "-n", ns, "--width", "220"])
    assert res.exit_code == 0, res.output
    assert "LATE SHELL" in res.output and "/etc/passwd" in res.output
    out = tmp_path / "scenario.html"
    res = CliRunner().invoke(cli, ["tree", "--lake", str(lake.root), "--pod", pod, "-n", ns, "--html", str(out)])
    assert res.exit_code == 0 and 'class="proc late' in out.read_text()
