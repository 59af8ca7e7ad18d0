"""FederationService over real grpc.aio servers on 127.0.0.1 with pinned mutual TLS.

Three members (CA, IL, MN) with keys, certificates, a signed roster carrying the
OPRF public record, shares imported from a real ceremony, one SQLite database
each. IL serves its log; MN serves too where a second OPRF share holder is
needed. Clients are `node.fedclient.PeerClient`, or raw channels where a test
must send what PeerClient refuses to send. Each test runs its own event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import select

from compact.v1 import federation_pb2 as pb
from compact.v1 import federation_pb2_grpc as pb_grpc
from crypto import merkle, oprf, signing, threshold_oprf, x25519
from crypto.checkpoint import (
    Checkpoint,
    CosignatureSigner,
    open_checkpoint,
    parse_checkpoint,
    verify_checkpoint,
)
from crypto.dsse import Envelope, sign_envelope
from crypto.fields import FieldCipher
from crypto.note import parse_note, parse_signature_line
from crypto.ristretto import base_mult, random_scalar, scalar_add, scalar_mul
from crypto.tls import certificate_fingerprint, generate_tls_key, self_signed_certificate
from federation.ceremony import public_sha256, run_ceremony
from federation.mtls import channel_credentials
from federation.naming import log_origin, log_signer, log_verifier, witness_name, witness_signer
from federation.roster import PAYLOAD_TYPE, Member, Roster
from node import migrate
from node import models as m
from node.config import FederationSettings
from node.db import Database
from node.fedclient import (
    PeerClient,
    PeerProtocolError,
    PeerRefusedByError,
    PeerUnavailableError,
    WireEntry,
)
from node.fedservice import (
    MAX_CLOCK_SKEW_SECONDS,
    PUBLIC_ENTRY_KINDS,
    SERVICE_NAME,
    FederationServicer,
    start_federation_server,
)
from node.fedstore import FederationStore
from node.pseudonymise import PseudonymError, Pseudonymiser, ShareHolder, local_holder
from node.translog import TransparencyLog

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
EXPIRES = NOW + timedelta(days=90)
DATA_KEY = bytes(range(32))
MAX_RECEIVE = 4 * 1024 * 1024
T = TypeVar("T")

pytestmark = pytest.mark.timeout(60)


# --- identities and the compact ------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    state: str
    signing_key: signing.SigningKey
    encryption_key: x25519.PrivateKey
    tls_key: bytes
    tls_cert: bytes

    def member(self, endpoint: str = "127.0.0.1:1") -> Member:
        return Member(
            self.state,
            endpoint,
            certificate_fingerprint(self.tls_cert),
            self.signing_key.public_key,
            self.encryption_key.public_key,
        )


def identity(state: str) -> Identity:
    key = generate_tls_key()
    cert = self_signed_certificate(
        key, common_name=f"compact {state}", hosts=["localhost", "127.0.0.1"]
    )
    return Identity(state, signing.SigningKey.generate(), x25519.PrivateKey.generate(), key, cert)


CA, IL, MN, TX = identity("CA"), identity("IL"), identity("MN"), identity("TX")
MEMBERS = (CA, IL, MN)


def signed(roster: Roster, signers: list[Identity]) -> Envelope:
    return sign_envelope(PAYLOAD_TYPE, roster.payload(), [i.signing_key for i in signers])


@dataclass(frozen=True)
class Compact:
    roster: Roster
    envelope: Envelope
    sealed: dict[str, bytes]


@pytest.fixture(scope="module")
def compact() -> Compact:
    return make_compact()


def make_compact() -> Compact:
    """CA, IL and MN, roster version 1 signed by all three, after a 2-of-3 OPRF ceremony."""
    proposal = Roster(
        version=1,
        expires=EXPIRES,
        threshold=2,
        members=tuple(i.member() for i in MEMBERS),
    )
    ceremony = run_ceremony(proposal, threshold=2)
    return Compact(
        ceremony.roster, signed(ceremony.roster, list(MEMBERS)), dict(ceremony.sealed_shares)
    )


# --- nodes -----------------------------------------------------------------------------------

# IL's log: what was appended, in order (kind, payload); checkpoints at sizes 5 and 12.
IL_LOG = [
    ("index-entry", b"entry 0"),
    ("custody", b"custody 1: private"),
    ("index-entry", b"entry 2"),
    ("audit", b"audit 3: private"),
    ("index-entry", b"entry 4"),
    *[("custody" if i % 3 else "index-entry", f"later {i}".encode()) for i in range(5, 12)],
]
CHECKPOINT_SIZES = (5, 12)


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Node:
    who: Identity
    db: Database
    store: FederationStore
    log: TransparencyLog
    clock: Clock = field(default_factory=Clock)
    settings: FederationSettings = field(default_factory=FederationSettings)

    def servicer(self) -> FederationServicer:
        return FederationServicer(
            state=self.who.state,
            store=self.store,
            log=self.log,
            db=self.db,
            settings=self.settings,
            clock=self.clock,
        )

    def audit(self) -> list[m.AuditEvent]:
        with self.db.read() as s:
            return list(s.scalars(select(m.AuditEvent).order_by(m.AuditEvent.id)))


def make_node(tmp_path: Path, who: Identity, compact: Compact | None, url: str = "") -> Node:
    db = Database.from_url(url or f"sqlite:///{tmp_path / f'{who.state}.db'}")
    migrate.upgrade(db.engine)
    store = FederationStore(db, FieldCipher(DATA_KEY), who.state)
    node = Node(who, db, store, TransparencyLog(db))
    if compact is not None:
        store.apply_roster(
            compact.envelope,
            [i.tls_cert for i in MEMBERS],
            now=NOW,
            pinned_sha256=compact.roster.payload_sha256(),
        )
        store.import_share(compact.sealed[who.state], who.encryption_key, now=NOW)
    return node


def build_nodes(tmp_path: Path, compact: Compact, il_url: str = "") -> dict[str, Node]:
    out = {i.state: make_node(tmp_path, i, compact, il_url if i is IL else "") for i in MEMBERS}
    il = out["IL"]
    signer = log_signer("IL", IL.signing_key)
    done = 0
    for size in CHECKPOINT_SIZES:
        for kind, payload in IL_LOG[done:size]:
            il.log.append(kind, [payload])
        il.log.sign_checkpoint(signer, origin=log_origin("IL"), now=NOW)
        done = size
    return out


@pytest.fixture
def nodes(tmp_path: Path, compact: Compact) -> Iterator[dict[str, Node]]:
    out = build_nodes(tmp_path, compact)
    yield out
    for node in out.values():
        node.db.dispose()


@pytest.fixture
def nodes_any_backend(
    tmp_path: Path, compact: Compact, database_url: str
) -> Iterator[dict[str, Node]]:
    """IL (the server) on SQLite and on PostgreSQL: usage counting and upserts differ."""
    out = build_nodes(tmp_path, compact, database_url)
    yield out
    for node in out.values():
        node.db.dispose()


@asynccontextmanager
async def serving(
    node: Node, *, max_receive: int = MAX_RECEIVE, servicer: FederationServicer | None = None
) -> AsyncIterator[int]:
    server, port = await start_federation_server(
        servicer=servicer or node.servicer(),
        store=node.store,
        listen="127.0.0.1:0",
        tls_key_pem=node.who.tls_key,
        tls_cert_pem=node.who.tls_cert,
        max_receive_message_bytes=max_receive,
    )
    try:
        yield port
    finally:
        await server.stop(None)


def client(
    caller: Identity, server: Identity, port: int, *, pinned: bytes | None = None
) -> PeerClient:
    return PeerClient(
        server.member(f"127.0.0.1:{port}"),
        server.tls_cert if pinned is None else pinned,
        tls_key_pem=caller.tls_key,
        tls_cert_pem=caller.tls_cert,
        deadline_seconds=10,
    )


def raw_channel(caller: Identity, server: Identity, port: int) -> grpc.aio.Channel:
    creds = channel_credentials(caller.tls_key, caller.tls_cert, server.tls_cert)
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", creds)


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await scenario()

    return asyncio.run(main())


def checkpoint_text(node: Node, size: int) -> str:
    with node.db.read() as s:
        row = s.get(m.LogCheckpoint, size)
        assert row is not None
        return parse_note(row.note).text


def cosignature_rows(node: Node) -> list[tuple[int, str, str]]:
    with node.db.read() as s:
        return [(r.size, r.witness, r.signature_line) for r in s.scalars(select(m.LogCosignature))]


def usage(node: Node, requester: str) -> int | None:
    with node.db.read() as s:
        return s.scalar(select(m.OprfUsage.elements).where(m.OprfUsage.requester == requester))


# --- happy paths -----------------------------------------------------------------------------


def test_get_roster_returns_envelopes_and_member_certificates(
    nodes: dict[str, Node], compact: Compact
) -> None:
    async def scenario() -> None:
        async with serving(nodes["IL"]) as port, client(MN, IL, port) as peer:
            envelopes, certificates = await peer.get_roster(0)
            assert [Envelope.from_json(e).payload for e in envelopes] == [compact.roster.payload()]
            assert sorted(certificates) == sorted(i.tls_cert for i in MEMBERS)
            envelopes, again = await peer.get_roster(1)
            assert envelopes == [] and sorted(again) == sorted(certificates)

    run(scenario)


def test_get_checkpoint_and_consistency_proof_verify(nodes: dict[str, Node]) -> None:
    leaves = [merkle.leaf_hash(p) for _, p in IL_LOG]

    async def scenario() -> None:
        async with serving(nodes["IL"]) as port, client(MN, IL, port) as peer:
            note, proof = await peer.get_checkpoint(5)
            checkpoint = open_checkpoint(note, log=log_verifier("IL", IL.signing_key.public_key))
            assert checkpoint.origin == log_origin("IL")
            assert checkpoint.size == 12
            assert checkpoint.root_hash == merkle.root_hash(leaves)
            merkle.verify_consistency(
                5, 12, merkle.root_hash(leaves[:5]), checkpoint.root_hash, proof
            )
            for old_size in (0, 12):
                assert (await peer.get_checkpoint(old_size))[1] == []

    run(scenario)


def test_get_entries_sends_payloads_only_for_index_entries(nodes: dict[str, Node]) -> None:
    leaves = [merkle.leaf_hash(p) for _, p in IL_LOG]

    async def scenario() -> None:
        async with serving(nodes["IL"]) as port, client(MN, IL, port) as peer:
            entries, proof = await peer.get_entries(0, 1000, 12)
            assert proof == []
            assert [e.index for e in entries] == list(range(12))
            for entry, (kind, payload) in zip(entries, IL_LOG, strict=True):
                assert entry.kind == kind
                assert entry.leaf_hash == merkle.leaf_hash(payload)
                if kind in PUBLIC_ENTRY_KINDS:
                    assert entry.payload == payload
                else:
                    assert entry.payload is None
            assert any(e.payload is None for e in entries)
            assert merkle.root_hash([e.leaf_hash for e in entries]) == merkle.root_hash(leaves)

            # A batch that stops before the checkpoint proves its prefix consistent with it.
            batch, proof = await peer.get_entries(2, 3, 12)
            assert [e.index for e in batch] == [2, 3, 4]
            merkle.verify_consistency(
                5, 12, merkle.root_hash(leaves[:5]), merkle.root_hash(leaves), proof
            )
            # Entries stop below an older checkpoint's size.
            batch, proof = await peer.get_entries(3, 1000, 5)
            assert [e.index for e in batch] == [3, 4] and proof == []

    run(scenario)


def test_submit_cosignature_is_stored_and_served(nodes_any_backend: dict[str, Node]) -> None:
    il = nodes_any_backend["IL"]
    text = checkpoint_text(il, 12)
    witness = witness_signer("MN", MN.signing_key)
    at = int(NOW.timestamp())
    first = witness.cosign(text, timestamp=at + 10)
    newer = witness.cosign(text, timestamp=at + 110)

    async def scenario() -> None:
        async with serving(il) as port, client(MN, IL, port) as peer:
            await peer.submit_cosignature(text, first)
            assert cosignature_rows(il) == [(12, "MN", first)]
            await peer.submit_cosignature(text, newer)
            await peer.submit_cosignature(text, first)  # an older line does not replace a newer
            assert cosignature_rows(il) == [(12, "MN", newer)]

            note, _ = await peer.get_checkpoint(0)
            verified = verify_checkpoint(
                note,
                log=log_verifier("IL", IL.signing_key.public_key),
                witnesses=[witness.verifier()],
                threshold=1,
                origin=log_origin("IL"),
            )
            assert [(c.name, c.timestamp) for c in verified.cosignatures] == [
                (witness_name("MN"), at + 110)
            ]

    run(scenario)
    outcomes = [
        (a.actor, a.outcome) for a in il.audit() if a.action == "federation.SubmitCosignature"
    ]
    assert outcomes == [("member:MN", "ok")] * 3


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(-3600, "before the checkpoint was signed"), (3600, "in the future")],
)
def test_cosignature_with_an_impossible_timestamp(
    nodes: dict[str, Node], offset: int, reason: str
) -> None:
    """A witness cannot claim to have seen a checkpoint before it existed, or in the future
    (beyond the allowed clock skew); within the skew it can."""
    il = nodes["IL"]
    text = checkpoint_text(il, 12)  # signed at NOW, and IL's clock says NOW
    witness = witness_signer("MN", MN.signing_key)
    at = int(NOW.timestamp())

    async def scenario() -> None:
        async with serving(il) as port, client(MN, IL, port) as peer:
            with pytest.raises(PeerRefusedByError) as e:
                await peer.submit_cosignature(text, witness.cosign(text, timestamp=at + offset))
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert reason in str(e.value)
            assert cosignature_rows(il) == []
            skewed = at + (MAX_CLOCK_SKEW_SECONDS if offset > 0 else -MAX_CLOCK_SKEW_SECONDS)
            await peer.submit_cosignature(text, witness.cosign(text, timestamp=skewed))
            assert len(cosignature_rows(il)) == 1

    run(scenario)


def test_evaluate_oprf_combines_to_the_single_key_output(
    nodes: dict[str, Node], compact: Compact
) -> None:
    roster = compact.roster
    assert roster.oprf is not None
    inputs = [b"badge:IL:04471", b"name:smith john q", b"plate:IL ABC 1234"]
    blinds, blinded = zip(*(oprf.blind(x, mode=threshold_oprf.MODE) for x in inputs), strict=True)

    async def scenario() -> list[threshold_oprf.ShareEvaluation]:
        async with (
            serving(nodes["IL"]) as il_port,
            serving(nodes["MN"]) as mn_port,
            client(CA, IL, il_port) as il,
            client(CA, MN, mn_port) as mn,
        ):
            return [await il.evaluate_oprf(blinded), await mn.evaluate_oprf(blinded)]

    evaluations = run(scenario)
    assert [e.index for e in evaluations] == [
        roster.oprf.commitments["IL"].index,
        roster.oprf.commitments["MN"].index,
    ]
    combined = threshold_oprf.combine(
        blinded, evaluations, roster.oprf.commitment_table(), t=roster.oprf.threshold
    )
    outputs = threshold_oprf.threshold_finalize(inputs, blinds, combined)

    # The compact key, rebuilt from the two shares, gives the same RFC 9497 outputs.
    il_share, mn_share = (nodes[s].store.share(roster) for s in ("IL", "MN"))
    assert il_share is not None and mn_share is not None
    shares = [il_share, mn_share]
    lambdas = threshold_oprf.lagrange_coefficients([s.index for s in shares])
    sk = scalar_add(*(scalar_mul(lambdas[s.index], s.scalar) for s in shares))
    assert base_mult(sk) == roster.oprf.public_key
    assert outputs == [oprf.evaluate(sk, x, mode=threshold_oprf.MODE) for x in inputs]

    for state in ("IL", "MN"):
        assert usage(nodes[state], "CA") == 3
        assert [(a.actor, a.action, a.outcome, a.detail) for a in nodes[state].audit()] == [
            ("member:CA", "federation.EvaluateOprf", "ok", {"elements": 3})
        ]


def test_a_log_without_checkpoints(nodes: dict[str, Node]) -> None:
    async def scenario() -> None:
        async with serving(nodes["MN"]) as port, client(IL, MN, port) as peer:
            with pytest.raises(PeerRefusedByError, match="no checkpoint yet") as e:
                await peer.get_checkpoint(0)
            assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION

    run(scenario)


def test_health_service_answers_over_mutual_tls(nodes: dict[str, Node]) -> None:
    async def scenario() -> None:
        async with serving(nodes["IL"]) as port, raw_channel(MN, IL, port) as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)  # the typeshed stub lists no methods
            answer = await stub.Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5
            )
            assert answer.status == health_pb2.HealthCheckResponse.SERVING

    run(scenario)


def test_a_new_member_is_trusted_without_a_restart(
    nodes: dict[str, Node], compact: Compact
) -> None:
    il = nodes["IL"]
    v2 = dataclasses.replace(
        compact.roster,
        version=2,
        members=tuple(i.member() for i in (*MEMBERS, TX)),
        oprf=None,
    )

    async def scenario() -> None:
        async with serving(il) as port:
            async with client(TX, IL, port) as tx:
                with pytest.raises(PeerUnavailableError):
                    await tx.get_roster(0)
            il.store.apply_roster(signed(v2, [CA, IL, TX]), [TX.tls_cert], now=NOW)
            async with client(TX, IL, port) as tx:
                envelopes, certificates = await tx.get_roster(1)
                assert len(envelopes) == 1 and TX.tls_cert in certificates

    run(scenario)


# --- attacks -----------------------------------------------------------------------------------


def test_unknown_client_is_refused(nodes: dict[str, Node]) -> None:
    async def scenario() -> None:
        async with serving(nodes["IL"]) as port, client(TX, IL, port) as peer:
            with pytest.raises(PeerUnavailableError) as e:
                await peer.get_checkpoint(0)
            assert e.value.code == grpc.StatusCode.UNAVAILABLE
            assert str(e.value).startswith("IL (127.0.0.1:")

    run(scenario)
    assert nodes["IL"].audit() == []  # refused at the handshake: no handler ran


def test_revoked_member_is_refused(nodes: dict[str, Node], compact: Compact) -> None:
    """CA is dropped in roster v2 while its TLS connection, made under v1, stays open."""
    il = nodes["IL"]
    v2 = dataclasses.replace(
        compact.roster, version=2, members=tuple(i.member() for i in (IL, MN)), oprf=None
    )

    async def scenario() -> None:
        async with serving(il) as port:
            async with client(CA, IL, port) as ca:
                await ca.get_roster(0)  # the connection is up, CA's certificate was trusted
                il.store.apply_roster(signed(v2, [IL, MN]), [], now=NOW)
                with pytest.raises(PeerRefusedByError) as e:
                    await ca.get_roster(0)
                assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
                assert "not pinned in roster version 2" in str(e.value)
            # A new connection no longer gets through the handshake.
            async with client(CA, IL, port) as ca:
                with pytest.raises(PeerUnavailableError):
                    await ca.get_roster(0)
            async with client(MN, IL, port) as mn:
                assert len((await mn.get_roster(0))[0]) == 2

    run(scenario)
    refused = [a for a in il.audit() if a.outcome == "refused"]
    assert [(a.actor, a.action) for a in refused] == [
        (f"peer:{certificate_fingerprint(CA.tls_cert)[:16]}", "federation.GetRoster")
    ]
    assert "roster version 2" in refused[0].detail["reason"]


def test_expired_roster_stops_traffic(nodes: dict[str, Node]) -> None:
    il = nodes["IL"]

    async def scenario() -> None:
        async with serving(il) as port, client(MN, IL, port) as peer:
            await peer.get_checkpoint(0)
            il.clock.now = EXPIRES
            with pytest.raises(PeerRefusedByError) as e:
                await peer.get_checkpoint(0)
            assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
            assert "expired" in str(e.value)
            blinded = [oprf.blind(b"badge:IL:1", mode=threshold_oprf.MODE)[1]]
            with pytest.raises(PeerRefusedByError):
                await peer.evaluate_oprf(blinded)

    run(scenario)
    assert usage(il, "MN") is None
    assert [a.outcome for a in il.audit()] == ["refused", "refused"]


def test_tls_pin_mismatch(nodes: dict[str, Node]) -> None:
    """The client pins MN's certificate for the endpoint where IL answers: no connection."""

    async def scenario() -> None:
        async with serving(nodes["IL"]) as port:
            async with client(CA, IL, port, pinned=MN.tls_cert) as peer:
                with pytest.raises(PeerUnavailableError):
                    await peer.get_roster(0)
            async with client(CA, IL, port) as peer:  # the right pin works
                await peer.get_roster(0)

    run(scenario)


