"""Federation benchmark: three real nodes on loopback, each figure against the primitive beneath.

Run from the repository root::

    .venv/bin/python -m bench.federation [--entries N] [--inputs N] [--json FILE]

Setup (untimed unless said): three nodes (CA, IL, MN) are made in a temporary
folder and form a compact through the command line (`tests.nodeproc.form_compact`:
member cards, roster, OPRF key ceremony 2-of-3, signatures, pins, shares). IL
ingests N generated incidents (bench.ingest's generator); the three nodes are
started (`compact serve`, each its own process) and IL's federation loop
publishes the N index entries, pseudonymising their identifier keys through
the compact's OPRF with CA's help (the time this takes is reported as context).

1. **Sync.** `compact sync --json` on MN, a child process, replicates IL's log:
   N entries fetched over FederationService (pinned mutual TLS), every batch's
   Merkle consistency proof checked, every entry's DSSE signature verified
   against IL's roster key, parsed and stored with its pseudonyms; then the
   checkpoint is cosigned. Ours is the seconds MN's node reports for IL's
   round (`seconds` in the command's output). Afterwards (untimed) MN's replica
   is compared with IL's published index, entry for entry.
   Bound: the same N signatures verified with raw libsodium Ed25519 (each
   envelope's pre-authentication encoding built beforehand, untimed), through
   `pysodium.crypto_sign_verify_detached` and through PyNaCl's
   `crypto_sign_open`, fastest of three rounds of the faster of the two.
   Goal: entries/s at least 0.3 of the bound.
2. **Pseudonyms over gRPC.** In this process, MN's own node code (its keys
   unlocked, its database) pseudonymises `--inputs` fresh identifier keys
   through share holders that are the real node processes: "remote" asks IL
   and CA over FederationService (both holders over gRPC); "node" is what a
   node does when it publishes: its own share in process and one peer over
   gRPC. Both include blinding, every DLEQ proof verified, combining and the
   node's pseudonym cache. Bound: bench.crypto_oprf's in-process threshold
   OPRF (2-of-3, proofs verified, the figure bench.crypto reports) run in this
   process just before. Goal: the gRPC rates at least 0.5 of the in-process
   rate. The two paths are checked (untimed) to give the same pseudonyms.

Progress goes to stderr, the table to stdout; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import nacl.bindings
import pysodium
from sqlalchemy import delete, func, select

from bench import crypto_oprf
from bench.ingest import generate_records, migrate_sqlite, say, write_records
from crypto.dsse import Envelope, pae
from federation.roster import Roster
from node import models as m
from node.config import Config
from node.db import Database
from node.fednode import STORE_GROUP, FederationNode
from node.setup import open_storage, read_secret, unlock
from tests.nodeproc import NodeProcess, form_compact, run_compact, set_setting, start_node

STATES: Final = ("CA", "IL", "MN")
ORIGIN: Final = "IL"  # holds the entries (bench.ingest's records are Illinois incidents)
SYNCER: Final = "MN"
SYNC_GOAL: Final = 0.3  # entries/s over raw Ed25519 verifications/s, at least
OPRF_GOAL: Final = 0.5  # gRPC pseudonyms/s over in-process pseudonyms/s, at least
_ROUNDS: Final = 3
_SAMPLE: Final = 20  # pseudonyms compared between the two paths


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to."""


# --- setup ---------------------------------------------------------------------------------


def _open_db(config: Config) -> Database:
    return Database.from_url(config.database_url())


def published_count(config: Config) -> tuple[int, int]:
    """(published index entries, size of the newest signed checkpoint) of a node."""
    db = _open_db(config)
    try:
        with db.read() as s:
            entries = int(s.scalar(select(func.count()).select_from(m.PublishedEntry)) or 0)
            size = s.scalar(select(func.max(m.LogCheckpoint.size))) or 0
            return entries, int(size)
    finally:
        db.dispose()


