"""Build the Docker image with no Docker engine, no registry and no index inside the build.

The image has to be built and run, not only linted, on machines (CI, the
development box) that have neither a Docker engine nor a registry. Debian's
buildah builds the same Dockerfile without a daemon; what a registry would
provide is made locally instead:

1. ``wheels/``: tetrapipe and every dependency as wheels, by this Python's pip,
   from a copy of exactly the files the Dockerfile's build stage copies (so a
   file that stage forgets breaks this build too, and the checkout is never
   written to). The image's Python is Debian bookworm's 3.11: run this with a
   CPython 3.11 so the binary wheels (duckdb, pyarrow, polars, grpcio) fit.
2. ``base.tar``: a Debian bookworm root filesystem with python3, python3-venv
   and ca-certificates, by mmdebstrap from the Debian mirrors.
3. That tarball as the image ``localhost/tetrapipe-base:bookworm``.
4. ``buildah build --isolation chroot`` with ``BASE`` set to it and the wheels
   as the named build context ``wheels`` (the build stage is skipped).

Everything lives under ``--workdir``: its own container storage (vfs driver,
so no overlay mounts to undo) and a containers.conf with ``default_ulimits =
[]`` (buildah otherwise sets nproc=32768 in every RUN, a setrlimit that a
sandbox with a lower hard limit refuses). No image or container goes to
/var/lib/containers (only the blob-info cache every root buildah keeps there),
so parallel runs and the host's own images never meet. Use the result with the
same storage options::

    buildah --root WORKDIR/storage --runroot WORKDIR/runroot --storage-driver vfs images

Usage: ``python scripts/build_image.py --workdir /tmp/tetrapipe-image [--tag localhost/tetrapipe:dev]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE_IMAGE = "localhost/tetrapipe-base:bookworm"
DEFAULT_TAG = "localhost/tetrapipe:dev"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
# an image imported from a tarball has no environment; the Dockerfile's ENV PATH extends this one
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Store:
    """A private container storage under one directory, and the commands that use it."""

    workdir: Path

    @property
    def conf(self) -> Path:
        return self.workdir / "containers.conf"

    def env(self) -> dict[str, str]:
        """The caller's environment, pointed at this store's containers.conf, without TETRAPIPE_* settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TETRAPIPE_")}
        env["CONTAINERS_CONF"] = str(self.conf)
        return env

    def buildah(self, *args: str) -> list[str]:
        """A buildah command line on this store."""
        return [
            "buildah",
            "--root",
            str(self.workdir / "storage"),
            "--runroot",
            str(self.workdir / "runroot"),
            "--storage-driver",
            "vfs",
            *args,
        ]

    def prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf.write_text("[containers]\ndefault_ulimits = []\n")


def run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 900) -> str:
    """Run a step, say what it was and how long it took; its output in the error when it fails."""
    start = time.monotonic()
    proc = subprocess.run(
        cmd,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    took = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed (exit {proc.returncode}, {took:.0f}s): {' '.join(cmd)}\n{proc.stdout[-6000:]}")
    print(f"build_image: {took:5.1f}s  {' '.join(cmd)}", file=sys.stderr)
    return proc.stdout


def build_stage_sources(dockerfile: Path) -> list[str]:
    """The context paths the Dockerfile's build stage copies into /src (what the wheel is built from)."""
    sources: list[str] = []
    in_build = False
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "FROM":
            in_build = words[-2:] == ["AS", "build"]
        elif in_build and words[0] == "COPY" and not any(w.startswith("--") for w in words):
            *srcs, dest = words[1:]
            for src in srcs:
                if dest not in ("./", f"./{src}"):
                    raise SystemExit(f"{dockerfile}: COPY {src} {dest} does not keep its path below /src: {line}")
            sources.extend(srcs)
    if not sources:
        raise SystemExit(f"{dockerfile}: no COPY in the stage 'AS build'")
    return sources


def build_wheels(workdir: Path) -> Path:
    """tetrapipe and its dependencies as wheels, from a copy of the build stage's files."""
    if (sys.implementation.name, sys.version_info[:2]) != ("cpython", (3, 11)):
        raise SystemExit(f"the image runs Debian bookworm's CPython 3.11; run this with it, not {sys.version}")
    src = workdir / "src"
    shutil.rmtree(src, ignore_errors=True)
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in build_stage_sources(REPO / "Dockerfile"):
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=junk)
        else:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, src / name)
    wheels = workdir / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    # a wheel that does not fit the image (another glibc) stops the image's `pip install --no-index`;
    # [fast] (confluent-kafka) as the Dockerfile's build stage
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), ".[fast]"], cwd=src)
    return wheels


def make_base(store: Store, suite: str = "bookworm") -> None:
    """A Debian root filesystem with Python, as the image BASE names (no registry to pull one from)."""
    tarball = store.workdir / "base.tar"
    run(["mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", suite, str(tarball)])
    env = store.env()
    ctr = run(store.buildah("from", "scratch"), env=env).strip().splitlines()[-1]
    run(store.buildah("add", ctr, str(tarball), "/"), env=env)  # a local tar archive is unpacked
    run(store.buildah("config", "--env", f"PATH={BASE_PATH}", ctr), env=env)
    run(store.buildah("commit", "--rm", "--quiet", ctr, BASE_IMAGE), env=env)


def build_image(store: Store, wheels: Path, tag: str) -> None:
    """The Dockerfile, built by buildah from the checkout: BASE and the wheels given, nothing pulled.

    The log is kept (``WORKDIR/build.log``): it shows which stages ran.
    """
    log = run(
        store.buildah(
            "build",
            "--isolation",
            "chroot",
            "--pull=never",
            "--build-arg",
            f"BASE={BASE_IMAGE}",
            "--build-context",
            f"wheels={wheels}",
            "--file",
            str(REPO / "Dockerfile"),
            "--tag",
            tag,
            str(REPO),
        ),
        env=store.env(),
    )
    (store.workdir / "build.log").write_text(log)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="storage, base tarball and wheels go here")
    parser.add_argument("--tag", default=DEFAULT_TAG, help=f"image name (default {DEFAULT_TAG})")
    args = parser.parse_args(argv)
    store = Store(args.workdir.resolve())
    store.prepare()
    wheels = build_wheels(store.workdir)
    make_base(store)
    build_image(store, wheels, args.tag)
    print(args.tag)


if __name__ == "__main__":
    main()
