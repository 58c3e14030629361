"""Where the rules (and the tracing policies they need) are when nobody says.

Order: ``TETRAPIPE_RULES``, else ``./rules`` when it holds rule files (a
checkout, or a team's own rules next to their config), else the rules shipped
inside the installed package (``tetrapipe.bundled_rules``), else the ``rules/``
of the source tree this package was imported from. A ``./rules`` with no YAML
file in it (``mkdir -p rules/sigma`` before a Sigma import) is a skeleton, not
a rule set: it is passed over with a note (:func:`choose_rules_dir`), since
taking it would switch detection off without a word.

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
from typing import NamedTuple

RULES_ENV = "TETRAPIPE_RULES"
#: what every detecting command says (stderr and summary) when it has no rules to run
NO_RULES = "detection: off — no rules found; --rules DIR or TETRAPIPE_RULES"
#: the rules a command run in a directory takes when nobody names any
LOCAL_RULES = Path("rules")
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


class RulesChoice(NamedTuple):
    """The rules directory a command uses, and a note for stderr when the choice needs one."""

    root: Path | None
    note: str | None = None


def holds_rule_files(root: Path) -> bool:
    """Whether ``root`` has a YAML file in it (any depth, hidden ones skipped), as the loader reads them."""
    for _folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(f.endswith((".yaml", ".yml")) and not f.startswith(".") for f in files):
            return True
    return False


def no_rules_message(root: Path | None = None) -> str:
    """:data:`NO_RULES`, naming the directory that was found but held no rules to run."""
    if root is None:
        return NO_RULES
    return NO_RULES.replace("no rules found", f"no rules found in {root}", 1)


def choose_rules_dir(rules_dir: str | os.PathLike[str] | None) -> RulesChoice:
    """:func:`resolve_rules_dir`, with the note a command prints when ``./rules`` was passed over.

    A named directory (``--rules``, ``TETRAPIPE_RULES``) is taken as given:
    if it holds no rules, detection is off and the command says so (or
    refuses). Only the implicit ``./rules`` falls back to the shipped rules.
    """
    if rules_dir is not None:
        return RulesChoice(Path(rules_dir) if rules_wanted(rules_dir) else None)
    env = os.environ.get(RULES_ENV)
    if env and env != "none":
        return RulesChoice(Path(env))
    if LOCAL_RULES.is_dir():
        if holds_rule_files(LOCAL_RULES):
            return RulesChoice(LOCAL_RULES)
        shipped = bundled_dir("tetrapipe.bundled_rules", "rules")
        instead = f"using the rules shipped with tetrapipe ({shipped})" if shipped else "and no rules are shipped"
        return RulesChoice(shipped, f"note: ./rules holds no rule files (*.yaml), so it is not used; {instead}")
    return RulesChoice(bundled_dir("tetrapipe.bundled_rules", "rules"))


def default_rules_dir() -> Path | None:
    """The rules a command uses when none are named (see the module's docstring for the order)."""
    return choose_rules_dir(None).root


def resolve_rules_dir(rules_dir: str | os.PathLike[str] | None) -> Path | None:
    """``None`` -> the default; ``'none'`` -> None (detection off); else the path given."""
    return choose_rules_dir(rules_dir).root


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
    """The rules directory a single rule file belongs to: the nearest parent whose ``lib/`` holds YAML, else its folder.

    The ``lib/`` must hold library files: the file system's own ``/lib`` (or
    ``/usr/lib``) made a copied rule's root ``/``, and the load walked the disk.
    """
    path = path.resolve()
    for parent in path.parents:
        if parent == Path(parent.anchor):
            break
        lib = parent / "lib"
        if lib.is_dir() and any(p.suffix in (".yaml", ".yml") for p in lib.iterdir()):
            return parent
    return path.parent
