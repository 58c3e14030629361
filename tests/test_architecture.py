"""The house rules of docs/ARCHITECTURE.md, checked on the source so they cannot drift.

Read from the syntax tree (every ``import``, top level or inside a function),
not by grepping, so a lazy import inside a function counts as much as one at
the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "tetrapipe"
GENERATED = {PKG / "proto" / "tetragon_pb2.py", PKG / "proto" / "tetragon_pb2_grpc.py"}
MAX_LINES = 600


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if p not in GENERATED)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names imported from it, line) for every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(("tetrapipe", *path.relative_to(PKG).parent.parts))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join([*base, mod] if mod else base)
            found.append((mod, [a.name for a in node.names], node.lineno))
    return found


def _area(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _violations(forbidden: dict[str, tuple[str, ...]]) -> list[str]:
    bad = []
    for path in _modules():
        banned = forbidden.get(_area(path), ())
        for mod, _names, line in _imports(path):
            if any(mod == b or mod.startswith(b + ".") for b in banned):
                bad.append(f"{path.relative_to(PKG.parent)}:{line} imports {mod}")
    return bad


def test_only_the_face_talks_to_a_terminal() -> None:
    """click and rich live in cli.py and commands/ only: below them, plain exceptions and data."""
    below_the_face = ("sources", "flows", "transforms", "ruleset", "sinks", "lake", "formats", "tree", "config")
    assert not _violations({area: ("click", "rich") for area in below_the_face})


def test_the_data_flow_has_one_direction() -> None:
    """Sources and sinks never import each other; transforms never reach into the lake or a flow."""
    assert not _violations(
        {
            "sources": ("tetrapipe.sinks", "tetrapipe.flows", "tetrapipe.lake", "tetrapipe.commands"),
            "sinks": ("tetrapipe.sources", "tetrapipe.flows", "tetrapipe.commands"),
            "transforms": ("tetrapipe.lake", "tetrapipe.flows", "tetrapipe.sources", "tetrapipe.sinks"),
            "ruleset": ("tetrapipe.flows", "tetrapipe.sources", "tetrapipe.sinks", "tetrapipe.commands"),
            "lake": ("tetrapipe.flows", "tetrapipe.sources", "tetrapipe.sinks", "tetrapipe.commands"),
        }
    )


@pytest.mark.parametrize(
    "leaf", ["schema", "units", "errors", "fsutil", "textsafe", "kafka_client", "sqltext", "memtune"]
)
def test_the_leaves_depend_on_nothing_of_the_project(leaf: str) -> None:
    mods = [m for m, _n, _l in _imports(PKG / f"{leaf}.py")]
    assert not [m for m in mods if m.startswith("tetrapipe")], mods


def test_no_module_is_too_long_to_read() -> None:
    long = {str(p.relative_to(PKG.parent)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split by job (docs/ARCHITECTURE.md): {long}"


def test_no_module_reaches_into_another_modules_private_names() -> None:
    """A name another module needs is public; ``_name`` stays in its own module."""
    bad = []
    for path in _modules():
        for mod, names, line in _imports(path):
            if not mod.startswith("tetrapipe"):
                continue
            private_module = any(part.startswith("_") and part != "__init__" for part in mod.split("."))
            private_names = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private_module or private_names:
                bad.append(f"{path.relative_to(PKG.parent)}:{line} from {mod} import {', '.join(names)}")
    assert not bad


def test_the_docstrings_point_at_a_page_that_exists() -> None:
    """Module docstrings cite docs/ARCHITECTURE.md, which is in the repository, and no DESIGN.md."""
    assert (PKG.parent / "docs" / "ARCHITECTURE.md").is_file()
    citing = [p for p in _modules() if "DESIGN.md" in p.read_text()]
    assert not citing
