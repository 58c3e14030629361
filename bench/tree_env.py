"""The environment that makes a benchmark's child process import tetrapipe from an older tree (``--also-src``).

Why not just ``PYTHONPATH``: ``python -m tetrapipe`` puts the working
directory ahead of ``PYTHONPATH``, so a benchmark started from the
repository's root ran the working tree under the older tree's label and
compared a tree with itself. ``PYTHONSAFEPATH`` (Python 3.11+) keeps the
working directory off ``sys.path``, and the environment is checked once by
asking a child where it imported tetrapipe from.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def tree_env(src: str | Path) -> dict[str, str]:
    """``os.environ`` plus what imports tetrapipe from ``src``; exits when a child would import it from elsewhere."""
    root = Path(src).resolve()
    bench = Path(__file__).resolve().parent  # a child that is one of these scripts imports its neighbours
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(bench)]), "PYTHONSAFEPATH": "1"}
    out = subprocess.run(
        [sys.executable, "-c", "import tetrapipe; print(tetrapipe.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    where = Path(out.stdout.strip() or "?").resolve()
    if root not in where.parents:
        sys.exit(f"--also-src {src}: a child process imports tetrapipe from {where}, not from that tree")
    return env
