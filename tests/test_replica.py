"""Publishing an index and replicating it, in process: pseudonyms, verification, attacks.

Two nodes (IL, MN) share one roster with a 2-of-3 OPRF key; share holders are
called in process (the gRPC path is tested in test_fedservice and the
three-node integration test). Each attack is a test named after it.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from crypto import merkle
from crypto.checkpoint import Checkpoint, sign_checkpoint
from crypto.dsse import sign_envelope
from federation.ceremony import open_share, run_ceremony
from federation.index_entry import PAYLOAD_TYPE, sign_entry
from federation.naming import log_origin, log_signer
from node import models as m
from node.fedstore import FederationStore
from node.ingest import NodeStorage, ingest_file
from node.pseudonymise import PseudonymError, Pseudonymiser, ShareHolder, local_holder
from node.publish import ENTRY_KIND, Publisher
from node.queries import evidence_item, incident_view, record_custody
from node.replica import Entry, ReplicaError, Replicas
from node.translog import TransparencyLog
from tests.helpers import make_storage, record, write_jsonl
from tests.test_federation_roster import CA, IL, MN, Node, roster, signed

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NODES = {"IL": IL, "MN": MN, "CA": CA}
CEREMONY = run_ceremony(roster(1, [IL, MN, CA], threshold=2), threshold=2)
ROSTER = CEREMONY.roster
SHARES = {
    s: open_share(CEREMONY.sealed_shares[s], state=s, private_key=NODES[s].enc, roster=ROSTER)
    for s in NODES
}


@dataclasses.dataclass
class Side:
    node: Node
    storage: NodeStorage
    store: FederationStore
    log: TransparencyLog

    @property
    def state(self) -> str:
        return self.node.state


def side(tmp_path: Path, url: str, n: Node) -> Side:
    storage = dataclasses.replace(make_storage(url, tmp_path / n.state), state=n.state)
    with storage.db.write() as s:
        s.add(
            m.RosterVersion(
                version=1,
                envelope=signed(ROSTER, IL, MN).to_json(),
                payload_sha256=ROSTER.payload_sha256(),
                applied_at=NOW,
            )
        )
    store = FederationStore(storage.db, storage.fields, n.state)
    store.import_share(CEREMONY.sealed_shares[n.state], n.enc, now=NOW)
    return Side(n, storage, store, TransparencyLog(storage.db))


def pseudonymiser(s: Side, *holders: ShareHolder) -> Pseudonymiser:
    own = s.store.share(ROSTER)
    assert own is not None
    return Pseudonymiser(
        store=s.store, roster=ROSTER, holders=[local_holder(s.state, own), *holders]
    )


def helper(state: str) -> ShareHolder:
    return local_holder(state, SHARES[state])


def ingest(s: Side, tmp_path: Path, records: list[dict[str, Any]]) -> None:
    path = write_jsonl(tmp_path / f"in-{s.state}", records)
    report = ingest_file(s.storage, path, actor="test")
    assert not report.errors


def il_record(external_id: str, badge: str, **changes: Any) -> dict[str, Any]:
    rec = record(external_id, **changes)
    rec["agents"][0]["badge"] = badge
    rec["location"] = {**rec["location"], "state": "IL"}
    return rec


def mn_record(external_id: str, badge: str) -> dict[str, Any]:
    rec = record(external_id)
    rec["agents"][0]["badge"] = badge
    rec["location"] = {"county": "Hennepin", "state": "MN", "kind": "residence"}
    return rec


def publish(s: Side, *holders: ShareHolder) -> Any:
    return asyncio.run(Publisher(s.storage, s.log, s.node.key).publish(pseudonymiser(s, *holders)))


def feed(s: Side, start: int = 0) -> tuple[str, list[Entry]]:
    note = s.log.latest_checkpoint()
    assert note is not None
    size = int(note.split("\n")[1])
    rows = s.log.entries(start, size - start)
    return note, [_entry(i, k, p) for i, k, p in rows]


def _entry(index: int, kind: str, payload: bytes) -> Entry:
    from crypto.merkle import leaf_hash

    return Entry(index, kind, payload if kind == ENTRY_KIND else None, leaf_hash(payload))


def replicate(dst: Side, src: Side) -> int:
    member = ROSTER.member(src.state)
    assert member is not None
    replicas = Replicas(dst.storage.db, own_state=dst.state)
    before = replicas.state_of(src.state)
    note, entries = feed(src, before.size)
    old = before.checkpoint.size if before.checkpoint else 0
    cp = replicas.accept_checkpoint(
        member, note, src.log.consistency_proof(old, _size(note)) if old else [], now=NOW
    )
    return (
        replicas.accept_entries(ROSTER, member, entries, [], now=NOW)
        if cp.size > before.size
        else 0
    )


def _size(note: str) -> int:
    return int(note.split("\n")[1])


def replica_rows(s: Side, state: str) -> list[tuple[str, int, bytes]]:
    with s.storage.db.read() as sess:
        return [
            (g, r, bytes(e))
            for g, r, e in sess.execute(
                select(m.ReplicaEntry.global_id, m.ReplicaEntry.revision, m.ReplicaEntry.envelope)
                .where(m.ReplicaEntry.state == state, m.ReplicaEntry.current.is_(True))
                .order_by(m.ReplicaEntry.global_id)
            ).all()
        ]


def pseudonym_rows(s: Side, state: str) -> set[tuple[str, int, str, str]]:
    with s.storage.db.read() as sess:
        return set(
            sess.execute(
                select(
                    m.ReplicaPseudonym.global_id,
                    m.ReplicaPseudonym.position,
                    m.ReplicaPseudonym.kind,
                    m.ReplicaPseudonym.pseudonym,
                ).where(m.ReplicaPseudonym.state == state)
            ).all()
        )


def fact_rows(s: Side, state: str) -> set[tuple[object, ...]]:
    """What `replica_incidents` and `replica_agents` hold for `state`, by global id."""
    i, a = m.ReplicaIncident, m.ReplicaAgent
    with s.storage.db.read() as sess:
        incidents = sess.execute(
            select(i.global_id, i.day, i.county, i.location_kind, i.status, i.conduct).where(
                i.state == state
            )
        ).all()
        agents = sess.execute(
            select(i.global_id, a.position, a.agency, a.role, a.masked, a.identified_self)
            .join(i, (i.state == a.state) & (i.log_index == a.log_index))
            .where(a.state == state)
        ).all()
        return {tuple(r) for r in incidents} | {("agent", *r) for r in agents}


def published(s: Side) -> list[tuple[str, int, bytes]]:
    with s.storage.db.read() as sess:
        rows = sess.execute(
            select(m.PublishedEntry.global_id, m.PublishedEntry.revision, m.LogEntry.payload)
            .join(m.LogEntry, m.LogEntry.index == m.PublishedEntry.log_index)
            .order_by(m.PublishedEntry.global_id)
        ).all()
        return [(g, r, bytes(p)) for g, r, p in rows]


@pytest.fixture
def pair(tmp_path: Path, database_url: str) -> tuple[Side, Side]:
    """IL on the backend under test, MN on its own SQLite file (a mixed compact)."""
    il = side(tmp_path, database_url, IL)
    mn = side(tmp_path, f"sqlite:///{tmp_path}/mn.db", MN)
    return il, mn


def test_replica_equals_the_origins_published_index(
    pair: tuple[Side, Side], tmp_path: Path
) -> None:
    il, mn = pair
    ingest(
        il,
        tmp_path,
        [
            il_record("IL-1", "04471"),
            il_record("IL-2", "7"),
            il_record("IL-3", "7", sharing="sealed"),
        ],
    )
    report = publish(il, helper("MN"))
    # the two index entries, and the audit events (the import) logged after them
    assert report.published == 2 and report.checkpoint_size == 2 + report.audit
    assert replicate(mn, il) == 2
    assert replica_rows(mn, "IL") == published(il)
    assert pseudonym_rows(mn, "IL") == pseudonym_rows(il, "IL")
    facts = fact_rows(mn, "IL")
    assert facts == fact_rows(il, "IL")
    assert len([f for f in facts if f[0] != "agent"]) == 2  # the sealed one is not indexed
    # nothing new: a second round stores nothing and publishes nothing
    assert publish(il, helper("MN")).published == 0
    assert replicate(mn, il) == 0


def test_same_identifier_in_two_states_gives_the_same_pseudonym(
    pair: tuple[Side, Side], tmp_path: Path
) -> None:
    il, mn = pair
    ingest(il, tmp_path, [il_record("IL-1", "04471"), il_record("IL-2", "555")])
    ingest(mn, tmp_path, [mn_record("MN-1", "04471"), mn_record("MN-2", "999")])
    publish(il, helper("CA"))  # IL with CA's share
    publish(mn, helper("IL"))  # MN with IL's share: another pair of holders
    badges_il = {p for g, _, k, p in pseudonym_rows(il, "IL") if k == "badge"}
    badges_mn = {p for g, _, k, p in pseudonym_rows(mn, "MN") if k == "badge"}
    assert len(badges_il) == 2 and len(badges_mn) == 2
    assert len(badges_il & badges_mn) == 1  # 04471 in both states, and only that one


def test_correction_and_withdrawal_supersede_never_delete(
    pair: tuple[Side, Side], tmp_path: Path
) -> None:
    il, mn = pair
    ingest(il, tmp_path, [il_record("IL-1", "1"), il_record("IL-2", "2")])
    publish(il, helper("MN"))
    replicate(mn, il)
    # a correction (new content) and a record sealed after publication
    with il.storage.db.write() as sess:
        one = sess.scalars(select(m.Incident).where(m.Incident.external_id == "IL-1")).one()
        one.status, one.content_hash = "unsubstantiated", "0" * 64
        two = sess.scalars(select(m.Incident).where(m.Incident.external_id == "IL-2")).one()
        two.sharing = "sealed"
    report = publish(il, helper("MN"))
    assert (report.published, report.withdrawn) == (1, 1)
    replicate(mn, il)
    rows = replica_rows(mn, "IL")
    assert [r for _, r, _ in rows] == [2, 2]
    with mn.storage.db.read() as s:
        assert s.scalar(select(func.count()).select_from(m.ReplicaEntry)) == 4
        withdrawn = s.scalars(
            select(m.ReplicaEntry.global_id).where(
                m.ReplicaEntry.withdrawn.is_(True), m.ReplicaEntry.current.is_(True)
            )
        ).all()
    assert len(withdrawn) == 1
    assert {g for g, *_ in pseudonym_rows(mn, "IL")} == {g for g, *_ in pseudonym_rows(il, "IL")}
    assert len({g for g, *_ in pseudonym_rows(mn, "IL")}) == 1
    # the facts follow: the corrected revision only, nothing of the withdrawn incident
    facts = fact_rows(mn, "IL")
    assert facts == fact_rows(il, "IL")
    assert [f[4] for f in facts if f[0] != "agent"] == ["unsubstantiated"]


def test_change_marker_moves_with_imports_not_with_publishing(
    pair: tuple[Side, Side], tmp_path: Path
) -> None:
    """serve's loop runs the full `pending` query only when this fingerprint moves."""
    il, _ = pair
    publisher = Publisher(il.storage, il.log, il.node.key)
    empty = publisher.change_marker()
    ingest(il, tmp_path, [il_record("IL-1", "1")])
    imported = publisher.change_marker()
    assert imported != empty
    publish(il, helper("MN"))
    assert publisher.change_marker() == imported  # publishing is not a change to publish
    ingest(il, tmp_path, [il_record("IL-2", "2")])
    assert publisher.change_marker() != imported


