"""The environment that makes a benchmark's child process import tetrapipe from an older tree (``--also-src``).

Why not just ``PYTHONPATH``: ``python -m tetrapipe`` puts the working
directory ahead of ``PYTHONPATH``, so a benchmark started from the
repository's root ran the working tree under the older tree's label and
compared a tree with itself. ``PYTHONSAFEPATH`` (Python 3.11+) keeps the
working directory off ``sys.path``, and the environment is checked once by
asking a child where it imported tetrapipe from.

:func:`compiled` gives the measured tree its bytecode first: an installed
wheel has it (pip compiles every module at install), but a checkout run
with ``PYTHONDONTWRITEBYTECODE`` set (as on the development machines)
compiled ~120 modules again at every start: ~0.2-0.4 s of each measured run
that no user pays.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def compiled(env: dict[str, str] | None = None) -> dict[str, str] | None:
    """Compile the tetrapipe package a child with ``env`` imports (its own ``__pycache__``); returns ``env``.

    Python checks each cached file against its source's size and time, so a
    stale cache is never used.
    """
    where = _imported_from(env)
    if where is None:
        raise RuntimeError("a child process cannot import tetrapipe")
    compile_package(where.parent)
    return env


def _imported_from(env: dict[str, str] | None) -> Path | None:
    """Where a child process with ``env`` imports tetrapipe from (its ``__init__.py``); None if it cannot."""
    out = subprocess.run(
        [sys.executable, "-c", "import tetrapipe; print(tetrapipe.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return Path(out.stdout.strip()).resolve() if out.returncode == 0 and out.stdout.strip() else None


def compile_package(package: Path) -> None:
    """Write the bytecode of every module under ``package``, as pip does when it installs a wheel."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)


def tree_env(src: str | Path) -> dict[str, str]:
    """``os.environ`` plus what imports tetrapipe from ``src``; exits when a child would import it from elsewhere."""
    root = Path(src).resolve()
    bench = Path(__file__).resolve().parent  # a child that is one of these scripts imports its neighbours
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(bench)]), "PYTHONSAFEPATH": "1"}
    where = _imported_from(env)
    if where is None or root not in where.parents:
        sys.exit(f"--also-src {src}: a child process imports tetrapipe from {where}, not from that tree")
    return compiled(env)
