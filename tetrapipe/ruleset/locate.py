"""Where the rules (and the tracing policies they need) are when nobody says.

Order: ``TETRAPIPE_RULES``, else ``./rules`` when it exists (a checkout, or a
team's own rules next to their config), else the rules shipped inside the
installed package (``tetrapipe.bundled_rules``), else the ``rules/`` of the
source tree this package was imported from.

The shipped rules are data files beside the code, not a Python package with an
``__init__.py``: ``importlib.resources`` hands back a ``MultiplexedPath`` for
them (a namespace package), whose ``str()`` is no path at all. So they are
found as the directory next to this package's own files, which is where a
wheel (or an editable install of a checkout, through the source tree) puts
them, and a command never quietly runs without them.
"""

from __future__ import annotations

import os
from pathlib import Path

RULES_ENV = "TETRAPIPE_RULES"
#: what every detecting command says (stderr and summary) when it has no rules to run
NO_RULES = "detection: off — no rules found; --rules DIR or TETRAPIPE_RULES"
_PACKAGE = Path(__file__).resolve().parents[1]  # .../tetrapipe
_SOURCE_TREE = _PACKAGE.parent  # a checkout's root, when the package was imported from one


def bundled_dir(package: str, source_name: str) -> Path | None:
    """A data directory shipped inside the wheel (``tetrapipe/<name>/``), or a checkout's copy.

    ``package`` is the dotted name the wheel installs it under
    (``tetrapipe.bundled_rules``); ``source_name`` its folder at the top of a
    checkout (``rules``). The checkout is only trusted when it is tetrapipe's
    own (its ``pyproject.toml`` beside the package), never some unrelated
    ``rules/`` that happens to sit next to site-packages.
    """
    installed = _PACKAGE / package.rsplit(".", 1)[-1]
    if installed.is_dir() and any(installed.iterdir()):
        return installed
    candidate = _SOURCE_TREE / source_name
    if (_SOURCE_TREE / "pyproject.toml").is_file() and candidate.is_dir():
        return candidate
    return None


def rules_wanted(rules_dir: str | os.PathLike[str] | None) -> bool:
    """False only when detection was switched off on purpose (``--rules none``)."""
    return rules_dir is None or str(rules_dir) != "none"


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
    if not rules_wanted(rules_dir):
        return None
    return Path(rules_dir)


def policies_dir_for(rules_root: Path | None) -> Path | None:
    """The ``tracing-policies/`` that goes with a rules directory (sibling), else the shipped one."""
    return _beside(rules_root, "tracing-policies") or bundled_dir("tetrapipe.bundled_policies", "tracing-policies")


def samples_dir_for(rules_root: Path | None) -> Path | None:
    """The ``samples/`` that goes with a rules directory (sibling), else the shipped ones.

    A copy of the shipped rules (or the installed package's own) has no
    samples beside it; the shipped ones still let lint find a never-true condition.
    """
    return _beside(rules_root, "samples") or shipped_samples()


def shipped_samples() -> Path | None:
    """The sample logs shipped with tetrapipe (inside the wheel, or a checkout's ``samples/``)."""
    return bundled_dir("tetrapipe.bundled_samples", "samples")


def _beside(rules_root: Path | None, name: str) -> Path | None:
    """``name/`` beside a rules directory (or a rules file's directory), or inside it."""
    if rules_root is None:
        return None
    root = rules_root if rules_root.is_dir() else rules_root.parent
    return next((c for c in (root.parent / name, root / name) if c.is_dir()), None)


def rules_root_of(path: Path) -> Path:
    """The rules directory a single rule file belongs to: the nearest parent with a ``lib/``, else its folder."""
    path = path.resolve()
    for parent in path.parents:
        if (parent / "lib").is_dir():
            return parent
        if parent == Path(parent.anchor):
            break
    return path.parent
