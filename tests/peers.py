"""The system programs the suite runs as real peers, and how a fresh machine gets them.

The tests speak to real software, not mocks: rsyslogd receives the SIEM
forwarder's syslog, headless Chromium renders the process-tree HTML, buildah
builds the Docker image, Azurite (Microsoft's Azure Storage emulator, from the
npm registry) stands in for Azure Blob Storage under an ``az://`` lake. None of
them comes from PyPI, so ``python -m pytest``
checks for them when the session starts and, on a machine where it may
(``apt-get`` present and running as root, as on CI and in dev containers),
installs the missing Debian packages itself, and npm packages into a cache
directory of their own (``~/.cache/tetrapipe-tests``, never the repo and never
a global ``npm -g``): the README's test command then
passes on a fresh machine with nothing installed by hand first. Where it may
not, the session stops with the line to run: a missing peer is
an error, never a quiet skip.

``python tests/peers.py`` does the same check and install outside pytest.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: Azurite's version (pinned: tests/azurite.py's flags are checked against its --help)
AZURITE_VERSION = "3.37.0"


def azurite_dir() -> Path:
    """Where the npm package lives: a cache outside the repo, kept between sessions on the same machine."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tetrapipe-tests" / "azurite"


def azurite_blob() -> Path | None:
    """The ``azurite-blob`` launcher of the installed package, or None when it is not installed."""
    exe = azurite_dir() / "node_modules" / ".bin" / "azurite-blob"
    return exe if exe.exists() else None


def _which(*names: str) -> Callable[[], bool]:
    return lambda: any(shutil.which(n) or os.path.exists(f"/usr/sbin/{n}") for n in names)


def _glob(*patterns: str) -> Callable[[], bool]:
    return lambda: any(glob.glob(p) for p in patterns)


@dataclass(frozen=True)
class Peer:
    name: str
    present: Callable[[], bool]
    packages: tuple[str, ...]


PEERS: tuple[Peer, ...] = (
    Peer("rsyslogd", _which("rsyslogd"), ("rsyslog",)),
    Peer(
        "rsyslog TLS driver",
        _glob("/usr/lib/*/rsyslog/lmnsd_ossl.so", "/usr/lib/rsyslog/lmnsd_ossl.so"),
        ("rsyslog-openssl",),
    ),
    Peer("chromium", _which("chromium", "chromium-browser"), ("chromium", "fonts-dejavu-core", "fonts-liberation")),
    # the image test: build the Dockerfile without a Docker engine (tests/test_image.py, scripts/build_image.py)
    Peer("buildah", _which("buildah"), ("buildah",)),
    Peer("mmdebstrap", _which("mmdebstrap"), ("mmdebstrap",)),
    # npm, to install the npm peers below (node comes with it where it is missing)
    Peer("npm", _which("npm"), ("npm",)),
)


@dataclass(frozen=True)
class NpmPeer:
    """A peer from the npm registry, installed with ``npm install --prefix <where>`` at a pinned version."""

    name: str
    spec: str
    where: Path
    present: Callable[[], bool]


NPM_PEERS: tuple[NpmPeer, ...] = (
    # the az:// lake's object store (tests/azurite.py, tests/test_lake_azure.py)
    NpmPeer(
        "azurite",
        f"azurite@{AZURITE_VERSION}",
        azurite_dir(),
        lambda: azurite_blob() is not None,
    ),
)


def missing() -> list[Peer]:
    return [p for p in PEERS if not p.present()]


def install_command(peers: list[Peer]) -> list[str]:
    pkgs = sorted({pkg for p in peers for pkg in p.packages})
    return ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs]


def npm_command(peer: NpmPeer) -> list[str]:
    return ["npm", "install", "--prefix", str(peer.where), "--no-audit", "--no-fund", "--loglevel=error", peer.spec]


def ensure(log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> None:
    """Install what is missing where that is allowed; else raise with the command to run."""
    _ensure_apt(log)
    _ensure_npm(log)


def _ensure_npm(log: Callable[[str], None]) -> None:
    """npm peers into their cache directory (a user's own, so no root needed); npm itself is an apt peer."""
    for peer in NPM_PEERS:
        if peer.present():
            continue
        cmd = npm_command(peer)
        log(f"tests: installing the missing test peer {peer.name} with npm into {peer.where}")
        peer.where.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0 or not peer.present():
            raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}")


def _ensure_apt(log: Callable[[str], None]) -> None:
    absent = missing()
    if not absent:
        return
    cmd = install_command(absent)
    names = ", ".join(p.name for p in absent)
    if not shutil.which("apt-get") or os.geteuid() != 0:
        raise RuntimeError(
            f"the test suite needs real peers that are not installed ({names}): run "
            f"sudo apt-get update && sudo {' '.join(cmd)}"
        )
    log(f"tests: installing the missing test peers ({names}) with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update", "-qq"], cmd):
        proc = subprocess.run(step, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(step)} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}")
    still = missing()
    if still:
        raise RuntimeError(f"still missing after apt-get install: {', '.join(p.name for p in still)}")


if __name__ == "__main__":
    try:
        ensure()
    except RuntimeError as exc:
        sys.exit(str(exc))
    print("test peers present: " + ", ".join(p.name for p in (*PEERS, *NPM_PEERS)))
