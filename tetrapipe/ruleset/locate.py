"""Where the rules (and the tracing policies they need) are when nobody says.

Order: ``TETRAPIPE_RULES``, else ``./rules`` when it exists (a checkout, or a
team's own rules next to their config), else the rules shipped inside the
installed package (``tetrapipe.bundled_rules``), else the ``rules/`` of the
source tree this package was imported from.
"""

from __future__ import annotations

import os
from pathlib import Path

RULES_ENV = "TETRAPIPE_RULES"
_SOURCE_TREE = Path(__file__).resolve().parents[2]


def bundled_dir(package: str, source_name: str) -> Path | None:
    """A data directory shipped as a package (wheel), or the source tree's copy (checkout)."""
    try:
        from importlib import resources

        root = resources.files(package)
        path = Path(str(root))
        if path.is_dir() and any(path.iterdir()):
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    candidate = _SOURCE_TREE / source_name
    return candidate if candidate.is_dir() else None


def default_rules_dir() -> Path | None:
    env = os.environ.get(RULES_ENV)
    if env and env != "none":
        return Path(env)
    local = Path("rules")
    if local.is_dir():
        return local
    return bundled_dir("tetrapipe.bundled_rules", "rules")


def resolve_rules_dir(rules_dir: str | os.PathLike[str] | None) -> Path | None:
    """``None`` -> the default; ``'none'`` -> None (detection off); else the path given."""
    if rules_dir is None:
        return default_rules_dir()
    if str(rules_dir) == "none":
        return None
    return Path(rules_dir)


def policies_dir_for(rules_root: Path | None) -> Path | None:
    """The ``tracing-policies/`` that goes with a rules directory (sibling), else the shipped one."""
    if rules_root is not None:
        root = rules_root if rules_root.is_dir() else rules_root.parent
        for cand in (root.parent / "tracing-policies", root / "tracing-policies"):
            if cand.is_dir():
                return cand
    return bundled_dir("tetrapipe.bundled_policies", "tracing-policies")


def rules_root_of(path: Path) -> Path:
    """The rules directory a single rule file belongs to: the nearest parent with a ``lib/``, else its folder."""
    path = path.resolve()
    for parent in path.parents:
        if (parent / "lib").is_dir():
            return parent
        if parent == Path(parent.anchor):
            break
    return path.parent
