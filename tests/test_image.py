"""The Docker image is built from the Dockerfile and run, not only linted.

There is no Docker engine and no registry on CI or the development machine, so
``scripts/build_image.py`` builds the Dockerfile with buildah (chroot
isolation, a private vfs storage in the test's tmp dir) over a Debian bookworm
base made by mmdebstrap, with wheels built on the host. Each run makes the
base, the wheels and the image afresh: nothing is cached between runs.

The image is then started the way ``docker run <image>`` starts it: the
entrypoint and command read from the built image's own config, under its
configured user and working directory, with no TETRAPIPE_* setting. Its
defaults must detect: the samples' alerts come out on stdout and are stored in
the lake, the same alerts (by their deterministic ids) as the checkout's rules
find, and every file that run wrote belongs to uid 10001.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "build_image.py"
TAG = "localhost/tetrapipe:test"
UID = "10001"
# samples/scenario/tenant-jobs.log: a kubectl-exec shell in the crawler pod long after it started, which writes /etc/passwd
CRAWLER = ("tenant-jobs", "crawler-5f7c8d9b6-x4k2p")
SCENARIO_ALERTS = {("late-shell-in-container", *CRAWLER), ("passwd-shadow-tampering", *CRAWLER)}
ALERTS_SQL = "SELECT alert_id, rule_id, namespace, pod FROM alerts ORDER BY alert_id"

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Ran:
    """One finished command: what it printed and how it ended."""

    cmd: list[str]
    returncode: int
    stdout: str
    stderr: str

    def ok(self) -> str:
        """Its stdout, once it is known to have succeeded (else everything it said, in the failure)."""
        assert self.returncode == 0, f"exit {self.returncode}: {self.cmd}\n{self.stdout[-4000:]}\n{self.stderr[-4000:]}"
        return self.stdout


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> Ran:
    proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    return Ran(cmd, proc.returncode, proc.stdout, proc.stderr)


def _store(workdir: Path) -> Any:
    """The script's Store for WORKDIR: the same storage options and containers.conf the image was built with."""
    spec = importlib.util.spec_from_file_location("tetrapipe_build_image", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while being defined
    spec.loader.exec_module(module)
    return module.Store(workdir)


@dataclass(frozen=True)
class Image:
    """The built image's config and build log, and a working container made from it."""

    store: Any
    container: str
    config: dict[str, Any]
    build_log: str

    def run(self, *argv: str) -> Ran:
        """ARGV in the container, as the image's user, in its working directory, with its /data volume (kept between runs)."""
        return _run(self.store.buildah("run", "--isolation", "chroot", self.container, "--", *argv), self.store.env())

    def defaults(self) -> list[str]:
        """What `docker run IMAGE` starts: the entrypoint followed by the command (buildah run wants it spelt out)."""
        return [*(self.config.get("Entrypoint") or []), *(self.config.get("Cmd") or [])]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    """The image built from scratch and a container of it; all of it (~2 GB of vfs layers) removed afterwards."""
    workdir = tmp_path_factory.mktemp("image")
    try:
        _run([sys.executable, str(SCRIPT), "--workdir", str(workdir), "--tag", TAG], timeout=900).ok()
        store = _store(workdir)
        env = store.env()
        config = json.loads(_run(store.buildah("inspect", "--type", "image", TAG), env).ok())["OCIv1"]["config"]
        container = _run(store.buildah("from", "--pull=never", "--quiet", TAG), env).ok().strip()
        yield Image(store, container, config, (workdir / "build.log").read_text())
        _run(store.buildah("rm", container), env)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def default_run(image: Image) -> Ran:
    """The image's defaults, run once in a fresh container: the tests below read what it printed and stored."""
    return image.run(*image.defaults())


def test_built_offline_from_the_given_base_and_wheels(image: Image) -> None:
    """The build stage (apt-get, pip from PyPI) was skipped, and the config is the documented one."""
    assert "AS build" not in image.build_log, image.build_log
    assert "FROM localhost/tetrapipe-base:bookworm" in image.build_log
    assert image.defaults() == ["tetrapipe", "ingest", "/opt/tetrapipe/samples"]
    assert image.config.get("User") == UID
    assert image.config.get("WorkingDir") == "/data"


def test_defaults_print_the_scenario_alerts(default_run: Ran) -> None:
    out = default_run.ok()
    assert "detection: off" not in out + default_run.stderr
    for rule in ("late-shell-in-container", "passwd-shadow-tampering"):
        assert rule in out, f"{rule} not printed by the image's default command:\n{out}"


def test_defaults_store_the_alerts_the_checkout_finds(image: Image, default_run: Ran, tmp_path: Path) -> None:
    """Same alert ids as the checkout's own rules on the same samples: the rules shipped in the wheel are all there."""
    default_run.ok()
    in_image = _alerts(image.run("tetrapipe", "query", "--format", "json", ALERTS_SQL).ok())
    assert SCENARIO_ALERTS <= {alert[1:] for alert in in_image}, in_image

    lake = tmp_path / "lake"
    host = [sys.executable, "-m", "tetrapipe"]
    _run([*host, "ingest", "--quiet", "--lake", str(lake), "--rules", str(REPO / "rules"), str(REPO / "samples")]).ok()
    assert in_image == _alerts(_run([*host, "query", "--lake", str(lake), "--format", "json", ALERTS_SQL]).ok())


def test_defaults_run_as_uid_10001(image: Image, default_run: Ran) -> None:
    """Not only configured: every file the default command wrote in /data belongs to 10001, so that is who ran it."""
    default_run.ok()
    assert image.run("id", "-u").ok().strip() == UID
    written = image.run("find", "/data/lake", "-type", "f", "-printf", "%U %p\\n").ok().splitlines()
    assert any(line.endswith(".parquet") for line in written), written
    assert {line.split()[0] for line in written} == {UID}, written


def _alerts(rows_json: str) -> list[tuple[str, str, str, str]]:
    return [(row["alert_id"], row["rule_id"], row["namespace"], row["pod"]) for row in json.loads(rows_json)]
