"""A running compact of three real node processes over time: what `compact serve` does on
its own, a member that goes away and comes back, a roster change that travels between
members, and a member that offers a stale roster.

Loopback only, ports from the OS. The nodes' background loops sync only when they start
(the interval is an hour), so each test decides when replication happens with `compact
sync`; publishing new records is the loop's own work.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from node import models as m
from node.config import Config
from node.fedclient import PeerUnavailableError
from node.fednode import FederationNode
from node.setup import open_storage, read_secret, unlock
from tests.helpers import record, write_jsonl
from tests.nodeproc import (
    NodeProcess,
    db_rows,
    form_compact,
    published_index,
    replica_index,
    run_compact,
    start_node,
)

STATES = ("CA", "IL", "MN")
COUNTY = {"IL": "Cook", "MN": "Hennepin", "CA": "Los Angeles"}

pytestmark = pytest.mark.timeout(240)


def ingest(root: Any, config: Config, name: str, *, badge: str | None = None) -> None:
    state = config.node.state
    rec = record(f"{state}-OPS-{name}")
    rec["location"] = {"county": COUNTY[state], "state": state, "kind": "street"}
    if badge is not None:  # an identifier no node has a pseudonym for yet
        rec["agents"][0]["badge"] = badge
    path = write_jsonl(root / f"in-{state}-{name}", [rec])
    run_compact("ingest", str(path), "--data-dir", str(config.data_dir))


def replica_rows(config: Config, state: str) -> int:
    count = select(func.count()).select_from(m.ReplicaEntry).where(m.ReplicaEntry.state == state)
    return int(db_rows(config, count)[0][0])


def index_entries(config: Config) -> int:
    """The index entries in a node's log (it also holds audit and custody entries)."""
    count = select(func.count()).select_from(m.LogEntry).where(m.LogEntry.kind == "index-entry")
    return int(db_rows(config, count)[0][0])


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def peer(config: Config, state: str) -> dict[str, Any]:
    out = json.loads(run_compact("peers", "--data-dir", str(config.data_dir), "--json").stdout)
    return next(p for p in out["peers"] if p["state"] == state)


def sync(config: Config, *, ok: bool = True) -> dict[str, dict[str, Any]]:
    result = run_compact("sync", "--data-dir", str(config.data_dir), "--json", ok=ok)
    out = json.loads(result.stdout)
    return {config.node.state: out["publish"]} | {r["state"]: r for r in out["peers"]}


class Running:
    def __init__(self, root: Any, configs: dict[str, Config]) -> None:
        self.root = root
        self.configs = configs
        self.procs: dict[str, NodeProcess] = {}

    def start(self, state: str) -> None:
        self.procs[state] = start_node(self.configs[state])

    def stop(self, state: str) -> None:
        assert self.procs.pop(state).stop() == 0


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("ops")
    running = Running(root, form_compact(root, STATES))
    try:
        for state in STATES:
            running.start(state)
        for config in running.configs.values():
            ingest(root, config, "first")
        for state, config in running.configs.items():

            def one_published(c: Config = config) -> bool:
                return len(published_index(c)) == 1

            wait_for(f"{state} to publish", one_published)
        yield running
    finally:
        for p in running.procs.values():
            p.stop()


def test_serve_publishes_new_records_without_a_sync(nodes: Running) -> None:
    il = nodes.configs["IL"]
    before = published_index(il)
    ingest(nodes.root, il, "fresh")
    wait_for(
        "IL's loop to publish the new record", lambda: len(published_index(il)) == len(before) + 1
    )
    # It is in the log under a signed checkpoint that MN can fetch and verify.
    reports = sync(nodes.configs["MN"])
    assert reports["IL"]["ok"], reports
    assert replica_index(nodes.configs["MN"], "IL") == published_index(il)


def test_peer_down_then_back_loses_and_duplicates_nothing(nodes: Running) -> None:
    il, ca = nodes.configs["IL"], nodes.configs["CA"]
    assert sync(il)["CA"]["ok"]
    nodes.stop("CA")
    reports = sync(il, ok=False)  # exit status 1: a peer failed
    assert not reports["CA"]["ok"] and reports["CA"]["error"]
    assert reports["MN"]["ok"]
    status = peer(il, "CA")
    assert status["reachable"] is False and status["failures"] == 1
    assert status["next_attempt"] > status["last_attempt"]  # backing off
    # CA keeps working while it is unreachable: two records arrive, and it comes back.
    ingest(nodes.root, ca, "offline-1")
    ingest(nodes.root, ca, "offline-2")
    nodes.start("CA")
    wait_for("CA to publish what arrived while it was down", lambda: len(published_index(ca)) == 3)
    assert sync(il)["CA"]["ok"]
    assert replica_index(il, "CA") == published_index(ca)
    assert replica_rows(il, "CA") == index_entries(ca) == 3  # every entry once
    status = peer(il, "CA")
    assert status["reachable"] is True and status["failures"] == 0
    assert status["next_attempt"] is None and status["entries_behind"] == 0


