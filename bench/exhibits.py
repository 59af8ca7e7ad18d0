"""Exhibit-package benchmark: export and verify a matter, against plain SHA-256 of its files.

Run from the repository root::

    .venv/bin/python -m bench.exhibits [--size 256MiB,2GiB] [--exhibits 500] [--rounds 3]
                                       [--json FILE] [--tmpdir DIR]

For each size, untimed setup: three nodes (CA, IL, MN) are made in a temporary folder
and form a compact through the command line (`tests.nodeproc.form_compact`), syncing
every two seconds so that MN and CA witness IL's log. `--exhibits` evidence files of
random bytes totalling `--size` are written (a 16 MiB random block, each file with its
own prefix, so every file has its own SHA-256); IL imports them as that many incidents
of one file each and the source files are removed. IL then opens a matter with MN and
CA as members and adds every incident to it as an exhibit (in this process, through the
node's `Matters`, as `compact matter add-exhibit` does: 500 commands would only time
Python starting), and the three nodes run `compact serve`.

1. **Export.** `compact exhibit export MATTER OUT --zip --wait 0` records and logs the
   export's custody events and stops (exit 75) until two other states have cosigned a
   checkpoint holding them; once IL holds those cosignatures (MN and CA sync every two
   seconds), the same command runs again, resumes the same package and writes it: the
   folder, every file fsynced, then the canonical zip. Both runs are child processes
   (wall time; the second one's peak RSS). Not a goal: context for the verifier's
   figures, with the time this disk takes to write the same bytes twice (fsynced).
2. **Verify.** The nodes are stopped. In this process, `federation.verify_package.verify`
   (what `compact verify` runs) checks the folder and then the zip, with the roster pin:
   every file's SHA-256 and size against the package manifest, every signature, inclusion
   and consistency proof and witness cosignature. Its report must say the package
   verified, with every exhibit VERIFIED, and the bytes it hashed must be those of the
   package's files. Best of `--rounds`.
3. **Bound.** `hashlib.sha256` of the same files (every file of the package folder but
   its manifest, the bytes the verifier hashes), read from the folder in 1 MiB pieces, in
   the same rounds, interleaved with the verifier's. Goal: the verifier's MB/s at least
   0.7 of it, for the folder and for the zip. The page cache is warm for both (the
   package is written just before; best of the rounds).
4. **Peak memory.** VmHWM (peak resident set) of `compact verify` on the folder and on the
   zip, and of the standalone `verify_package.py` shipped in the package, run the way an
   outside expert might (`python -I -S`: no site packages, so its pure-Python Ed25519),
   each a child process reporting its own VmHWM at exit; and of the export. Goal:
   memory independent of the total size, judged across the sizes run (each size has
   the same number of exhibits): the largest size's peak at most 10% above the
   smallest's. One size alone is not judged.

The commands' wall times (Python starting, imports) are reported beside the in-process
figures. MB is 10^6 bytes. Progress goes to stderr, the table to stdout; nothing here
asserts a timing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sqlalchemy import func, select

from bench.bundles import (
    BenchError,
    emit,
    human,
    parse_size,
    run_measured,
    wait_on_nodes,
    write_evidence,
)
from bench.ingest import say
from federation import verify_package
from node import models as m
from node.config import Config
from node.exhibit_export import VERIFIER_NAME
from node.setup import open_storage, read_secret, unlock
from tests.helpers import record, write_jsonl
from tests.nodeproc import (
    REPO,
    NodeProcess,
    db_rows,
    form_compact,
    run_compact,
    start_node,
    user_env,
)

OWNER: Final = "IL"
STATES: Final = ("CA", "IL", "MN")
MATTER: Final = "IL:BENCH"
MiB: Final = 1 << 20
GiB: Final = 1 << 30
MB: Final = 1_000_000
DEFAULT_SIZES: Final = (256 * MiB, 2 * GiB)
DEFAULT_EXHIBITS: Final = 500
RATIO_GOAL: Final = 0.7  # the verifier's MB/s over plain SHA-256's, at least
MEMORY_GROWTH_GOAL: Final = 0.10  # the largest size's peak RSS over the smallest's, at most +10%
MIN_WITNESSES: Final = 2  # the export's default
EXIT_WITNESSES_SHORT: Final = 75
_PIECE: Final = MiB
# Runs the package's own verifier (a path) as __main__; at exit writes its VmHWM to argv[1].
_SCRIPT_CHILD: Final = """\
import atexit, json, runpy, sys
out, script = sys.argv[1], sys.argv[2]
sys.argv = [script, *sys.argv[3:]]
def report():
    with open("/proc/self/status", encoding="ascii") as f:
        peak = int(next(x for x in f if x.startswith("VmHWM:")).split()[1])
    with open(out, "w", encoding="ascii") as f:
        json.dump({"peak_kib": peak}, f)
