"""Shared fixtures: paths to the real Tetragon samples and a fresh lake per test."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import peers
import pytest

pytest_plugins = ["conftest_kafka"]


def pytest_sessionstart(session: pytest.Session) -> None:
    """Real peers (rsyslogd, Chromium, buildah) are installed before any test runs, or the run stops saying how."""
    try:
        peers.ensure()
    except RuntimeError as exc:
        pytest.exit(str(exc), returncode=4)

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
_SHARED = REPO.parent / "shared" / "tetragon-samples"


def _real_logs() -> list[Path]:
    """The real Tetragon events: samples/real/ in the repo (copies of shared/tetragon-samples)."""
    local = [SAMPLES / "real" / "events-docs.log", SAMPLES / "real" / "events-docs-more.log"]
    if all(p.exists() for p in local):
        return local
    return [_SHARED / "events-docs.jsonl", _SHARED / "events-docs-more.jsonl"]


REAL_LOGS = _real_logs()


def real_events() -> list[tuple[Path, int, dict]]:
    out = []
    for path in REAL_LOGS:
        for i, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                out.append((path, i, json.loads(line)))
    return out


@pytest.fixture
def lake_dir(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def tetrapipe_cmd() -> list[str]:
    """The installed console script when present, else the module (same code)."""
    exe = shutil.which("tetrapipe")
    return [exe] if exe else [sys.executable, "-m", "tetrapipe"]


@pytest.fixture(autouse=True)
def _no_env_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("TETRAPIPE_"):
            monkeypatch.delenv(key, raising=False)
