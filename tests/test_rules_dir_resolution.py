"""Which rules a detecting command runs: a directory holding no rules never switches detection off silently.

The README's Sigma steps have a user ``mkdir -p rules/sigma``; from then on
every command run there found a ``./rules`` and ran it, with no rule in it:
``ingest`` said "no alerts", ``run`` "0 alerts", nothing on stderr, exit 0.
Now an implicit ``./rules`` with no rule file is passed over for the shipped
rules (with a note), and a named directory that loads no rule is "no rules":
``ingest`` warns, ``run`` and ``process`` refuse to start. Every test runs the
real CLI (a subprocess) from an empty working directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

#: the upstream sample on which the shipped rules raise 5 alerts
EVENTS = REPO / "samples" / "real" / "events-docs-more.log"


def _cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("tetrapipe")
    cmd = [exe] if exe else [sys.executable, "-m", "tetrapipe"]
    full = {k: v for k, v in os.environ.items() if not k.startswith("TETRAPIPE_")} | (env or {})
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, env=full, timeout=120)


def test_a_local_rules_skeleton_falls_back_to_the_shipped_rules_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "rules" / "sigma").mkdir(parents=True)
    res = _cli(tmp_path, "ingest", str(EVENTS), "--lake", "L")
    assert res.returncode == 0, res.stderr
    assert "./rules holds no rule files" in res.stderr and "using the rules shipped with tetrapipe" in res.stderr
    assert "5 alerts from this ingest" in res.stdout, res.stdout
    res = _cli(tmp_path, "run", str(EVENTS), "--lake", "L2", "--exit-at-eof")
    assert res.returncode == 0, res.stderr
    assert "./rules holds no rule files" in res.stderr
    assert ", 5 alerts" in res.stdout + res.stderr, res.stdout + res.stderr
    res = _cli(tmp_path, "rules", "list")
    assert res.returncode == 0 and "./rules holds no rule files" in res.stderr, res.stderr


@pytest.mark.parametrize("how", ["option", "env"])
def test_a_named_directory_without_rules_is_no_rules(tmp_path: Path, how: str) -> None:
    empty = tmp_path / "mine"
    (empty / "sigma").mkdir(parents=True)
    named = (["--rules", "mine"], None) if how == "option" else ([], {"TETRAPIPE_RULES": "mine"})
    res = _cli(tmp_path, "ingest", str(EVENTS), "--lake", "L", *named[0], env=named[1])
    assert res.returncode == 0, res.stderr
    assert "detection: off — no rules found in mine; --rules DIR or TETRAPIPE_RULES" in res.stderr
    assert "alerts from this ingest" not in res.stdout
    for args in (
        ["run", "--exit-at-eof", str(EVENTS)],
        ["process", "--kafka", "127.0.0.1:1", "--exit-at-eof"],
    ):
        res = _cli(tmp_path, *args, "--lake", "L2", *named[0], env=named[1])
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert "detection: off — no rules found in mine" in res.stderr and "--rules none" in res.stderr
    assert not (tmp_path / "L2").exists(), "nothing was started"


def test_a_directory_with_only_lists_and_macros_is_no_rules(tmp_path: Path) -> None:
    """Files that load (a lib/) but no rule among them: still detection off, said, not an idle detector."""
    shutil.copytree(REPO / "rules" / "lib", tmp_path / "rules" / "lib")
    res = _cli(tmp_path, "run", "--exit-at-eof", str(EVENTS), "--lake", "L")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "detection: off — no rules found in rules" in res.stderr


def test_a_copied_rule_without_its_library_says_where_lists_and_macros_come_from(tmp_path: Path) -> None:
    mine = tmp_path / "my-rules"
    mine.mkdir()
    shutil.copy(REPO / "rules" / "late-shell-in-container.yaml", mine)
    for target in ("my-rules/", "my-rules/late-shell-in-container.yaml"):
        res = _cli(tmp_path, "rules", "test", target)
        text = res.stdout + res.stderr
        assert res.returncode != 0, text
        assert "Traceback" not in text, text  # a single file's root was / (the system's /lib): the load walked /
        assert "unknown list or macro @in_container: lists and macros are read from the library files" in text
        assert "my-rules" in text and "lib/macros.yaml: copy that lib/ into" in text, text
    shutil.copytree(REPO / "rules" / "lib", mine / "lib")
    res = _cli(tmp_path, "rules", "test", "my-rules/")
    assert res.returncode == 0, res.stdout + res.stderr


def test_relearn_says_when_it_passes_over_an_empty_local_rules(tmp_path: Path) -> None:
    """``rules relearn`` chose the shipped rules over an empty ``./rules`` without the note every other command
    prints. Nothing is written anywhere: installed, the shipped rules are refused as the override's home; in a
    checkout they are the repository's, and the rule asked about is not first-seen."""
    (tmp_path / "rules" / "sigma").mkdir(parents=True)
    res = _cli(tmp_path, "rules", "relearn", "first-outbound-connection")
    refused = ("is not a first-seen rule", "holds the rules shipped in the installed package")
    assert res.returncode == 2 and any(r in res.stderr for r in refused), res.stderr
    assert "./rules holds no rule files" in res.stderr, res.stderr