def test_not_part_of_a_compact_yet(tmp_path: Path) -> None:
    lone = make_node(tmp_path, IL, None)

    async def scenario() -> None:
        async with serving(lone) as port:
            async with client(IL, IL, port) as me:  # only its own certificate is trusted
                with pytest.raises(PeerRefusedByError) as e:
                    await me.get_roster(0)
                assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
            async with client(MN, IL, port) as mn:
                with pytest.raises(PeerUnavailableError):
                    await mn.get_roster(0)

    run(scenario)


def test_oprf_flood_past_daily_limit(nodes_any_backend: dict[str, Node]) -> None:
    il = nodes_any_backend["IL"]
    il.settings = dataclasses.replace(FederationSettings(), oprf_daily_limit=10)
    blinded = [oprf.blind(f"badge:IL:{i}".encode(), mode=threshold_oprf.MODE)[1] for i in range(6)]

    async def scenario() -> None:
        async with serving(il) as port, client(CA, IL, port) as peer:
            await peer.evaluate_oprf(blinded)
            with pytest.raises(PeerRefusedByError) as e:
                await peer.evaluate_oprf(blinded)
            assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limit of 10" in str(e.value)
            assert "resets at 2026-11-22T00:00:00Z" in str(e.value)
            assert usage(il, "CA") == 6
            await peer.evaluate_oprf(blinded[:4])  # exactly up to the limit
            assert usage(il, "CA") == 10
            with pytest.raises(PeerRefusedByError):
                await peer.evaluate_oprf(blinded[:1])
            # Another member has its own allowance; tomorrow CA has a new one.
            async with client(MN, IL, port) as mn:
                await mn.evaluate_oprf(blinded[:1])
            il.clock.now = NOW + timedelta(days=1)
            await peer.evaluate_oprf(blinded[:1])

    run(scenario)
    rows = [(a.actor, a.outcome, a.detail["elements"]) for a in il.audit()]
    assert rows == [
        ("member:CA", "ok", 6),
        ("member:CA", "refused", 6),
        ("member:CA", "ok", 4),
        ("member:CA", "refused", 1),
        ("member:MN", "ok", 1),
        ("member:CA", "ok", 1),
    ]