def test_roster_change_travels_over_get_roster(nodes: Running) -> None:
    il, mn, ca = (nodes.configs[s] for s in ("IL", "MN", "CA"))
    proposal = nodes.root / "roster-v2.json"
    run_compact("roster", "propose", "--threshold", "2", "--expires", "2031-06-30",
        "--out", str(proposal), "--data-dir", str(il.data_dir))  # fmt: skip
    run_compact("roster", "sign", str(proposal), "--data-dir", str(mn.data_dir))
    run_compact("roster", "apply", str(proposal), "--data-dir", str(il.data_dir))

    def version(config: Config) -> int:
        shown = run_compact("roster", "show", "--data-dir", str(config.data_dir), "--json").stdout
        return int(json.loads(shown)["version"])

    assert (version(il), version(mn), version(ca)) == (2, 1, 1)
    for config in (mn, ca):  # each asks its peers for newer versions and checks the chain
        assert all(r["ok"] for r in sync(config).values())
        assert version(config) == 2
    # The running servers follow the new version: traffic flows under it.
    assert all(r["ok"] for r in sync(il).values())


def test_stale_roster_offer_raises_an_alert(nodes: Running) -> None:
    """A member that answers GetRoster with an old version: refused, the roster in force
    kept, and an alert names the member."""
    config = nodes.configs["MN"]
    keys = unlock(config, read_secret(config))
    storage = open_storage(config, keys)
    try:
        fed = FederationNode(config, keys, storage)
        in_force = fed.store.require_roster()
        first = fed.store.roster_envelopes(after_version=0)[0]

        class StaleMember:
            def __init__(self, state: str) -> None:
                self.state = state

            async def __aenter__(self) -> StaleMember:
                return self

            async def __aexit__(self, *exc: object) -> None:
                return None

            async def get_roster(self, after_version: int) -> tuple[list[bytes], list[bytes]]:
                return [first], []  # version 1, whatever was asked

            def __getattr__(self, name: str) -> Any:
                async def unavailable(*args: object, **kwargs: object) -> Any:
                    raise PeerUnavailableError(self.state, f"{self.state} is not answering {name}")

                return unavailable

        fed.client = lambda member, certificate: StaleMember(member.state)  # type: ignore[method-assign,assignment,return-value]
        since = datetime.now(UTC)
        asyncio.run(fed.sync(force=True))
        assert fed.store.require_roster().version == in_force.version
        refused = [a for a in fed.alerts() if a.kind == "roster-refused" and a.at >= since]
        assert {a.state for a in refused} == {"CA", "IL"}
        assert all("refused" in a.message for a in refused)
    finally:
        storage.db.dispose()
    out = json.loads(run_compact("alerts", "--data-dir", str(config.data_dir), "--json").stdout)
    assert any(a["kind"] == "roster-refused" for a in out["alerts"])


def test_publishing_without_enough_share_holders_is_reported(nodes: Running) -> None:
    """With both other members down, IL holds one share of a 2-of-3 key: its new record
    cannot be pseudonymised. `compact sync` says so and exits 1; nothing is published
    until a second holder is back, and then the running node publishes on its own."""
    il = nodes.configs["IL"]
    before = published_index(il)
    nodes.stop("CA")
    nodes.stop("MN")
    ingest(nodes.root, il, "lonely", badge="77123")
    reports = sync(il, ok=False)
    assert reports["IL"]["ok"] is False and "share answers are valid" in reports["IL"]["error"]
    assert published_index(il) == before
    nodes.start("MN")  # IL's loop keeps trying, and publishes once MN answers
    wait_for("IL to publish with MN back", lambda: len(published_index(il)) == len(before) + 1)
    reports = sync(il, ok=False)  # CA is still down
    assert reports["IL"]["ok"] and reports["MN"]["ok"] and not reports["CA"]["ok"]
    nodes.start("CA")