atexit.register(report)
runpy.run_path(script, run_name="__main__")
"""


# --- the setup ---------------------------------------------------------------------------


@dataclass
class Nodes:
    configs: dict[str, Config]
    procs: list[NodeProcess]

    @property
    def owner(self) -> Config:
        return self.configs[OWNER]

    def stop(self) -> None:
        while self.procs:
            p = self.procs.pop()
            if p.stop() != 0:
                raise BenchError(f"{p.config.node.state}'s node did not stop cleanly")


def ingest(config: Config, root: Path, size: int, exhibits: int) -> dict[str, Any]:
    """`exhibits` incidents of one evidence file each, `size` bytes in all, imported by
    the owner; the source files are removed afterwards."""
    folder = root / "import"
    say(f"writing {human(size)} of evidence in {exhibits} files")
    sources = write_evidence(folder / "media", size, exhibits, 0)
    records = [
        record(
            f"IL-BENCH-{i + 1:04d}",
            sharing="compact",
            evidence=[{"path": f"media/{f.name}", "media_type": "video/mp4"}],
        )
        for i, f in enumerate(sources)
    ]
    path = write_jsonl(folder, records)
    say(f"{OWNER}: importing {exhibits} incidents")
    started = time.perf_counter()
    run_compact("ingest", str(path), "--data-dir", str(config.data_dir), timeout=3600)
    seconds = time.perf_counter() - started
    for f in sources:
        (folder / "media" / f.name).unlink()
    return {"seconds": seconds, "files": {f.sha256: f.size for f in sources}}


def make_matter(config: Config, exhibits: int) -> float:
    """The matter with every incident as an exhibit, made in this process."""
    from node.fednode import FederationNode

    say(f"{OWNER}: a matter of {exhibits} exhibits")
    started = time.perf_counter()
    keys = unlock(config, read_secret(config))
    storage = open_storage(config, keys)
    try:
        node = FederationNode(config, keys, storage)
        node.matters.create(
            title="Bench v. Noem",
            states=["MN", "CA"],
            user="bench.litigator",
            roster=node.store.require_roster(),
            slug="BENCH",
            bates_prefix="IL-MN",
        )
        with storage.db.read() as s:
            gids = s.scalars(select(m.Incident.global_id).order_by(m.Incident.external_id)).all()
        if len(gids) != exhibits:
            raise BenchError(f"{OWNER} holds {len(gids)} incidents, not {exhibits}")
        for i, gid in enumerate(gids):
            node.matters.add_exhibit(
                MATTER,
                global_id=gid,
                description=f"Bench exhibit {i + 1}: bystander video",
                user="bench.litigator",
            )
    finally:
        storage.db.dispose()
    return time.perf_counter() - started


def start_nodes(root: Path, size: int, exhibits: int) -> tuple[Nodes, dict[str, Any]]:
    configs = form_compact(root / "nodes", STATES, sync_interval_seconds=2)
    imported = ingest(configs[OWNER], root, size, exhibits)
    matter_seconds = make_matter(configs[OWNER], exhibits)
    say("starting the three nodes")
    nodes = Nodes(configs, [])
    try:
        for state in STATES:
            nodes.procs.append(start_node(configs[state]))
    except BaseException:
        nodes.stop()
        raise
    return nodes, {**imported, "matter_seconds": matter_seconds}


def roster_pin(config: Config) -> str:
    [(pin,)] = db_rows(
        config, select(m.RosterVersion.payload_sha256).where(m.RosterVersion.version == 1)
    )
    return str(pin)


# --- 1. export ---------------------------------------------------------------------------


def _witnessed(config: Config, size: int) -> bool:
    """A checkpoint of the owner's log of at least `size` entries, cosigned by
    MIN_WITNESSES other states, is held by the owner."""
    rows = db_rows(
        config,
        select(m.LogCosignature.size, m.LogCosignature.witness).where(
            m.LogCosignature.size >= size
        ),
    )
    witnesses: dict[int, set[str]] = defaultdict(set)
    for at, witness in rows:
        witnesses[int(at)].add(str(witness))
    return any(len(w) >= MIN_WITNESSES for w in witnesses.values())


def export(nodes: Nodes, out: Path) -> dict[str, Any]:
    owner = nodes.owner
    args = ("exhibit", "export", MATTER, str(out), "--zip")
    data_dir = ("--data-dir", str(owner.data_dir))
    litigator = user_env(owner, "bench.litigator", "litigator")
    say(f"{OWNER}: exporting (recording and logging the export's custody events)")
    started = time.perf_counter()
    first = run_compact(*args, "--wait", "0", *data_dir, timeout=3600, ok=False, env=litigator)
    record_seconds = time.perf_counter() - started
    if first.returncode != EXIT_WITNESSES_SHORT:
        raise BenchError(
            f"the first export run ended with {first.returncode}, not {EXIT_WITNESSES_SHORT}"
            f" (witnesses short): {first.stderr}{first.stdout}"
        )
    [(logged,)] = db_rows(owner, select(func.max(m.LogCheckpoint.size)))
    say(f"waiting for MN and CA to cosign {OWNER}'s checkpoint of {logged} entries")
    started = time.perf_counter()
    wait_on_nodes(
        "two witnesses' cosignatures", lambda: _witnessed(owner, int(logged)), nodes.procs, 300
    )
    witness_seconds = time.perf_counter() - started
    say(f"{OWNER}: exporting again (resuming: writing the folder and the zip)")
    measured = run_measured(*args, "--wait", "60", "--json", *data_dir, timeout=3600, env=litigator)
    report = json.loads(measured.stdout)
    if not report["resumed"]:
        raise BenchError("the second export run did not resume the first one's package")
    zip_path = Path(report["zip"]) if report.get("zip") else out.with_name(out.name + ".zip")
    return {
        "package_id": report["package_id"],
        "exhibits": report["exhibits"],
        "files": report["files"],
        "record_and_log_seconds": record_seconds,
        "witness_wait_seconds": witness_seconds,
        "write_seconds": measured.seconds,
        "evidence_mb_per_second": report["bytes"] / measured.seconds / MB,
        "peak_rss_mb": measured.peak_kib * 1024 / MB,
        "folder_bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
        "zip_bytes": zip_path.stat().st_size,
        "zip": str(zip_path),
    }


def time_disk_writes(folder: Path, size: int) -> float:
    """Seconds to write `size` bytes twice on this disk, each file fsynced (what export
    does for the folder and then the zip)."""
    folder.mkdir(parents=True, exist_ok=True)
    block = os.urandom(16 * MiB)
    started = time.perf_counter()
    for n in range(2):
        with (folder / f"copy-{n}").open("wb") as f:
            left = size
            while left > 0:
                left -= f.write(block[: min(len(block), left)])
            f.flush()
            os.fsync(f.fileno())
    seconds = time.perf_counter() - started
    for n in range(2):
        (folder / f"copy-{n}").unlink()
    return seconds


# --- 2 and 3. verify against plain SHA-256 ----------------------------------------------------


def package_files(folder: Path) -> list[Path]:
    """Every file of the package the verifier hashes: all but the manifest."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).as_posix() != verify_package.MANIFEST_NAME
    )


