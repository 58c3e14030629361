"""The composed scenario: reproducible, all real-shaped, and the ground truth of samples/README.md holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SAMPLES

from tetrapipe.cli import cli
from tetrapipe.flows.ingest import ingest
from tetrapipe.lake import Lake, connect, saved_hunts
from tetrapipe.sources.files import expand_inputs
from tetrapipe.transforms.chain import build_transforms
from tetrapipe.transforms.tls_ciphers import cipher_name

SCENARIO = SAMPLES / "scenario" / "tenant-jobs.log"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake(tmp_path_factory.mktemp("scenario") / "lake")
    transforms, _ = build_transforms("none")
    stats = ingest(expand_inputs([str(SAMPLES)]), lake, transforms=transforms)
    assert stats.rejects == 0
    return lake


def test_compose_is_deterministic(tmp_path: Path) -> None:
    copy = tmp_path / "scenario"
    copy.mkdir()
    for name in ("compose.py", "handshakes.json"):
        (copy / name).write_bytes((SAMPLES / "scenario" / name).read_bytes())
    subprocess.run([sys.executable, str(copy / "compose.py")], check=True, capture_output=True)
    assert (copy / "tenant-jobs.log").read_bytes() == SCENARIO.read_bytes()


def test_late_shells_are_exactly_the_ground_truth(lake: Lake) -> None:
    con = connect(lake)
    sql = saved_hunts()["late-shells"].sql
    rows = con.execute(
        f"SELECT source, source_offset FROM events WHERE event_id IN "
        f"(SELECT e.event_id FROM events e JOIN ({sql}) h USING (exec_id) WHERE e.kind = 'process_exec')"
    ).fetchall()
    got = sorted((Path(s).name, n) for s, n in rows)
    assert got == [
        ("events-docs.log", 10),
        ("events-docs.log", 16),
        ("events-docs.log", 19),
        ("tenant-jobs.log", 95),
        ("tenant-jobs.log", 118),
    ]


def test_passwd_write_is_exactly_line_107(lake: Lake) -> None:
    con = connect(lake)
    rows = con.execute(
        "SELECT source, source_offset, process_binary FROM events WHERE file_access = 'write' "
        "AND regexp_matches(file_path, '^/?etc/(passwd|shadow)$') ORDER BY 1, 2"
    ).fetchall()
    scenario = [(n, b) for s, n, b in rows if s.endswith("tenant-jobs.log")]
    assert scenario == [(107, "/bin/bash")]


def test_tls_reproduces_the_handshakes_exactly(lake: Lake) -> None:
    truth = json.loads((SAMPLES / "scenario" / "handshakes.json").read_text())["connections"]
    expected = {
        (h["sni"], {"TLSv1.3": "TLS 1.3", "TLSv1.2": "TLS 1.2"}[h["negotiated_version"]], cipher_name(h["cipher_code"]))
        for h in truth
    }
    result = CliRunner().invoke(cli, ["tls", "--lake", str(lake.root), "--format", "json"], catch_exceptions=False)
    rows = json.loads(result.output)
    assert {(r["tls_sni"], r["tls_version"], r["tls_cipher"]) for r in rows} == expected
    assert all(r["connections"] == 1 and r["workload"] == "crawler" for r in rows)
    assert [r["tls_sni"] for r in rows if r["weak"]] == ["legacy-feed.example.org"]


def test_tls_table_in_a_pipe_keeps_every_cipher_and_reason_whole(lake: Lake) -> None:
    """Piped (`tetrapipe tls | grep TLS_RSA_...`), a cipher suite was folded at 80 columns into two lines."""
    rows = json.loads(
        CliRunner().invoke(cli, ["tls", "--lake", str(lake.root), "--format", "json"], catch_exceptions=False).output
    )
    result = CliRunner().invoke(cli, ["tls", "--lake", str(lake.root)], env={"COLUMNS": "80"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for r in rows:
        # the destination, its version and its cipher on one line, as grep finds them
        dest = f"{r['daddr']}:{r['dport']}"
        assert any(dest in ln and r["tls_version"] in ln and r["tls_cipher"] in ln for ln in lines), result.output
        if r["weak"]:
            assert any(", ".join(r["weak"]) in ln for ln in lines), result.output


def test_ancestry_of_the_reverse_shell(lake: Lake) -> None:
    con = connect(lake)
    row = con.execute(
        "SELECT parent_binary, ancestor_binaries FROM events WHERE kind = 'process_exec' "
        "AND source LIKE '%tenant-jobs.log' AND source_offset = 118"
    ).fetchone()
    assert row[0] == "/usr/bin/nc"
    assert row[1][:2] == ["/bin/bash", "/usr/local/sbin/runc"]
