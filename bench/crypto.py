"""The crypto benchmarks of the compact, in one command.

    python -m bench.crypto [--only merkle,oprf,sealing] [--json FILE]
                           [--leaves N] [--inputs N] [--mib N]

Each part reports its figure as a ratio against the raw primitive beneath it,
measured in the same run (see the part's module for exactly what each side
includes):

- ``merkle`` (bench.crypto_merkle): appending leaves to the incremental tree and
  producing an inclusion and a consistency proof, against SHA-256 of the same
  leaves; goal at least 0.3.
- ``oprf`` (bench.crypto_oprf): threshold VOPRF pseudonyms per second, 2-of-3,
  proofs verified, end to end, against the raw ristretto255 scalar
  multiplications the protocol needs per input; goal at least 0.5.
- ``sealing`` (bench.crypto_sealing): sealing and opening a stream against raw
  secretstream push/pull of the same bytes; goal at least 0.8, with peak memory
  independent of size.

Every part runs in this process, one after the other; ``--json`` writes all the
figures into one file. Figures go into docs/BENCHMARKS.md with this command.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PARTS = ("merkle", "oprf", "sealing")


def _part_main(name: str) -> Callable[[list[str]], Any]:
    if name == "merkle":
        from bench import crypto_merkle

        return crypto_merkle.main
    if name == "oprf":
        from bench import crypto_oprf

        return crypto_oprf.main
    from bench import crypto_sealing

    return crypto_sealing.main


def _part_args(name: str, args: argparse.Namespace) -> list[str]:
    if name == "merkle":
        return ["--leaves", str(args.leaves)]
    if name == "oprf":
        return ["--inputs", str(args.inputs)]
    return ["--mib", str(args.mib)]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.crypto", description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(PARTS), help="comma-separated parts to run")
    p.add_argument("--leaves", type=int, default=1_000_000, help="merkle: leaves to append")
    p.add_argument("--inputs", type=int, default=10_000, help="oprf: inputs to pseudonymise")
    p.add_argument("--mib", type=int, default=1024, help="sealing: stream size in MiB")
    p.add_argument("--json", type=Path, help="write every part's figures to this file")
    args = p.parse_args(argv)
    parts = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        p.error(f"--only takes some of {', '.join(PARTS)}")
    args.parts = parts
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="compact-bench-crypto-") as tmp:
        for name in args.parts:
            print(f"== {name}", flush=True)
            out = Path(tmp) / f"{name}.json"
            _part_main(name)([*_part_args(name, args), "--json", str(out)])
            figures[name] = json.loads(out.read_text(encoding="utf-8"))
            print(flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
