"""SQLAlchemy 2 models of a node's own records (DESIGN.md section 3).

Uniqueness lives in database constraints. Personal data (people's names and
contacts, narratives, street addresses) is stored only as field-level
ciphertext (`*_enc` columns, see `crypto.fields`). The schema is owned by the
Alembic migrations in `node/migrations`; a test proves they produce exactly
these models.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from node.db import UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SHORT = 40  # vocabulary values
TEXT = 1000  # names, ids, places (the import limit is configurable but never above this)
MAX_AUDIT_DETAIL = 64 * 1024  # bytes of an audit event's detail, as JSON


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Incident(Base):
    """One encounter, as this state recorded it."""

    __tablename__ = "incidents"
    __table_args__ = (UniqueConstraint("state", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    global_id: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(2))
    external_id: Mapped[str] = mapped_column(String(TEXT))
    # SHA-256 of the canonical imported record: re-imports compare against it.
    content_hash: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    occurred_offset_min: Mapped[int] = mapped_column(Integer)
    # The calendar date in the incident's own offset, for date filters.
    occurred_on: Mapped[date] = mapped_column(Date, index=True)
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reported_offset_min: Mapped[int | None] = mapped_column(Integer)
    address_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    city: Mapped[str | None] = mapped_column(String(TEXT))
    county: Mapped[str] = mapped_column(String(TEXT), index=True)
    location_kind: Mapped[str] = mapped_column(String(SHORT), index=True)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(SHORT), index=True)
    source: Mapped[str] = mapped_column(String(SHORT))
    sharing: Mapped[str] = mapped_column(String(SHORT))
    narrative_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)

    conduct: Mapped[list[IncidentConduct]] = relationship(
        back_populates="incident", cascade="all, delete-orphan", order_by="IncidentConduct.conduct"
    )
    agents: Mapped[list[AgentObservation]] = relationship(
        back_populates="incident",
        cascade="all, delete-orphan",
        order_by="AgentObservation.position",
    )
    people: Mapped[list[Person]] = relationship(
        back_populates="incident", cascade="all, delete-orphan", order_by="Person.position"
    )
    evidence: Mapped[list[EvidenceItem]] = relationship(
        back_populates="incident", cascade="all, delete-orphan", order_by="EvidenceItem.position"
    )


class IncidentConduct(Base):
    __tablename__ = "incident_conduct"

    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
    )
    conduct: Mapped[str] = mapped_column(String(SHORT), primary_key=True, index=True)

    incident: Mapped[Incident] = relationship(back_populates="conduct")


class LocalAgent(Base):
    """Observations that an analyst or a rule decided are the same person."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(TEXT), unique=True)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AgentObservation(Base):
    """One agent as seen at one incident; identifiers may be partial."""

    __tablename__ = "agent_observations"
    __table_args__ = (UniqueConstraint("incident_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    agency: Mapped[str | None] = mapped_column(String(SHORT), index=True)
    name: Mapped[str | None] = mapped_column(String(TEXT))
    badge: Mapped[str | None] = mapped_column(String(TEXT))
    unit: Mapped[str | None] = mapped_column(String(TEXT))
    vehicle_plate: Mapped[str | None] = mapped_column(String(TEXT))
    masked: Mapped[bool | None] = mapped_column(Boolean)
    identified_self: Mapped[bool | None] = mapped_column(Boolean)
    body_camera: Mapped[bool | None] = mapped_column(Boolean)
    role: Mapped[str] = mapped_column(String(SHORT))
    normalization_version: Mapped[int] = mapped_column(Integer)
    local_agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), index=True
    )

    incident: Mapped[Incident] = relationship(back_populates="agents")
    keys: Mapped[list[IdentifierKeyRow]] = relationship(
        back_populates="observation", cascade="all, delete-orphan", order_by="IdentifierKeyRow.kind"
    )