def test_two_publishers_racing_publish_each_change_once(
    pair: tuple[Side, Side], tmp_path: Path
) -> None:
    """`compact sync` and serve's loop may both see the same pending work; one writes it."""
    il, _ = pair
    ingest(il, tmp_path, [il_record("IL-1", "1"), il_record("IL-2", "2")])
    late = Publisher(il.storage, il.log, il.node.key)
    stale = late.pending()
    assert len(stale[0]) == 2
    publish(il, helper("MN"))
    size = il.log.size()
    late.pending = lambda: stale  # type: ignore[method-assign]
    report = asyncio.run(late.publish(pseudonymiser(il, helper("MN"))))
    assert (report.published, report.withdrawn, il.log.size()) == (0, 0, size)
    # the same for a withdrawal both publishers saw pending
    with il.storage.db.write() as sess:
        two = sess.scalars(select(m.Incident).where(m.Incident.external_id == "IL-2")).one()
        two.sharing = "sealed"
    stale = Publisher.pending(late)
    assert len(stale[1]) == 1
    assert publish(il, helper("MN")).withdrawn == 1
    size = il.log.size()
    report = asyncio.run(late.publish(pseudonymiser(il, helper("MN"))))
    assert (report.published, report.withdrawn, il.log.size()) == (0, 0, size)
    assert sorted(r for _, r, _ in published(il)) == [1, 2]