def test_concurrent_oprf_flood_cannot_pass_the_limit(nodes_any_backend: dict[str, Node]) -> None:
    """Batches raced in parallel: no lost update lets more than the limit through."""
    il = nodes_any_backend["IL"]
    il.settings = dataclasses.replace(FederationSettings(), oprf_daily_limit=20)
    blinded = [oprf.blind(f"badge:IL:{i}".encode(), mode=threshold_oprf.MODE)[1] for i in range(3)]

    async def scenario() -> list[grpc.StatusCode | None]:
        async with serving(il) as port, client(CA, IL, port) as peer:

            async def one() -> grpc.StatusCode | None:
                try:
                    await peer.evaluate_oprf(blinded)
                except PeerRefusedByError as e:
                    return e.code
                return None

            return list(await asyncio.gather(*(one() for _ in range(16))))

    results = run(scenario)
    assert results.count(None) == 6
    assert results.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 10  # 6 * 3 = 18 <= 20 < 21
    assert usage(il, "CA") == 18
    outcomes = [a.outcome for a in il.audit()]
    assert outcomes.count("ok") == 6 and outcomes.count("refused") == 10


class LyingServicer(FederationServicer):
    """A member that answers OPRF requests wrongly over the wire: one evaluated element
    replaced ("evaluation"), or the proof of another batch ("proof")."""

    def __init__(self, node: Node, how: str) -> None:
        super().__init__(
            state=node.who.state,
            store=node.store,
            log=node.log,
            db=node.db,
            settings=node.settings,
            clock=node.clock,
        )
        self.node, self.how = node, how

    async def EvaluateOprf(
        self, request: pb.EvaluateOprfRequest, context: Any
    ) -> pb.EvaluateOprfResponse:
        response = await super().EvaluateOprf(request, context)
        if self.how == "evaluation":
            response.evaluated_elements[0] = base_mult(random_scalar()).to_bytes()
        else:
            roster = self.node.store.require_roster()
            share = self.node.store.share(roster)
            assert share is not None
            other = [base_mult(random_scalar()) for _ in request.blinded_elements]
            response.proof = threshold_oprf.evaluate_share(share, other).proof
        return response