class IdentifierKeyRow(Base):
    """A normalised identifier key (`kind:value`) of one agent observation."""

    __tablename__ = "identifier_keys"
    __table_args__ = (Index("ix_identifier_keys_kind_value", "kind", "value"),)

    observation_id: Mapped[int] = mapped_column(
        ForeignKey("agent_observations.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(SHORT), primary_key=True)
    value: Mapped[str] = mapped_column(String(TEXT), primary_key=True)

    observation: Mapped[AgentObservation] = relationship(back_populates="keys")


class Person(Base):
    """A victim, witness or complainant. Name and contact are ciphertext."""

    __tablename__ = "people"
    __table_args__ = (UniqueConstraint("incident_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(SHORT))
    name_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    contact_enc: Mapped[bytes | None] = mapped_column(LargeBinary)

    incident: Mapped[Incident] = relationship(back_populates="people")


class Blob(Base):
    """A file in the content-addressed, encrypted blob store."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EvidenceItem(Base):
    """A file attached to an incident, by content hash."""

    __tablename__ = "evidence_items"
    __table_args__ = (UniqueConstraint("incident_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(ForeignKey("blobs.sha256"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(TEXT))
    file_name: Mapped[str] = mapped_column(String(TEXT))
    captured_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    captured_offset_min: Mapped[int | None] = mapped_column(Integer)
    captured_by: Mapped[str | None] = mapped_column(String(TEXT))
    description: Mapped[str | None] = mapped_column(Text)

    incident: Mapped[Incident] = relationship(back_populates="evidence")
    custody: Mapped[list[CustodyEvent]] = relationship(
        back_populates="evidence", order_by="CustodyEvent.id"
    )


class CustodyEvent(Base):
    """One hand an evidence item passed through: collected, received, viewed, ..."""

    __tablename__ = "custody_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    evidence_id: Mapped[int] = mapped_column(
        ForeignKey("evidence_items.id", ondelete="RESTRICT"), index=True
    )
    kind: Mapped[str] = mapped_column(String(SHORT))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(TEXT))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Who recorded the event: None for this node; a state for an event that came with a
    # bundle from that state (then `envelope` is that state's signed record of it).
    origin: Mapped[str | None] = mapped_column(String(2))
    # The signed custody record (federation.bundle.CustodyRecord, DSSE) and its index in
    # the recording state's transparency log; None until this node's publisher logs it.
    envelope: Mapped[bytes | None] = mapped_column(LargeBinary)
    log_index: Mapped[int | None] = mapped_column(BigInteger, index=True)

    evidence: Mapped[EvidenceItem] = relationship(back_populates="custody")


class Matter(Base):
    """A matter (a joint case) this node owns or is a member of, as its newest revision
    says (federation.matter; docs/matters.md). Every revision is kept in
    `matter_revisions`; `envelope` is the newest one's, signed by `owner`."""

    __tablename__ = "matters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    global_id: Mapped[str] = mapped_column(String(64), unique=True)
    owner: Mapped[str] = mapped_column(String(2), index=True)
    title: Mapped[str] = mapped_column(String(TEXT))
    bates_prefix: Mapped[str] = mapped_column(String(SHORT))
    legal_hold: Mapped[bool] = mapped_column(Boolean)
    revision: Mapped[int] = mapped_column(Integer)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MatterRevision(Base):
    """One revision of a matter as this node accepted it: the owner's signed envelope and
    its position in this node's own transparency log (kind `matter`)."""

    __tablename__ = "matter_revisions"
    __table_args__ = (UniqueConstraint("matter_id", "revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    matter_id: Mapped[int] = mapped_column(ForeignKey("matters.id", ondelete="RESTRICT"))
    revision: Mapped[int] = mapped_column(Integer)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    envelope_sha256: Mapped[str] = mapped_column(String(64))
    log_index: Mapped[int] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MatterMember(Base):
    """A member state of a matter. At the owner: the newest revision the member has
    acknowledged (None: none yet), so `compact serve` knows what to send it."""

    __tablename__ = "matter_members"
    __table_args__ = (UniqueConstraint("matter_id", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    matter_id: Mapped[int] = mapped_column(ForeignKey("matters.id", ondelete="RESTRICT"))
    state: Mapped[str] = mapped_column(String(2), index=True)
    shared_revision: Mapped[int | None] = mapped_column(Integer)
    shared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Exhibit(Base):
    """An exhibit of a matter: an incident (`evidence_position` -1) or one evidence item of
    it, named by global id so that it may be another state's, held here or not."""

    __tablename__ = "exhibits"
    __table_args__ = (
        UniqueConstraint("matter_id", "seq"),
        UniqueConstraint("matter_id", "number"),
        UniqueConstraint("matter_id", "global_id", "evidence_position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    matter_id: Mapped[int] = mapped_column(ForeignKey("matters.id", ondelete="RESTRICT"))
    seq: Mapped[int] = mapped_column(Integer)
    number: Mapped[str] = mapped_column(String(SHORT))
    global_id: Mapped[str] = mapped_column(String(64), index=True)
    evidence_position: Mapped[int] = mapped_column(Integer)
    evidence_sha256: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LegalHold(Base):
    """What a matter under legal hold keeps on this node (node.holds): an incident this
    node holds that the matter names, with one row per evidence blob the exhibits name
    (`blob_sha256`) and one for the incident itself (`blob_sha256` None). The RESTRICT
    keys make the database refuse to delete a held incident or blob."""

    __tablename__ = "legal_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    matter_id: Mapped[int] = mapped_column(
        ForeignKey("matters.id", ondelete="RESTRICT"), index=True
    )
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="RESTRICT"), index=True
    )
    blob_sha256: Mapped[str | None] = mapped_column(
        ForeignKey("blobs.sha256", ondelete="RESTRICT"), index=True
    )


class ExhibitExport(Base):
    """One export of a matter's exhibit package (`compact exhibit export`): `state` is
    "recorded" (custody events written, package not yet) or "written"; a re-run resumes
    the row and its `package_id`."""

    __tablename__ = "exhibit_exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[str] = mapped_column(String(64), unique=True)
    matter_id: Mapped[int] = mapped_column(
        ForeignKey("matters.id", ondelete="RESTRICT"), index=True
    )
    revision: Mapped[int] = mapped_column(Integer)
    out_path: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    exported_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """Who did what, when: every write, every read of personal data or evidence."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(TEXT), index=True)
    action: Mapped[str] = mapped_column(String(80))
    target: Mapped[str | None] = mapped_column(String(TEXT))
    outcome: Mapped[str] = mapped_column(String(SHORT))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    # its entry in this node's transparency log (node.audit), once logged
    log_index: Mapped[int | None] = mapped_column(BigInteger, unique=True)

    @validates("detail")
    def _bounded_detail(self, _key: str, detail: dict[str, Any]) -> dict[str, Any]:
        """A detail too large for one log entry would stop the chaining of every later
        event (node.audit.log_audit): above MAX_AUDIT_DETAIL bytes it is replaced by its
        size and SHA-256."""
        encoded = json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str)
        if len(encoded.encode()) <= MAX_AUDIT_DETAIL:
            return detail
        digest = hashlib.sha256(encoded.encode()).hexdigest()
        return {"truncated": True, "bytes": len(encoded.encode()), "sha256": digest}


class User(Base):
    """A person or program that may call this node; only a hash of its token is kept."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(SHORT))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class LogEntry(Base):
    """One entry of this node's transparency log (RFC 9162 leaf: SHA-256(0x00 || payload))."""

    __tablename__ = "log_entries"

    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(SHORT))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary)
    appended_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LogNode(Base):
    """The hash of a complete subtree of the log: level, index as in crypto.merkle_tree."""

    __tablename__ = "log_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class LogCheckpoint(Base):
    """A signed tree head of this node's log (a C2SP tlog-checkpoint note)."""

    __tablename__ = "log_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary)
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# --- federation (issue 4) ---------------------------------------------------------------


class RosterVersion(Base):
    """Every roster version this node applied, as the signed DSSE envelope (JSON)."""

    __tablename__ = "roster_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    payload_sha256: Mapped[str] = mapped_column(String(64))
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MemberCertificate(Base):
    """A member's TLS certificate (PEM), kept only when it matches a roster pin."""

    __tablename__ = "member_certificates"

    tls_pin: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(2))
    certificate: Mapped[bytes] = mapped_column(LargeBinary)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OprfShare(Base):
    """This node's share of the compact OPRF key, field-encrypted under the data key."""

    __tablename__ = "oprf_shares"

    oprf_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    share_index: Mapped[int] = mapped_column(Integer)
    share_enc: Mapped[bytes] = mapped_column(LargeBinary)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Pseudonym(Base):
    """The compact-wide pseudonym of one identifier key (`kind:value`), under one OPRF key."""

    __tablename__ = "pseudonyms"

    oprf_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(TEXT + SHORT + 1), primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OprfUsage(Base):
    """How many elements each member had this node evaluate with its share, per UTC day."""

    __tablename__ = "oprf_usage"

    requester: Mapped[str] = mapped_column(String(2), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    elements: Mapped[int] = mapped_column(BigInteger)


class PublishedEntry(Base):
    """The newest index-entry revision this node published for one of its incidents."""

    __tablename__ = "published_entries"

    global_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer)
    log_index: Mapped[int] = mapped_column(BigInteger)
    entry_sha256: Mapped[str] = mapped_column(String(64))
    # incidents.content_hash when published: a re-import that changes it needs a new revision.
    content_hash: Mapped[str | None] = mapped_column(String(64))
    withdrawn: Mapped[bool] = mapped_column(Boolean)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReplicaEntry(Base):
    """A verified index entry of a peer's log (the DSSE envelope as the peer signed it)."""

    __tablename__ = "replica_entries"
    __table_args__ = (Index("ix_replica_entries_state_global_id", "state", "global_id"),)

    state: Mapped[str] = mapped_column(String(2), primary_key=True)
    log_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    global_id: Mapped[str] = mapped_column(String(64))
    revision: Mapped[int] = mapped_column(Integer)
    withdrawn: Mapped[bool] = mapped_column(Boolean)
    # Not indexed on its own: two values, and SQLite's planner would pick it over
    # (state, global_id) and scan every current entry for each batch.
    current: Mapped[bool] = mapped_column(Boolean)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReplicaPseudonym(Base):
    """One agent pseudonym of a current index entry, a peer's or this node's own.

    Rows are keyed by the entry's place in its origin's log, so that a replica grows at
    the end of the table; `prefix` (the pseudonym's first 8 bytes as a signed 64-bit
    integer, `pseudonym_prefix`) is what is indexed, a small key that keeps inserts
    cheap. A lookup matches on `prefix` and then on `pseudonym`; `state` follows `prefix`
    in the index so that a lookup of one side (node.hits: the peers' rows, or this
    node's) reads that side's rows only.
    """

    __tablename__ = "replica_pseudonyms"
    __table_args__ = (
        Index("ix_replica_pseudonyms_prefix_state", "prefix", "state"),
        {"sqlite_with_rowid": False},
    )

    state: Mapped[str] = mapped_column(String(2), primary_key=True)
    log_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(SHORT), primary_key=True)
    global_id: Mapped[str] = mapped_column(String(64))
    pseudonym: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[int] = mapped_column(BigInteger)


class ReplicaIncident(Base):
    """What a current index entry says about its incident, a peer's or this node's own,
    kept as columns for the analysts' reports (federation.analysis). Written with
    `replica_pseudonyms` and replaced with it; withdrawn entries have no row.

    `day` is the entry's ISO date (text, so that it sorts and compares as a date);
    `conduct` its conduct values, sorted and joined by single spaces."""

    __tablename__ = "replica_incidents"
    __table_args__ = ({"sqlite_with_rowid": False},)

    state: Mapped[str] = mapped_column(String(2), primary_key=True)
    log_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    global_id: Mapped[str] = mapped_column(String(64))
    day: Mapped[str] = mapped_column(String(10))
    county: Mapped[str] = mapped_column(String(TEXT))
    location_kind: Mapped[str] = mapped_column(String(SHORT))
    status: Mapped[str] = mapped_column(String(SHORT))
    conduct: Mapped[str] = mapped_column(String(TEXT))


class ReplicaAgent(Base):
    """One agent of a current index entry (by its position in the entry), as columns.

    The flags are 1, 0 or NULL (not recorded), integers so that rows insert without
    bind processing (node.db.insert_rows)."""

    __tablename__ = "replica_agents"
    __table_args__ = ({"sqlite_with_rowid": False},)

    state: Mapped[str] = mapped_column(String(2), primary_key=True)
    log_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    agency: Mapped[str | None] = mapped_column(String(SHORT))
    role: Mapped[str] = mapped_column(String(SHORT))
    masked: Mapped[int | None] = mapped_column(Integer)
    identified_self: Mapped[int | None] = mapped_column(Integer)
    body_camera: Mapped[int | None] = mapped_column(Integer)


def pseudonym_prefix(pseudonym: str) -> int:
    """The indexed part of a pseudonym (hex): its first 8 bytes as a signed 64-bit integer."""
    return int.from_bytes(bytes.fromhex(pseudonym[:16]), "big", signed=True)


class ReplicaLog(Base):
    """How far this node has verified a peer's log, and the newest checkpoint it accepted."""

    __tablename__ = "replica_logs"

    state: Mapped[str] = mapped_column(String(2), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    checkpoint_size: Mapped[int] = mapped_column(BigInteger)
    checkpoint_root: Mapped[bytes] = mapped_column(LargeBinary)
    checkpoint_note: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReplicaCheckpoint(Base):
    """A checkpoint of a peer's log that this node accepted (node.replica), every one kept:
    the signed note holds the checkpoint text, the log's signature line and each verified
    cosignature line known for it, this node's own included, one line per key (exhibit
    packages prove entries against checkpoints cosigned by enough witnesses)."""

    __tablename__ = "replica_checkpoints"

    state: Mapped[str] = mapped_column(String(2), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary)
    note: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReplicaLogNode(Base):
    """A complete-subtree hash of a peer's log, as this node rebuilt it (crypto.merkle_tree)."""

    __tablename__ = "replica_log_nodes"

    state: Mapped[str] = mapped_column(String(2), primary_key=True)
    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class LogCosignature(Base):
    """A witness's C2SP tlog-cosignature of one of this node's checkpoints."""

    __tablename__ = "log_cosignatures"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    witness: Mapped[str] = mapped_column(String(2), primary_key=True)
    signature_line: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PeerStatus(Base):
    """The sync state of one peer: last attempt, last success, backoff."""

    __tablename__ = "peer_status"

    state: Mapped[str] = mapped_column(String(2), primary_key=True)
    last_attempt: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer)
    next_attempt: Mapped[datetime | None] = mapped_column(UTCDateTime)
    peer_size: Mapped[int | None] = mapped_column(BigInteger)


class Alert(Base):
    """Something an operator must look at, with its proof (e.g. two conflicting checkpoints)."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    kind: Mapped[str] = mapped_column(String(SHORT))
    state: Mapped[str] = mapped_column(String(2))
    message: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)


class Hit(Base):
    """A new cross-state link involving one of this state's incidents (node.hits): one of
    its incidents and one of a peer's carry the same agent, unit or vehicle pseudonym."""

    __tablename__ = "hits"
    __table_args__ = (
        UniqueConstraint("pseudonym", "own_global_id", "peer_state", "peer_global_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    found_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    kind: Mapped[str] = mapped_column(String(SHORT))
    pseudonym: Mapped[str] = mapped_column(String(128))
    own_global_id: Mapped[str] = mapped_column(String(64), index=True)
    peer_state: Mapped[str] = mapped_column(String(2))
    peer_global_id: Mapped[str] = mapped_column(String(64))


# --- evidence bundles (issue 5) -----------------------------------------------------------


class BundleRequestRow(Base):
    """One bundle request, incoming (a peer asks this node) or outgoing (this node asks).

    `state` is pending, approved, denied, sealed, transferring, delivered, failed or
    quarantined (docs/bundles.md); `reason` says why a request was denied, failed or was
    quarantined.
    """

    __tablename__ = "bundle_requests"
    __table_args__ = (UniqueConstraint("requester", "request_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    direction: Mapped[str] = mapped_column(String(SHORT), index=True)
    request_id: Mapped[str] = mapped_column(String(36))
    requester: Mapped[str] = mapped_column(String(2))
    holder: Mapped[str] = mapped_column(String(2))
    global_id: Mapped[str] = mapped_column(String(64), index=True)
    requested_by: Mapped[str] = mapped_column(String(100))
    purpose: Mapped[str] = mapped_column(Text)
    matter: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(SHORT), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    request_envelope: Mapped[bytes] = mapped_column(LargeBinary)
    request_sha256: Mapped[str] = mapped_column(String(64))
    decision_envelope: Mapped[bytes | None] = mapped_column(LargeBinary)
    bundle_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Outgoing: when the holder first acknowledged the request (None: not delivered yet).
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Bundle(Base):
    """A sealed bundle: at the holder the stream it serves, at the requester the stream it
    receives (its spool file, and how far it has verified and stored it)."""

    __tablename__ = "bundles"

    bundle_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_row_id: Mapped[int] = mapped_column(
        ForeignKey("bundle_requests.id", ondelete="RESTRICT"), unique=True
    )
    manifest_envelope: Mapped[bytes] = mapped_column(LargeBinary)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    spool_name: Mapped[str] = mapped_column(String(SHORT))
    sealed_size: Mapped[int] = mapped_column(BigInteger)
    # Requester: bytes of the stream verified and on disk. Holder: bytes served so far.
    verified_offset: Mapped[int] = mapped_column(BigInteger)
    units: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Holder: the requester's signed receipt. Requester: the receipt it sent.
    receipt_envelope: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Holder: when the receipt arrived. Requester: when the holder confirmed it.
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IncidentProvenance(Base):
    """Where a received incident came from: its origin state and the bundle that brought it.
    This node's own incidents have no row here."""

    __tablename__ = "incident_provenance"

    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
    )
    origin: Mapped[str] = mapped_column(String(2))
    bundle_id: Mapped[str] = mapped_column(ForeignKey("bundles.bundle_id", ondelete="RESTRICT"))
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
