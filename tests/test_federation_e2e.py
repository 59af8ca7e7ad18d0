"""Three real node processes on loopback form a compact and replicate each other's index.

IL, MN and CA: member cards, a roster proposed with the OPRF key ceremony,
signed by two members, applied everywhere with the out-of-band pin; shares
imported; incidents ingested in each state; `compact serve` running; `compact
sync` on each. Then every replica equals every origin's published index, the
same badge in two states has one pseudonym, different badges do not share
one, and every node has witnessed the others.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from node import models as m
from node.config import Config
from node.db import Database
from tests.helpers import record, write_jsonl
from tests.nodeproc import NodeProcess, compact, init_test_node, start_node

STATES = ("CA", "IL", "MN")
COUNTY = {"IL": "Cook", "MN": "Hennepin", "CA": "Los Angeles"}
BADGES = {"IL": ["04471", "1111"], "MN": ["04471", "2222"], "CA": ["3333"]}


def run(*args: str) -> Any:
    result = compact(*args)
    assert result.returncode == 0, f"compact {' '.join(args)}: {result.stderr}{result.stdout}"
    return result


def incidents(state: str) -> list[dict[str, Any]]:
    out = []
    for i, badge in enumerate(BADGES[state]):
        rec = record(f"{state}-E2E-{i}")
        rec["agents"][0]["badge"] = badge
        rec["location"] = {"county": COUNTY[state], "state": state, "kind": "street"}
        out.append(rec)
    return out


def rows(config: Config, query: Any) -> list[Any]:
    db = Database.from_url(config.database_url())
    try:
        with db.read() as s:
            return [tuple(r) for r in s.execute(query)]
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def compact_of_three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Config]]:
    root = tmp_path_factory.mktemp("compact")
    configs = {s: init_test_node(root / s, s) for s in STATES}
    for c in configs.values():
        text = (c.data_dir / "compact.toml").read_text(encoding="utf-8")
        text = text.replace("sync_interval_seconds = 30.0", "sync_interval_seconds = 3600.0")
        (c.data_dir / "compact.toml").write_text(text, encoding="utf-8")
    cards = []
    for s, c in configs.items():
        card = root / f"card-{s}.json"
        run("roster", "card", "--data-dir", str(c.data_dir), "--out", str(card))
        cards += ["--card", str(card)]
    il, mn = str(configs["IL"].data_dir), str(configs["MN"].data_dir)
    proposal = root / "proposal.json"
    run(
        "roster", "propose", *cards, "--threshold", "2", "--expires", "2030-01-01",
        "--out", str(proposal), "--data-dir", il,
    )  # fmt: skip
    ceremony = root / "ceremony"
    run("oprf", "ceremony", str(proposal), "--threshold", "2", "--out-dir", str(ceremony),
        "--data-dir", il)  # fmt: skip
    signed = ceremony / "proposal.json"
    run("roster", "sign", str(signed), "--data-dir", mn)
    envelope = json.loads(signed.read_text(encoding="utf-8"))["envelope"]
    pin = hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest()
    for s, c in configs.items():
        run("roster", "apply", str(signed), "--pin", pin, "--data-dir", str(c.data_dir))
        run("oprf", "import-share", str(ceremony / f"share-{s}.sealed"), "--data-dir",
            str(c.data_dir))  # fmt: skip
        path = write_jsonl(root / f"in-{s}", incidents(s))
        run("ingest", str(path), "--data-dir", str(c.data_dir))
    procs: list[NodeProcess] = []
    try:
        procs = [start_node(c) for c in configs.values()]
        for _ in range(2):  # round 1 publishes each index; round 2 sees every peer's
            for c in configs.values():
                run("sync", "--data-dir", str(c.data_dir), "--json")
        yield configs
    finally:
        for p in procs:
            p.stop()


def published(config: Config) -> list[tuple[str, int, bytes]]:
    return sorted(
        (g, r, bytes(p))
        for g, r, p in rows(
            config,
            select(m.PublishedEntry.global_id, m.PublishedEntry.revision, m.LogEntry.payload).join(
                m.LogEntry, m.LogEntry.index == m.PublishedEntry.log_index
            ),
        )
    )


def replica(config: Config, state: str) -> list[tuple[str, int, bytes]]:
    return sorted(
        (g, r, bytes(e))
        for g, r, e in rows(
            config,
            select(
                m.ReplicaEntry.global_id, m.ReplicaEntry.revision, m.ReplicaEntry.envelope
            ).where(m.ReplicaEntry.state == state, m.ReplicaEntry.current.is_(True)),
        )
    )


def test_every_replica_equals_every_origins_published_index(
    compact_of_three: dict[str, Config],
) -> None:
    for origin, oc in compact_of_three.items():
        index = published(oc)
        assert len(index) == len(BADGES[origin])
        for holder, hc in compact_of_three.items():
            if holder != origin:
                assert replica(hc, origin) == index, f"{holder}'s replica of {origin}"


def test_same_identifier_in_two_states_gives_one_pseudonym(
    compact_of_three: dict[str, Config],
) -> None:
    config = compact_of_three["CA"]  # any node sees every state's pseudonyms
    badge_rows = rows(
        config,
        select(m.ReplicaPseudonym.state, m.ReplicaPseudonym.pseudonym).where(
            m.ReplicaPseudonym.kind == "badge"
        ),
    )
    by_pseudonym: dict[str, set[str]] = {}
    for state, p in badge_rows:
        by_pseudonym.setdefault(p, set()).add(state)
    assert len(badge_rows) == 5
    assert sorted(map(sorted, by_pseudonym.values())) == [["CA"], ["IL"], ["IL", "MN"], ["MN"]]


def test_peers_and_log_status_show_sync_and_witnesses(
    compact_of_three: dict[str, Config],
) -> None:
    il = str(compact_of_three["IL"].data_dir)
    peers = json.loads(run("peers", "--data-dir", il, "--json").stdout)
    assert {p["state"] for p in peers["peers"]} == {"CA", "MN"}
    for p in peers["peers"]:
        assert p["reachable"] is True and p["entries_behind"] == 0 and p["last_sync"]
    status = json.loads(run("log", "status", "--data-dir", il, "--json").stdout)
    assert status["checkpoint"]["size"] == status["size"] == 2
    assert status["checkpoint"]["witnessed_by"] == ["CA", "MN"]
    alerts = json.loads(run("alerts", "--data-dir", il, "--json").stdout)
    assert alerts["alerts"] == []