def _compact_key(nodes: dict[str, Node], roster: Roster, states: tuple[str, str]) -> Any:
    shares = [nodes[s].store.share(roster) for s in states]
    assert all(shares)
    lambdas = threshold_oprf.lagrange_coefficients([s.index for s in shares if s])
    return scalar_add(*(scalar_mul(lambdas[s.index], s.scalar) for s in shares if s))


@pytest.mark.parametrize("how", ["evaluation", "proof"])
def test_share_holder_answering_wrongly_over_grpc(
    nodes: dict[str, Node], compact: Compact, how: str
) -> None:
    """IL answers CA's OPRF batch with a bad evaluation or a bad proof: CA names IL, asks the
    next holder, and its pseudonyms are the compact key's; with no other holder left it
    fails, and nothing is cached."""
    roster = compact.roster
    keys = ["badge:ICE-ERO:4471", "name:smith john"]
    ca = nodes["CA"]
    ca_share = ca.store.share(roster)
    assert ca_share is not None
    bad: list[tuple[str, str]] = []

    async def scenario() -> tuple[dict[str, str], str]:
        async with (
            serving(nodes["IL"], servicer=LyingServicer(nodes["IL"], how)) as il_port,
            serving(nodes["MN"]) as mn_port,
            client(CA, IL, il_port) as il,
            client(CA, MN, mn_port) as mn,
        ):
            lying, honest = ShareHolder("IL", il.evaluate_oprf), ShareHolder("MN", mn.evaluate_oprf)
            with_fallback = Pseudonymiser(
                store=ca.store,
                roster=roster,
                holders=[lying, honest, local_holder("CA", ca_share)],
                on_bad_answer=lambda state, reason: bad.append((state, reason)),
            )
            out = await with_fallback.pseudonyms(keys)
            alone = Pseudonymiser(store=ca.store, roster=roster, holders=[lying, honest])
            with pytest.raises(PseudonymError) as failed:
                await alone.pseudonyms(["badge:ICE-ERO:9999"])
            return out, str(failed.value)

    out, failure = run(scenario)
    assert [state for state, _ in bad] == ["IL"]
    assert "bad evaluation or proof" in bad[0][1]
    sk = _compact_key(nodes, roster, ("MN", "CA"))
    assert out == {k: oprf.evaluate(sk, k.encode(), mode=threshold_oprf.MODE).hex() for k in keys}
    assert "1 of 2 share answers are valid" in failure and "IL:" in failure
    assert roster.oprf is not None
    assert ca.store.cached_pseudonyms(public_sha256(roster.oprf), ["badge:ICE-ERO:9999"]) == {}


