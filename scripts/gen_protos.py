"""Regenerate the Python code for every .proto under protos/compact/ (a test checks it is current).

For each protos/compact/**/X.proto this writes, next to it:

    X_pb2.py  X_pb2.pyi  X_pb2_grpc.py  X_pb2_grpc.pyi

with grpc_tools.protoc (``-I protos``, run from the repository root) and the
mypy-protobuf plugins (``--mypy_out``, ``--mypy_grpc_out``), which must be
installed next to the running interpreter (``.venv/bin``). The output is
reproducible: the same inputs and tool versions give the same bytes.

    python scripts/gen_protos.py            # regenerate in place
    python scripts/gen_protos.py --out DIR  # write the tree (compact/...) into DIR instead
    python scripts/gen_protos.py --check    # exit 1 listing the files that are not current
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.resources
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"  # the -I root: imports look like "compact/v1/node.proto"
PACKAGE = "compact"  # generate for every .proto under protos/compact/
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
STALE = "(stale: no .proto generates it)"


def proto_files() -> list[str]:
    """The .proto files to compile, relative to protos/, sorted, with forward slashes."""
    return sorted(
        p.relative_to(PROTO_ROOT).as_posix() for p in (PROTO_ROOT / PACKAGE).rglob("*.proto")
    )


def _plugin(name: str) -> Path:
    """A protoc plugin console script installed with this interpreter (not looked up in PATH)."""
    exe = name + (".exe" if sys.platform == "win32" else "")
    # sys.executable's folder is the venv's bin/ even when the venv is not activated;
    # sysconfig's scripts folder covers interpreters whose executable lives elsewhere.
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        if (folder / exe).is_file():
            return folder / exe
    raise SystemExit(
        f"gen_protos: {exe} not found next to {sys.executable}; install the dev extras "
        "(pip install -e '.[dev]', which brings mypy-protobuf)"
    )


def generate(out_dir: Path) -> list[Path]:
    """Compile every proto into out_dir (as out_dir/compact/...); the generated files, relative."""
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    protos = proto_files()
    if not protos:
        raise SystemExit(f"gen_protos: no .proto files under {PROTO_ROOT / PACKAGE}")
    well_known = importlib.resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
    out = str(out_dir)
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I",
        "protos",
        "-I",
        str(well_known),
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    result = subprocess.run(cmd, cwd=ROOT, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"gen_protos: protoc failed (exit {result.returncode})")
    return generated_files(out_dir)


def generated_files(tree: Path) -> list[Path]:
    """The generated files (by name) under tree/compact, relative to tree, sorted."""
    package = tree / PACKAGE
    if not package.is_dir():
        return []
    return sorted(
        p.relative_to(tree)
        for p in package.rglob("*")
        if p.is_file() and p.name.endswith(GENERATED_SUFFIXES)
    )


def differences(generated: Path, committed: Path) -> list[str]:
    """Files (relative, forward slashes) that differ between two trees: changed, missing, stale."""
    fresh = set(generated_files(generated))
    held = set(generated_files(committed))
    out: list[str] = []
    for rel in sorted(fresh | held):
        name = rel.as_posix()
        if rel not in held:
            out.append(f"{name} (missing)")
        elif rel not in fresh:
            out.append(f"{name} {STALE}")
        elif not filecmp.cmp(generated / rel, committed / rel, shallow=False):
            out.append(f"{name} (differs)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--out", type=Path, metavar="DIR", help="write the tree into DIR instead")
    mode.add_argument(
        "--check", action="store_true", help="exit 1 listing files that differ from the committed"
    )
    args = parser.parse_args(argv)

    if args.out is not None:
        generate(args.out)
        return 0

    with tempfile.TemporaryDirectory(prefix="gen_protos-") as tmp:
        fresh = Path(tmp)
        files = generate(fresh)
        if args.check:
            diff = differences(fresh, PROTO_ROOT)
            if diff:
                print("gen_protos: generated code is not current:", file=sys.stderr)
                for line in diff:
                    print(f"  protos/{line}", file=sys.stderr)
                print("run: python scripts/gen_protos.py", file=sys.stderr)
                return 1
            return 0
        for rel in files:
            target = PROTO_ROOT / rel
            data = (fresh / rel).read_bytes()
            if not target.is_file() or target.read_bytes() != data:
                target.write_bytes(data)
                print(f"wrote protos/{rel.as_posix()}")
        for line in differences(fresh, PROTO_ROOT):
            if line.endswith(STALE):
                print(f"gen_protos: warning: protos/{line}; delete it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
