"""A second command on the same lake remembers what the first one saw: alerts are not raised twice."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import REPO, SAMPLES

from tetrapipe.lake import Lake, connect

SCENARIO = SAMPLES / "scenario" / "tenant-jobs.log"


def _alerts(lake: Path) -> list[tuple[str, str]]:
    con = connect(Lake(lake))
    try:
        return con.execute("SELECT rule_id, alert_id FROM alerts ORDER BY 1, 2").fetchall()
    finally:
        con.close()


def test_run_prints_alerts_as_they_fire_and_a_restart_does_not_repeat_them(
    tmp_path: Path, tetrapipe_cmd: list[str]
) -> None:
    lake = tmp_path / "lake"
    live = tmp_path / "tetragon.log"
    lines = SCENARIO.read_bytes().splitlines(keepends=True)
    half = 50  # the crawler's and coreapi's first connections are in, the kubectl exec (line 95) is not
    live.write_bytes(b"".join(lines[:half]))
    cmd = [
        *tetrapipe_cmd,
        "run",
        str(live),
        "--lake",
        str(lake),
        "--rules",
        str(REPO / "rules"),
        "--exit-at-eof",
        "--poll-seconds",
        "0.1",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    printed = [ln for ln in first.stdout.splitlines() if ln.strip()]
    firsts = [ln for ln in printed if "first-outbound-connection" in ln]
    assert any("/usr/local/bin/node in workload tenant-jobs/crawler" in ln for ln in firsts), printed
    assert not any("late-shell" in ln for ln in printed)

    # the rest of the story arrives; the restarted run knows the processes, the terms and windows already seen
    with live.open("ab") as f:
        f.write(b"".join(lines[half:]))
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    again = [ln for ln in second.stdout.splitlines() if ln.strip()]
    late = [ln for ln in again if " HIGH " in ln and "late-shell-in-container" in ln and "8m42s" in ln]
    assert late, again
    # the shim, containerd and init started before the restart: the chain comes from the rebuilt process table
    assert (
        "/usr/local/sbin/runc < /usr/local/bin/containerd-shim-runc-v2 < /usr/local/bin/containerd < /sbin/init"
        in late[0]
    )
    assert any("reverse-shell" in ln for ln in again)
    # node in crawler (line 64, 73, 86) and python in coreapi (line 71) connected before: not "first" again
    assert not any(
        "first-outbound-connection" in ln
        and ("bin/node in workload tenant-jobs/crawler" in ln or "in workload tenant-jobs/coreapi" in ln)
        for ln in again
    ), again
    assert any("first outbound connection of /usr/bin/nc" in ln for ln in again)
    after = _alerts(lake)

    # the same alerts as one run over the whole file
    whole = tmp_path / "whole"
    subprocess.run(
        [*tetrapipe_cmd, "ingest", str(SCENARIO), "--lake", str(whole), "--rules", str(REPO / "rules"), "-q"],
        check=True,
        timeout=120,
    )
    assert sorted(set(after)) == sorted(set(_alerts(whole)))
