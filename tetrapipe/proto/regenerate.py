"""Regenerate (or verify) the Python stubs of ``tetrapipe/proto/tetragon.proto``.

Usage::

    python -m tetrapipe.proto.regenerate           # rewrite the committed stubs
    python -m tetrapipe.proto.regenerate --check   # exit 1 if they are stale

The stubs are committed so that installing tetrapipe never needs a protobuf
compiler; the price is that they can drift from the ``.proto``. ``--check``
(run by the test suite) catches that drift: it generates into a temporary
directory and compares what the stubs *mean*, not their bytes: the file
descriptor embedded in ``tetragon_pb2.py`` (every message, field, number, type
and service), the classes and members the ``.pyi`` declares, and the gRPC
method paths and names of ``tetragon_pb2_grpc.py``. Version stamps and
template details change with every grpcio-tools patch release and are no
drift: the suite must not go red because PyPI published grpcio 1.85.4.

Generation runs ``grpc_tools.protoc`` with the repository root (the directory
holding the ``tetrapipe`` package) as the include root, so the descriptor is
registered as ``tetrapipe/proto/tetragon.proto`` and the gRPC module imports
``from tetrapipe.proto import tetragon_pb2``: an ordinary absolute package
import, which works installed or from a checkout. No post-processing of the
generated text is needed, which keeps the output a pure function of the
``.proto`` and the grpcio-tools version.

The generated code pins the runtimes it needs (``Protobuf Python Version`` in
the header of ``tetragon_pb2.py``, ``GRPC_GENERATED_VERSION`` in the gRPC
module); ``pyproject.toml``'s floors for protobuf and grpcio are those stamps.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import os
import re
import sys
import tempfile
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
PACKAGE_ROOT = PROTO_DIR.parents[1]  # the directory that contains "tetrapipe/"
PROTO = PROTO_DIR / "tetragon.proto"
GENERATED = ("tetragon_pb2.py", "tetragon_pb2.pyi", "tetragon_pb2_grpc.py")

_STAMP = re.compile(rb"^# Protobuf Python Version: (\S+)$", re.MULTILINE)


def protoc_version_stamp(pb2_source: bytes) -> str | None:
    """The protobuf version a generated ``*_pb2.py`` was produced by (None if absent)."""
    m = _STAMP.search(pb2_source)
    return m.group(1).decode() if m else None


def generate(out_dir: Path, proto_dir: Path | None = None) -> dict[str, bytes]:
    """Run protoc on ``<proto_dir>/tetragon.proto`` into ``out_dir``; return {file name: content}.

    ``proto_dir`` defaults to this package's directory; pass a checkout's
    ``tetrapipe/proto`` to check that tree instead of the imported one.
    """
    proto_dir = Path(proto_dir or PROTO_DIR)
    root = proto_dir.parents[1]
    proto = proto_dir / PROTO.name
    try:
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("grpcio-tools is needed to regenerate the stubs: pip install 'tetrapipe[test]'") from exc
    from importlib.resources import files

    well_known = files("grpc_tools") / "_proto"
    rel = proto.relative_to(root).as_posix()
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        rel,
    ]
    # protoc resolves the relative proto path against the working directory
    # first; run from the include root so the virtual path is always
    # "tetrapipe/proto/tetragon.proto", wherever we are called from.
    cwd = os.getcwd()
    try:
        os.chdir(root)
        rc = protoc.main(args)
    finally:
        os.chdir(cwd)
    if rc != 0:
        raise SystemExit(f"protoc failed (exit {rc}) on {proto}")
    gen_dir = out_dir / "tetrapipe" / "proto"
    return {name: (gen_dir / name).read_bytes() for name in GENERATED}


def _descriptor(pb2_source: bytes):  # noqa: ANN202 - a FileDescriptorProto
    """The ``FileDescriptorProto`` a generated ``*_pb2.py`` registers (its ``AddSerializedFile`` argument)."""
    from google.protobuf import descriptor_pb2

    for node in ast.walk(ast.parse(pb2_source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "AddSerializedFile"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, bytes)
        ):
            return descriptor_pb2.FileDescriptorProto.FromString(node.args[0].value)
    raise ValueError("no AddSerializedFile(b'...') call: not a generated *_pb2.py")


def _declared(source: bytes) -> set[str]:
    """What a stub module declares: qualified class and function names, class members, gRPC method paths."""
    names: set[str] = set()

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                names.add(prefix + node.name)
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(f"{prefix}{node.name}()")
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and prefix:
                names.add(prefix + node.target.id)

    tree = ast.parse(source)
    visit(tree.body, "")
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"/[\w.]+/\w+", node.value):
            names.add(node.value)
    return names


def _meaning_differs(name: str, committed: bytes, fresh: bytes) -> str | None:
    """Why two generations of one stub file differ in meaning (None: same messages, fields, numbers, methods)."""
    if name.endswith("_pb2.py"):
        from google.protobuf import text_format

        old, new = _descriptor(committed), _descriptor(fresh)
        if old == new:
            return None
        diff = difflib.unified_diff(
            text_format.MessageToString(old).splitlines(),
            text_format.MessageToString(new).splitlines(),
            f"committed/{name}",
            f"regenerated/{name}",
            lineterm="",
            n=1,
        )
        return "the file descriptor differs\n" + "\n".join(list(diff)[:16])
    old_names, new_names = _declared(committed), _declared(fresh)
    if old_names == new_names:
        return None
    gone, added = sorted(old_names - new_names), sorted(new_names - old_names)
    return "declarations differ: " + "; ".join(
        part
        for part in (
            f"only committed: {', '.join(gone[:12])}" if gone else "",
            f"only regenerated: {', '.join(added[:12])}" if added else "",
        )
        if part
    )


def differences(proto_dir: Path | None = None) -> list[str]:
    """Human-readable reasons why the committed stubs mean something else than a fresh generation."""
    proto_dir = Path(proto_dir or PROTO_DIR)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tetrapipe-proto-") as tmp:
        fresh = generate(Path(tmp), proto_dir)
    for name, content in fresh.items():
        path = proto_dir / name
        if not path.exists():
            problems.append(f"{path}: missing (run python -m tetrapipe.proto.regenerate)")
            continue
        try:
            why = _meaning_differs(name, path.read_bytes(), content)
        except (SyntaxError, ValueError) as exc:
            why = f"not a generated stub ({exc})"
        if why:
            problems.append(f"{path}: differs from a fresh generation: {why}")
    return problems


def write() -> list[Path]:
    """Regenerate the committed stubs in place."""
    with tempfile.TemporaryDirectory(prefix="tetrapipe-proto-") as tmp:
        fresh = generate(Path(tmp))
    written = []
    for name, content in fresh.items():
        path = PROTO_DIR / name
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tetrapipe.proto.regenerate", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed stubs are stale; write nothing")
    ns = parser.parse_args(argv)
    if ns.check:
        problems = differences()
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("stubs are stale: run python -m tetrapipe.proto.regenerate", file=sys.stderr)
            return 1
        print(f"stubs up to date with {PROTO.name}")
        return 0
    written = write()
    for path in written:
        print(f"wrote {path}")
    if not written:
        print("stubs already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