def test_bad_element_identity_refused(nodes: dict[str, Node]) -> None:
    il = nodes["IL"]

    async def scenario() -> None:
        async with serving(il) as port, raw_channel(CA, IL, port) as channel:
            stub = pb_grpc.FederationServiceStub(channel)
            good = oprf.blind(b"badge:IL:1", mode=threshold_oprf.MODE)[1].to_bytes()
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await stub.EvaluateOprf(
                    pb.EvaluateOprfRequest(blinded_elements=[good, bytes(32)]), timeout=5
                )
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "blinded_elements[1]" in (e.value.details() or "")
            assert "identity" in (e.value.details() or "")

    run(scenario)
    assert usage(il, "CA") is None
    assert [(a.outcome, a.detail["elements"]) for a in il.audit()] == [("refused", 2)]


def test_cosignature_forged(nodes: dict[str, Node]) -> None:
    il = nodes["IL"]
    text = checkpoint_text(il, 12)
    # MN's witness name, another key; and CA's genuine line submitted by MN.
    forged = CosignatureSigner(witness_name("MN"), signing.SigningKey.generate())
    forged_line = forged.cosign(text, timestamp=1_800_000_000)
    genuine = witness_signer("MN", MN.signing_key).cosign(text, timestamp=1_800_000_000)
    tampered = genuine[:-10] + ("A" if genuine[-10] != "A" else "B") + genuine[-9:]
    other = witness_signer("CA", CA.signing_key).cosign(text, timestamp=1_800_000_000)

    async def scenario() -> None:
        async with serving(il) as port, client(MN, IL, port) as peer:
            for line, reason in (
                (forged_line, "not signed with the witness key of MN"),
                (tampered, "does not verify"),
                (other, "not signed with the witness key of MN"),
            ):
                with pytest.raises(PeerRefusedByError) as e:
                    await peer.submit_cosignature(text, line)
                assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
                assert f"cosignature: {reason}" in str(e.value)

    run(scenario)
    assert cosignature_rows(il) == []
    assert [a.outcome for a in il.audit()] == ["refused"] * 3


