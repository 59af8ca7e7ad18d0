"""Matters at one node: create them, number their exhibits, and keep every revision.

A matter belongs to the node that created it (its *owner*); only the owner changes it.
Each change is a new revision of the signed matter document (federation.matter), and in
one write transaction this node stores the revision, enters its envelope in its own
transparency log (kind `matter`, sent to peers as its leaf hash only), updates the
matter's current state and exhibits, and audits the change. Nothing is half-written: a
refused change leaves no trace but its audit event, where there is one.

Exhibit numbers are allocated under the matter's row lock (PostgreSQL ``FOR UPDATE``;
SQLite serialises writers with ``BEGIN IMMEDIATE``), so two analysts adding exhibits at
once get consecutive numbers, never the same one.

Design: docs/design/exhibits.md; user guide: docs/matters.md.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import structlog
from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.orm import Session

from crypto import signing
from crypto.dsse import Envelope
from crypto.errors import CryptoError
from federation import schema
from federation.matter import (
    MAX_MATTER_BYTES,
    ExhibitEvidence,
    Matter,
    MatterExhibit,
    MatterFormatError,
    check_successor,
    matter_id,
    sign_matter,
    verify_matter,
)
from federation.roster import Roster
from node import holds
from node import models as m
from node.db import Database
from node.errors import Refusal, Refused
from node.fedstore import key_history
from node.ingest import NodeStorage
from node.queries import audit
from node.translog import TransparencyLog
from node.vocab import STATES

MATTER_KIND: Final = "matter"
log = structlog.get_logger("compact.matters")

_SLUG_CHARS: Final = re.compile(r"[^A-Z0-9]+")
_MAX_SLUG: Final = 40


class MatterRefused(Refused):
    """A matter operation this node refuses; the message names the field."""


@dataclass(frozen=True)
class ExhibitInfo:
    """One exhibit as `compact matter show` shows it."""

    number: str
    global_id: str
    evidence_position: int | None
    evidence_sha256: str | None
    description: str
    added_at: datetime
    # Whether this node holds the incident (its own, or received in a bundle).
    held: bool

    def to_json(self) -> dict[str, object]:
        return {
            "number": self.number,
            "incident": self.global_id,
            "origin": self.global_id[:2],
            "evidence": None
            if self.evidence_position is None
            else {"position": self.evidence_position, "sha256": self.evidence_sha256},
            "description": self.description,
            "added_at": self.added_at.isoformat(),
            "held": self.held,
        }


@dataclass(frozen=True)
class MemberInfo:
    state: str
    shared_revision: int | None
    shared_at: datetime | None

    def to_json(self) -> dict[str, object]:
        return {
            "state": self.state,
            "shared_revision": self.shared_revision,
            "shared_at": self.shared_at.isoformat() if self.shared_at else None,
        }


@dataclass(frozen=True)
class MatterInfo:
    """A matter as `compact matter list|show` shows it."""

    matter_id: str
    owner: str
    title: str
    revision: int
    bates_prefix: str
    legal_hold: bool
    created_at: datetime
    updated_at: datetime
    members: tuple[MemberInfo, ...]
    exhibits: tuple[ExhibitInfo, ...]
    envelope_sha256: str
    # What the legal hold keeps on this node (node.holds): incidents and evidence files.
    held_incidents: int = 0
    held_files: int = 0

    @property
    def states(self) -> tuple[str, ...]:
        return tuple(mb.state for mb in self.members)

    def to_json(self, *, exhibits: bool = True) -> dict[str, object]:
        out: dict[str, object] = {
            "matter": self.matter_id,
            "owner": self.owner,
            "title": self.title,
            "revision": self.revision,
            "states": list(self.states),
            "bates_prefix": self.bates_prefix,
            "legal_hold": self.legal_hold,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "envelope_sha256": self.envelope_sha256,
            "exhibit_count": len(self.exhibits),
            "hold_keeps": {"incidents": self.held_incidents, "files": self.held_files},
        }
        if exhibits:
            out["members"] = [mb.to_json() for mb in self.members]
            out["exhibits"] = [e.to_json() for e in self.exhibits]
        return out


@dataclass(frozen=True)
class PendingShare:
    """A revision of one of this node's matters that a member does not hold yet."""

    matter_id: str
    state: str
    revision: int
    envelope: bytes


