"""Evidence-bundle transfer benchmark: two real nodes on loopback against a plain gRPC stream.

Run from the repository root::

    .venv/bin/python -m bench.bundles [--size 2GiB[,256MiB...]] [--files 4] [--repeat 1]
                                      [--bound-rounds 3] [--breakdown]
                                      [--json FILE] [--tmpdir DIR]

For each size, untimed setup: two nodes (IL, MN) are made in a temporary folder and
form a compact through the command line (`tests.nodeproc.form_compact`), IL with
`bundles.poll_seconds = 0.5` (its serve loop seals approved bundles), MN with 3600 (it
leaves receiving to `compact bundle refresh`); `bundles.chunk_bytes` stays at its
default (1 MiB). Both run `compact serve`. Evidence files of random bytes totalling
`--size` are written (a 16 MiB random block repeated, each piece with its own prefix,
so that every file has its own SHA-256), IL imports them with one incident (sharing
`compact`, so a request is approved by the policy), and the source files are removed.
MN syncs with IL until it has cosigned a checkpoint covering the incident's index entry
and custody events; MN asks for the bundle (`compact bundle request`); IL seals it.

1. **Ours.** `compact bundle refresh --json` on MN, a child process: it unlocks MN's
   keystore, asks IL about the request and verifies the manifest with every proof
   (`bundle.manifest` audit event, outcome `verified`), fetches the sealed stream over
   FetchBundle (pinned mutual TLS), verifies every unit, stages each file encrypted at
   rest and checked against its SHA-256, spools the stream (fsynced every 32 MiB),
   stores the incident (`bundle.receive`, outcome `delivered`), then sends the signed
   receipt. The figure is the sealed stream's bytes over the span from MN's
   `bundle.manifest` event to its `bundle.receive` event (their `at` in MN's
   `audit_events`); the whole command's wall time and IL's own span (`bundle.fetch`
   `started` to `sent`) are reported beside it. Afterwards (untimed) MN's evidence
   rows are compared with the source files (name, SHA-256, size), every received blob
   is decrypted with MN's data key and hashed again, IL must have taken the receipt,
   and both spools must be gone: a transfer that is not right fails the benchmark.
2. **Bound.** A plain gRPC server stream of the same bytes in the same units (the
   stream's header, then one message per 1 MiB chunk + 17 bytes, the last one short),
   from a `grpc.aio` server in a child process to a `grpc.aio` client in this process,
   over mutual TLS made with the node's helpers (`federation.mtls.server_credentials`,
   `channel_credentials`) and certificates made for the benchmark
   (`crypto.tls`). Messages are raw bytes (identity serializers, no protobuf); the
   same stream as `FetchBundleResponse` messages is reported as context. A new channel
   (so a new handshake) for each round, as a node dials for each transfer; the
   nodes are stopped first; best of `--bound-rounds`. Goal: ours at least 0.5 of it.
3. **Peak memory.** VmHWM (the peak resident set) of IL's `compact serve` process,
   read from /proc after the transfer (it covers the node's whole life: start,
   publishing, sealing, serving) and before the request, and of MN's
   `compact bundle refresh` process, read by the process itself at exit (the child
   runs `node.cli` as `__main__` with an atexit hook, so the figure covers it all).
   Goal: both under 300 MB whatever the size.
4. **Context.** With `--breakdown` the refresh child also times where the requester's
   threads spend the transfer (the task reading FetchBundle waiting on the network, the
   loop waiting for a unit read ahead, verifying and decrypting, handing units on, the
   spool thread, the staging thread, saving progress, storing) with timers wrapped
   around the node's own methods. The threads overlap, so these are not shares of
   the span. And the same number of bytes is written twice on this disk (a spool
   fsynced every 32 MiB and a staged file fsynced at its end), as the requester does:
   what the disk alone allows.

MB is 10^6 bytes. Progress goes to stderr, the table to stdout; nothing here asserts a
timing.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import grpc
from sqlalchemy import select

from bench.ingest import say
from compact.v1 import federation_pb2 as pb
from crypto.sealing import ABYTES, header_size
from crypto.tls import generate_tls_key, self_signed_certificate
from federation.mtls import channel_credentials, server_credentials
from node import models as m
from node.bundles import INCOMING, OUTGOING
from node.config import Config
from node.setup import open_storage, read_secret, unlock
from tests.helpers import record, write_jsonl
from tests.nodeproc import (
    REPO,
    NodeProcess,
    db_rows,
    form_compact,
    run_compact,
    set_setting,
    start_node,
    user_env,
)

HOLDER: Final = "IL"
REQUESTER: Final = "MN"
MiB: Final = 1 << 20
GiB: Final = 1 << 30
MB: Final = 1_000_000
DEFAULT_SIZE: Final = 2 * GiB
RATIO_GOAL: Final = 0.5  # our MB/s over the plain gRPC stream's, at least
MEMORY_GOAL_MB: Final = 300.0  # peak RSS of each node process, below
_BLOCK: Final = 16 * MiB
_PREFIX: Final = struct.Struct(">QQQ")  # run, file, block: every block of every file differs
_SERVICE: Final = "compact.bench.v1.Bound"
_KINDS: Final = ("raw", "protobuf")
# The nodes' channel and server options (node.fedclient.PeerClient, start_federation_server).
_CLIENT_OPTIONS: Final = [
    ("grpc.max_receive_message_length", 8 * MiB),
    ("grpc.max_send_message_length", 8 * MiB),
]
_SERVER_OPTIONS: Final = [("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 4 * MiB)]
# Runs `compact` (node.cli as __main__); at exit writes JSON to argv[1]: the process's
# VmHWM and, when argv[2] is "1", the seconds the requester spent in each step of receiving
# (timers wrapped around the node's own methods; a few microseconds per 1 MiB unit).
_MEASURED_CHILD: Final = """\
import atexit, collections, functools, json, runpy, sys, time
out, breakdown = sys.argv[1], sys.argv[2] == "1"
sys.argv = ["compact", *sys.argv[3:]]
steps = collections.defaultdict(float)
def report():
    with open("/proc/self/status", encoding="ascii") as f:
        peak = int(next(x for x in f if x.startswith("VmHWM:")).split()[1])
    with open(out, "w", encoding="ascii") as f:
        json.dump({"peak_kib": peak, "steps": steps}, f)