def test_cosignature_forged_with_a_signature_by_the_right_key_name(nodes: dict[str, Node]) -> None:
    """A line whose key hash claims MN's witness key but whose signature is another key's."""
    il = nodes["IL"]
    text = checkpoint_text(il, 12)
    mn = witness_signer("MN", MN.signing_key)
    impostor = CosignatureSigner(witness_name("MN"), signing.SigningKey.generate())
    real = parse_signature_line(mn.cosign(text, timestamp=7))
    fake = parse_signature_line(impostor.cosign(text, timestamp=7))
    spliced = dataclasses.replace(fake, key_hash=real.key_hash).line

    async def scenario() -> None:
        async with serving(il) as port, client(MN, IL, port) as peer:
            with pytest.raises(PeerRefusedByError, match="cosignature: does not verify"):
                await peer.submit_cosignature(text, spliced)

    run(scenario)
    assert cosignature_rows(il) == []


def test_cosignature_by_the_log_itself(nodes: dict[str, Node]) -> None:
    il = nodes["IL"]
    text = checkpoint_text(il, 12)
    line = witness_signer("IL", IL.signing_key).cosign(text, timestamp=1_800_000_000)

    async def scenario() -> None:
        async with serving(il) as port, client(IL, IL, port) as me:
            with pytest.raises(PeerRefusedByError) as e:
                await me.submit_cosignature(text, line)
            assert e.value.code == grpc.StatusCode.PERMISSION_DENIED

    run(scenario)
    assert cosignature_rows(il) == []


