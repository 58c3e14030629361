"""The wheel, installed in a fresh virtualenv and run from an empty directory, detects as the checkout does.

Everything else in the suite imports tetrapipe from the checkout (or an install
made from it) and runs beside ``./rules``: exactly where a packaging mistake
hides. Here the wheel is built from the repository, installed with its
dependencies into a new virtualenv for this Python and for the oldest and newest
supported ones (3.11, 3.13) where the machine has them (3.12 lies between and
costs CI half a minute to install into),
and driven as a user would from a directory holding nothing: the shipped rules
must be found inside the installed package, not in the working directory.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SAMPLES

pytestmark = pytest.mark.slow


def _minor(python: str) -> str | None:
    """``3.12`` for a working interpreter, None for one that does not run (a pyenv shim with no version behind)."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _interpreters() -> dict[str, str]:
    """This interpreter, and the oldest and newest supported CPython the machine has (pyenv's, or on PATH)."""
    found = {f"{sys.version_info.major}.{sys.version_info.minor}": sys.executable}
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for minor in ("3.11", "3.13"):
        candidates = [str(p) for p in sorted(pyenv.glob(f"{minor}.*/bin/python{minor}"), reverse=True)]
        candidates += [p for p in [shutil.which(f"python{minor}")] if p]
        for cand in candidates:
            if minor not in found and _minor(cand) == minor:
                found[minor] = cand
    return dict(sorted(found.items()))


INTERPRETERS = _interpreters()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    src = out / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "tetrapipe-lake", "__pycache__", ".pytest_cache", ".hypothesis"
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("tetrapipe-*-py3-none-any.whl"))


@pytest.fixture(scope="module", params=list(INTERPRETERS), ids=lambda minor: f"py{minor}")
def installed(request: pytest.FixtureRequest, wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel and its dependencies; returns its ``bin/``."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([INTERPRETERS[request.param], "-m", "venv", str(venv)], check=True)
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return venv / "bin"


def _run(bindir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETRAPIPE_") and k != "PYTHONPATH"}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [str(bindir / "tetrapipe"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_ingest_from_an_empty_directory_raises_the_scenarios_alerts(installed: Path, tmp_path: Path) -> None:
    work = tmp_path / "empty"
    work.mkdir()
    proc = _run(installed, work, "ingest", str(SAMPLES))
    assert proc.returncode == 0, proc.stderr
    assert "detection: off" not in proc.stderr
    # the lake is where the user stands, and it holds the scenario's alerts
    q = _run(
        installed,
        work,
        "query",
        "--format",
        "csv",
        "SELECT DISTINCT rule_id FROM alerts WHERE starts_with(pod, 'crawler-') ORDER BY 1",
    )
    assert q.returncode == 0, q.stderr
    rules = set(q.stdout.split()[1:])
    assert {"late-shell-in-container", "passwd-shadow-tampering", "reverse-shell"} <= rules, q.stdout
    assert "late-shell-in-container" in proc.stdout and "passwd-shadow-tampering" in proc.stdout


def test_quick_start_outside_a_checkout_is_pointed_at_the_shipped_samples(installed: Path, tmp_path: Path) -> None:
    """README's `tetrapipe ingest samples/` where there is no samples/: the error names the wheel's copy, which works."""
    proc = _run(installed, tmp_path, "ingest", "samples/")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    message = " ".join(proc.stderr.split())
    hint = "the sample logs shipped with tetrapipe are in "
    assert hint in message, proc.stderr
    shipped = message.split(hint, 1)[1].split(":", 1)[0]
    assert "site-packages" in shipped and str(REPO) not in shipped, shipped
    ran = _run(installed, tmp_path, "ingest", shipped)
    assert ran.returncode == 0, ran.stderr
    assert "late-shell-in-container" in ran.stdout and "reverse-shell" in ran.stdout, ran.stdout


def test_rules_test_and_list_use_the_shipped_rules(installed: Path, tmp_path: Path) -> None:
    proc = _run(installed, tmp_path, "rules", "test")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = re.search(r"(\d+) passed, (\d+) failed", proc.stdout)
    assert summary and int(summary[1]) >= 17 and summary[2] == "0", proc.stdout[-2000:]
    assert "error" not in proc.stdout.splitlines()[-1]
    listed = _run(installed, tmp_path, "rules", "list")
    assert listed.returncode == 0, listed.stderr
    assert "late-shell-in-container" in listed.stdout and "passwd-shadow-tampering" in listed.stdout
    # the rule files come from inside the installed package, not from a checkout
    where = subprocess.run(
        [
            str(installed / "python"),
            "-c",
            "from tetrapipe.ruleset.locate import default_rules_dir; print(default_rules_dir())",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert "site-packages" in where and str(REPO) not in where, where


def test_no_rules_is_said_and_long_running_commands_refuse(installed: Path, tmp_path: Path) -> None:
    """With the shipped rules gone, nothing detects silently: ingest says so, run refuses to start."""
    empty_rules = tmp_path / "no-rules"
    empty_rules.mkdir()
    hidden = next(Path(p) for p in installed.parent.glob("lib/python3*/site-packages/tetrapipe/bundled_rules"))
    moved = hidden.with_name("bundled_rules.hidden")
    hidden.rename(moved)
    try:
        proc = _run(installed, tmp_path, "ingest", str(SAMPLES / "real"))
        assert proc.returncode == 0, proc.stderr
        assert "detection: off — no rules found; --rules DIR or TETRAPIPE_RULES" in proc.stderr
        run = _run(installed, tmp_path, "run", "--exit-at-eof", str(SAMPLES / "real"))
        assert run.returncode == 2 and "detection: off — no rules found" in run.stderr, run.stderr
        assert "--rules none" in run.stderr
        ok = _run(
            installed,
            tmp_path,
            "run",
            "--exit-at-eof",
            "--rules",
            "none",
            "--lake",
            str(tmp_path / "l2"),
            str(SAMPLES / "real"),
        )
        assert ok.returncode == 0, ok.stderr
        assert "detection: off" not in ok.stderr
    finally:
        moved.rename(hidden)


def test_sigma_import_coverage_and_lake_settings_work_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    """pySigma, the ATT&CK table and the lake's Delta settings come with the wheel, not from the checkout."""
    out = tmp_path / "converted"
    sigma = [
        str(REPO / "tests" / "sigma" / f)
        for f in ("connect-odd-port.yml", "netcat-exec-shell.yml", "passwd-modified.yml")
    ]
    conv = _run(installed, tmp_path, "rules", "import-sigma", *sigma, "--out", str(out))
    assert conv.returncode == 0 and "3 converted" in conv.stdout, conv.stdout + conv.stderr
    tested = _run(installed, tmp_path, "rules", "test", "--rules", str(out))
    assert tested.returncode == 0 and re.search(r"[1-9]\d* passed, 0 failed", tested.stdout), tested.stdout[-2000:]
    cov = _run(installed, tmp_path, "rules", "coverage", "--policies", str(REPO / "tracing-policies"))
    assert cov.returncode == 0, cov.stderr
    assert "T1609" in cov.stdout and "rules that cannot fire: none" in cov.stdout
    lake = tmp_path / "lake"
    assert _run(installed, tmp_path, "ingest", "--lake", str(lake), str(SAMPLES / "real")).returncode == 0
    stats = _run(installed, tmp_path, "lake", "stats", "--lake", str(lake))
    assert stats.returncode == 0 and "log kept 1 day, removed files tracked 1 day" in stats.stdout, stats.stdout