def _append_and_sign(s: Side, payloads: list[bytes]) -> str:
    s.log.append(ENTRY_KIND, payloads)
    return s.log.sign_checkpoint(log_signer(s.state, s.node.key), origin=log_origin(s.state))


def _count(s: Side) -> int:
    with s.storage.db.read() as sess:
        return int(sess.scalar(select(func.count()).select_from(m.ReplicaEntry)) or 0)


def test_forged_entry(pair: tuple[Side, Side], tmp_path: Path) -> None:
    """An entry in IL's log that IL's key did not sign (CA's key, claiming to be IL)."""
    il, mn = pair
    ingest(il, tmp_path, [il_record("IL-1", "1")])
    publish(il, helper("MN"))
    replicate(mn, il)
    size = il.log.size()  # the index entry and the import's audit event
    good = IL_entry_payload(il)
    forged = sign_envelope(PAYLOAD_TYPE, good.payload(), [CA.key]).to_json()
    _append_and_sign(il, [forged])
    with pytest.raises(ReplicaError) as e:
        replicate(mn, il)
    assert e.value.kind == "bad-entry"
    assert _count(mn) == 1 and Replicas(mn.storage.db).state_of("IL").size == size


def IL_entry_payload(il: Side) -> Any:
    from crypto.dsse import Envelope
    from federation.index_entry import IndexEntry

    ((_, _, payload),) = il.log.entries(0, 1)
    entry = IndexEntry.from_payload(Envelope.from_json(payload).payload)
    return dataclasses.replace(entry, revision=entry.revision + 1)