def wait_published(config: Config, count: int, node: NodeProcess, timeout: float) -> float:
    """Seconds until `node` has published `count` entries under a signed checkpoint."""
    started = time.perf_counter()
    deadline = started + timeout
    last = -1
    while time.perf_counter() < deadline:
        entries, size = published_count(config)
        if entries >= count and size >= count:
            return time.perf_counter() - started
        if entries != last:
            say(f"{ORIGIN} published {entries:,} of {count:,}")
            last = entries
        if node.proc.poll() is not None:
            raise BenchError(f"{ORIGIN}'s node exited: {node.raw_logs()[-4000:]}")
        time.sleep(1.0)
    raise BenchError(f"{ORIGIN} did not publish {count} entries in {timeout:.0f} s")


# --- part 1: sync ----------------------------------------------------------------------------


def origin_envelopes(config: Config) -> list[bytes]:
    """The index entries' DSSE envelopes in a node's log, in log order (the log also
    holds audit entries, which peers receive as leaf hashes only)."""
    db = _open_db(config)
    try:
        with db.read() as s:
            query = select(m.LogEntry.payload).where(m.LogEntry.kind == "index-entry")
            return [bytes(p) for p in s.scalars(query.order_by(m.LogEntry.index))]
    finally:
        db.dispose()


def replica_envelopes(config: Config, state: str) -> list[bytes]:
    """The envelopes a node holds in its replica of `state`'s log, in log order."""
    db = _open_db(config)
    try:
        with db.read() as s:
            return [
                bytes(e)
                for e in s.scalars(
                    select(m.ReplicaEntry.envelope)
                    .where(m.ReplicaEntry.state == state)
                    .order_by(m.ReplicaEntry.log_index)
                )
            ]
    finally:
        db.dispose()


@dataclass(frozen=True)
class Signed:
    message: bytes  # the pre-authentication encoding
    signature: bytes
    public_key: bytes


def signed_messages(envelopes: Sequence[bytes]) -> list[Signed]:
    out = []
    for raw in envelopes:
        env = Envelope.from_json(raw)
        if len(env.signatures) != 1:
            raise BenchError("an index entry carries one signature")
        out.append(Signed(pae(env.payload_type, env.payload), env.signatures[0].sig, b""))
    return out


def time_raw_verify(items: Sequence[Signed]) -> dict[str, float]:
    """Seconds to verify every signature, fastest of the rounds, per raw binding."""
    detached = pysodium.crypto_sign_verify_detached
    sign_open = nacl.bindings.crypto_sign_open

    def with_pysodium() -> None:
        for x in items:
            detached(x.signature, x.message, x.public_key)

    def with_pynacl() -> None:
        for x in items:
            sign_open(x.signature + x.message, x.public_key)

    best: dict[str, float] = {}
    for _ in range(_ROUNDS):
        for name, fn in (("pysodium", with_pysodium), ("pynacl", with_pynacl)):
            started = time.perf_counter()
            fn()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - started)
    return best


_REPLICA_TABLES: Final = (
    ("replica_entries", "log_index"),
    ("replica_pseudonyms", "log_index"),
    ("replica_log_nodes", 'level, "index"'),
)


def _sqlite_file(config: Config) -> Path:
    url = config.database_url()
    if not url.startswith("sqlite:///"):
        raise BenchError("the raw storage floor is measured for SQLite nodes only")
    return Path(url.removeprefix("sqlite:///"))


