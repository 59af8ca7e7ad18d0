"""Three real node processes on loopback form a compact and replicate each other's index.

IL, MN and CA: member cards, a roster proposed with the OPRF key ceremony,
signed by two members, applied everywhere with the out-of-band pin; shares
imported; incidents ingested in each state; `compact serve` running; `compact
sync` on each. Then every replica equals every origin's published index, the
same badge in two states has one pseudonym, different badges do not share
one, and every node has witnessed the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from crypto.checkpoint import verify_checkpoint
from crypto.dsse import Envelope
from federation.naming import log_origin, log_verifier, witness_name, witness_verifier
from federation.roster import Roster
from node import models as m
from node.config import Config
from tests.helpers import record, write_jsonl
from tests.nodeproc import (
    NodeProcess,
    compact,
    db_rows,
    form_compact,
    published_index,
    replica_index,
    start_node,
    user_env,
)

STATES = ("CA", "IL", "MN")
COUNTY = {"IL": "Cook", "MN": "Hennepin", "CA": "Los Angeles"}
BADGES = {"IL": ["04471", "1111"], "MN": ["04471", "2222"], "CA": ["3333"]}


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    result = compact(*args, env=env)
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


@pytest.fixture(scope="module")
def compact_of_three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Config]]:
    root = tmp_path_factory.mktemp("compact")
    configs = form_compact(root, STATES)
    for s, c in configs.items():
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


def test_every_replica_equals_every_origins_published_index(
    compact_of_three: dict[str, Config],
) -> None:
    for origin, oc in compact_of_three.items():
        index = published_index(oc)
        assert len(index) == len(BADGES[origin])
        for holder, hc in compact_of_three.items():
            if holder != origin:
                assert replica_index(hc, origin) == index, f"{holder}'s replica of {origin}"


def test_same_identifier_in_two_states_gives_one_pseudonym(
    compact_of_three: dict[str, Config],
) -> None:
    config = compact_of_three["CA"]  # any node sees every state's pseudonyms
    badge_rows = db_rows(
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
    # IL's two published incidents, and the audit events the serve loop logged beside them
    assert status["entries_by_kind"]["index-entry"] == 2
    assert set(status["entries_by_kind"]) <= {"index-entry", "audit"}
    assert status["checkpoint"]["size"] == status["size"]
    assert status["checkpoint"]["witnessed_by"] == ["CA", "MN"]
    alerts = json.loads(run("alerts", "--data-dir", il, "--json").stdout)
    assert alerts["alerts"] == []


def test_every_node_keeps_its_peers_checkpoints_with_its_own_cosignature(
    compact_of_three: dict[str, Config],
) -> None:
    """After the syncs, each node holds the checkpoints of each peer's log it accepted, the
    newest one (the one its replica is at) carrying its own valid cosignature."""
    for holder, config in compact_of_three.items():
        ((envelope,),) = db_rows(
            config,
            select(m.RosterVersion.envelope).order_by(m.RosterVersion.version.desc()).limit(1),
        )
        roster = Roster.from_payload(Envelope.from_json(bytes(envelope)).payload)
        keys = {mb.state: mb.signing_key for mb in roster.members}
        for peer in STATES:
            if peer == holder:
                continue
            kept = db_rows(
                config,
                select(m.ReplicaCheckpoint.size, m.ReplicaCheckpoint.note)
                .where(m.ReplicaCheckpoint.state == peer)
                .order_by(m.ReplicaCheckpoint.size),
            )
            ((newest,),) = db_rows(
                config, select(m.ReplicaLog.checkpoint_size).where(m.ReplicaLog.state == peer)
            )
            assert kept and kept[-1][0] == newest, f"{holder}'s checkpoints of {peer}"
            verified = verify_checkpoint(
                kept[-1][1],
                log=log_verifier(peer, keys[peer]),
                witnesses=[witness_verifier(holder, keys[holder])],
                threshold=1,
                origin=log_origin(peer),
            )
            assert [c.name for c in verified.cosignatures] == [witness_name(holder)]


def test_agents_matches_across_the_three_nodes(compact_of_three: dict[str, Config]) -> None:
    """Badge 04471 is one agent in IL and MN. Every incident names John Smith of ICE-ERO
    beside four different badges, so that name and agency joins nothing (ambiguous) and the
    name is a medium link; the unit and the plate are in all three states."""
    for state, config in compact_of_three.items():  # every node reaches the same answer
        out = json.loads(
            run("agents", "matches", "--data-dir", str(config.data_dir), "--json").stdout
        )
        found = out["matches"]
        assert [x["entity"] for x in found][:1] == ["agent"], state
        assert sorted(x["entity"] for x in found[1:3]) == ["name", "unit"]
        assert found[3]["entity"] == "vehicle" and len(found) == 4
        agent = found[0]
        assert agent["states"] == ["IL", "MN"] and agent["strength"] == "strong"
        assert agent["incidents_per_state"] == {"IL": 1, "MN": 1}
        assert [link["kind"] for link in agent["links"]] == ["badge"]
        assert len(agent["ambiguous_name_agency"]) == 1
        for x in found[1:]:
            assert x["states"] == ["CA", "IL", "MN"] and len(x["global_ids"]) == 5
    il = str(compact_of_three["IL"].data_dir)
    strong = json.loads(
        run("agents", "matches", "--data-dir", il, "--min-strength", "strong", "--json").stdout
    )
    assert [x["entity"] for x in strong["matches"]] == ["agent"]
    text = run("agents", "matches", "--data-dir", il).stdout
    assert "1. agent" in text and "linked by badge" in text and "4 matches" in text


def test_hits_name_the_link_each_side_found(compact_of_three: dict[str, Config]) -> None:
    """Badge 04471 links IL's first incident and MN's: IL recorded the hit when it synced
    with MN, MN the mirror. John Smith of ICE-ERO beside different badges is no strong hit."""
    il, mn = (str(compact_of_three[s].data_dir) for s in ("IL", "MN"))
    il_hits = json.loads(run("hits", "--data-dir", il, "--min-strength", "strong", "--json").stdout)
    mn_hits = json.loads(run("hits", "--data-dir", mn, "--min-strength", "strong", "--json").stdout)
    # one pair of incidents, by badge and by name and agency (one agent: the same badge)
    assert sorted(h["kind"] for h in il_hits["hits"]) == ["badge", "name_agency"]
    assert {
        (h["own_global_id"], h["peer_state"], h["peer_global_id"]) for h in il_hits["hits"]
    } == {(h["peer_global_id"], "MN", h["own_global_id"]) for h in mn_hits["hits"]}
    assert {h["pseudonym"] for h in il_hits["hits"]} == {h["pseudonym"] for h in mn_hits["hits"]}
    everything = json.loads(run("hits", "--data-dir", il, "--json").stdout)["hits"]
    assert {h["kind"] for h in everything} == {"badge", "name_agency", "name", "unit", "plate"}
    assert {h["peer_state"] for h in everything} == {"CA", "MN"}
    text = run("hits", "--data-dir", il, "--peer", "ca").stdout
    assert "CA" in text and "MN" not in text.replace("compact bundle request", "")
    bad = compact("hits", "--data-dir", il, "--peer", "California")
    assert bad.returncode == 2 and "--peer" in bad.stderr


def test_agents_lookup_pseudonymises_through_the_oprf_and_is_audited(
    compact_of_three: dict[str, Config],
) -> None:
    ca = compact_of_three["CA"]
    out = json.loads(
        run(
            "agents", "lookup", "--badge", "4471", "--agency", "ICE-ERO",
            "--data-dir", str(ca.data_dir), "--json", env=user_env(ca, "ana", "analyst"),
        ).stdout
    )  # fmt: skip
    assert out["kind"] == "badge" and out["states"] == ["IL", "MN"]
    assert [e["county"] for e in out["entries"]] == ["Cook", "Hennepin"]
    assert out["entries"][0]["agency"] == "ICE-ERO" and out["entries"][0]["masked"] is True
    # the same pseudonym the index carries for that badge
    rows = db_rows(
        ca,
        select(m.ReplicaPseudonym.pseudonym).where(
            m.ReplicaPseudonym.kind == "badge", m.ReplicaPseudonym.state == "IL"
        ),
    )
    assert out["pseudonym"] in {p for (p,) in rows}
    audited = db_rows(
        ca,
        select(m.AuditEvent.actor, m.AuditEvent.detail).where(
            m.AuditEvent.action == "agents_lookup"
        ),
    )
    assert audited[-1][0] == "ana" and audited[-1][1]["pseudonym"] == out["pseudonym"]
    assert "4471" not in json.dumps(audited[-1][1])
    unknown = json.loads(
        run(
            "agents", "lookup", "--plate", "WI ZZZ 999", "--data-dir", str(ca.data_dir), "--json"
        ).stdout
    )
    assert unknown["entries"] == [] and unknown["states"] == []


def test_agents_lookup_usage_errors(compact_of_three: dict[str, Config]) -> None:
    ca = str(compact_of_three["CA"].data_dir)
    for args, message in [
        ((), "exactly one of"),
        (("--badge", "1", "--plate", "IL A1"), "exactly one of"),
        (("--plate", "IL A1", "--agency", "FBI"), "not --plate"),
        (("--name", "Cher"), "two names"),
        (("--badge", "4471"), "badge key is written"),
    ]:
        result = compact("agents", "lookup", *args, "--data-dir", ca)
        assert result.returncode == 2, args
        assert message in result.stderr, (args, result.stderr)


def test_pattern_reports_from_the_command_line(compact_of_three: dict[str, Config]) -> None:
    mn = str(compact_of_three["MN"].data_dir)
    rep = json.loads(
        run("patterns", "repeat", "--min-incidents", "2", "--data-dir", mn, "--json").stdout
    )
    (row,) = rep["rows"]
    assert row["incidents"] == 2 and row["states"] == "IL 1 · MN 1" and len(row["global_ids"]) == 2
    for name in ("units", "unidentified", "surges"):
        out = json.loads(run("patterns", name, "--data-dir", mn, "--json").stdout)
        assert out["report"] == name and out["rows"] == [] and out["notes"]
    conduct = run("patterns", "conduct", "--data-dir", mn, "--csv").stdout.splitlines()
    assert conduct[0] == (
        "agency,conduct,incidents,of,rate,rate_elsewhere,p_value,flagged,global_ids,more_ids"
    )
    assert conduct[1].startswith("ICE-ERO,") and conduct[-1].startswith('"# incidents are counted')
    published = json.loads(
        run(
            "patterns", "conduct", "--publish", "--min-count", "6", "--data-dir", mn, "--json"
        ).stdout
    )
    assert {r["incidents"] for r in published["rows"]} == {"<6"}  # 5 incidents in all
    assert all("global_ids" not in r for r in published["rows"])
    assert "primary suppression" in published["notes"][-1]
    refused = compact("patterns", "repeat", "--publish", "--data-dir", mn)
    assert refused.returncode == 1 and "cannot be published" in refused.stderr
    table = run("patterns", "repeat", "--min-incidents", "2", "--data-dir", mn).stdout
    assert "Agents with at least 2 incidents" in table and "note:" in table
    bad = compact("patterns", "surges", "--since", "2025-12-01", "--until", "2025-01-01",
                  "--data-dir", mn)  # fmt: skip
    assert bad.returncode == 2 and "since" in bad.stderr


def _requests(config: Config, direction: str) -> list[tuple[str, str, str, str, str]]:
    r = m.BundleRequestRow
    return sorted(
        (str(a), str(b), str(c), str(d), str(e))
        for a, b, c, d, e in db_rows(
            config,
            select(r.holder, r.requester, r.global_id, r.requested_by, r.purpose).where(
                r.direction == direction
            ),
        )
    )


def test_reports_request_the_bundles_behind_their_rows(
    compact_of_three: dict[str, Config], tmp_path: Any
) -> None:
    mn, il = compact_of_three["MN"], compact_of_three["IL"]
    repeat = ("patterns", "repeat", "--min-incidents", "2", "--data-dir", str(mn.data_dir))
    for extra, message in [
        (("--request-bundles",), "needs --purpose"),
        (("--purpose", "why"), "--purpose: only with --request-bundles"),
        (("--yes",), "--yes: only with --request-bundles"),
        (("--request-bundles", "--purpose", "  "), "needs --purpose"),
    ]:
        bad = compact(*repeat, *extra)
        assert bad.returncode == 2 and message in bad.stderr, (extra, bad.stderr)
    published = compact("patterns", "conduct", "--publish", "--request-bundles", "--purpose",
                        "x", "--data-dir", str(mn.data_dir))  # fmt: skip
    assert published.returncode == 2 and "not with --publish" in published.stderr
    # no confirmation (an empty stdin): nothing is requested
    asked = (*repeat, "--request-bundles", "--purpose", "joint matter 7")
    ana = user_env(mn, "ana", "analyst")
    refused = compact(*asked, "--json", env=ana)
    assert refused.returncode == 1 and "Send these requests?" in refused.stderr
    assert json.loads(refused.stdout)["report"] == "repeat"  # the report came first
    assert "from IL (1)" in refused.stderr
    assert _requests(mn, "outgoing") == []
    # confirmed: one request, for IL's incident; MN's own incident is not asked for
    done = compact(*asked, input="y\n", env=ana)
    assert done.returncode == 0, done.stderr
    assert "1 of this state's own incidents" in done.stderr
    assert "1 bundle requests made" in done.stderr
    ((holder, requester, gid, user, purpose),) = _requests(mn, "outgoing")
    assert (holder, requester, user, purpose) == ("IL", "MN", "ana", "joint matter 7")
    assert gid.startswith("IL-")
    assert [x[2] for x in _requests(il, "incoming")] == [gid]  # delivered to the holder
    again = compact(*asked, "--yes", env=ana)
    assert again.returncode == 0 and "no bundle to request" in again.stderr
    assert "1 with a request already open or approved" in again.stderr
    # agents matches too, with a limit on how many it may ask for
    ca = ("agents", "matches", "--min-strength", "strong", "--data-dir",
          str(compact_of_three["CA"].data_dir), "--request-bundles", "--purpose", "p")  # fmt: skip
    too_many = compact(*ca, "--yes", "--max-requests", "1")
    assert too_many.returncode == 1 and "more than --max-requests 1" in too_many.stderr
    assert _requests(compact_of_three["CA"], "outgoing") == []
    assert compact(*ca, "--yes").returncode == 0
    assert [x[0] for x in _requests(compact_of_three["CA"], "outgoing")] == ["IL", "MN"]


def test_reports_draw_plots(compact_of_three: dict[str, Config], tmp_path: Any) -> None:
    mn = str(compact_of_three["MN"].data_dir)
    for name, suffix in [("conduct", "svg"), ("surges", "png"), ("repeat", "png")]:
        target = tmp_path / f"{name}.{suffix}"
        out = compact("patterns", name, "--data-dir", mn, "--json", "--plot", str(target))
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["report"] == name  # stdout stays JSON
        assert f"plot written to {target}" in out.stderr
        head = target.read_bytes()[:200]
        assert head.startswith(b"\x89PNG") if suffix == "png" else b"<svg" in head
    published = tmp_path / "published.png"
    out = compact("patterns", "surges", "--publish", "--plot", str(published), "--data-dir", mn)
    assert out.returncode == 0 and published.read_bytes().startswith(b"\x89PNG")
    for target, message in [
        (tmp_path / "x.pdf", "must end in .png or .svg"),
        (tmp_path / "no" / "x.png", "no such folder"),
    ]:
        bad = compact("patterns", "conduct", "--data-dir", mn, "--plot", str(target))
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    too_long = tmp_path / ("x" * 300 + ".png")  # the file system refuses the name
    bad = compact("patterns", "conduct", "--data-dir", mn, "--plot", str(too_long))
    assert bad.returncode == 2 and "--plot: cannot write" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "conduct.svg", "published.png", "repeat.png", "surges.png"
    ]  # fmt: skip