def test_entry_signed_by_a_member_of_another_state(pair: tuple[Side, Side], tmp_path: Path) -> None:
    il, mn = pair
    ingest(il, tmp_path, [il_record("IL-1", "1")])
    publish(il, helper("MN"))
    entry = IL_entry_payload(il)
    mn_claim = dataclasses.replace(entry, state="MN", global_id="MN" + entry.global_id[2:])
    _append_and_sign(il, [sign_entry(mn_claim, IL.key).to_json()])
    with pytest.raises(ReplicaError, match="another state") as e:
        replicate(mn, il)
    assert e.value.kind == "bad-entry" and _count(mn) == 0


def test_revision_rolled_back_in_a_later_entry(pair: tuple[Side, Side], tmp_path: Path) -> None:
    il, mn = pair
    ingest(il, tmp_path, [il_record("IL-1", "1")])
    publish(il, helper("MN"))
    entry = dataclasses.replace(IL_entry_payload(il), revision=1)  # the same revision again
    _append_and_sign(il, [sign_entry(entry, IL.key).to_json()])
    with pytest.raises(ReplicaError, match="rolls back") as e:
        replicate(mn, il)
    assert e.value.kind == "bad-entry" and _count(mn) == 0


def test_rewritten_peer_log(pair: tuple[Side, Side], tmp_path: Path) -> None:
    """IL shows MN one history, then rewrites it: the fork is caught and both notes kept."""
    il, mn = pair
    ingest(il, tmp_path, [il_record("IL-1", "1")])
    publish(il, helper("MN"))
    replicate(mn, il)
    first = il.log.latest_checkpoint()
    other = side(tmp_path / "rewritten", f"sqlite:///{tmp_path}/rewritten.db", IL)
    ingest(other, tmp_path, [il_record("IL-9", "9"), il_record("IL-8", "8")])
    publish(other, helper("MN"))
    note = other.log.latest_checkpoint()
    assert note is not None
    with pytest.raises(ReplicaError) as e:
        Replicas(mn.storage.db).accept_checkpoint(
            ROSTER.members[1], note, other.log.consistency_proof(1, 2), now=NOW
        )
    assert e.value.kind == "forked-log"
    assert e.value.evidence == {"accepted": first, "presented": note}
    assert Replicas(mn.storage.db).state_of("IL").note == first