def test_cosignature_for_an_unknown_checkpoint(nodes: dict[str, Node]) -> None:
    il = nodes["IL"]
    stored = parse_checkpoint(checkpoint_text(il, 12))
    witness = witness_signer("MN", MN.signing_key)
    unknown_size = Checkpoint(log_origin("IL"), 7, il.log.root(7)).to_text()
    other_root = Checkpoint(log_origin("IL"), 12, bytes(32)).to_text()
    extended = Checkpoint(log_origin("IL"), 12, stored.root_hash, ("extra",)).to_text()
    other_log = Checkpoint(log_origin("MN"), 12, stored.root_hash).to_text()

    async def scenario() -> None:
        async with serving(il) as port, client(MN, IL, port) as peer:
            for text, code in (
                (unknown_size, grpc.StatusCode.NOT_FOUND),
                (other_root, grpc.StatusCode.NOT_FOUND),
                (extended, grpc.StatusCode.NOT_FOUND),
                (other_log, grpc.StatusCode.INVALID_ARGUMENT),
            ):
                with pytest.raises(PeerRefusedByError) as e:
                    await peer.submit_cosignature(text, witness.cosign(text, timestamp=9))
                assert e.value.code == code, text

    run(scenario)
    assert cosignature_rows(il) == []


# --- malformed and oversized messages ----------------------------------------------------------

METHODS = ("GetRoster", "GetCheckpoint", "GetEntries", "SubmitCosignature", "EvaluateOprf")


def invalid_requests(text: str) -> dict[str, list[tuple[Any, str]]]:
    """For each method, requests with an invalid field, and the field the answer must name."""
    cosign = pb.SubmitCosignatureRequest
    return {
        "GetRoster": [(pb.GetRosterRequest(after_version=2), "after_version")],
        "GetCheckpoint": [
            (pb.GetCheckpointRequest(old_size=13), "old_size"),
            # Beyond any stored integer (found by tests/test_fuzz_grpc.py: it was INTERNAL).
            (pb.GetCheckpointRequest(old_size=2**63), "old_size"),
        ],
        "GetEntries": [
            (pb.GetEntriesRequest(start=0, max_entries=1, tree_size=7), "tree_size"),
            (pb.GetEntriesRequest(start=0, max_entries=1, tree_size=0), "tree_size"),
            (pb.GetEntriesRequest(start=12, max_entries=1, tree_size=12), "start"),
            (pb.GetEntriesRequest(start=0, max_entries=1001, tree_size=12), "max_entries"),
            (pb.GetEntriesRequest(start=0, max_entries=1, tree_size=2**64 - 1), "tree_size"),
            (pb.GetEntriesRequest(start=2**63, max_entries=1, tree_size=12), "start"),
        ],
        "SubmitCosignature": [
            (cosign(checkpoint="", cosignature="x"), "checkpoint"),
            (cosign(checkpoint="not\na checkpoint", cosignature="x"), "checkpoint"),
            (cosign(checkpoint="compact-log/IL\n1\n" + "A" * 20000 + "\n"), "checkpoint"),
            (cosign(checkpoint=text, cosignature=""), "cosignature"),
            (cosign(checkpoint=text, cosignature="\u2014 not base64!\n"), "cosignature"),
        ],
        "EvaluateOprf": [
            (pb.EvaluateOprfRequest(blinded_elements=[]), "blinded_elements"),
            (pb.EvaluateOprfRequest(blinded_elements=[b"\x01" * 31]), "blinded_elements[0]"),
            (pb.EvaluateOprfRequest(blinded_elements=[b"\xff" * 32]), "blinded_elements[0]"),
            (pb.EvaluateOprfRequest(blinded_elements=[b"\x02" * 32] * 1001), "blinded_elements"),
        ],
    }


def test_malformed_and_oversized_messages_on_every_method(nodes: dict[str, Node]) -> None:
    il = nodes["IL"]
    invalid = invalid_requests(checkpoint_text(il, 12))
    assert set(invalid) == set(METHODS)

    async def scenario() -> None:
        async with serving(il) as port, raw_channel(MN, IL, port) as channel:
            for method in METHODS:
                path = f"/compact.v1.FederationService/{method}"
                call: Any = channel.unary_unary(path)  # raw bytes in and out
                for request, field_name in invalid[method]:
                    with pytest.raises(grpc.aio.AioRpcError) as e:
                        await call(request.SerializeToString(), timeout=10)
                    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, request)
                    assert (e.value.details() or "").startswith(f"{field_name}:"), method

                # Over the receive limit (an unknown length-delimited field 15 of any size).
                size = MAX_RECEIVE + 1
                big = b"\x7a" + _varint(size) + b"x" * size
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await call(big, timeout=10)
                assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, method

                # Bytes that are no protobuf message at all.
                for garbage in (b"\xff\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f"):
                    with pytest.raises(grpc.aio.AioRpcError) as e:
                        await call(garbage, timeout=10)
                    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
                    assert (e.value.details() or "").startswith("request: not a valid"), method

            # The server is still up and answers.
            async with client(MN, IL, port) as peer:
                assert (await peer.get_roster(0))[0]

    run(scenario)
    assert usage(il, "MN") is None
    assert cosignature_rows(il) == []


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


# --- the client refuses malformed answers ------------------------------------------------------


