"""Packaging contracts that no Docker engine is needed to check."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from conftest import REPO


def _stages(dockerfile: str) -> list[list[str]]:
    stages: list[list[str]] = []
    for line in dockerfile.splitlines():
        if line.strip().upper().startswith("FROM "):
            stages.append([])
        if stages and line.strip() and not line.strip().startswith("#"):
            stages[-1].append(line.strip())
    return stages


def test_dockerfile_is_multistage_nonroot_without_compilers() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = _stages(text)
    assert len(stages) >= 2
    final = "\n".join(stages[-1])
    assert not re.search(r"build-essential|gcc|g\+\+|clang", final), "no compilers in the final image"
    user = [line for line in stages[-1] if line.upper().startswith("USER ")]
    assert user and user[-1].split()[1] not in ("root", "0")
    assert 'ENTRYPOINT ["tetrapipe"]' in final


def test_every_copy_source_exists() -> None:
    for line in (REPO / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if parts and parts[0].upper() == "COPY" and not any(p.startswith("--from") for p in parts):
            for src in parts[1:-1]:
                assert (REPO / src).exists(), f"Dockerfile copies {src}, which is not in the repository"


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    install_and_run, tests = blocks[0].strip(), blocks[1].strip()
    assert install_and_run.startswith("pip install . && tetrapipe ingest samples/")
    assert tests == "pip install '.[test]' && python -m pytest"
    assert tests in (REPO / ".ci" / "run").read_text()
    assert readme.index(blocks[0]) < readme.index("##"), "the two commands come before any section"


def test_console_script_and_extras() -> None:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["tetrapipe"] == "tetrapipe.cli:main"
    assert {"test", "dev"} <= set(meta["project"]["optional-dependencies"])
    assert meta["project"]["requires-python"] == ">=3.11"
    deps = " ".join(meta["project"]["dependencies"])
    for core in ("grpcio", "protobuf", "kafka-python", "polars", "duckdb", "click", "orjson", "crc32c"):
        assert core in deps
    assert Path(REPO / "tetrapipe" / "lake" / "hunts").is_dir()


def test_every_package_and_the_rules_are_in_the_wheel(tmp_path: Path) -> None:
    """The explicit package list in pyproject.toml misses nothing, and the wheel carries rules and policies."""
    import subprocess
    import sys
    import zipfile

    from setuptools import find_packages

    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(meta["tool"]["setuptools"]["packages"])
    missing = set(find_packages(str(REPO), include=["tetrapipe*"])) - listed
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    names = zipfile.ZipFile(next(tmp_path.glob("tetrapipe-*.whl"))).namelist()
    rules = {Path(n).name for n in names if n.startswith("tetrapipe/bundled_rules/")}
    assert {p.name for p in (REPO / "rules").glob("*.yaml")} <= rules
    assert "lists.yaml" in rules and "macros.yaml" in rules
    policies = {Path(n).name for n in names if n.startswith("tetrapipe/bundled_policies/")}
    assert {p.name for p in (REPO / "tracing-policies").glob("*.yaml")} <= policies
    assert "tetrapipe/lake/hunts/late-shells.sql" in names
    assert "tetrapipe/py.typed" in names, "PEP 561: type checkers read the package's hints"
    # the sample logs the shipped rules' tests read
    samples = {
        n.removeprefix("tetrapipe/bundled_samples/") for n in names if n.startswith("tetrapipe/bundled_samples/")
    }
    assert {"real/events-docs.log", "real/events-docs-more.log", "scenario/tenant-jobs.log"} <= samples


def test_without_rules_detection_is_never_off_silently(tmp_path: Path, monkeypatch) -> None:
    """No ./rules, no TETRAPIPE_RULES, nothing shipped: ingest says so, run and process refuse to start."""
    from click.testing import CliRunner

    from tetrapipe.cli import cli
    from tetrapipe.ruleset import locate

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(locate, "bundled_dir", lambda package, source_name: None)
    runner = CliRunner()
    res = runner.invoke(cli, ["ingest", str(REPO / "samples" / "real"), "--lake", "lake"])
    assert res.exit_code == 0, res.output
    assert locate.NO_RULES in res.stderr
    for args in (
        ["run", "--exit-at-eof", str(REPO / "samples" / "real")],
        ["process", "--kafka", "127.0.0.1:1", "--exit-at-eof"],
    ):
        res = runner.invoke(cli, [*args, "--lake", "lake2"])
        assert res.exit_code == 2, (args, res.output)
        assert locate.NO_RULES in res.stderr and "--rules none" in res.stderr
    assert not (tmp_path / "lake2").exists(), "nothing was started"
    res = runner.invoke(
        cli, ["run", "--exit-at-eof", "--rules", "none", "--lake", "lake3", str(REPO / "samples" / "real")]
    )
    assert res.exit_code == 0, res.output
    assert "detection: off" not in res.stderr


def test_domain_code_raises_plain_exceptions_and_the_face_turns_them_into_exit_codes(tmp_path: Path) -> None:
    """A rules problem is exit 1, a missing rules directory exit 2 (where click may live: test_architecture)."""
    from click.testing import CliRunner

    from tetrapipe.cli import cli

    bad = tmp_path / "rules"
    bad.mkdir()
    (bad / "broken.yaml").write_text("id: broken\nseverity: high\nevent: process_exec\ncondition: no_such_column = 1\n")
    runner = CliRunner()
    res = runner.invoke(
        cli, ["ingest", str(REPO / "samples" / "real"), "--lake", str(tmp_path / "l"), "--rules", str(bad)]
    )
    assert res.exit_code == 1 and "in the rules" in res.output and "broken.yaml" in res.output, res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit)
    res = runner.invoke(
        cli,
        ["ingest", str(REPO / "samples" / "real"), "--lake", str(tmp_path / "l"), "--rules", str(tmp_path / "nowhere")],
    )
    assert res.exit_code == 2 and "does not exist" in res.output, res.output
