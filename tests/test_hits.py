"""Hits: a new cross-state link involving this state's incidents, recorded as this node
publishes its own entries and as it replicates a peer's; the peer records the mirror hit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from node import models as m
from node.hits import list_hits
from tests.helpers import record
from tests.test_federation_roster import IL, MN
from tests.test_replica import Side, helper, ingest, publish, replicate, side


def rec(state: str, external_id: str, **agent: Any) -> dict[str, Any]:
    r = record(external_id)
    r["agents"] = [{"agency": "ICE-ERO", "role": "primary", **agent}]
    r["location"] = {"county": "Cook" if state == "IL" else "Hennepin", "state": state,
                     "kind": "street"}  # fmt: skip
    return r


def hits(s: Side) -> set[tuple[str, str, str, str]]:
    """(kind, own external id, peer state, peer global id's external id) of every hit."""
    with s.storage.db.read() as sess:
        ext = dict(sess.execute(select(m.Incident.global_id, m.Incident.external_id)).all())
        return {
            (h.kind, ext[h.own_global_id], h.peer_state, h.peer_global_id)
            for h in sess.scalars(select(m.Hit))
        }


def gid(s: Side, external_id: str) -> str:
    with s.storage.db.read() as sess:
        return str(
            sess.scalar(select(m.Incident.global_id).where(m.Incident.external_id == external_id))
        )


@pytest.fixture
def pair(tmp_path: Path, database_url: str) -> tuple[Side, Side]:
    il = side(tmp_path, database_url, IL)
    mn = side(tmp_path, f"sqlite:///{tmp_path}/mn.db", MN)
    ingest(
        il,
        tmp_path,
        [
            rec("IL", "IL-1", badge="04471"),
            rec("IL", "IL-2", badge="9", vehicle_plate="IL ABC 1234"),
        ],
    )
    ingest(
        mn,
        tmp_path,
        [
            rec("MN", "MN-1", badge="4471"),
            rec("MN", "MN-2", badge="8", vehicle_plate="il-abc-1234"),
        ],
    )
    publish(il, helper("CA"))
    publish(mn, helper("CA"))
    return il, mn  # fmt: skip


def test_replicating_a_peer_records_the_hit_and_the_peer_records_the_mirror(
    pair: tuple[Side, Side],
) -> None:
    il, mn = pair
    assert hits(il) == hits(mn) == set()  # published before either replicated the other
    replicate(mn, il)
    assert hits(mn) == {
        ("badge", "MN-1", "IL", gid(il, "IL-1")),
        ("plate", "MN-2", "IL", gid(il, "IL-2")),
    }
    assert hits(il) == set()
    replicate(il, mn)  # the mirror, on IL's next sync
    assert hits(il) == {
        ("badge", "IL-1", "MN", gid(mn, "MN-1")),
        ("plate", "IL-2", "MN", gid(mn, "MN-2")),
    }


def test_a_link_already_known_is_not_a_new_hit(pair: tuple[Side, Side], tmp_path: Path) -> None:
    il, mn = pair
    replicate(mn, il)
    replicate(mn, il)
    before = hits(mn)
    # a correction of IL-1 is a new revision of the same incident: the same link
    with il.storage.db.write() as s:
        one = s.scalars(select(m.Incident).where(m.Incident.external_id == "IL-1")).one()
        one.status, one.content_hash = "unsubstantiated", "0" * 64
    assert publish(il, helper("CA")).published == 1
    replicate(mn, il)
    assert hits(mn) == before
    with mn.storage.db.read() as s:
        assert len(s.scalars(select(m.Hit)).all()) == 2


def test_publishing_a_new_local_record_records_its_hits(
    pair: tuple[Side, Side], tmp_path: Path
) -> None:
    il, mn = pair
    replicate(il, mn)
    first = hits(il)
    ingest(il, tmp_path, [rec("IL", "IL-3", badge="4471", name="Smith, John")])
    publish(il, helper("CA"))
    assert hits(il) - first == {("badge", "IL-3", "MN", gid(mn, "MN-1"))}
    replicate(mn, il)
    assert ("badge", "MN-1", "IL", gid(il, "IL-3")) in hits(mn)


def test_list_hits_newest_first_with_filters(pair: tuple[Side, Side]) -> None:
    il, mn = pair
    replicate(mn, il)
    found = list_hits(mn.storage.db)
    assert [h.id for h in found] == sorted((h.id for h in found), reverse=True)  # newest first
    assert {h.strength for h in found} == {"strong", "vehicle"}
    assert [h.kind for h in list_hits(mn.storage.db, kinds=("badge", "name_agency"))] == ["badge"]
    assert list_hits(mn.storage.db, peer="CA") == []
    assert len(list_hits(mn.storage.db, limit=1)) == 1
    assert found[0].to_json()["peer_state"] == "IL"


def test_one_name_and_agency_beside_two_badges_is_no_strong_hit(
    tmp_path: Path, database_url: str
) -> None:
    """Two ICE-ERO officers called John Smith, badges 1 and 2: the shared name is a medium
    hit, the shared name and agency is no hit; with no badge on one side it is one."""
    il = side(tmp_path, database_url, IL)
    mn = side(tmp_path, f"sqlite:///{tmp_path}/mn.db", MN)
    ingest(il, tmp_path, [rec("IL", "IL-1", badge="1", name="Smith, John")])
    ingest(mn, tmp_path, [rec("MN", "MN-1", badge="2", name="John Smith"),
                          rec("MN", "MN-2", name="JOHN SMITH")])  # fmt: skip
    publish(il, helper("CA"))
    publish(mn, helper("CA"))
    replicate(il, mn)
    assert hits(il) == {
        ("name", "IL-1", "MN", gid(mn, "MN-1")),
        ("name", "IL-1", "MN", gid(mn, "MN-2")),
        ("name_agency", "IL-1", "MN", gid(mn, "MN-2")),
    }