def sha256_files(paths: Sequence[Path]) -> tuple[int, float]:
    """Plain SHA-256 of every file, read in 1 MiB pieces: (bytes, seconds)."""
    buffer = bytearray(_PIECE)
    view = memoryview(buffer)
    total = 0
    started = time.perf_counter()
    for path in paths:
        h = hashlib.sha256()
        with path.open("rb", buffering=0) as f:
            while n := f.readinto(buffer):
                h.update(view[:n])
                total += n
        h.hexdigest()
    return total, time.perf_counter() - started


def verify_once(package: Path, pin: str, exhibits: int) -> tuple[int, float]:
    """`verify_package.verify` on a folder or zip, which must say it verified: (bytes
    hashed, seconds)."""
    started = time.perf_counter()
    report = verify_package.verify(str(package), roster_pin=pin)
    seconds = time.perf_counter() - started
    doc = report.to_json()
    verdicts = [e["verdict"] for e in doc["exhibits"]]
    if not doc["verified"] or verdicts != ["VERIFIED"] * exhibits:
        failures = doc["package_failures"] + [f for e in doc["exhibits"] for f in e["failures"]]
        raise BenchError(f"{package.name} did not verify: {failures[:5]}")
    return int(doc["bytes_checked"]), seconds


def compare(folder: Path, zip_path: Path, pin: str, exhibits: int, rounds: int) -> dict[str, Any]:
    files = package_files(folder)
    best: dict[str, float] = {}
    hashed: dict[str, int] = {}
    for n in range(rounds):
        say(f"round {n + 1} of {rounds}: SHA-256 of the files, verify the folder, verify the zip")
        works: list[tuple[str, Callable[[], tuple[int, float]]]] = [
            ("sha256", lambda: sha256_files(files)),
            ("folder", lambda: verify_once(folder, pin, exhibits)),
            ("zip", lambda: verify_once(zip_path, pin, exhibits)),
        ]
        for name, work in works:
            size, seconds = work()
            hashed[name] = size
            best[name] = min(seconds, best.get(name, seconds))
    if len(set(hashed.values())) != 1:
        raise BenchError(f"the verifier and SHA-256 hashed different byte counts: {hashed}")
    size = hashed["sha256"]
    rate = {k: size / v / MB for k, v in best.items()}
    return {
        "bytes": size,
        "package_files": len(files),
        "rounds": rounds,
        "seconds": best,
        "mb_per_second": rate,
        "ratio": {"folder": rate["folder"] / rate["sha256"], "zip": rate["zip"] / rate["sha256"]},
    }