class _Lying(pb_grpc.FederationServiceServicer):
    """A peer that answers with whatever the test sets."""

    def __init__(self) -> None:
        self.entries = pb.GetEntriesResponse()
        self.oprf = pb.EvaluateOprfResponse()
        self.checkpoint = pb.GetCheckpointResponse()
        self.bundle_status = pb.BundleStatus(request_id="r", state="pending")

    async def GetEntries(self, request: Any, context: Any) -> pb.GetEntriesResponse:
        return self.entries

    async def EvaluateOprf(self, request: Any, context: Any) -> pb.EvaluateOprfResponse:
        return self.oprf

    async def GetCheckpoint(self, request: Any, context: Any) -> pb.GetCheckpointResponse:
        return self.checkpoint

    async def GetRoster(self, request: Any, context: Any) -> pb.GetRosterResponse:
        return pb.GetRosterResponse()

    async def SubmitCosignature(self, request: Any, context: Any) -> pb.SubmitCosignatureResponse:
        return pb.SubmitCosignatureResponse()

    async def RequestBundle(self, request: Any, context: Any) -> pb.RequestBundleResponse:
        return pb.RequestBundleResponse(status=self.bundle_status)

    async def GetBundleStatus(self, request: Any, context: Any) -> pb.GetBundleStatusResponse:
        return pb.GetBundleStatusResponse(status=self.bundle_status)

    async def ShareMatter(self, request: Any, context: Any) -> pb.ShareMatterResponse:
        return pb.ShareMatterResponse(revision=0)

    async def FetchBundle(
        self, request: Any, context: Any
    ) -> AsyncIterator[pb.FetchBundleResponse]:
        yield pb.FetchBundleResponse()

    async def AckBundle(self, request: Any, context: Any) -> pb.AckBundleResponse:
        return pb.AckBundleResponse()


def test_client_refuses_malformed_answers(nodes: dict[str, Node]) -> None:
    lying = _Lying()
    note = nodes["IL"].log.latest_checkpoint()
    assert note is not None
    good_element = oprf.blind(b"badge:IL:1", mode=threshold_oprf.MODE)[1]

    async def scenario() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_FederationServiceServicer_to_server(lying, server)
        creds = grpc.ssl_server_credentials(
            [(IL.tls_key, IL.tls_cert)], root_certificates=MN.tls_cert, require_client_auth=True
        )
        port = server.add_secure_port("127.0.0.1:0", creds)
        await server.start()
        try:
            async with client(MN, IL, port) as peer:
                entry = pb.LogEntry(index=0, kind="index-entry", payload=b"a")
                for entries, problem in (
                    ([], "no entries"),
                    ([entry, entry], "more than"),
                    ([pb.LogEntry(index=1, kind="x", leaf_hash=bytes(32))], "index"),
                    ([pb.LogEntry(index=0, kind="x", leaf_hash=bytes(31))], "leaf_hash"),
                    (
                        [pb.LogEntry(index=0, kind="x", payload=b"a", leaf_hash=bytes(32))],
                        "does not match",
                    ),
                ):
                    lying.entries = pb.GetEntriesResponse(entries=entries)
                    with pytest.raises(PeerProtocolError, match=problem):
                        await peer.get_entries(0, 1, 2)
                lying.entries = pb.GetEntriesResponse(entries=[entry], consistency_proof=[b"x"])
                with pytest.raises(PeerProtocolError, match="consistency_proof"):
                    await peer.get_entries(0, 1, 2)
                lying.entries = pb.GetEntriesResponse(
                    entries=[entry], consistency_proof=[bytes(32)]
                )
                got, _ = await peer.get_entries(0, 1, 2)
                assert got == [WireEntry(0, "index-entry", b"a", merkle.leaf_hash(b"a"))]

                for response, problem in (
                    (pb.EvaluateOprfResponse(share_index=0), "share_index"),
                    (pb.EvaluateOprfResponse(share_index=1), "evaluated_elements"),
                    (
                        pb.EvaluateOprfResponse(share_index=1, evaluated_elements=[bytes(32)]),
                        r"evaluated_elements\[0\]",
                    ),
                    (
                        pb.EvaluateOprfResponse(
                            share_index=1,
                            evaluated_elements=[good_element.to_bytes()],
                            proof=b"short",
                        ),
                        "proof",
                    ),
                ):
                    lying.oprf = response
                    with pytest.raises(PeerProtocolError, match=problem):
                        await peer.evaluate_oprf([good_element])

                lying.checkpoint = pb.GetCheckpointResponse(checkpoint="garbage")
                with pytest.raises(PeerProtocolError, match="checkpoint"):
                    await peer.get_checkpoint(0)
                lying.checkpoint = pb.GetCheckpointResponse(checkpoint=note)
                with pytest.raises(PeerProtocolError, match="below old_size"):
                    await peer.get_checkpoint(13)
                with pytest.raises(PeerProtocolError, match="consistency_proof"):
                    await peer.get_checkpoint(5)  # a proof is due and missing

                assert (await peer.get_bundle_status("r")).state == "pending"
                for status, problem in (
                    (pb.BundleStatus(request_id="r", state="done"), "state"),
                    (
                        pb.BundleStatus(request_id="r", state="approved", decision=b"x" * 70_000),
                        "decision",
                    ),
                ):
                    lying.bundle_status = status
                    with pytest.raises(PeerProtocolError, match=problem):
                        await peer.request_bundle(b"{}")
        finally:
            await server.stop(None)

    run(scenario)
