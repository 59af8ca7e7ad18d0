"""Evidence bundles at both ends: requests, the holder's policy and reviewers' decisions.

The holder (the node that holds an incident) receives signed requests over
FederationService (`BundleDesk.receive_request`), stores each once (the requester's
request id is the idempotency key), and decides by its sharing policy: a `compact`
incident is approved at once, a `matter` one when the request names a matter held here
that lists the requester and has the incident as an exhibit, and any other waits for a
reviewer (`BundleDesk.decide`). Every decision is signed, entered in
the holder's transparency log (kind `bundle-decision`, sent to peers as its leaf hash
only) and audited in the same transaction.

The requester (`BundleDesk.new_request`, `BundleDesk.record_status`) keeps its
outgoing requests with the decisions it has verified against the roster.

Formats: federation.bundle. Design and states: docs/bundles.md.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto import signing
from crypto.dsse import Envelope
from crypto.errors import CryptoError
from federation.bundle import (
    REDACTIONS,
    BundleDecision,
    BundleFormatError,
    BundleRequest,
    sign_decision,
    sign_request,
    verify_decision,
    verify_request,
)
from federation.roster import Roster
from node import models as m
from node.config import BundleSettings
from node.db import Database
from node.errors import Refusal, Refused
from node.fedstore import key_history
from node.ingest import NodeStorage
from node.matters import matter_covers, matter_global_id
from node.queries import audit
from node.translog import TransparencyLog

INCOMING: Final = "incoming"
OUTGOING: Final = "outgoing"
DECISION_KIND: Final = "bundle-decision"
#: Every state a request can be in (docs/bundles.md).
STATES: Final = (
    "pending",
    "approved",
    "denied",
    "sealed",
    "transferring",
    "delivered",
    "failed",
    "quarantined",
)


class BundleRefused(Refused):
    """A bundle request or transfer this node refuses."""


@dataclass(frozen=True)
class RequestStatus:
    """What the holder answers about a request (RequestBundle, GetBundleStatus)."""

    request_id: str
    state: str
    decision: bytes | None = None
    manifest: bytes | None = None


@dataclass(frozen=True)
class RequestInfo:
    """One bundle request as `compact bundle list|show` shows it."""

    id: int
    direction: str
    request_id: str
    requester: str
    holder: str
    global_id: str
    requested_by: str
    purpose: str
    matter: str | None
    state: str
    reason: str | None
    bundle_id: str | None
    decided_by: str | None
    redactions: tuple[str, ...]
    created_at: datetime
    sent_at: datetime | None
    updated_at: datetime
    # The sealed stream, once there is one: its size, and how far it has gone. Outgoing:
    # bytes received, verified and on disk (recorded every 32 MiB and when a transfer
    # stops). Incoming: whether the requester has fetched it to its end.
    sealed_bytes: int | None = None
    received_bytes: int | None = None
    sent_in_full: bool | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "direction": self.direction,
            "request_id": self.request_id,
            "requester": self.requester,
            "holder": self.holder,
            "incident": self.global_id,
            "requested_by": self.requested_by,
            "purpose": self.purpose,
            "matter": self.matter,
            "state": self.state,
            "reason": self.reason,
            "bundle_id": self.bundle_id,
            "decided_by": self.decided_by,
            "redactions": list(self.redactions),
            "created_at": self.created_at.isoformat(),
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "updated_at": self.updated_at.isoformat(),
            "sealed_bytes": self.sealed_bytes,
            "received_bytes": self.received_bytes,
            "sent_in_full": self.sent_in_full,
        }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _decision_of(envelope: bytes | None) -> BundleDecision | None:
    """The decision in an envelope this node stored (it signed it, or verified it before
    storing it), for display."""
    if envelope is None:
        return None
    return BundleDecision.from_payload(Envelope.from_json(envelope).payload)


def _info_of(s: Session, row: m.BundleRequestRow) -> RequestInfo:
    bundle = s.scalars(select(m.Bundle).where(m.Bundle.request_row_id == row.id)).first()
    return _info(row, bundle)


def _info(row: m.BundleRequestRow, bundle: m.Bundle | None) -> RequestInfo:
    decision = _decision_of(row.decision_envelope)
    outgoing = row.direction == OUTGOING
    return RequestInfo(
        id=row.id,
        direction=row.direction,
        request_id=row.request_id,
        requester=row.requester,
        holder=row.holder,
        global_id=row.global_id,
        requested_by=row.requested_by,
        purpose=row.purpose,
        matter=row.matter,
        state=row.state,
        reason=row.reason,
        bundle_id=row.bundle_id,
        decided_by=decision.decided_by if decision else None,
        redactions=decision.redactions if decision else (),
        created_at=row.created_at,
        sent_at=row.sent_at,
        updated_at=row.updated_at,
        sealed_bytes=bundle.sealed_size if bundle else None,
        received_bytes=bundle.verified_offset if bundle and outgoing else None,
        sent_in_full=bundle.verified_offset >= bundle.sealed_size
        if bundle and not outgoing
        else None,
    )


def _new_row(
    direction: str,
    request: BundleRequest,
    envelope: bytes,
    *,
    now: datetime,
    sent_at: datetime | None,
) -> m.BundleRequestRow:
    return m.BundleRequestRow(
        direction=direction,
        request_id=request.request_id,
        requester=request.requester,
        holder=request.holder,
        global_id=request.incident,
        requested_by=request.requested_by,
        purpose=request.purpose,
        matter=request.matter,
        state="pending",
        reason=None,
        request_envelope=envelope,
        request_sha256=_sha256(envelope),
        decision_envelope=None,
        bundle_id=None,
        created_at=now,
        sent_at=sent_at,
        updated_at=now,
    )


def _matter_named(s: Session, matter: str | None, own_state: str) -> str | None:
    """The matter a request names: a matter held here by its id (``IL:DOE-V-NOEM``, or
    ``DOE-V-NOEM`` for this state's own, in any case), else the text as given."""
    if matter is None:
        return None
    candidate = matter_global_id(matter, own_state)
    if s.scalar(select(m.Matter.id).where(m.Matter.global_id == candidate)) is not None:
        return candidate
    return matter


def _status(row: m.BundleRequestRow, manifest: bytes | None = None) -> RequestStatus:
    return RequestStatus(row.request_id, row.state, row.decision_envelope, manifest)


class BundleDesk:
    """Bundle requests of one node, in both directions."""

    def __init__(
        self,
        storage: NodeStorage,
        log: TransparencyLog,
        signing_key: signing.SigningKey,
        settings: BundleSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._storage = storage
        self._log = log
        self._key = signing_key
        self._settings = settings
        self._clock = clock
        self.state = storage.state

    # --- the holder -----------------------------------------------------------------------

    def receive_request(self, caller: str, envelope: bytes, roster: Roster) -> RequestStatus:
        """Store a peer's signed request (once) and apply the sharing policy to it."""
        try:
            request = verify_request(
                Envelope.from_json(envelope), roster, requester=caller,
                history=key_history(self._storage.db),
            )  # fmt: skip
        except (BundleFormatError, CryptoError, ValueError) as e:
            raise BundleRefused(Refusal.INVALID, f"envelope: {e}") from None
        if request.holder != self.state:
            raise BundleRefused(Refusal.INVALID, f"holder: this node is {self.state}")
        now = self._clock()
        digest = _sha256(envelope)
        with self._storage.db.write() as s:
            row = s.scalars(
                select(m.BundleRequestRow).where(
                    m.BundleRequestRow.direction == INCOMING,
                    m.BundleRequestRow.requester == caller,
                    m.BundleRequestRow.request_id == request.request_id,
                )
            ).one_or_none()
            if row is not None:
                if row.request_sha256 != digest:
                    raise BundleRefused(
                        Refusal.ALREADY_EXISTS,
                        "request_id: already used for another request; choose a new id",
                    )
                return _status(row, self._manifest(s, row))
            sharing = s.scalar(
                select(m.Incident.sharing).where(
                    m.Incident.global_id == request.incident, m.Incident.state == self.state
                )
            )
            if sharing is None or sharing == "sealed":
                # A sealed incident gets the same answer as one that does not exist. The
                # refusal is audited, so the transaction commits before it is raised.
                audit(
                    s,
                    actor=f"member:{caller}",
                    action="bundle.request",
                    target=request.incident,
                    outcome="refused",
                    detail={"request_id": request.request_id, "reason": "not found"},
                    now=now,
                )
                found = None
            else:
                found = self._store_request(s, caller, request, envelope, sharing, now)
        if found is None:
            raise BundleRefused(Refusal.NOT_FOUND, "incident: this node holds no such incident")
        return found

    def _store_request(
        self,
        s: Session,
        caller: str,
        request: BundleRequest,
        envelope: bytes,
        sharing: str,
        now: datetime,
    ) -> RequestStatus:
        row = _new_row(INCOMING, request, envelope, now=now, sent_at=now)
        s.add(row)
        s.flush()
        audit(
            s,
            actor=f"member:{caller}",
            action="bundle.request",
            target=request.incident,
            outcome="received",
            detail={"request_id": request.request_id, "matter": request.matter},
            now=now,
        )
        rule = self._policy(s, sharing, request)
        if rule is not None:
            self._decide_in(
                s, row, approve=True, actor=f"policy:{rule}", reason=None, redactions=()
            )
        return _status(row)

    def _policy(self, s: Session, sharing: str, request: BundleRequest) -> str | None:
        """The rule that approves a request for an incident of this sharing level without a
        reviewer, or None: the request waits for one."""
        if sharing == "compact" and "compact" not in self._settings.review_levels:
            return "compact"
        if (
            sharing == "matter"
            and "matter" not in self._settings.review_levels
            and request.matter is not None
            and matter_covers(s, request.matter, request.requester, request.incident)
        ):
            return "matter"
        return None

    def status_for(self, caller: str, request_id: str) -> RequestStatus:
        """The state of `caller`'s own request; another member's is not found."""
        with self._storage.db.read() as s:
            row = s.scalars(
                select(m.BundleRequestRow).where(
                    m.BundleRequestRow.direction == INCOMING,
                    m.BundleRequestRow.requester == caller,
                    m.BundleRequestRow.request_id == request_id,
                )
            ).one_or_none()
            if row is None:
                raise BundleRefused(Refusal.NOT_FOUND, "request_id: no such request")
            return _status(row, self._manifest(s, row))

    def _manifest(self, s: Session, row: m.BundleRequestRow) -> bytes | None:
        if row.bundle_id is None:
            return None
        return s.scalar(
            select(m.Bundle.manifest_envelope).where(m.Bundle.bundle_id == row.bundle_id)
        )

    def decide(
        self,
        ref: str,
        *,
        approve: bool,
        actor: str,
        reason: str | None = None,
        redactions: Sequence[str] = (),
    ) -> RequestInfo:
        """A reviewer's decision on a pending incoming request (`ref`: its request id, or
        `STATE:request id` when two members chose the same id)."""
        if not approve and not reason:
            raise BundleRefused(Refusal.INVALID, "reason: a denial needs a reason")
        bad = sorted(set(redactions) - set(REDACTIONS))
        if bad:
            raise BundleRefused(Refusal.INVALID, f"redact: must be one of {', '.join(REDACTIONS)}")
        if not approve and redactions:
            raise BundleRefused(Refusal.INVALID, "redact: only an approval has redactions")
        with self._storage.db.write() as s:
            row = self._incoming(s, ref)
            if row.state != "pending":
                raise BundleRefused(
                    Refusal.FAILED_PRECONDITION, f"the request is already {row.state}"
                )
            self._decide_in(
                s,
                row,
                approve=approve,
                actor=actor,
                reason=reason,
                redactions=tuple(sorted(set(redactions))),
            )
            return _info_of(s, row)

    def _incoming(self, s: Session, ref: str) -> m.BundleRequestRow:
        return _by_ref(s, ref, direction=INCOMING)

    def _decide_in(
        self,
        s: Session,
        row: m.BundleRequestRow,
        *,
        approve: bool,
        actor: str,
        reason: str | None,
        redactions: tuple[str, ...],
    ) -> None:
        """Sign the decision, enter it in the log and the audit trail, in `s`."""
        now = self._clock()
        bundle_id = secrets.token_hex(32) if approve else None
        try:
            decision = BundleDecision(
                request_id=row.request_id,
                requester=row.requester,
                holder=row.holder,
                decision="approved" if approve else "denied",
                reason=reason,
                redactions=redactions,
                decided_by=actor,
                decided_at=now.replace(microsecond=0),
                bundle_id=bundle_id,
            )
        except (BundleFormatError, ValueError, TypeError) as e:
            raise BundleRefused(Refusal.INVALID, str(e)) from None
        envelope = sign_decision(decision, self._key).to_json()
        self._log.append_in(s, DECISION_KIND, [envelope], now=now)
        row.decision_envelope = envelope
        row.state = decision.decision
        row.reason = reason if not approve else None
        row.bundle_id = bundle_id
        row.updated_at = now
        audit(
            s,
            actor=actor,
            action="bundle.decide",
            target=row.global_id,
            outcome=decision.decision,
            detail={
                "request_id": row.request_id,
                "requester": row.requester,
                "redactions": list(redactions),
                "bundle_id": bundle_id,
            },
            now=now,
        )

    # --- the requester --------------------------------------------------------------------

    def new_request(
        self,
        *,
        holder: str,
        global_id: str,
        purpose: str,
        matter: str | None,
        user: str,
        roster: Roster,
    ) -> tuple[RequestInfo, bytes]:
        """Sign and store a request to `holder` (not sent yet): its info and envelope."""
        if holder == self.state:
            raise BundleRefused(Refusal.INVALID, "state: this node's own incidents need no bundle")
        if roster.member(holder) is None:
            raise BundleRefused(Refusal.INVALID, f"state: {holder} is not a member of the compact")
        if not global_id.startswith(f"{holder}-"):
            raise BundleRefused(Refusal.INVALID, f"incident: not an incident of {holder}")
        now = self._clock()
        with self._storage.db.write() as s:
            matter = _matter_named(s, matter, self.state)
            held = sorted(
                set(
                    s.scalars(
                        select(m.EvidenceItem.sha256)
                        .join(m.Incident, m.Incident.id == m.EvidenceItem.incident_id)
                        .where(m.Incident.global_id == global_id)
                    )
                )
            )
            try:
                request = BundleRequest(
                    request_id=str(uuid.uuid4()),
                    requester=self.state,
                    holder=holder,
                    incident=global_id,
                    purpose=purpose,
                    matter=matter,
                    requested_by=user,
                    requested_at=now.replace(microsecond=0),
                    held_evidence=tuple(held),
                )
            except (BundleFormatError, ValueError, TypeError) as e:
                raise BundleRefused(Refusal.INVALID, str(e)) from None
            envelope = sign_request(request, self._key).to_json()
            row = _new_row(OUTGOING, request, envelope, now=now, sent_at=None)
            s.add(row)
            s.flush()
            audit(
                s,
                actor=user,
                action="bundle.request",
                target=global_id,
                outcome="created",
                detail={"request_id": request.request_id, "holder": holder, "matter": matter},
                now=now,
            )
            return _info_of(s, row), envelope

    def unsettled(self) -> list[tuple[int, str, str, bytes]]:
        """Outgoing requests whose outcome is still open at the holder: (row id, holder,
        request id, envelope), oldest first."""
        with self._storage.db.read() as s:
            return [
                (r.id, r.holder, r.request_id, r.request_envelope)
                for r in s.scalars(
                    select(m.BundleRequestRow)
                    .where(
                        m.BundleRequestRow.direction == OUTGOING,
                        m.BundleRequestRow.state.in_(("pending", "approved")),
                    )
                    .order_by(m.BundleRequestRow.id)
                )
            ]

    def record_status(self, row_id: int, status: RequestStatus, roster: Roster) -> RequestInfo:
        """Take the holder's answer about an outgoing request: its decision is verified
        against the roster before anything is stored."""
        now = self._clock()
        with self._storage.db.write() as s:
            row = s.get(m.BundleRequestRow, row_id)
            if row is None or row.direction != OUTGOING:
                raise BundleRefused(Refusal.NOT_FOUND, "no such outgoing request")
            if status.request_id != row.request_id:
                raise BundleRefused(Refusal.INVALID, "request_id: the holder answered another")
            if row.sent_at is None:
                row.sent_at = now
                row.updated_at = now
            if status.decision and row.decision_envelope is None:
                decision = self._verified_decision(row, status.decision, roster)
                row.decision_envelope = status.decision
                row.state = decision.decision
                row.reason = decision.reason if decision.decision == "denied" else None
                row.bundle_id = decision.bundle_id
                row.updated_at = now
                audit(
                    s,
                    actor=f"member:{row.holder}",
                    action="bundle.decision",
                    target=row.global_id,
                    outcome=decision.decision,
                    detail={"request_id": row.request_id, "bundle_id": decision.bundle_id},
                    now=now,
                )
            if status.state == "failed" and row.state in ("pending", "approved"):
                row.state, row.updated_at = "failed", now
                row.reason = f"{row.holder} could not prepare the bundle"
            return _info_of(s, row)

    def info(self, row_id: int) -> RequestInfo:
        with self._storage.db.read() as s:
            row = s.get(m.BundleRequestRow, row_id)
            if row is None:
                raise BundleRefused(Refusal.NOT_FOUND, "no such request")
            return _info_of(s, row)

    def fail(self, row_id: int, reason: str) -> None:
        """An outgoing request that cannot succeed (the holder refused it, or answered with
        something that does not verify): `failed`, with the reason."""
        now = self._clock()
        with self._storage.db.write() as s:
            row = s.get(m.BundleRequestRow, row_id)
            if row is None or row.direction != OUTGOING:
                raise BundleRefused(Refusal.NOT_FOUND, "no such outgoing request")
            row.state, row.reason, row.updated_at = "failed", reason, now
            audit(
                s,
                actor="node",
                action="bundle.request",
                target=row.global_id,
                outcome="failed",
                detail={"request_id": row.request_id, "reason": reason},
                now=now,
            )

    def _verified_decision(
        self, row: m.BundleRequestRow, envelope: bytes, roster: Roster
    ) -> BundleDecision:
        try:
            decision = verify_decision(
                Envelope.from_json(envelope), roster, holder=row.holder,
                history=key_history(self._storage.db),
            )  # fmt: skip
        except (BundleFormatError, CryptoError, ValueError) as e:
            raise BundleRefused(Refusal.INVALID, f"decision: {e}") from None
        if decision.request_id != row.request_id or decision.requester != self.state:
            raise BundleRefused(Refusal.INVALID, "decision: it is about another request")
        return decision


# --- reading (no keys needed) -------------------------------------------------------------


def list_requests(
    db: Database, *, direction: str | None = None, state: str | None = None
) -> list[RequestInfo]:
    """Bundle requests, oldest first, optionally of one direction and state."""
    with db.read() as s:
        query = (
            select(m.BundleRequestRow, m.Bundle)
            .outerjoin(m.Bundle, m.Bundle.request_row_id == m.BundleRequestRow.id)
            .order_by(m.BundleRequestRow.id)
        )
        if direction is not None:
            query = query.where(m.BundleRequestRow.direction == direction)
        if state is not None:
            query = query.where(m.BundleRequestRow.state == state)
        return [_info(r, b) for r, b in s.execute(query)]


def get_request(db: Database, ref: str) -> RequestInfo:
    """One request by request id (either direction), or `STATE:request id` (the requester)."""
    with db.read() as s:
        return _info_of(s, _by_ref(s, ref))


def _by_ref(s: Session, ref: str, *, direction: str | None = None) -> m.BundleRequestRow:
    requester, _, request_id = ref.rpartition(":")
    query = select(m.BundleRequestRow).where(m.BundleRequestRow.request_id == request_id)
    if direction is not None:
        query = query.where(m.BundleRequestRow.direction == direction)
    if requester:
        query = query.where(m.BundleRequestRow.requester == requester)
    rows = list(s.scalars(query))
    if not rows:
        what = "request" if direction is None else f"{direction} request"
        raise BundleRefused(Refusal.NOT_FOUND, f"no {what} with that id")
    if len(rows) > 1:
        raise BundleRefused(
            Refusal.INVALID, "several requests have that id: give it as STATE:REQUEST_ID"
        )
    return rows[0]