def test_two_roots_for_one_size(pair: tuple[Side, Side], tmp_path: Path) -> None:
    il, mn = pair
    ingest(il, tmp_path, [il_record("IL-1", "1")])
    publish(il, helper("MN"))
    replicate(mn, il)
    size = il.log.size()
    fake = sign_checkpoint(
        Checkpoint(log_origin("IL"), size, b"\x07" * 32), log_signer("IL", IL.key)
    )
    with pytest.raises(ReplicaError, match="two different roots") as e:
        Replicas(mn.storage.db).accept_checkpoint(ROSTER.members[1], fake, [], now=NOW)
    assert e.value.kind == "forked-log"


def test_replica_of_an_empty_log_then_of_the_grown_log(
    pair: tuple[Side, Side], tmp_path: Path
) -> None:
    """A peer synced before it published anything: its empty log is a prefix of any later one."""
    il, mn = pair
    assert publish(il, helper("MN")).checkpoint_size == 0
    assert replicate(mn, il) == 0
    assert Replicas(mn.storage.db).state_of("IL").checkpoint == Checkpoint(
        log_origin("IL"), 0, merkle.root_hash([])
    )
    ingest(il, tmp_path, [il_record("IL-1", "1"), il_record("IL-2", "2")])
    publish(il, helper("MN"))
    assert replicate(mn, il) == 2
    assert replica_rows(mn, "IL") == published(il)


def test_empty_log_checkpoint_with_a_wrong_root(pair: tuple[Side, Side]) -> None:
    _il, mn = pair
    note = sign_checkpoint(Checkpoint(log_origin("IL"), 0, b"\x01" * 32), log_signer("IL", IL.key))
    with pytest.raises(ReplicaError, match="empty tree") as e:
        Replicas(mn.storage.db).accept_checkpoint(ROSTER.members[1], note, [], now=NOW)
    assert e.value.kind == "bad-checkpoint"


def test_replayed_old_checkpoint(pair: tuple[Side, Side], tmp_path: Path) -> None:
    il, mn = pair
    ingest(il, tmp_path, [il_record("IL-1", "1")])
    publish(il, helper("MN"))
    replicate(mn, il)
    old = il.log.latest_checkpoint()
    assert old is not None
    ingest(il, tmp_path, [il_record("IL-2", "2")])
    publish(il, helper("MN"))
    replicate(mn, il)
    with pytest.raises(ReplicaError, match="older than") as e:
        Replicas(mn.storage.db).accept_checkpoint(ROSTER.members[1], old, [], now=NOW)
    assert e.value.kind == "stale-checkpoint"


def test_checkpoint_signed_by_another_key(pair: tuple[Side, Side], tmp_path: Path) -> None:
    _il, mn = pair
    note = sign_checkpoint(Checkpoint(log_origin("IL"), 1, b"\x01" * 32), log_signer("IL", MN.key))
    with pytest.raises(ReplicaError) as e:
        Replicas(mn.storage.db).accept_checkpoint(ROSTER.members[1], note, [], now=NOW)
    assert e.value.kind == "bad-checkpoint"