atexit.register(report)
if breakdown:
    from crypto.sealing import SealedStreamReader
    from node import bundle_receive, fedclient, fednode
    def timed(cls, name, step):
        inner = getattr(cls, name)
        @functools.wraps(inner)
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                steps[step] += time.perf_counter() - started
        setattr(cls, name, wrapper)
    timed(bundle_receive.Receiving, "feed", "feed")
    timed(SealedStreamReader, "feed", "feed_verify_decrypt")
    timed(bundle_receive.Receiving, "_append", "spool_thread")
    timed(bundle_receive._Carver, "write", "staging_thread")
    timed(bundle_receive.Receiving, "settle", "settle")
    timed(bundle_receive.BundleReceiver, "save_progress", "save_progress")
    timed(bundle_receive.BundleReceiver, "store", "store")
    def timed_iter(inner, step):
        async def wrapper(*args, **kwargs):
            items = inner(*args, **kwargs)
            try:
                while True:
                    started = time.perf_counter()
                    try:
                        item = await items.__anext__()
                    except StopAsyncIteration:
                        return
                    finally:
                        steps[step] += time.perf_counter() - started
                    yield item
            finally:
                await items.aclose()
        return wrapper
    fedclient.PeerClient.fetch_bundle = timed_iter(fedclient.PeerClient.fetch_bundle, "network")
    fednode.read_ahead = timed_iter(fednode.read_ahead, "wait_for_unit")
runpy.run_module("node.cli", run_name="__main__", alter_sys=True)
"""


_TIMELINE: Final = (
    "start_to_manifest_verified",
    "manifest_verified_to_fetch_started",
    "fetch_started_to_sent",
    "sent_to_delivered",
    "delivered_to_exit",
)


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to (or the transfer was wrong)."""


# --- sizes and evidence ------------------------------------------------------------------


_UNITS: Final = {
    "": 1,
    "b": 1,
    "kib": 1 << 10,
    "mib": MiB,
    "gib": GiB,
    "kb": 1000,
    "mb": MB,
    "gb": 1000 * MB,
}


def parse_size(text: str) -> int:
    """Bytes from `2GiB`, `256MiB`, `4096` (binary or decimal units, case-insensitive)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*", text.lower())
    if found is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 256MiB, 2GiB)")
    size = int(float(found.group(1)) * _UNITS[found.group(2) or ""])
    if size < 1:
        raise argparse.ArgumentTypeError("a size must be at least one byte")
    return size


def human(size: int) -> str:
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size:,} B"


@dataclass(frozen=True)
class SourceFile:
    name: str
    sha256: str
    size: int


def write_evidence(folder: Path, total: int, files: int, run: int) -> list[SourceFile]:
    """`files` files of random bytes totalling `total`, written without holding them in
    memory: one random 16 MiB block, each piece of it prefixed with (run, file, piece)."""
    folder.mkdir(parents=True, exist_ok=True)
    block = memoryview(os.urandom(_BLOCK))
    sizes = [total // files + (1 if i < total % files else 0) for i in range(files)]
    out = []
    for f, size in enumerate(sizes):
        name = f"clip-{run + 1}-{f + 1}.mp4"
        digest = hashlib.sha256()
        with (folder / name).open("wb") as dst:
            written, piece = 0, 0
            while written < size:
                take = min(_BLOCK, size - written)
                data = (_PREFIX.pack(run, f, piece) + block[_PREFIX.size : _BLOCK])[:take]
                digest.update(data)
                dst.write(data)
                written += take
                piece += 1
        out.append(SourceFile(name, digest.hexdigest(), size))
    return out


# --- peak memory -------------------------------------------------------------------------


def vm_hwm_kib(pid: int) -> int:
    """The peak resident set (VmHWM) of a running process, in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise BenchError(f"no VmHWM for process {pid}")


