"""Writing imported Sigma rules into a rules directory: safe file names, all or nothing.

The rules of one import land together or not at all (staged in a temporary
directory, moved in, rolled back on failure), so a half-written import never
loads. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tetrapipe.ruleset.sigma.convert import Converted


class _RuleDumper(yaml.SafeDumper):
    """Multi-line strings (conditions, descriptions) as block literals, as a person would write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_RuleDumper.add_representer(str, _str)


def to_yaml(converted: Converted) -> str:
    return yaml.dump(converted.document, Dumper=_RuleDumper, sort_keys=False, allow_unicode=True, width=110)


# --- writing the converted rules: safe names, all files or none ---------------------------------------
#
# Kept apart from the conversion on purpose: whatever turns Sigma into rule documents (pySigma with
# tetrapipe's backend, in convert.py), the rule files are named and written here, from the rule id alone.

#: longest file name stem (and rule id) an import writes; far below any file system's limit
SAFE_NAME_MAX = 100
_TMP_PREFIX = ".import-sigma-"


class SigmaImportError(Exception):
    """The converted rules could not be written; nothing new was left in the output directory."""


def safe_name(text: str, fallback: str = "rule", max_len: int = SAFE_NAME_MAX) -> str:
    """A file name stem that is also a valid rule id, from any text.

    Lowercase ``[a-z0-9._-]`` only (no ``/``, NUL, spaces or control
    characters), no ``..``, never starting with a dot (hidden, skipped by the
    loader) or a dash (read as an option), at most ``max_len`` characters;
    ``fallback`` when nothing is left.
    """
    name = re.sub(r"[^a-z0-9._-]+", "-", str(text).lower())
    name = re.sub(r"\.{2,}", ".", name)
    name = name.lstrip("._-")[:max_len].rstrip("._-")
    return name or fallback


def plan_names(converted: Iterable[Converted]) -> list[tuple[Converted, str]]:
    """Each converted rule with its file name, in a deterministic order (by source file).

    The rule id is made safe (:func:`safe_name`) and unique within the import:
    two Sigma rules that give the same id (same title, ids with the same first
    group, or no id) become ``<id>``, ``<id>-2``, ... in source-file order, id
    and file name alike, so the loader never sees a duplicate. The same Sigma
    file imported again gets the same name, which is how ``--force`` finds
    the file it replaces.
    """
    taken: set[str] = set()
    planned: list[tuple[Converted, str]] = []
    for conv in sorted(converted, key=lambda c: (str(c.source), c.rule_id)):
        base = safe_name(conv.rule_id)
        rid, n = base, 1
        while rid in taken:
            n += 1
            rid = f"{base[: SAFE_NAME_MAX - len(str(n)) - 1].rstrip('._-')}-{n}"
        taken.add(rid)
        if rid != conv.rule_id or conv.document.get("id") != rid:
            conv = Converted(conv.source, rid, {**conv.document, "id": rid})
        planned.append((conv, f"{rid}.yaml"))
    return planned


@dataclass
class WriteResult:
    """What :func:`write_rules` did: files written (all, or none), rules refused, load errors."""

    written: list[tuple[Converted, Path]] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)
    #: problems the ``validate`` callback found in the new files (then nothing was written)
    broken: list[Any] = field(default_factory=list)


def _make_dirs(path: Path) -> list[Path]:
    """``mkdir -p``; the directories it created, deepest first (to remove them again)."""
    missing: list[Path] = []
    p = path
    while not p.exists() and not p.is_symlink() and p.parent != p:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
    return missing


def write_rules(
    converted: Iterable[Converted],
    out_dir: Path,
    *,
    force: bool = False,
    validate: Callable[[list[Path]], list[Any]] | None = None,
) -> WriteResult:
    """Write converted rules into ``out_dir``, every file or none.

    A rule whose file already exists is refused unless ``force``. Everything
    else is first written into a hidden staging directory inside ``out_dir``
    (same file system, skipped by the rules loader), then renamed into place;
    a file replaced under ``force`` is moved aside, not deleted. ``validate``
    gets the new files once they are in place (e.g. load the directory and
    return the problems in them): any problem, or any error on the way,
    removes the new files, puts the replaced ones back and removes the
    directories this call created -- ``out_dir`` is as it was -- and errors
    are raised as :class:`SigmaImportError`. A file name never leaves
    ``out_dir``: names are :func:`safe_name` slugs, and checked again here.
    """
    out_dir = Path(out_dir)
    result = WriteResult()
    todo: list[tuple[Converted, Path]] = []
    for conv, name in plan_names(converted):
        target = out_dir / name
        if target.parent != out_dir or name in (".", "..") or "/" in name or "\0" in name:
            raise SigmaImportError(f"refusing to write {name!r}: not a plain file name inside {out_dir}")
        if (target.exists() or target.is_symlink()) and not force:
            result.refused.append((conv.source, f"{target} exists (--force to overwrite)"))
            continue
        todo.append((conv, target))
    if not todo:
        return result
    created: list[Path] = []
    staging: Path | None = None
    moved: list[tuple[Path, Path | None]] = []  # (target, where the file it replaced waits)
    try:
        created = _make_dirs(out_dir)
        staging = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=out_dir))
        for conv, target in todo:
            (staging / target.name).write_text(to_yaml(conv), encoding="utf-8")
        replaced = staging / ".replaced"
        replaced.mkdir()
        for _, target in todo:
            backup = None
            if target.exists() or target.is_symlink():
                backup = replaced / target.name
                os.replace(target, backup)  # moves a symlink itself: nothing is written through it
            moved.append((target, backup))
            os.replace(staging / target.name, target)
        if validate is not None:
            result.broken = list(validate([t for _, t in todo]))
    except BaseException as exc:
        _roll_back(moved, staging, created)
        if isinstance(exc, OSError | ValueError | yaml.YAMLError):
            raise SigmaImportError(
                f"cannot write the converted rules to {out_dir}: {exc}; nothing was written"
            ) from exc
        raise
    if result.broken:
        _roll_back(moved, staging, created)
        return result
    shutil.rmtree(staging, ignore_errors=True)
    result.written = todo
    return result


def _roll_back(moved: list[tuple[Path, Path | None]], staging: Path | None, created: list[Path]) -> None:
    """Remove the files put in place, restore those they replaced, then the staging and new directories.

    A file that cannot be put back stays in the staging directory, which is
    then kept and named in the error rather than deleted with it.
    """
    lost: list[Path] = []
    for target, backup in reversed(moved):
        try:
            target.unlink(missing_ok=True)
            if backup is not None:
                os.replace(backup, target)
        except OSError:
            if backup is not None:
                lost.append(target)
    if lost and staging is not None:
        raise SigmaImportError(
            f"could not put back {', '.join(map(str, lost))}: the original files are in {staging / '.replaced'}"
        )
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)
    for d in created:  # deepest first; a directory someone else filled meanwhile stays
        try:
            d.rmdir()
        except OSError:
            pass


__all__ = ["SAFE_NAME_MAX", "SigmaImportError", "WriteResult", "plan_names", "safe_name", "to_yaml", "write_rules"]