def test_entries_that_do_not_match_the_checkpoint_store_nothing(
    pair: tuple[Side, Side], tmp_path: Path
) -> None:
    il, mn = pair
    ingest(il, tmp_path, [il_record("IL-1", "1"), il_record("IL-2", "2")])
    publish(il, helper("MN"))
    note, entries = feed(il)
    member = ROSTER.members[1]
    replicas = Replicas(mn.storage.db)
    replicas.accept_checkpoint(member, note, [], now=NOW)
    swapped = [dataclasses.replace(entries[1], index=0), dataclasses.replace(entries[0], index=1)]
    with pytest.raises(ReplicaError) as e:
        replicas.accept_entries(ROSTER, member, swapped, [], now=NOW)
    assert e.value.kind == "forked-log"
    assert _count(mn) == 0 and replicas.state_of("IL").size == 0
    assert replicas.accept_entries(ROSTER, member, entries, [], now=NOW) == 2


def test_share_holder_returning_a_bad_evaluation(pair: tuple[Side, Side], tmp_path: Path) -> None:
    il, _ = pair
    bad_reports: list[tuple[str, str]] = []

    async def lying(blinded: Any) -> Any:
        answer = SHARES["MN"]
        from crypto.threshold_oprf import evaluate_share

        ev = evaluate_share(answer, blinded)
        return dataclasses.replace(ev, evaluated_elements=tuple(reversed(ev.evaluated_elements)))

    async def bad_proof(blinded: Any) -> Any:
        from crypto.threshold_oprf import evaluate_share

        ev = evaluate_share(SHARES["CA"], blinded)
        return dataclasses.replace(ev, proof=bytes(64))

    own = il.store.share(ROSTER)
    assert own is not None
    p = Pseudonymiser(
        store=il.store,
        roster=ROSTER,
        holders=[local_holder("IL", own), ShareHolder("MN", lying), ShareHolder("CA", bad_proof)],
        on_bad_answer=lambda state, reason: bad_reports.append((state, reason)),
    )
    with pytest.raises(PseudonymError, match="1 of 2 share answers"):
        asyncio.run(p.pseudonyms(["badge:ICE-ERO:1", "badge:ICE-ERO:2"]))
    assert [s for s, _ in bad_reports] == ["MN", "CA"]
    assert il.store.cached_pseudonyms(p.oprf_sha256, ["badge:ICE-ERO:1"]) == {}
    # an honest holder after the liar: the batch succeeds and equals the honest pair's answer
    honest = Pseudonymiser(
        store=il.store,
        roster=ROSTER,
        holders=[local_holder("IL", own), ShareHolder("MN", lying), helper("CA")],
    )
    got = asyncio.run(honest.pseudonyms(["badge:ICE-ERO:1"]))
    il2 = Pseudonymiser(store=il.store, roster=ROSTER, holders=[helper("MN"), helper("CA")])
    assert asyncio.run(il2._compute(["badge:ICE-ERO:1"])) == got


