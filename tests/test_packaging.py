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
    assert Path(REPO / "tetrapipe" / "hunts").is_dir()
