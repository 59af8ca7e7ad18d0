"""Bundle requests and decisions (node.bundles) over a real FederationService on loopback:
the holder's policy, reviewers' decisions, idempotency, refusals, and the requester's
verification of the decision. IL holds incidents; MN (and CA) ask."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import select

from compact.v1 import federation_pb2 as pb
from crypto.dsse import Envelope
from federation.bundle import BundleDecision, BundleRequest, sign_decision, sign_request
from node import models as m
from node.bundles import (
    DECISION_KIND,
    BundleDesk,
    BundleRefused,
    get_request,
    list_requests,
)
from node.config import BundleSettings, FederationSettings
from node.errors import Refusal
from node.fedclient import PeerClient, PeerRefusedByError
from node.fedservice import FederationServicer, start_federation_server
from node.fedstore import FederationStore
from node.ingest import NodeStorage, ingest_file
from node.publish import CUSTODY_KIND, Publisher
from node.translog import TransparencyLog
from tests.helpers import make_storage, record, write_jsonl
from tests.test_fedservice import CA, IL, MN, NOW, Clock, Compact, Identity, make_compact


@pytest.fixture(scope="module")
def compact() -> Compact:
    return make_compact()


@dataclass
class BundleNode:
    who: Identity
    storage: NodeStorage
    store: FederationStore
    log: TransparencyLog
    desk: BundleDesk
    clock: Clock

    def servicer(self) -> FederationServicer:
        return FederationServicer(
            state=self.who.state,
            store=self.store,
            log=self.log,
            db=self.storage.db,
            settings=FederationSettings(),
            clock=self.clock,
            bundles=self.desk,
        )

    def audit(self, action: str) -> list[tuple[str, str, str | None]]:
        with self.storage.db.read() as s:
            return [
                (a.actor, a.outcome, a.target)
                for a in s.scalars(
                    select(m.AuditEvent)
                    .where(m.AuditEvent.action == action)
                    .order_by(m.AuditEvent.id)
                )
            ]

    def log_kinds(self) -> list[str]:
        with self.storage.db.read() as s:
            return list(s.scalars(select(m.LogEntry.kind).order_by(m.LogEntry.index)))


def make_bundle_node(
    tmp_path: Path, who: Identity, compact: Compact, settings: BundleSettings | None = None
) -> BundleNode:
    root = tmp_path / who.state
    storage = dataclasses.replace(
        make_storage(f"sqlite:///{tmp_path / f'{who.state}.db'}", root), state=who.state
    )
    store = FederationStore(storage.db, storage.fields, who.state)
    store.apply_roster(
        compact.envelope,
        [i.tls_cert for i in (CA, IL, MN)],
        now=NOW,
        pinned_sha256=compact.roster.payload_sha256(),
    )
    log = TransparencyLog(storage.db)
    clock = Clock()
    desk = BundleDesk(storage, log, who.signing_key, settings or BundleSettings(), clock=clock)
    return BundleNode(who, storage, store, log, desk, clock)


def holder_with(
    tmp_path: Path, compact: Compact, **settings: Any
) -> tuple[BundleNode, dict[str, str]]:
    """IL with three incidents (sharing index, compact, sealed): external id -> global id."""
    il = make_bundle_node(tmp_path, IL, compact, BundleSettings(**settings))
    path = write_jsonl(
        tmp_path / "import",
        [
            record("IL-1", sharing="index"),
            record("IL-2", sharing="compact"),
            record("IL-3", sharing="sealed"),
        ],
    )
    report = ingest_file(il.storage, path, actor="clerk")
    assert report.imported == 3
    with il.storage.db.read() as s:
        ids = {e: g for e, g in s.execute(select(m.Incident.external_id, m.Incident.global_id))}
    return il, ids


@pytest.fixture
def bundle_nodes(
    tmp_path: Path, compact: Compact
) -> Iterator[tuple[BundleNode, BundleNode, dict[str, str]]]:
    il, ids = holder_with(tmp_path, compact)
    mn = make_bundle_node(tmp_path, MN, compact)
    yield il, mn, ids
    il.storage.db.dispose()
    mn.storage.db.dispose()


@asynccontextmanager
async def serving(node: BundleNode) -> AsyncIterator[int]:
    server, port = await start_federation_server(
        servicer=node.servicer(),
        store=node.store,
        listen="127.0.0.1:0",
        tls_key_pem=node.who.tls_key,
        tls_cert_pem=node.who.tls_cert,
        max_receive_message_bytes=4 * 1024 * 1024,
    )
    try:
        yield port
    finally:
        await server.stop(None)


def peer(caller: Identity, server: Identity, port: int) -> PeerClient:
    return PeerClient(
        server.member(f"127.0.0.1:{port}"),
        server.tls_cert,
        tls_key_pem=caller.tls_key,
        tls_cert_pem=caller.tls_cert,
        deadline_seconds=10,
    )


def new_request(mn: BundleNode, gid: str, **changes: Any) -> tuple[int, bytes]:
    info, envelope = mn.desk.new_request(
        holder="IL",
        global_id=gid,
        purpose=changes.get("purpose", "joint investigation of agent 4471"),
        matter=changes.get("matter"),
        user="analyst.ortiz",
        roster=mn.store.require_roster(),
    )
    return info.id, envelope


def send(caller: Identity, il: BundleNode, envelope: bytes) -> Any:
    async def scenario() -> Any:
        async with serving(il) as port, peer(caller, IL, port) as c:
            return await c.request_bundle(envelope)

    return asyncio.run(scenario())


def status(caller: Identity, il: BundleNode, request_id: str) -> Any:
    async def scenario() -> Any:
        async with serving(il) as port, peer(caller, IL, port) as c:
            return await c.get_bundle_status(request_id)

    return asyncio.run(scenario())


def refusal(caller: Identity, il: BundleNode, envelope: bytes) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(PeerRefusedByError) as e:
        send(caller, il, envelope)
    assert e.value.code is not None
    return e.value.code, str(e.value)


# --- the policy ------------------------------------------------------------------------------


def test_a_compact_incident_is_approved_by_policy(bundle_nodes: Any) -> None:
    il, mn, ids = bundle_nodes
    row_id, envelope = new_request(mn, ids["IL-2"])
    answer = send(MN, il, envelope)
    assert answer.state == "approved" and answer.decision and answer.manifest is None
    info = mn.desk.record_status(row_id, answer, mn.store.require_roster())
    assert (info.state, info.decided_by, info.reason) == ("approved", "policy:compact", None)
    assert info.bundle_id is not None and len(info.bundle_id) == 64
    # The decision is in the holder's log and audit trail; the request in its audit trail.
    assert il.log_kinds().count(DECISION_KIND) == 1
    assert il.audit("bundle.decide") == [("policy:compact", "approved", ids["IL-2"])]
    assert il.audit("bundle.request") == [("member:MN", "received", ids["IL-2"])]
    incoming = list_requests(il.storage.db, direction="incoming")
    assert [(r.requester, r.state, r.requested_by) for r in incoming] == [
        ("MN", "approved", "analyst.ortiz")
    ]
    assert mn.audit("bundle.decision") == [("member:IL", "approved", ids["IL-2"])]


def test_an_index_incident_waits_for_a_reviewer(bundle_nodes: Any) -> None:
    il, mn, ids = bundle_nodes
    row_id, envelope = new_request(mn, ids["IL-1"])
    answer = send(MN, il, envelope)
    assert (answer.state, answer.decision) == ("pending", None)
    info = mn.desk.record_status(row_id, answer, mn.store.require_roster())
    assert info.state == "pending" and info.sent_at is not None
    assert DECISION_KIND not in il.log_kinds()

    request_id = info.request_id
    decided = il.desk.decide(request_id, approve=True, actor="reviewer.kim", redactions=["people"])
    assert (decided.state, decided.decided_by, decided.redactions) == (
        "approved",
        "reviewer.kim",
        ("people",),
    )
    later = status(MN, il, request_id)
    info = mn.desk.record_status(row_id, later, mn.store.require_roster())
    assert (info.state, info.redactions, info.bundle_id) == (
        "approved",
        ("people",),
        decided.bundle_id,
    )
    with pytest.raises(BundleRefused) as e:
        il.desk.decide(request_id, approve=False, actor="reviewer.kim", reason="changed my mind")
    assert e.value.kind is Refusal.FAILED_PRECONDITION


def test_a_denial_carries_its_reason_back(bundle_nodes: Any) -> None:
    il, mn, ids = bundle_nodes
    row_id, envelope = new_request(mn, ids["IL-1"])
    send(MN, il, envelope)
    request_id = _request_id(mn, row_id)
    with pytest.raises(BundleRefused, match="reason"):
        il.desk.decide(request_id, approve=False, actor="reviewer.kim")
    il.desk.decide(request_id, approve=False, actor="reviewer.kim", reason="open investigation")
    info = mn.desk.record_status(row_id, status(MN, il, request_id), mn.store.require_roster())
    assert (info.state, info.reason, info.bundle_id) == ("denied", "open investigation", None)
    assert il.audit("bundle.decide") == [("reviewer.kim", "denied", ids["IL-1"])]


def _request_id(node: BundleNode, row_id: int) -> str:
    with node.storage.db.read() as s:
        row = s.get(m.BundleRequestRow, row_id)
        assert row is not None
        return row.request_id


def test_review_levels_make_the_policy_stricter(tmp_path: Path, compact: Compact) -> None:
    il, ids = holder_with(tmp_path, compact, review_levels=("compact",))
    mn = make_bundle_node(tmp_path, MN, compact)
    _, envelope = new_request(mn, ids["IL-2"])
    assert send(MN, il, envelope).state == "pending"


# --- idempotency and refusals ------------------------------------------------------------------


def test_the_same_request_twice_is_stored_once(bundle_nodes: Any) -> None:
    il, mn, ids = bundle_nodes
    _, envelope = new_request(mn, ids["IL-2"])
    first, second = send(MN, il, envelope), send(MN, il, envelope)
    assert first == second
    assert len(list_requests(il.storage.db)) == 1
    assert il.log_kinds().count(DECISION_KIND) == 1


def test_another_request_under_a_used_id_is_refused(bundle_nodes: Any) -> None:
    il, mn, ids = bundle_nodes
    _, envelope = new_request(mn, ids["IL-2"])
    send(MN, il, envelope)
    original = BundleRequest.from_payload(Envelope.from_json(envelope).payload)
    other = dataclasses.replace(original, purpose="something else")
    code, message = refusal(MN, il, sign_request(other, MN.signing_key).to_json())
    assert code == grpc.StatusCode.ALREADY_EXISTS and "request_id" in message


@pytest.mark.parametrize("which", ["unknown", "sealed"])
def test_an_unknown_or_sealed_incident_is_not_found_alike(bundle_nodes: Any, which: str) -> None:
    il, mn, ids = bundle_nodes
    gid = ids["IL-3"] if which == "sealed" else "IL-00000000-0000-4000-8000-000000000000"
    _, envelope = new_request(mn, gid)
    code, message = refusal(MN, il, envelope)
    assert code == grpc.StatusCode.NOT_FOUND
    assert message.endswith("incident: this node holds no such incident")
    assert list_requests(il.storage.db) == []
    assert il.audit("bundle.request") == [("member:MN", "refused", gid)]


def test_a_request_signed_by_another_member_is_refused(bundle_nodes: Any) -> None:
    il, mn, ids = bundle_nodes
    _, envelope = new_request(mn, ids["IL-2"])
    request = BundleRequest.from_payload(Envelope.from_json(envelope).payload)
    forged = sign_request(request, CA.signing_key).to_json()  # names MN, signed by CA
    code, _ = refusal(MN, il, forged)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = refusal(CA, il, envelope)  # MN's request, sent by CA
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert list_requests(il.storage.db) == []


def test_a_request_for_another_holder_is_refused(bundle_nodes: Any) -> None:
    il, mn, _ = bundle_nodes
    _, envelope = mn.desk.new_request(
        holder="CA",
        global_id="CA-00000000-0000-4000-8000-000000000000",
        purpose="p",
        matter=None,
        user="u",
        roster=mn.store.require_roster(),
    )
    code, message = refusal(MN, il, envelope)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "holder" in message


def test_the_status_of_another_members_request_is_not_found(bundle_nodes: Any) -> None:
    il, mn, ids = bundle_nodes
    row_id, envelope = new_request(mn, ids["IL-2"])
    send(MN, il, envelope)
    request_id = _request_id(mn, row_id)
    assert status(MN, il, request_id).state == "approved"
    with pytest.raises(PeerRefusedByError) as e:
        status(CA, il, request_id)
    assert e.value.code == grpc.StatusCode.NOT_FOUND


def test_malformed_bundle_rpcs_name_the_field(bundle_nodes: Any) -> None:
    il, _, _ = bundle_nodes

    async def scenario() -> list[tuple[grpc.StatusCode, str]]:
        from federation.mtls import channel_credentials

        out = []
        creds = channel_credentials(MN.tls_key, MN.tls_cert, IL.tls_cert)
        async with serving(il) as port, grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as ch:
            for method, request in (
                ("RequestBundle", pb.RequestBundleRequest()),
                ("RequestBundle", pb.RequestBundleRequest(envelope=b"{not json")),
                ("RequestBundle", pb.RequestBundleRequest(envelope=b"x" * 100_000)),
                ("GetBundleStatus", pb.GetBundleStatusRequest(request_id="../../etc")),
            ):
                call: Any = ch.unary_unary(f"/compact.v1.FederationService/{method}")
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await call(request.SerializeToString(), timeout=10)
                out.append((e.value.code(), e.value.details() or ""))
        return out

    answers = asyncio.run(scenario())
    assert [c for c, _ in answers] == [grpc.StatusCode.INVALID_ARGUMENT] * 4
    assert [d.split(":")[0] for _, d in answers] == [
        "envelope",
        "envelope",
        "envelope",
        "request_id",
    ]
    assert list_requests(il.storage.db) == []


# --- the requester verifies the decision -------------------------------------------------------


def test_a_decision_not_signed_by_the_holder_is_refused(bundle_nodes: Any) -> None:
    il, mn, ids = bundle_nodes
    row_id, envelope = new_request(mn, ids["IL-2"])
    answer = send(MN, il, envelope)
    decision = BundleDecision.from_payload(Envelope.from_json(answer.decision).payload)
    forged = dataclasses.replace(answer, decision=sign_decision(decision, CA.signing_key).to_json())
    with pytest.raises(BundleRefused) as e:
        mn.desk.record_status(row_id, forged, mn.store.require_roster())
    assert e.value.kind is Refusal.INVALID
    assert get_request(mn.storage.db, _request_id(mn, row_id)).state == "pending"
    # A decision about another request, properly signed by IL, is refused too.
    other = dataclasses.replace(decision, request_id="00000000-0000-4000-8000-000000000000")
    wrong = dataclasses.replace(answer, decision=sign_decision(other, IL.signing_key).to_json())
    with pytest.raises(BundleRefused, match="another request"):
        mn.desk.record_status(row_id, wrong, mn.store.require_roster())


def test_requests_are_checked_before_they_are_signed(bundle_nodes: Any) -> None:
    _, mn, ids = bundle_nodes
    roster = mn.store.require_roster()
    cases = [
        ({"holder": "MN"}, "own incidents"),
        ({"holder": "TX"}, "not a member"),
        ({"global_id": "CA-00000000-0000-4000-8000-000000000000"}, "not an incident of IL"),
        ({"purpose": ""}, "purpose"),
        ({"purpose": "x" * 2001}, "purpose"),
    ]
    for changes, message in cases:
        args: dict[str, Any] = {
            "holder": "IL",
            "global_id": ids["IL-2"],
            "purpose": "p",
            "matter": None,
            "user": "u",
            "roster": roster,
        }
        args.update(changes)
        with pytest.raises(BundleRefused, match=message):
            mn.desk.new_request(**args)
    assert list_requests(mn.storage.db) == []


# --- custody events are signed and logged ----------------------------------------------------


def test_custody_events_are_signed_and_logged_privately(tmp_path: Path, compact: Compact) -> None:
    from federation.bundle import verify_custody
    from node.fedservice import PUBLIC_ENTRY_KINDS

    il = make_bundle_node(tmp_path, IL, compact)
    (tmp_path / "import" / "media").mkdir(parents=True)
    (tmp_path / "import" / "media" / "clip.mp4").write_bytes(b"video bytes")
    evidence = [
        {
            "path": "media/clip.mp4",
            "media_type": "video/mp4",
            "captured_at": "2025-10-04T07:16:02-05:00",
            "captured_by": "bystander",
        }
    ]
    path = write_jsonl(tmp_path / "import", [record("IL-9", evidence=evidence)])
    assert ingest_file(il.storage, path, actor="clerk").imported == 1
    publisher = Publisher(il.storage, il.log, il.who.signing_key)
    assert publisher.log_custody() == 2  # collected, received
    assert publisher.log_custody() == 0  # nothing twice
    assert CUSTODY_KIND not in PUBLIC_ENTRY_KINDS
    roster = il.store.require_roster()
    with il.storage.db.read() as s:
        rows = list(s.scalars(select(m.CustodyEvent).order_by(m.CustodyEvent.id)))
        for row in rows:
            assert row.envelope is not None and row.log_index is not None
            logged = s.get(m.LogEntry, row.log_index)
            assert logged is not None and logged.kind == CUSTODY_KIND
            assert logged.payload == row.envelope
            custody = verify_custody(Envelope.from_json(row.envelope), roster, state="IL")
            assert (custody.kind, custody.event_id, custody.evidence_position) == (
                row.kind,
                row.id,
                0,
            )
    assert [r.kind for r in rows] == ["collected", "received"]
    il.storage.db.dispose()