def test_core_loaded_views_equal_the_orm_views(pair: tuple[Side, Side], tmp_path: Path) -> None:
    """`Publisher._views` reads with Core queries; it builds exactly the views that
    `incident_view(..., personal=False)` builds over ORM rows (the code it replaced)."""
    il, _ = pair
    folder = tmp_path / "in-IL"  # where `ingest` writes the import file
    (folder / "media").mkdir(parents=True)
    (folder / "media" / "a.mp4").write_bytes(b"first clip" * 100)
    (folder / "media" / "b.jpg").write_bytes(b"a photo")
    agents = [
        {  # every key kind
            "name": "Smith, John Q.",
            "badge": "04471",
            "agency": "ICE-ERO",
            "unit": "Chicago SRT",
            "vehicle_plate": "IL ABC 1234",
            "masked": True,
            "role": "primary",
        },
        {"name": "Ann Lee", "role": "participant", "identified_self": False},  # name only
        {"vehicle_plate": "WI XYZ 9", "role": "supervisor", "body_camera": True},  # plate only
        {"badge": "12", "agency": "CBP-USBP"},  # badge only, role defaulted
        {"agency": "FBI", "masked": False},  # no key at all
    ]

    def varied(external_id: str, **changes: Any) -> dict[str, Any]:
        """`il_record` with these fields replaced (`il_record` edits the first agent's badge
        in place, so agents are copied); a field given as None is left out."""
        rec = il_record(external_id, "1")
        rec.update({k: copy.deepcopy(v) for k, v in changes.items()})
        return {k: v for k, v in rec.items() if v is not None}

    ingest(
        il,
        tmp_path,
        [
            varied(
                "IL-1",
                conduct=["warrantless_entry", "excessive_force", "masked_agent"],
                reported_at="2025-10-05T09:00:00+02:00",
                location={
                    "county": "Cook",
                    "state": "IL",
                    "kind": "residence",
                    "city": "Chicago",
                    "address": "1 Main St",
                    "lat": 41.88,
                    "lon": -87.63,
                },
                agents=agents,
                evidence=[
                    {
                        "path": "media/a.mp4",
                        "media_type": "video/mp4",
                        "captured_at": "2025-10-04T07:16:02-05:00",
                        "captured_by": "bystander",
                        "description": "the arrest",
                    },
                    {"path": "media/b.jpg", "media_type": "image/jpeg"},  # no capture time
                ],
            ),
            # nothing withheld: no people, narrative or address; no agents
            varied("IL-2", people=[], narrative=None, agents=[]),
            varied("IL-3", narrative=None, sharing="sealed"),  # withheld for its people
            varied("IL-4", people=[], agents=agents[::-1]),  # withheld for its narrative
            varied("IL-5", evidence=[{"path": "media/b.jpg"}]),  # a blob IL-1 also holds
        ],
    )
    with il.storage.db.read() as s:
        ids = list(s.scalars(select(m.Incident.id).order_by(m.Incident.id)))
        gid = s.scalars(select(m.Incident.global_id).where(m.Incident.external_id == "IL-1")).one()
    # a third custody event on one item: custody is in id order
    evidence_id, item = evidence_item(il.storage.db, gid, hashlib.sha256(b"a photo").hexdigest())
    record_custody(
        il.storage.db, evidence_id, kind="viewed", actor="analyst", detail={"b": 1}, target=gid
    )

    def orm_views(ids: list[int]) -> list[tuple[Any, str]]:
        """The ORM loading `_views` used to do, in incident id order."""
        options = (
            selectinload(m.Incident.conduct),
            selectinload(m.Incident.agents).selectinload(m.AgentObservation.keys),
            selectinload(m.Incident.evidence).selectinload(m.EvidenceItem.custody),
            selectinload(m.Incident.people),
        )
        with il.storage.db.read() as s:
            rows = s.scalars(
                select(m.Incident)
                .where(m.Incident.id.in_(ids))
                .options(*options)
                .order_by(m.Incident.id)
            )
            return [
                (incident_view(r, il.storage.fields, personal=False), r.content_hash) for r in rows
            ]

    publisher = Publisher(il.storage, il.log, il.node.key)
    expected = orm_views(ids)
    got = publisher._views(ids)
    assert got == expected
    assert publisher._views(list(reversed(ids))) == expected  # in incident id order
    assert publisher._views(ids[1:3]) == expected[1:3]
    assert publisher._views([]) == []
    # the records are as varied as meant
    one = expected[0][0]
    assert len(one.agents) == 5 and [len(a.keys) for a in one.agents] == [5, 1, 1, 1, 0]
    assert [len(e.custody) for e in one.evidence] == [2, 2]
    assert [v.restricted_withheld for v, _ in expected] == [True, False, True, True, True]
    assert item.sha256 == one.evidence[1].sha256