def _exhibit_row(matter_row_id: int, seq: int, exhibit: MatterExhibit) -> m.Exhibit:
    return m.Exhibit(
        matter_id=matter_row_id,
        seq=seq,
        number=exhibit.number,
        global_id=exhibit.global_id,
        evidence_position=-1 if exhibit.evidence is None else exhibit.evidence.position,
        evidence_sha256=None if exhibit.evidence is None else exhibit.evidence.sha256,
        description=exhibit.description,
        added_at=exhibit.added_at,
    )


def slug_of(title: str) -> str:
    """A matter id from its title: capitals, digits and single hyphens, at most 40."""
    slug = _SLUG_CHARS.sub("-", title.upper()).strip("-")[:_MAX_SLUG].rstrip("-")
    if not slug:
        raise MatterRefused(
            Refusal.INVALID, "title: has no letters or digits to make an id of; give --id"
        )
    return slug


def _whole_seconds(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(microsecond=0)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _invalid(e: Exception) -> MatterRefused:
    return MatterRefused(Refusal.INVALID, str(e))


class MatterDesk:
    """The matters of one node: those it owns and those shared with it."""

    def __init__(
        self,
        storage: NodeStorage,
        log: TransparencyLog,
        signing_key: signing.SigningKey,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._storage = storage
        self._log = log
        self._key = signing_key
        self._clock = clock
        self.state = storage.state

    # --- the owner ------------------------------------------------------------------------

    def create(
        self,
        *,
        title: str,
        states: Sequence[str],
        user: str,
        roster: Roster,
        slug: str | None = None,
        bates_prefix: str | None = None,
        legal_hold: bool = False,
    ) -> MatterInfo:
        """A new matter owned by this node, with `states` (this node's added) as members."""
        members = sorted({s.upper() for s in states} | {self.state})
        for code in members:
            if code not in STATES:
                raise MatterRefused(Refusal.INVALID, "states: expected state codes such as IL,MN")
            if roster.member(code) is None:
                raise MatterRefused(
                    Refusal.INVALID, f"states: {code} is not a member of the compact"
                )
        now = _whole_seconds(self._clock())
        try:
            matter = Matter(
                matter_id=matter_id(self.state, slug if slug is not None else slug_of(title)),
                owner=self.state,
                revision=1,
                title=title,
                states=tuple(members),
                bates_prefix=bates_prefix if bates_prefix is not None else self.state,
                legal_hold=legal_hold,
                exhibits=(),
                updated_at=now,
            )
        except ValueError as e:
            raise _invalid(e) from None
        envelope = sign_matter(matter, self._key).to_json()
        with self._storage.db.write() as s:
            if s.scalar(select(m.Matter.id).where(m.Matter.global_id == matter.matter_id)):
                raise MatterRefused(
                    Refusal.ALREADY_EXISTS,
                    f"matter {matter.matter_id} exists already; choose another --id",
                )
            row = m.Matter(
                global_id=matter.matter_id,
                owner=self.state,
                bates_prefix=matter.bates_prefix,
                created_at=now,
            )
            _set_fields(row, matter, envelope, now)
            s.add(row)
            s.flush()
            s.add_all(
                m.MatterMember(matter_id=row.id, state=code, shared_revision=None, shared_at=None)
                for code in members
            )
            self._make_current(s, row, matter, envelope, now, holders=(self.state,))
            audit(
                s,
                actor=user,
                action="matter.create",
                target=matter.matter_id,
                detail={"states": members, "legal_hold": legal_hold, "revision": 1},
                now=now,
            )
            return _info(s, row)

    def add_exhibit(
        self,
        ref: str,
        *,
        global_id: str,
        description: str,
        user: str,
        evidence_sha256: str | None = None,
    ) -> tuple[MatterInfo, ExhibitInfo]:
        """Add an incident, or one of its evidence items, as the matter's next exhibit."""
        with self._storage.db.write() as s:
            row, current = self._owned(s, ref)
            evidence = self._exhibit_target(s, current, global_id, evidence_sha256)
            now = max(_whole_seconds(self._clock()), current.updated_at)
            try:
                added = MatterExhibit(
                    number=current.next_number(),
                    global_id=global_id,
                    evidence=evidence,
                    description=description,
                    added_at=now,
                )
                revised = current.revised(now, exhibits=(*current.exhibits, added))
            except ValueError as e:
                raise _invalid(e) from None
            payload = revised.payload()
            if len(payload) > MAX_MATTER_BYTES:
                raise MatterRefused(
                    Refusal.OUT_OF_RANGE,
                    f"the matter would be larger than {MAX_MATTER_BYTES // 1024} KiB with this"
                    " exhibit; shorten descriptions or open a second matter",
                )
            s.add(_exhibit_row(row.id, len(revised.exhibits), added))
            s.flush()
            self._store_revision(s, row, revised, now)  # after the exhibit: holds cover it
            audit(
                s,
                actor=user,
                action="matter.add-exhibit",
                target=revised.matter_id,
                detail={
                    "number": added.number,
                    "incident": global_id,
                    "evidence_position": None if evidence is None else evidence.position,
                    "revision": revised.revision,
                },
                now=now,
            )
            info = _info(s, row)
        exhibit = next(e for e in info.exhibits if e.number == added.number)
        return info, exhibit

    def set_hold(self, ref: str, *, on: bool, user: str) -> MatterInfo:
        """Place or release the matter's legal hold (a new revision; no change if it is
        already so)."""
        with self._storage.db.write() as s:
            row, current = self._owned(s, ref)
            if current.legal_hold == on:
                return _info(s, row)
            now = max(_whole_seconds(self._clock()), current.updated_at)
            self._store_revision(s, row, current.revised(now, legal_hold=on), now)
            audit(
                s,
                actor=user,
                action="matter.hold" if on else "matter.release",
                target=current.matter_id,
                detail={"revision": current.revision + 1},
                now=now,
            )
            return _info(s, row)

    # --- a member: revisions shared by their owner ----------------------------------------

    def receive(self, caller: str, envelope: bytes, roster: Roster) -> int:
        """Verify, store and log a revision `caller` shares of a matter it owns; the newest
        revision held afterwards. An older or equal revision is answered, not stored; a
        fork (other bytes at a held revision, or a change of what must not change) is
        refused with a `forked-matter` alert and an audit event."""
        try:
            matter = verify_matter(
                Envelope.from_json(envelope), roster, owner=caller,
                history=key_history(self._storage.db),
            )  # fmt: skip
        except (MatterFormatError, CryptoError, ValueError) as e:
            raise MatterRefused(Refusal.INVALID, f"envelope: {e}") from None
        if self.state not in matter.states:
            raise MatterRefused(
                Refusal.PERMISSION_DENIED, f"this node ({self.state}) is not a member of the matter"
            )
        now = _whole_seconds(self._clock())
        fork: str | None = None
        with self._storage.db.write() as s:
            row = s.scalars(
                select(m.Matter).where(m.Matter.global_id == matter.matter_id).with_for_update()
            ).one_or_none()
            if row is None:
                row = m.Matter(global_id=matter.matter_id, owner=caller, created_at=now)
                s.add(row)
                self._apply(s, row, matter, envelope, now, caller)
                return matter.revision
            held = _document(row)
            if matter.revision < held.revision:
                return held.revision
            if matter.revision == held.revision:
                if envelope == row.envelope:
                    return held.revision
                fork = "another document at a revision already held"
            else:
                try:
                    check_successor(held, matter)
                except MatterFormatError as e:
                    fork = str(e)
            if fork is None:
                self._apply(s, row, matter, envelope, now, caller)
                return matter.revision
            s.add(
                m.Alert(
                    at=now,
                    kind="forked-matter",
                    state=caller,
                    message=f"matter {matter.matter_id} revision {matter.revision}: {fork}",
                    evidence={
                        "matter": matter.matter_id,
                        "held_revision": held.revision,
                        "held_envelope_sha256": _sha256(row.envelope),
                        "offered_envelope_b64": base64.b64encode(envelope).decode("ascii"),
                    },
                )
            )
            audit(
                s,
                actor=f"member:{caller}",
                action="matter.receive",
                target=matter.matter_id,
                outcome="refused",
                detail={"revision": matter.revision, "reason": fork},
                now=now,
            )
        log.error("federation_alert", kind="forked-matter", peer=caller)
        raise MatterRefused(
            Refusal.FAILED_PRECONDITION,
            f"matter {matter.matter_id} revision {matter.revision} conflicts with the revision"
            f" held: {fork}",
        )

    def _apply(
        self,
        s: Session,
        row: m.Matter,
        matter: Matter,
        envelope: bytes,
        now: datetime,
        caller: str,
    ) -> None:
        """Make `row` (new or held) the owner's revision `matter`, in `s`."""
        row.bates_prefix = matter.bates_prefix
        _set_fields(row, matter, envelope, now)
        s.flush()  # a new row gets its id
        count = select(func.count()).select_from(m.Exhibit).where(m.Exhibit.matter_id == row.id)
        known = s.scalar(count) or 0
        s.execute(
            delete(m.MatterMember).where(
                m.MatterMember.matter_id == row.id, m.MatterMember.state.not_in(matter.states)
            )
        )
        present = set(
            s.scalars(select(m.MatterMember.state).where(m.MatterMember.matter_id == row.id))
        )
        s.add_all(
            m.MatterMember(matter_id=row.id, state=code, shared_revision=None, shared_at=None)
            for code in matter.states
            if code not in present
        )
        s.add_all(
            _exhibit_row(row.id, seq, exhibit)
            for seq, exhibit in enumerate(matter.exhibits, start=1)
            if seq > known
        )
        self._make_current(s, row, matter, envelope, now, holders=(self.state, matter.owner))
        audit(
            s,
            actor=f"member:{caller}",
            action="matter.receive",
            target=matter.matter_id,
            detail={"revision": matter.revision, "exhibits": len(matter.exhibits)},
            now=now,
        )

    # --- the owner: what to share ---------------------------------------------------------

    def pending_shares(self) -> list[PendingShare]:
        """Each member of this node's own matters that lacks the newest revision."""
        with self._storage.db.read() as s:
            found = s.execute(
                select(
                    m.Matter.global_id, m.MatterMember.state, m.Matter.revision, m.Matter.envelope
                )
                .join(m.MatterMember, m.MatterMember.matter_id == m.Matter.id)
                .where(
                    m.Matter.owner == self.state,
                    m.MatterMember.state != self.state,
                    func.coalesce(m.MatterMember.shared_revision, 0) < m.Matter.revision,
                )
                .order_by(m.Matter.global_id, m.MatterMember.state)
            ).all()
        return [PendingShare(g, st, r, bytes(e)) for g, st, r, e in found]

    def record_shared(self, share: PendingShare, answered: int) -> None:
        """Note that `share.state` holds revision `answered` (at most the one sent)."""
        with self._storage.db.write() as s:
            matter_row = s.scalar(select(m.Matter.id).where(m.Matter.global_id == share.matter_id))
            s.execute(
                update(m.MatterMember)
                .where(
                    m.MatterMember.matter_id == matter_row,
                    m.MatterMember.state == share.state,
                )
                .values(shared_revision=min(answered, share.revision), shared_at=self._clock())
            )

    # --- inside a write transaction ------------------------------------------------------

    def _owned(self, s: Session, ref: str) -> tuple[m.Matter, Matter]:
        """The matter `ref` names, locked for this transaction; refused unless it is ours."""
        global_id = resolve(s, ref, self.state)
        row = s.scalars(
            select(m.Matter).where(m.Matter.global_id == global_id).with_for_update()
        ).one()
        if row.owner != self.state:
            raise MatterRefused(
                Refusal.FAILED_PRECONDITION,
                f"matter {global_id}: only its owner, {row.owner}, can change it",
            )
        return row, _document(row)

    def _exhibit_target(
        self, s: Session, matter: Matter, global_id: str, evidence_sha256: str | None
    ) -> ExhibitEvidence | None:
        """What the exhibit is of, once the incident is known here and of a member state."""
        sha256 = None if evidence_sha256 is None else evidence_sha256.lower()
        try:
            schema.global_id(global_id, "incident", None)
            if sha256 is not None:
                schema.hex64(sha256, "evidence")
        except ValueError as e:
            raise _invalid(e) from None
        origin = global_id[:2]
        if origin not in matter.states:
            raise MatterRefused(
                Refusal.FAILED_PRECONDITION,
                f"incident: {origin} is not a member of matter {matter.matter_id}",
            )
        incident_id = s.scalar(select(m.Incident.id).where(m.Incident.global_id == global_id))
        if incident_id is None and not _indexed(s, global_id):
            raise MatterRefused(
                Refusal.NOT_FOUND,
                "incident: not held here and not in the compact's index",
            )
        evidence: ExhibitEvidence | None = None
        if sha256 is not None:
            if incident_id is None:
                raise MatterRefused(
                    Refusal.FAILED_PRECONDITION,
                    f"evidence: {origin}'s incident is not held here; request its bundle"
                    " first, or add the whole incident",
                )
            position = s.scalar(
                select(m.EvidenceItem.position).where(
                    m.EvidenceItem.incident_id == incident_id,
                    m.EvidenceItem.sha256 == sha256,
                )
            )
            if position is None:
                raise MatterRefused(
                    Refusal.NOT_FOUND, "evidence: the incident has no file with this SHA-256"
                )
            evidence = ExhibitEvidence(position=position, sha256=sha256)
        key = (global_id, -1 if evidence is None else evidence.position)
        for exhibit in matter.exhibits:
            if exhibit.key == key:
                raise MatterRefused(
                    Refusal.ALREADY_EXISTS, f"already exhibit {exhibit.number} of the matter"
                )
        return evidence

    def _store_revision(self, s: Session, row: m.Matter, matter: Matter, now: datetime) -> None:
        """Sign `matter`, the owner's next revision, and make it current, in `s`."""
        envelope = sign_matter(matter, self._key).to_json()
        self._make_current(s, row, matter, envelope, now, holders=(self.state,))

    def _make_current(
        self,
        s: Session,
        row: m.Matter,
        matter: Matter,
        envelope: bytes,
        now: datetime,
        *,
        holders: tuple[str, ...],
    ) -> None:
        """Make `matter` (signed as `envelope`) the current revision of `row`, whose
        exhibits are already written, in `s`: its fields, the members known to hold it,
        the holds, the log entry and the revision row."""
        _set_fields(row, matter, envelope, now)
        s.flush()
        s.execute(
            update(m.MatterMember)
            .where(m.MatterMember.matter_id == row.id, m.MatterMember.state.in_(holders))
            .values(shared_revision=matter.revision, shared_at=now)
        )
        holds.refresh(s, row.id)  # what the hold covers may have changed
        (index,) = self._log.append_in(s, MATTER_KIND, [envelope], now=now)
        s.add(
            m.MatterRevision(
                matter_id=row.id,
                revision=matter.revision,
                envelope=envelope,
                envelope_sha256=_sha256(envelope),
                log_index=index,
                recorded_at=now,
            )
        )
        s.flush()


# --- reading ----------------------------------------------------------------------------


def _set_fields(row: m.Matter, matter: Matter, envelope: bytes, now: datetime) -> None:
    """The columns of `row` that follow its current revision."""
    row.title, row.legal_hold, row.revision = matter.title, matter.legal_hold, matter.revision
    row.envelope, row.updated_at = envelope, now


def _document(row: m.Matter) -> Matter:
    """The revision a row holds (this node signed or verified it before storing it)."""
    return Matter.from_payload(Envelope.from_json(row.envelope).payload)


def _indexed(s: Session, global_id: str) -> bool:
    """Whether the compact's index holds `global_id` (a peer's current, live entry)."""
    return (
        s.scalar(
            select(m.ReplicaEntry.log_index).where(
                m.ReplicaEntry.state == global_id[:2],
                m.ReplicaEntry.global_id == global_id,
                m.ReplicaEntry.current.is_(True),
                m.ReplicaEntry.withdrawn.is_(False),
            )
        )
        is not None
    )


def matter_covers(s: Session, matter: str, state: str, global_id: str) -> bool:
    """Whether `matter` (a matter id as a bundle request names it), held here, lists
    `state` as a member and has an exhibit of incident `global_id` (whole or a file)."""
    row_id = s.scalar(select(m.Matter.id).where(m.Matter.global_id == matter))
    if row_id is None:
        return False
    member = s.scalar(
        select(m.MatterMember.id).where(
            m.MatterMember.matter_id == row_id, m.MatterMember.state == state
        )
    )
    exhibit = s.scalar(
        select(m.Exhibit.id)
        .where(m.Exhibit.matter_id == row_id, m.Exhibit.global_id == global_id)
        .limit(1)
    )
    return member is not None and exhibit is not None


def matter_global_id(ref: str, own_state: str) -> str:
    """The id `ref` stands for: ``STATE:ID`` as it is, ``ID`` alone for this node's own
    matter; in any case."""
    return ref.upper() if ":" in ref else f"{own_state}:{ref.upper()}"


def resolve(s: Session, ref: str, own_state: str) -> str:
    """The global id of the matter `ref` names, which must be held here."""
    global_id = matter_global_id(ref, own_state)
    if s.scalar(select(m.Matter.id).where(m.Matter.global_id == global_id)) is None:
        raise MatterRefused(Refusal.NOT_FOUND, "matter: no such matter here")
    return global_id


def _info(s: Session, row: m.Matter) -> MatterInfo:
    members = s.scalars(
        select(m.MatterMember)
        .where(m.MatterMember.matter_id == row.id)
        .order_by(m.MatterMember.state)
    ).all()
    exhibits = s.scalars(
        select(m.Exhibit).where(m.Exhibit.matter_id == row.id).order_by(m.Exhibit.seq)
    ).all()
    held = set(
        s.scalars(
            select(m.Incident.global_id).where(
                m.Incident.global_id.in_(sorted({e.global_id for e in exhibits}))
            )
        )
    )
    return MatterInfo(
        matter_id=row.global_id,
        owner=row.owner,
        title=row.title,
        revision=row.revision,
        bates_prefix=row.bates_prefix,
        legal_hold=row.legal_hold,
        created_at=row.created_at,
        updated_at=row.updated_at,
        members=tuple(MemberInfo(mb.state, mb.shared_revision, mb.shared_at) for mb in members),
        exhibits=tuple(
            ExhibitInfo(
                number=e.number,
                global_id=e.global_id,
                evidence_position=None if e.evidence_position < 0 else e.evidence_position,
                evidence_sha256=e.evidence_sha256,
                description=e.description,
                added_at=e.added_at,
                held=e.global_id in held,
            )
            for e in exhibits
        ),
        envelope_sha256=_sha256(row.envelope),
        held_incidents=_count(s, m.LegalHold.blob_sha256.is_(None), row.id),
        held_files=_count(s, m.LegalHold.blob_sha256.is_not(None), row.id),
    )


def _count(s: Session, which: ColumnElement[bool], matter_row_id: int) -> int:
    query = select(func.count()).select_from(m.LegalHold)
    return int(s.scalar(query.where(m.LegalHold.matter_id == matter_row_id, which)) or 0)


def get_matter(db: Database, ref: str, own_state: str) -> MatterInfo:
    with db.read() as s:
        global_id = resolve(s, ref, own_state)
        row = s.scalars(select(m.Matter).where(m.Matter.global_id == global_id)).one()
        return _info(s, row)


def list_matters(db: Database) -> list[MatterInfo]:
    with db.read() as s:
        rows = s.scalars(select(m.Matter).order_by(m.Matter.global_id)).all()
        return [_info(s, row) for row in rows]