# --- 4. the commands and their memory ---------------------------------------------------------


def run_script(package: Path, pin: str) -> dict[str, Any]:
    """The package's own verifier, as an outside expert might run it: `python -I -S`."""
    with tempfile.NamedTemporaryFile(prefix="compact-bench-child-", delete=False) as f:
        report_file = Path(f.name)
    try:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _SCRIPT_CHILD, str(report_file),
             str(package / VERIFIER_NAME), str(package), "--roster-pin", pin],
            capture_output=True, text=True, timeout=7200, cwd=package.parent, check=False,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise BenchError(f"verify_package.py did not verify: {result.stdout[-2000:]}")
        backend = next(
            (line.split("Ed25519: ", 1)[1].rstrip(")") for line in result.stdout.splitlines()
             if "Ed25519: " in line),
            "unknown",
        )  # fmt: skip
        peak = json.loads(report_file.read_text(encoding="ascii"))["peak_kib"]
        return {"seconds": seconds, "peak_rss_mb": peak * 1024 / MB, "ed25519": backend}
    finally:
        report_file.unlink(missing_ok=True)


def run_commands(folder: Path, zip_path: Path, pin: str, size: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, package in (("folder", folder), ("zip", zip_path)):
        say(f"`compact verify` on the {name}")
        measured = run_measured("verify", str(package), "--roster-pin", pin, "--json",
                                timeout=7200)  # fmt: skip
        if not json.loads(measured.stdout)["verified"]:
            raise BenchError(f"`compact verify` did not verify the {name}")
        out[name] = {
            "seconds": measured.seconds,
            "mb_per_second": size / measured.seconds / MB,
            "peak_rss_mb": measured.peak_kib * 1024 / MB,
        }
    say("the package's verify_package.py under `python -I -S`")
    out["script"] = run_script(folder, pin)
    out["script"]["mb_per_second"] = size / out["script"]["seconds"] / MB
    return out


# --- the run ------------------------------------------------------------------------------


def run_size(size: int, *, exhibits: int, rounds: int, tmpdir: Path | None) -> dict[str, Any]:
    if exhibits < 1 or rounds < 1:
        raise BenchError("--exhibits and --rounds must be at least 1")
    if size < exhibits:
        raise BenchError("every exhibit needs at least one byte")
    with tempfile.TemporaryDirectory(prefix="compact-bench-exhibits-", dir=tmpdir) as tmp:
        root = Path(tmp)
        nodes, setup = start_nodes(root, size, exhibits)
        try:
            pin = roster_pin(nodes.owner)
            out = root / "package"
            exported = export(nodes, out)
        finally:
            nodes.stop()
        if exported["exhibits"] != exhibits or exported["files"] != exhibits:
            raise BenchError(f"the package holds {exported['exhibits']} exhibits, not {exhibits}")
        held = {p.name: p.stat().st_size for p in (out / "exhibits").rglob("*.mp4") if p.is_file()}
        if sorted(held.values()) != sorted(setup["files"].values()):
            raise BenchError("the package's evidence files are not the imported ones")
        zip_path = Path(exported["zip"])
        os.sync()
        verified = compare(out, zip_path, pin, exhibits, rounds)
        commands = run_commands(out, zip_path, pin, verified["bytes"])
        say("context: the same bytes written twice on this disk, fsynced")
        disk = time_disk_writes(root / "disk", exported["folder_bytes"])
    ratio = verified["ratio"]
    return {
        "evidence_bytes": size,
        "exhibits": exhibits,
        "ingest_seconds": setup["seconds"],
        "matter_seconds": setup["matter_seconds"],
        "export": {
            **{k: v for k, v in exported.items() if k != "zip"},
            "disk_write_twice_seconds": disk,
        },
        "verify": verified,
        "commands": commands,
        "goal_ratio": RATIO_GOAL,
        "goal_met": min(ratio.values()) >= RATIO_GOAL,
    }


def memory_verdict(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Peak RSS of each process at the smallest and the largest size, and its growth."""
    if len(results) < 2:
        return {"judged": False, "goal_met": None, "growth": {}}
    small = min(results, key=lambda r: r["evidence_bytes"])
    large = max(results, key=lambda r: r["evidence_bytes"])
    peaks: dict[str, Callable[[dict[str, Any]], float]] = {
        "export": lambda r: r["export"]["peak_rss_mb"],
        "verify_folder": lambda r: r["commands"]["folder"]["peak_rss_mb"],
        "verify_zip": lambda r: r["commands"]["zip"]["peak_rss_mb"],
        "verify_script": lambda r: r["commands"]["script"]["peak_rss_mb"],
    }
    growth = {k: peak(large) / peak(small) - 1 for k, peak in peaks.items()}
    return {
        "judged": True,
        "sizes": [small["evidence_bytes"], large["evidence_bytes"]],
        "growth": growth,
        "goal_growth": MEMORY_GROWTH_GOAL,
        "goal_met": max(growth.values()) <= MEMORY_GROWTH_GOAL,
    }


def run(
    sizes: Sequence[int], *, exhibits: int, rounds: int, tmpdir: Path | None = None
) -> dict[str, Any]:
    results = []
    for size in sizes:
        say(f"=== {exhibits} exhibits, {human(size)} of evidence ===")
        results.append(run_size(size, exhibits=exhibits, rounds=rounds, tmpdir=tmpdir))
    return {
        "sizes": results,
        "memory": memory_verdict(results),
        "machine": {
            "python": platform.python_version(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "ed25519_in_process": verify_package.BACKEND,
        },
    }


def _verdict(met: bool | None) -> str:
    return "not judged (one size)" if met is None else "met" if met else "NOT met"


def format_table(result: dict[str, Any]) -> str:
    lines: list[str] = []
    for r in result["sizes"]:
        e, v, c = r["export"], r["verify"], r["commands"]
        rate, secs = v["mb_per_second"], v["seconds"]
        lines += [
            f"exhibits: {r['exhibits']} exhibits, {human(r['evidence_bytes'])} of evidence;"
            f" package {v['package_files']} files, {v['bytes']:,} bytes hashed; zip"
            f" {e['zip_bytes']:,} bytes",
            f"  verify folder: {rate['folder']:>8,.1f} MB/s  ({secs['folder']:.2f} s, in process,"
            f" best of {v['rounds']})",
            f"  verify zip:    {rate['zip']:>8,.1f} MB/s  ({secs['zip']:.2f} s)",
            f"  sha256:        {rate['sha256']:>8,.1f} MB/s  ({secs['sha256']:.2f} s, the same"
            " files, hashlib, 1 MiB reads)",
            f"  ratio:  folder {v['ratio']['folder']:.3f}, zip {v['ratio']['zip']:.3f}"
            f"  (goal >= {RATIO_GOAL}: {_verdict(r['goal_met'])})",
            f"  commands: `compact verify` folder {c['folder']['seconds']:.2f} s"
            f" ({c['folder']['mb_per_second']:,.1f} MB/s, peak RSS"
            f" {c['folder']['peak_rss_mb']:.1f} MB), zip {c['zip']['seconds']:.2f} s"
            f" ({c['zip']['mb_per_second']:,.1f} MB/s, {c['zip']['peak_rss_mb']:.1f} MB);"
            f" verify_package.py -I -S {c['script']['seconds']:.2f} s"
            f" ({c['script']['mb_per_second']:,.1f} MB/s, {c['script']['peak_rss_mb']:.1f} MB,"
            f" Ed25519 {c['script']['ed25519']})",
            f"  export: record and log {e['record_and_log_seconds']:.2f} s; witnesses"
            f" {e['witness_wait_seconds']:.2f} s; write folder and zip {e['write_seconds']:.2f} s"
            f" ({e['evidence_mb_per_second']:,.1f} MB/s of evidence, peak RSS"
            f" {e['peak_rss_mb']:.1f} MB); this disk writes the folder's bytes twice in"
            f" {e['disk_write_twice_seconds']:.2f} s",
            f"  setup: import {r['ingest_seconds']:.1f} s, matter {r['matter_seconds']:.1f} s",
            "",
        ]
    mem = result["memory"]
    growth = ", ".join(f"{k} {v:+.1%}" for k, v in mem["growth"].items())
    lines.append(
        f"memory across sizes: {growth or 'one size only'}"
        f" (goal <= +{MEMORY_GROWTH_GOAL:.0%}: {_verdict(mem['goal_met'])})"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(prog="python -m bench.exhibits", description=doc.splitlines()[0])
    p.add_argument(
        "--size",
        default=",".join(human(s).replace(" ", "") for s in DEFAULT_SIZES),
        help="evidence per matter, e.g. 2GiB; several (for the memory verdict): 256MiB,2GiB",
    )
    p.add_argument("--exhibits", type=int, default=DEFAULT_EXHIBITS, help="exhibits per matter")
    p.add_argument("--rounds", type=int, default=3, help="rounds of verify and SHA-256 (best)")
    p.add_argument("--json", type=Path, help="also write every figure to this file")
    p.add_argument("--tmpdir", type=Path, help="where the temporary folder goes")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    args = parse_args(argv)
    sizes = [parse_size(s) for s in str(args.size).split(",")]
    result = run(sizes, exhibits=args.exhibits, rounds=args.rounds, tmpdir=args.tmpdir)
    return emit(result, "bench.exhibits", argv, format_table, args.json, out)


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