@dataclass(frozen=True)
class Measured:
    stdout: str
    seconds: float
    peak_kib: int
    started: datetime
    steps: dict[str, float]


def run_measured(
    *args: str, timeout: float, breakdown: bool = False, env: dict[str, str] | None = None
) -> Measured:
    """`compact ARGS` in a child process (`env` added to this one's environment): its
    output, wall time and peak RSS (VmHWM), and with `breakdown` the seconds it spent in
    each step of receiving a bundle."""
    with tempfile.NamedTemporaryFile(prefix="compact-bench-child-", delete=False) as f:
        report_file = Path(f.name)
    try:
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", _MEASURED_CHILD, str(report_file), str(int(breakdown)), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            check=False,
        )
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise BenchError(f"compact {' '.join(args)} failed: {result.stderr}{result.stdout}")
        text = report_file.read_text(encoding="ascii")
        if not text:
            raise BenchError("the child did not report its peak memory")
        report = json.loads(text)
        steps = {str(k): float(v) for k, v in report["steps"].items()}
        return Measured(result.stdout, seconds, int(report["peak_kib"]), started_at, steps)
    finally:
        report_file.unlink(missing_ok=True)


# --- the transfer between two nodes ---------------------------------------------------------


def wait_on_nodes(
    what: str,
    check: Callable[[], bool],
    procs: Sequence[NodeProcess],
    timeout: float,
    pause: float = 0.2,
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for p in procs:
            if p.proc.poll() is not None:
                raise BenchError(f"{p.config.node.state}'s node exited: {p.raw_logs()[-4000:]}")
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(pause)


def witness(il: Config, mn: Config, published: int, procs: Sequence[NodeProcess]) -> None:
    """MN syncs with IL until it has cosigned a checkpoint holding IL's `published` index
    entries and every custody event IL recorded (as tests/test_bundle_transfer.py does)."""

    def cosigned() -> bool:
        run_compact("sync", "--data-dir", str(mn.data_dir), ok=False)
        size = db_rows(il, select(m.LogCosignature.size))
        entries = db_rows(il, select(m.PublishedEntry.log_index))
        custody = db_rows(
            il, select(m.CustodyEvent.log_index).where(m.CustodyEvent.origin.is_(None))
        )
        indexes = [int(i) for (i,) in entries + custody if i is not None]
        return (
            len(entries) == published
            and not any(i is None for (i,) in custody)
            and bool(size)
            and max(int(s) for (s,) in size) > max(indexes)
        )

    wait_on_nodes("MN to cosign IL's checkpoint", cosigned, procs, timeout=180)


def audit_times(config: Config, target: str) -> dict[str, datetime]:
    """`action:outcome` -> the time of the latest such audit event about `target`."""
    rows = db_rows(
        config,
        select(m.AuditEvent.action, m.AuditEvent.outcome, m.AuditEvent.at)
        .where(m.AuditEvent.target == target, m.AuditEvent.action.like("bundle.%"))
        .order_by(m.AuditEvent.id),
    )
    return {f"{a}:{o}": at.replace(tzinfo=UTC) if at.tzinfo is None else at for a, o, at in rows}


def _span(times: dict[str, datetime], start: str, end: str) -> float:
    if start not in times or end not in times:
        raise BenchError(f"the audit trail lacks {start if start not in times else end}")
    return (times[end] - times[start]).total_seconds()


def verify_received(mn: Config, global_id: str, files: Sequence[SourceFile]) -> int:
    """Check (untimed) that MN stored every file with the right name, SHA-256 and size,
    and that every blob decrypts to bytes with that SHA-256; the bytes checked."""
    [(incident_id, state)] = db_rows(
        mn, select(m.Incident.id, m.Incident.state).where(m.Incident.global_id == global_id)
    )
    if state != HOLDER:
        raise BenchError(f"MN stored the incident under {state}, not {HOLDER}")
    items = db_rows(
        mn,
        select(m.EvidenceItem.file_name, m.EvidenceItem.sha256, m.EvidenceItem.size)
        .where(m.EvidenceItem.incident_id == incident_id)
        .order_by(m.EvidenceItem.position),
    )
    if [(str(n), str(s), int(z)) for n, s, z in items] != [
        (f.name, f.sha256, f.size) for f in files
    ]:
        raise BenchError("MN's evidence rows differ from the files IL imported")
    keys = unlock(mn, read_secret(mn))
    storage = open_storage(mn, keys)
    checked = 0
    try:
        for f in files:
            digest = hashlib.sha256()
            for piece in storage.blobs.read(f.sha256, chunk_size=MiB):
                digest.update(piece)
                checked += len(piece)
            if digest.hexdigest() != f.sha256:
                raise BenchError(f"MN's blob of {f.name} does not have the file's SHA-256")
    finally:
        storage.db.dispose()
    return checked


def _steps(measured: dict[str, float], transfer: float) -> dict[str, float]:
    """Where the requester's threads spent the transfer span, from the instrumented child.
    They overlap: each is one thread's (or task's) own time, not a share of the span."""
    feed = measured.get("feed", 0.0)
    verify = measured.get("feed_verify_decrypt", 0.0)
    return {
        "transfer_span": transfer,
        # the task reading FetchBundle: awaiting the next unit from the holder
        "network": measured.get("network", 0.0),
        # the loop handing units to the verifier: awaiting one from the reading task
        "wait_for_unit": measured.get("wait_for_unit", 0.0),
        # the verifying thread: opening each unit, then waiting for room in the queues
        "verify_decrypt": verify,
        "hand_off": feed - verify,
        "spool_thread": measured.get("spool_thread", 0.0),
        "staging_thread": measured.get("staging_thread", 0.0),
        "save_progress": measured.get("save_progress", 0.0),
        "settle": measured.get("settle", 0.0),
        "store": measured.get("store", 0.0),
    }


def transfer_once(
    il: Config,
    mn: Config,
    procs: Sequence[NodeProcess],
    root: Path,
    size: int,
    files: int,
    run: int,
    *,
    breakdown: bool = False,
) -> dict[str, Any]:
    """One incident with `size` bytes of evidence, from IL's import to MN's delivery."""
    external_id = f"IL-BENCH-{run + 1}"
    folder = root / f"in-{run + 1}"
    say(f"writing {human(size)} of evidence in {files} files")
    sources = write_evidence(folder / "media", size, files, run)
    evidence = [
        {"path": f"media/{f.name}", "media_type": "video/mp4", "captured_by": "bystander"}
        for f in sources
    ]
    records = write_jsonl(folder, [record(external_id, sharing="compact", evidence=evidence)])
    say(f"{HOLDER}: ingesting the incident")
    started = time.perf_counter()
    run_compact("ingest", str(records), "--data-dir", str(il.data_dir), timeout=3600)
    ingest_seconds = time.perf_counter() - started
    for f in sources:
        (folder / "media" / f.name).unlink()
    [(global_id,)] = db_rows(
        il, select(m.Incident.global_id).where(m.Incident.external_id == external_id)
    )
    say(f"{REQUESTER}: witnessing {HOLDER}'s log")
    witness(il, mn, run + 1, procs)
    il_before_kib = vm_hwm_kib(procs[0].proc.pid)
    say(f"{REQUESTER}: requesting the bundle")
    out = run_compact(
        "bundle",
        "request",
        "--state",
        HOLDER,
        "--incident",
        global_id,
        "--purpose",
        "benchmark: the same agent in two states",
        "--json",
        "--data-dir",
        str(mn.data_dir),
        env=user_env(mn, "analyst.bench", "analyst"),
    )
    request = json.loads(out.stdout)
    request_id = request["request_id"]
    if request["state"] != "approved":
        raise BenchError(f"the request is {request['state']}, not approved")

    def incoming_state() -> str:
        [(state,)] = db_rows(
            il,
            select(m.BundleRequestRow.state).where(
                m.BundleRequestRow.direction == INCOMING,
                m.BundleRequestRow.request_id == request_id,
            ),
        )
        if state in ("failed", "denied"):
            raise BenchError(f"{HOLDER} did not seal the bundle: {state}")
        return str(state)

    say(f"{HOLDER}: sealing")
    wait_on_nodes(
        "IL to seal the bundle",
        lambda: incoming_state() == "sealed",
        procs,
        timeout=600 + size / (5 * MB),
    )
    [(sealed_size, units)] = db_rows(
        il,
        select(m.Bundle.sealed_size, m.Bundle.units)
        .join(m.BundleRequestRow, m.BundleRequestRow.id == m.Bundle.request_row_id)
        .where(m.BundleRequestRow.request_id == request_id),
    )
    os.sync()  # what earlier steps wrote is not written back during the transfer
    say(f"{REQUESTER}: compact bundle refresh ({sealed_size:,} sealed bytes)")
    refresh = run_measured(
        "bundle",
        "refresh",
        "--json",
        "--data-dir",
        str(mn.data_dir),
        timeout=3600 + size / MB,
        breakdown=breakdown,
    )
    results = json.loads(refresh.stdout)
    expected = {"request_id": request_id, "holder": HOLDER, "state": "delivered", "error": None}
    if expected not in results:
        raise BenchError(f"the bundle was not delivered: {results}")
    say("checking what MN stored (every blob decrypted and hashed again)")
    checked = verify_received(mn, global_id, sources)
    wait_on_nodes(
        "IL to take the receipt", lambda: incoming_state() == "delivered", procs, timeout=120
    )
    bundle_id = str(request.get("bundle_id") or "")
    for config in (il, mn):
        left = list(config.bundle_dir.glob("*.sealed"))
        if left:
            raise BenchError(f"a spool is left in {config.node.state}: {left}")
    [(mn_state,)] = db_rows(
        mn,
        select(m.BundleRequestRow.state).where(
            m.BundleRequestRow.direction == OUTGOING, m.BundleRequestRow.request_id == request_id
        ),
    )
    mn_times, il_times = audit_times(mn, global_id), audit_times(il, global_id)
    transfer = _span(mn_times, "bundle.manifest:verified", "bundle.receive:delivered")
    served = _span(il_times, "bundle.fetch:started", "bundle.fetch:sent")
    sealing = _span(il_times, "bundle.decide:approved", "bundle.seal:sealed")
    marks = [
        refresh.started,
        mn_times["bundle.manifest:verified"],
        il_times["bundle.fetch:started"],
        il_times["bundle.fetch:sent"],
        mn_times["bundle.receive:delivered"],
        refresh.started + timedelta(seconds=refresh.seconds),
    ]
    timeline = {
        name: (end - begin).total_seconds()
        for name, begin, end in zip(_TIMELINE, marks, marks[1:], strict=False)
    }
    return {
        "request_id": request_id,
        "bundle_id": bundle_id or None,
        "state_at_requester": mn_state,
        "evidence_bytes": size,
        "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in sources],
        "sealed_bytes": int(sealed_size),
        "units": int(units),
        "ingest_seconds": ingest_seconds,
        "sealing_seconds": sealing,
        "transfer_seconds": transfer,
        "holder_serving_seconds": served,
        "command_seconds": refresh.seconds,
        "timeline_seconds": timeline,
        "steps_seconds": _steps(refresh.steps, transfer) if breakdown else None,
        "mb_per_second": sealed_size / transfer / MB,
        "command_mb_per_second": sealed_size / refresh.seconds / MB,
        "requester_peak_rss_kib": refresh.peak_kib,
        "holder_peak_rss_before_request_kib": il_before_kib,
        "verified": {
            "files": len(sources),
            "bytes_decrypted_and_hashed": checked,
            "receipt_taken_by_holder": True,
            "spools_removed": True,
        },
    }


def bench_nodes(
    size: int, files: int, repeat: int, root: Path, *, breakdown: bool = False
) -> dict[str, Any]:
    say("forming a compact of IL and MN (roster, key ceremony, shares)")
    configs = form_compact(root, (HOLDER, REQUESTER))
    il, mn = configs[HOLDER], configs[REQUESTER]
    set_setting(il, "poll_seconds", 0.5)
    set_setting(mn, "poll_seconds", 3600)
    procs: list[NodeProcess] = []
    try:
        procs.append(start_node(il))
        procs.append(start_node(mn))
        started_kib = vm_hwm_kib(procs[0].proc.pid)
        runs = [
            transfer_once(il, mn, procs, root, size, files, r, breakdown=breakdown)
            for r in range(repeat)
        ]
        il_peak_kib = vm_hwm_kib(procs[0].proc.pid)
    finally:
        for p in procs:
            p.stop()
    return {
        "chunk_bytes": il.bundles.chunk_bytes,
        "runs": runs,
        "holder_peak_rss_at_start_kib": started_kib,
        "holder_peak_rss_kib": il_peak_kib,
    }


# --- the bound: a plain gRPC server stream over mutual TLS -----------------------------------


def unit_sizes(sealed_size: int, chunk_size: int) -> tuple[int, int, int]:
    """(header, full unit, last unit) of a sealed stream of `sealed_size` bytes."""
    head = header_size(1)
    unit = chunk_size + ABYTES
    body = sealed_size - head
    if body < ABYTES:
        raise BenchError("a sealed stream holds at least one chunk")
    last = body - (-(-body // unit) - 1) * unit
    return head, unit, last


async def _serve_bound(folder: Path) -> None:
    """The bound's server: streams `total` bytes in the sealed stream's units."""
    credentials = server_credentials(
        (folder / "server.key").read_bytes(),
        (folder / "server.pem").read_bytes(),
        [(folder / "client.pem").read_bytes()],
    )
    payload = os.urandom(4 * MiB)

    def units(request: bytes) -> tuple[int, list[tuple[int, bytes]]]:
        total, head, unit = _PREFIX.unpack(request)
        first, full = payload[:head], payload[:unit]
        out, offset = [], 0
        while offset < total:
            size = head if offset == 0 else min(unit, total - offset)
            out.append((offset, first if offset == 0 else full if size == unit else payload[:size]))
            offset += size
        return total, out

    async def raw(request: bytes, _context: Any) -> AsyncIterator[bytes]:
        for _offset, data in units(request)[1]:
            yield data

    async def protobuf(request: bytes, _context: Any) -> AsyncIterator[pb.FetchBundleResponse]:
        for offset, data in units(request)[1]:
            yield pb.FetchBundleResponse(offset=offset, data=data)

    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "raw": grpc.unary_stream_rpc_method_handler(raw),
        "protobuf": grpc.unary_stream_rpc_method_handler(
            protobuf, response_serializer=pb.FetchBundleResponse.SerializeToString
        ),
    }
    server = grpc.aio.server(options=_SERVER_OPTIONS)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


async def _stream_once(
    target: str, credentials: grpc.ChannelCredentials, kind: str, request: bytes
) -> tuple[int, int, float]:
    """(bytes, messages, seconds) of one call on a new channel (its handshake included)."""
    started = time.perf_counter()
    async with grpc.aio.secure_channel(target, credentials, options=_CLIENT_OPTIONS) as channel:
        got = messages = 0
        if kind == "raw":
            raw: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
                f"/{_SERVICE}/raw"
            )
            async for data in raw(request):
                got += len(data)
                messages += 1
        else:
            typed: grpc.aio.UnaryStreamMultiCallable[bytes, pb.FetchBundleResponse]
            typed = channel.unary_stream(
                f"/{_SERVICE}/protobuf", response_deserializer=pb.FetchBundleResponse.FromString
            )
            async for response in typed(request):
                assert isinstance(response, pb.FetchBundleResponse)
                if response.offset != got:
                    raise BenchError("the bound's stream is out of order")
                got += len(response.data)
                messages += 1
        return got, messages, time.perf_counter() - started


def bench_bound(sealed_size: int, chunk_size: int, rounds: int, folder: Path) -> dict[str, Any]:
    """The same bytes in the same units over a plain mutual-TLS gRPC stream, best of
    `rounds` for each message kind (interleaved)."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = {}
    for name in ("server", "client"):
        key = generate_tls_key()
        cert = self_signed_certificate(
            key, common_name=f"compact bench {name}", hosts=["localhost", "127.0.0.1"]
        )
        (folder / f"{name}.key").write_bytes(key)
        (folder / f"{name}.pem").write_bytes(cert)
        keys[name] = (key, cert)
    head, unit, _last = unit_sizes(sealed_size, chunk_size)
    request = _PREFIX.pack(sealed_size, head, unit)
    expected_messages = 1 + -(-(sealed_size - head) // unit)
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.bundles", "--bound-server", str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.strip().isdigit():
            raise BenchError("the bound's server did not start")
        target = f"127.0.0.1:{int(line)}"
        credentials = channel_credentials(keys["client"][0], keys["client"][1], keys["server"][1])
        best: dict[str, float] = {}
        for r in range(rounds):
            for kind in _KINDS:
                got, messages, seconds = asyncio.run(
                    _stream_once(target, credentials, kind, request)
                )
                if got != sealed_size or messages != expected_messages:
                    raise BenchError(f"the bound streamed {got} bytes in {messages} messages")
                say(f"bound ({kind}), round {r + 1}: {sealed_size / seconds / MB:,.0f} MB/s")
                best[kind] = min(best.get(kind, float("inf")), seconds)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return {
        "bytes": sealed_size,
        "messages": expected_messages,
        "unit_bytes": unit,
        "rounds": rounds,
        "seconds": best,
        "mb_per_second": {k: sealed_size / v / MB for k, v in best.items()},
    }


# --- context: what the requester's disk takes --------------------------------------------------


def time_disk_writes(size: int, folder: Path) -> float:
    """Seconds to write `size` bytes twice on this disk, as the requester writes a bundle:
    into a spool fsynced every `SYNC_BYTES` and into a staged file fsynced at its end,
    1 MiB at a time, interleaved. Context only: no network, no cryptography."""
    from node.bundle_receive import SYNC_BYTES

    folder.mkdir(parents=True, exist_ok=True)
    data = os.urandom(MiB)
    os.sync()
    started = time.perf_counter()
    with (folder / "spool").open("wb") as spool, (folder / "staged").open("wb") as staged:
        written = unsynced = 0
        while written < size:
            piece = data if size - written >= MiB else data[: size - written]
            spool.write(piece)
            staged.write(piece)
            written += len(piece)
            unsynced += len(piece)
            if unsynced >= SYNC_BYTES:
                spool.flush()
                os.fsync(spool.fileno())
                unsynced = 0
        for f in (spool, staged):
            f.flush()
            os.fsync(f.fileno())
    seconds = time.perf_counter() - started
    for name in ("spool", "staged"):
        (folder / name).unlink()
    return seconds


# --- the run ----------------------------------------------------------------------------------


def run_size(
    size: int,
    *,
    files: int = 4,
    repeat: int = 1,
    bound_rounds: int = 3,
    breakdown: bool = False,
    tmpdir: Path | None = None,
) -> dict[str, Any]:
    if files < 1 or repeat < 1 or bound_rounds < 1:
        raise BenchError("--files, --repeat and --bound-rounds must be at least 1")
    if size < files:
        raise BenchError("every file needs at least one byte")
    with tempfile.TemporaryDirectory(prefix="compact-bench-bundles-", dir=tmpdir) as tmp:
        root = Path(tmp)
        nodes = bench_nodes(size, files, repeat, root, breakdown=breakdown)
        sealed = {r["sealed_bytes"] for r in nodes["runs"]}
        if len(sealed) != 1:
            raise BenchError(f"the repeats sealed streams of different sizes: {sorted(sealed)}")
        say(f"bound: a plain gRPC stream of the same {min(sealed):,} bytes, {bound_rounds} rounds")
        os.sync()
        bound = bench_bound(min(sealed), nodes["chunk_bytes"], bound_rounds, root / "bound")
        say("context: writing the same bytes twice on this disk (spool and staged files)")
        disk_seconds = time_disk_writes(min(sealed), root / "disk")
    best = min(nodes["runs"], key=lambda r: r["transfer_seconds"])
    bound_rate = bound["mb_per_second"]["raw"]
    ratio = best["mb_per_second"] / bound_rate
    holder_mb = nodes["holder_peak_rss_kib"] * 1024 / MB
    requester_mb = max(r["requester_peak_rss_kib"] for r in nodes["runs"]) * 1024 / MB
    return {
        "evidence_bytes": size,
        "files": files,
        "repeat": repeat,
        "chunk_bytes": nodes["chunk_bytes"],
        "sealed_bytes": best["sealed_bytes"],
        "units": best["units"],
        "ours": best,
        "ours_runs": nodes["runs"],
        "bound": bound,
        "ratio": ratio,
        "command_ratio": best["command_mb_per_second"] / bound_rate,
        "disk_write_twice_seconds": disk_seconds,
        "disk_mb_per_second": best["sealed_bytes"] / disk_seconds / MB,
        "goal_ratio": RATIO_GOAL,
        "goal_met": ratio >= RATIO_GOAL,
        "holder_peak_rss_mb": holder_mb,
        "holder_peak_rss_at_start_mb": nodes["holder_peak_rss_at_start_kib"] * 1024 / MB,
        "requester_peak_rss_mb": requester_mb,
        "goal_memory_mb": MEMORY_GOAL_MB,
        "memory_goal_met": max(holder_mb, requester_mb) < MEMORY_GOAL_MB,
        "verified": all(r["verified"]["bytes_decrypted_and_hashed"] == size for r in nodes["runs"]),
    }


def run(
    sizes: Sequence[int],
    *,
    files: int = 4,
    repeat: int = 1,
    bound_rounds: int = 3,
    breakdown: bool = False,
    tmpdir: Path | None = None,
) -> dict[str, Any]:
    results = []
    for size in sizes:
        say(f"=== {human(size)} of evidence ===")
        results.append(
            run_size(
                size,
                files=files,
                repeat=repeat,
                bound_rounds=bound_rounds,
                breakdown=breakdown,
                tmpdir=tmpdir,
            )
        )
    return {
        "sizes": results,
        "machine": {
            "python": platform.python_version(),
            "grpcio": grpc.__version__,
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
        },
    }


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def format_table(result: dict[str, Any]) -> str:
    lines: list[str] = []
    for r in result["sizes"]:
        ours, bound = r["ours"], r["bound"]
        t = ours["timeline_seconds"]
        rates = bound["mb_per_second"]
        lines += [
            f"bundle: {human(r['evidence_bytes'])} of evidence in {r['files']} files; sealed"
            f" stream {r['sealed_bytes']:,} bytes in {r['units']:,} units (chunks of"
            f" {human(r['chunk_bytes'])} + {ABYTES} B)",
            f"  ours:   {ours['mb_per_second']:>8,.1f} MB/s  ({ours['transfer_seconds']:.2f} s,"
            f" MN manifest verified -> delivered; IL served it in"
            f" {ours['holder_serving_seconds']:.2f} s)",
            f"  whole:  {ours['command_mb_per_second']:>8,.1f} MB/s  (`compact bundle refresh`"
            f" {ours['command_seconds']:.2f} s)",
            f"  bound:  {rates['raw']:>8,.1f} MB/s  (plain gRPC server stream, mTLS, raw bytes,"
            f" best of {bound['rounds']}; as FetchBundleResponse {rates['protobuf']:,.1f} MB/s)",
            f"  ratio:  {r['ratio']:>8.3f}  (goal >= {RATIO_GOAL}: {_verdict(r['goal_met'])});"
            f" whole command {r['command_ratio']:.3f}",
            f"  peak RSS: IL serve {r['holder_peak_rss_mb']:.1f} MB (at start"
            f" {r['holder_peak_rss_at_start_mb']:.1f} MB), MN refresh"
            f" {r['requester_peak_rss_mb']:.1f} MB (goal < {MEMORY_GOAL_MB:.0f} MB:"
            f" {_verdict(r['memory_goal_met'])})",
            f"  disk:   {r['disk_mb_per_second']:>8,.1f} MB/s  (context: the same bytes written"
            f" twice, spool and staged files, with fsyncs, {r['disk_write_twice_seconds']:.2f} s)",
            "  refresh timeline (s): "
            + ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in t.items()),
            f"  context: IL ingested in {ours['ingest_seconds']:.1f} s and sealed in"
            f" {ours['sealing_seconds']:.1f} s (decision -> sealed); transfer verified:"
            f" {'yes' if r['verified'] else 'NO'}",
        ]
        if ours["steps_seconds"] is not None:
            lines.append(
                "  requester's threads in the transfer span (s, overlapping): "
                + ", ".join(
                    f"{k.replace('_', ' ')} {v:.2f}" for k, v in ours["steps_seconds"].items()
                )
            )
        if r["repeat"] > 1:
            lines.append(
                "  repeats (transfer s): "
                + ", ".join(f"{x['transfer_seconds']:.2f}" for x in r["ours_runs"])
            )
        lines.append("")
    return "\n".join(lines).rstrip()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.bundles", description=__doc__.splitlines()[0])
    p.add_argument(
        "--size",
        default=human(DEFAULT_SIZE).replace(" ", ""),
        help="evidence per bundle, e.g. 256MiB or 2GiB; several: 256MiB,2GiB",
    )
    p.add_argument("--files", type=int, default=4, help="evidence files per bundle")
    p.add_argument("--repeat", type=int, default=1, help="transfers per size (best reported)")
    p.add_argument("--bound-rounds", type=int, default=3, help="rounds of the bound (best)")
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="time the requester's steps (timers around the node's receiving methods)",
    )
    p.add_argument("--json", type=Path, help="also write every figure to this file")
    p.add_argument("--tmpdir", type=Path, help="where the temporary folder goes")
    p.add_argument("--bound-server", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    args = parse_args(argv)
    if args.bound_server is not None:
        asyncio.run(_serve_bound(args.bound_server))
        return 0
    sizes = [parse_size(s) for s in str(args.size).split(",")]
    result = run(
        sizes,
        files=args.files,
        repeat=args.repeat,
        bound_rounds=args.bound_rounds,
        breakdown=args.breakdown,
        tmpdir=args.tmpdir,
    )
    return emit(result, "bench.bundles", argv, format_table, args.json, out)


def emit(
    result: dict[str, Any],
    module: str,
    argv: Sequence[str] | None,
    table: Callable[[dict[str, Any]], str],
    json_path: Path | None,
    out: Callable[[str], None],
) -> int:
    """The run's command recorded in `result`, its table printed, its JSON written."""
    result["command"] = " ".join([f"python -m {module}", *(argv or sys.argv[1:])])
    out(table(result))
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