def time_raw_store(config: Config, state: str, work: Path) -> dict[str, Any]:
    """The rows the sync stored for `state` (entries, pseudonym index, Merkle nodes), read
    back and inserted again with stdlib sqlite3 `executemany` into a new file with the
    node's schema and pragmas, in transactions of `STORE_GROUP` entries as the node does.
    Only the inserts and commits are timed."""
    source = sqlite3.connect(_sqlite_file(config))
    tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
    try:
        for name, order in _REPLICA_TABLES:
            cur = source.execute(
                f"SELECT * FROM {name} WHERE state = ? ORDER BY {order}",
                (state,),
            )
            tables[name] = ([d[0] for d in cur.description], cur.fetchall())
    finally:
        source.close()
    target = work / "raw-store.db"
    migrate_sqlite(target)
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL"):
            conn.execute(f"PRAGMA {pragma}")
        entries = tables["replica_entries"][1]
        groups = max(1, -(-len(entries) // STORE_GROUP))

        def share(name: str, g: int) -> list[tuple[Any, ...]]:
            columns, rows = tables[name]
            if name == "replica_log_nodes":  # no log index: an even slice per group
                return rows[len(rows) * g // groups : len(rows) * (g + 1) // groups]
            lo = g * STORE_GROUP
            hi = lo + STORE_GROUP
            at = columns.index("log_index")
            return [r for r in rows if lo <= r[at] < hi]

        plan = [[(name, share(name, g)) for name, _ in _REPLICA_TABLES] for g in range(groups)]
        statements = {
            name: "INSERT INTO {} ({}) VALUES ({})".format(
                name, ", ".join(f'"{c}"' for c in columns), ", ".join("?" for _ in columns)
            )
            for name, (columns, _) in tables.items()
        }
        started = time.perf_counter()
        for group in plan:
            conn.execute("BEGIN IMMEDIATE")
            for name, rows in group:
                if rows:
                    conn.executemany(statements[name], rows)
            conn.execute("COMMIT")
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    return {"seconds": seconds, "rows": {n: len(r) for n, (_, r) in tables.items()}}


def bench_sync(configs: dict[str, Config], entries: int, work: Path) -> dict[str, Any]:
    say(f"{SYNCER}: compact sync ({entries:,} entries from {ORIGIN})")
    started = time.perf_counter()
    out = run_compact("sync", "--json", "--data-dir", str(configs[SYNCER].data_dir), timeout=3600)
    command_seconds = time.perf_counter() - started
    reports = {r["state"]: r for r in json.loads(out.stdout)["peers"]}
    report = reports.get(ORIGIN)
    if report is None or not report["ok"]:
        raise BenchError(f"{SYNCER} could not sync {ORIGIN}: {report}")
    if report["new_entries"] != entries:
        raise BenchError(f"{SYNCER} stored {report['new_entries']} entries, not {entries}")
    say("checking the replica against the origin's log")
    origin = origin_envelopes(configs[ORIGIN])
    if replica_envelopes(configs[SYNCER], ORIGIN) != origin or len(origin) != entries:
        raise BenchError(f"{SYNCER}'s replica differs from {ORIGIN}'s log")
    say("timing raw Ed25519 verification of the same entries")
    roster = _roster(configs[SYNCER])
    member = roster.member(ORIGIN)
    assert member is not None
    key = member.signing_key.raw
    items = [Signed(x.message, x.signature, key) for x in signed_messages(origin)]
    raw = time_raw_verify(items)
    bound_seconds = min(raw.values())
    say("timing raw SQLite inserts of the rows the sync stored")
    store = time_raw_store(configs[SYNCER], ORIGIN, work)
    floor_seconds = bound_seconds + store["seconds"]
    ours = report["seconds"]
    return {
        "entries": entries,
        "sync_seconds": ours,
        "command_seconds": command_seconds,
        "entries_per_second": entries / ours,
        "raw_verify_seconds": raw,
        "bound_entries_per_second": entries / bound_seconds,
        "ratio": bound_seconds / ours,
        "goal_ratio": SYNC_GOAL,
        "goal_met": bound_seconds / ours >= SYNC_GOAL,
        "envelope_bytes_mean": sum(len(e) for e in origin) / len(origin),
        "phases_seconds": report.get("phases_seconds", {}),
        "raw_store_seconds": store["seconds"],
        "raw_store_rows": store["rows"],
        "floor_entries_per_second": entries / floor_seconds,
        "ratio_to_floor": floor_seconds / ours,
    }


# --- part 2: pseudonyms ------------------------------------------------------------------------


def _roster(config: Config) -> Roster:
    from node.fedstore import read_roster

    db = _open_db(config)
    try:
        roster = read_roster(db)
    finally:
        db.dispose()
    if roster is None:
        raise BenchError(f"{config.node.state} has no roster")
    return roster


def bench_pseudonyms(config: Config, inputs: int) -> dict[str, Any]:
    say(f"in-process threshold OPRF, {inputs:,} inputs (bench.crypto_oprf)")
    in_process = crypto_oprf.run(inputs, t=2, n=3)
    rate_in_process = in_process["pseudonyms_per_second"]
    keys = unlock(config, read_secret(config))
    storage = open_storage(config, keys)
    try:
        fed = FederationNode(config, keys, storage)
        roster = fed.store.require_roster()
        nonce = secrets.token_hex(4)
        runs: dict[str, dict[str, Any]] = {}
        results: dict[str, dict[str, str]] = {}
        for name, own in (("remote", False), ("node", True)):
            holders = [h.state for h in fed.share_holders(roster, own=own)][:2]
            wanted = [f"badge:BENCH-{nonce}-{name}:{i:07d}" for i in range(inputs)]
            pseudonymiser = fed.pseudonymiser(roster, own_share=own)
            say(f"pseudonyms over gRPC ({name}: holders {', '.join(holders)}), {inputs:,} keys")
            started = time.perf_counter()
            out = asyncio.run(pseudonymiser.pseudonyms(wanted))
            seconds = time.perf_counter() - started
            if len(out) != inputs or len(set(out.values())) != inputs:
                raise BenchError("pseudonyms missing or repeated")
            results[name] = out
            runs[name] = {
                "holders": holders,
                "seconds": seconds,
                "pseudonyms_per_second": inputs / seconds,
                "ratio": inputs / seconds / rate_in_process,
                "goal_met": inputs / seconds / rate_in_process >= OPRF_GOAL,
            }
        say("checking that both paths give the same pseudonyms")
        sample = sorted(results["node"])[:_SAMPLE]
        with storage.db.write() as s:
            s.execute(delete(m.Pseudonym).where(m.Pseudonym.key.in_(sample)))
        again = asyncio.run(fed.pseudonymiser(roster, own_share=False).pseudonyms(sample))
        if again != {k: results["node"][k] for k in sample}:
            raise BenchError("the two sets of share holders gave different pseudonyms")
    finally:
        storage.db.dispose()
    return {
        "inputs": inputs,
        "batch_size": config.federation.oprf_batch_size,
        "in_process_pseudonyms_per_second": rate_in_process,
        "in_process": in_process,
        "grpc": runs,
        "goal_ratio": OPRF_GOAL,
        "checked_between_paths": len(sample),
    }


# --- the run ----------------------------------------------------------------------------------


def run(entries: int, inputs: int, *, seed: int = 1, agent_pool: int = 2_000,
        tmpdir: Path | None = None) -> dict[str, Any]:  # fmt: skip
    if entries < 1 or inputs < 1:
        raise BenchError("--entries and --inputs must be at least 1")
    with tempfile.TemporaryDirectory(prefix="compact-bench-fed-", dir=tmpdir) as tmp:
        root = Path(tmp)
        say("forming a compact of CA, IL and MN (roster, key ceremony, shares)")
        configs = form_compact(root, STATES)
        for c in configs.values():
            # let the benchmark's pseudonyms through the share holders' per-day limits
            set_setting(c, "oprf_daily_limit", max(200_000, 4 * (entries + inputs)))
        records = root / "il.jsonl"
        write_records(records, generate_records(entries, seed=seed, pool_size=agent_pool))
        say(f"{ORIGIN}: ingesting {entries:,} incidents")
        started = time.perf_counter()
        run_compact("ingest", str(records), "--data-dir", str(configs[ORIGIN].data_dir),
                    timeout=3600)  # fmt: skip
        ingest_seconds = time.perf_counter() - started
        procs: list[NodeProcess] = []
        try:
            for state in (s for s in STATES if s != ORIGIN):
                procs.append(start_node(configs[state]))
            origin = start_node(configs[ORIGIN])
            procs.append(origin)
            say(f"{ORIGIN}: publishing (the node's federation loop)")
            publish_seconds = wait_published(configs[ORIGIN], entries, origin, timeout=3600)
            sync = bench_sync(configs, entries, root)
            pseudonyms = bench_pseudonyms(configs[SYNCER], inputs)
        finally:
            for p in procs:
                p.stop()
    return {
        "entries": entries,
        "ingest_seconds": ingest_seconds,
        "publish_seconds": publish_seconds,
        "sync": sync,
        "pseudonyms": pseudonyms,
        "machine": {
            "python": platform.python_version(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
        },
    }


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def format_table(r: dict[str, Any]) -> str:
    sync, ps = r["sync"], r["pseudonyms"]
    raw = sync["raw_verify_seconds"]
    lines = [
        f"context: {ORIGIN} ingested {r['entries']:,} incidents in {r['ingest_seconds']:.1f} s and"
        f" published them in {r['publish_seconds']:.1f} s"
        f" ({r['entries'] / r['publish_seconds']:,.0f} entries/s)",
        "",
        f"sync: {SYNCER} replicated {sync['entries']:,} entries from {ORIGIN}",
        f"  ours:  {sync['entries_per_second']:>10,.0f} entries/s  ({sync['sync_seconds']:.2f} s;"
        f" whole command {sync['command_seconds']:.2f} s)",
        f"  bound: {sync['bound_entries_per_second']:>10,.0f} entries/s  (raw Ed25519 verify:"
        f" pysodium {raw['pysodium']:.2f} s, pynacl {raw['pynacl']:.2f} s)",
        f"  ratio: {sync['ratio']:>10.3f}  (goal >= {SYNC_GOAL}: {_verdict(sync['goal_met'])})",
        f"  floor: {sync['floor_entries_per_second']:>10,.0f} entries/s  (raw verify + raw SQLite"
        f" inserts of the stored rows, {sync['raw_store_seconds']:.2f} s); ratio to it"
        f" {sync['ratio_to_floor']:.3f}",
        "  steps (overlapping; seconds): "
        + ", ".join(f"{k} {v:.2f}" for k, v in sync["phases_seconds"].items()),
        "",
        f"pseudonyms: {ps['inputs']:,} keys, batches of {ps['batch_size']}",
        f"  in process: {ps['in_process_pseudonyms_per_second']:>8,.0f} /s (bench.crypto_oprf)",
    ]
    for name, g in ps["grpc"].items():
        label = f"{name} ({', '.join(g['holders'])})"
        lines.append(
            f"  {label:<22}{g['pseudonyms_per_second']:>8,.0f} /s  ratio {g['ratio']:.3f}"
            f"  (goal >= {OPRF_GOAL}: {_verdict(g['goal_met'])})"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.federation", description=__doc__.splitlines()[0]
    )
    p.add_argument("--entries", type=int, default=100_000, help="index entries IL publishes")
    p.add_argument("--inputs", type=int, default=10_000, help="identifier keys to pseudonymise")
    p.add_argument("--agent-pool", type=int, default=2_000, help="distinct agents in IL's records")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write every figure to this file")
    p.add_argument("--tmpdir", type=Path, help="where the temporary folder goes")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    args = parse_args(argv)
    result = run(args.entries, args.inputs, seed=args.seed, agent_pool=args.agent_pool,
                 tmpdir=args.tmpdir)  # fmt: skip
    out(format_table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
