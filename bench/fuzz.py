"""The long fuzzing run (issue 9): every fuzz test, with many more inputs per target.

    python -m bench.fuzz [--examples 2000] [--workers 2] [--json FILE] [-k EXPR]

It runs the tests marked `fuzz` (tests/test_fuzz_*.py) under pytest with
COMPACT_FUZZ_EXAMPLES inputs per test (the default run tries 40; tests whose inputs cost
a real node's round trip try half as many), collects what each pytest process tried
(tests/fuzzing.py writes it), and prints, per target: the inputs tried, the seconds
spent on them, and what became of them (accepted, or the error class or status code
that refused them). The exit status is pytest's: 0 only if every input of every target
met its test's property. `--json` writes the same figures with the machine and the
command; they go into docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=2000, help="inputs per fuzz test (default 2000)")
    p.add_argument(
        "--workers", type=int, default=2, help="pytest worker processes (0: one process)"
    )
    p.add_argument("-k", dest="keyword", default="", help="only the tests pytest -k selects")
    p.add_argument("--json", type=Path, help="write the figures to this file")
    p.add_argument(
        "--hang-seconds", type=float, default=10.0, help="one input's time limit (default 10)"
    )
    args = p.parse_args(argv)
    if args.examples < 1:
        p.error("--examples must be 1 or more")
    if args.workers < 0:
        p.error("--workers must be 0 or more")
    return args


def merge(folder: Path) -> dict[str, dict[str, Any]]:
    """Add up the tallies that the pytest processes wrote into `folder`."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")):
        for target, tally in json.loads(path.read_text(encoding="utf-8")).items():
            into = out.setdefault(target, {"inputs": 0, "seconds": 0.0, "outcomes": {}})
            into["inputs"] += tally["inputs"]
            into["seconds"] += tally["seconds"]
            for outcome, n in tally["outcomes"].items():
                into["outcomes"][outcome] = into["outcomes"].get(outcome, 0) + n
    return dict(sorted(out.items()))


def table(targets: dict[str, dict[str, Any]]) -> str:
    rows = [
        "| target | inputs | seconds | inputs/s | outcomes |",
        "|---|---:|---:|---:|---|",
    ]
    for name, t in targets.items():
        rate = t["inputs"] / t["seconds"] if t["seconds"] else 0.0
        outcomes = ", ".join(
            f"{k} {v:,}" for k, v in sorted(t["outcomes"].items(), key=lambda kv: -kv[1])
        )
        rows.append(
            f"| `{name}` | {t['inputs']:,} | {t['seconds']:.1f} | {rate:,.0f} | {outcomes} |"
        )
    total_inputs = sum(t["inputs"] for t in targets.values())
    total_seconds = sum(t["seconds"] for t in targets.values())
    rows.append(f"| all {len(targets)} targets | {total_inputs:,} | {total_seconds:.1f} | | |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="compact-fuzz-") as tmp:
        report = Path(tmp) / "report"
        command = [
            sys.executable, "-m", "pytest", "-q", "-m", "fuzz", "-p", "no:cacheprovider",
            "-n", str(args.workers), "--dist", "loadfile", "--timeout", "0",
        ]  # fmt: skip
        if args.keyword:
            command += ["-k", args.keyword]
        env = {
            **os.environ,
            "COMPACT_FUZZ_EXAMPLES": str(args.examples),
            "COMPACT_FUZZ_HANG_SECONDS": str(args.hang_seconds),
            "COMPACT_FUZZ_REPORT": str(report),
        }
        print(f"fuzz: {' '.join(command[2:])} ({args.examples} inputs per test)", file=sys.stderr)
        started = time.monotonic()
        result = subprocess.run(command, cwd=REPO, env=env, check=False)
        wall = time.monotonic() - started
        targets = merge(report) if report.exists() else {}
    print(table(targets))
    print(
        f"\npytest exit status {result.returncode}; {wall:.0f} s of wall time "
        f"on {os.cpu_count()} CPUs with {args.workers or 1} process(es)",
        file=sys.stderr,
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "examples_per_test": args.examples,
                    "workers": args.workers,
                    "keyword": args.keyword,
                    "wall_seconds": round(wall, 1),
                    "pytest_exit_status": result.returncode,
                    "machine": {
                        "python": platform.python_version(),
                        "platform": platform.platform(),
                        "cpus": os.cpu_count(),
                    },
                    "targets": targets,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    if not targets and result.returncode == 0:
        print("fuzz: no fuzz test ran (check -k)", file=sys.stderr)
        return 1
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
