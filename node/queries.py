"""Reading a node's records: one incident, searches, evidence, audit.

Personal fields are decrypted only for a caller allowed to see them; for any
other caller they are None and `restricted_withheld` is set. Every read of
personal data or evidence is written to the audit log.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Select, and_, distinct, exists, func, or_, select
from sqlalchemy.orm import Session, selectinload

from crypto.fields import FieldCipher
from node import models as m
from node.db import Database
from node.errors import InvalidArgumentError, NotFoundError
from node.ingest import field_context
from node.normalize import IdentifierKey
from node.records import (
    AgentView,
    CustodyView,
    EvidenceView,
    IncidentSummary,
    IncidentView,
    LocationInput,
    PersonInput,
    SearchFilters,
    SearchPage,
    Timestamp,
)

MAX_PAGE = 500
DEFAULT_PAGE = 50


def audit(
    s: Session,
    *,
    actor: str,
    action: str,
    target: str | None,
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    s.add(
        m.AuditEvent(
            at=now or datetime.now(UTC),
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            detail=detail or {},
        )
    )


def _evidence_view(e: m.EvidenceItem) -> EvidenceView:
    return EvidenceView(
        sha256=e.sha256,
        size=e.size,
        media_type=e.media_type,
        file_name=e.file_name,
        captured_at=(
            Timestamp.from_stored(e.captured_at, e.captured_offset_min) if e.captured_at else None
        ),
        captured_by=e.captured_by,
        description=e.description,
        custody=tuple(
            CustodyView(
                c.kind,
                Timestamp.from_stored(c.at, 0),
                c.actor,
                json.dumps(c.detail, sort_keys=True),
            )
            for c in e.custody
        ),
    )


def _open(fields: FieldCipher, token: bytes | None, context: bytes) -> str | None:
    return None if token is None else fields.open(token, context=context)


def incident_view(row: m.Incident, fields: FieldCipher, *, personal: bool) -> IncidentView:
    gid = row.global_id
    address = (
        _open(fields, row.address_enc, field_context("incidents.address", gid))
        if personal
        else None
    )
    people = (
        tuple(
            PersonInput(
                p.role,
                _open(fields, p.name_enc, field_context("people.name", gid, p.position)),
                _open(fields, p.contact_enc, field_context("people.contact", gid, p.position)),
            )
            for p in row.people
        )
        if personal
        else ()
    )
    withheld = not personal and bool(row.people or row.narrative_enc or row.address_enc)
    return IncidentView(
        global_id=gid,
        external_id=row.external_id,
        state=row.state,
        occurred_at=Timestamp.from_stored(row.occurred_at, row.occurred_offset_min),
        reported_at=(
            Timestamp.from_stored(row.reported_at, row.reported_offset_min)
            if row.reported_at
            else None
        ),
        location=LocationInput(
            row.state, row.county, row.location_kind, address, row.city, row.lat, row.lon
        ),
        conduct=tuple(c.conduct for c in row.conduct),
        status=row.status,
        source=row.source,
        sharing=row.sharing,
        recorded_at=row.recorded_at,
        narrative=(
            _open(fields, row.narrative_enc, field_context("incidents.narrative", gid))
            if personal
            else None
        ),
        agents=tuple(
            AgentView(
                a.role,
                a.agency,
                a.name,
                a.badge,
                a.unit,
                a.vehicle_plate,
                a.masked,
                a.identified_self,
                a.body_camera,
                tuple(IdentifierKey(k.kind, k.value) for k in a.keys),
            )
            for a in row.agents
        ),
        people=people,
        evidence=tuple(_evidence_view(e) for e in row.evidence),
        restricted_withheld=withheld,
    )


def get_incident(
    db: Database, fields: FieldCipher, global_id: str, *, actor: str, personal: bool
) -> IncidentView:
    """One incident; with `personal`, the read is audited."""
    options = (
        selectinload(m.Incident.conduct),
        selectinload(m.Incident.agents).selectinload(m.AgentObservation.keys),
        selectinload(m.Incident.people),
        selectinload(m.Incident.evidence).selectinload(m.EvidenceItem.custody),
    )
    with db.read() as s:
        row = s.scalars(
            select(m.Incident).where(m.Incident.global_id == global_id).options(*options)
        ).first()
        if row is None:
            raise NotFoundError("no incident with that global id")
        view = incident_view(row, fields, personal=personal)
    if personal and not view.restricted_withheld:
        with db.write() as s:
            audit(s, actor=actor, action="read_personal", target=global_id)
    return view


def _page_token(row: m.Incident) -> str:
    raw = f"{row.occurred_at.astimezone(UTC).isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_page_token(token: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        when, _, ident = raw.partition("|")
        parsed = datetime.fromisoformat(when)
        if parsed.tzinfo is None:
            raise ValueError
        return parsed, int(ident)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgumentError("page_token", "not a token this node issued") from None


def _filtered(query: Select[Any], f: SearchFilters) -> Select[Any]:
    inc = m.Incident
    if f.occurred_from:
        query = query.where(inc.occurred_on >= f.occurred_from)
    if f.occurred_to:
        query = query.where(inc.occurred_on <= f.occurred_to)
    if f.county:
        query = query.where(func.lower(inc.county) == f.county.lower())
    if f.location_kind:
        query = query.where(inc.location_kind == f.location_kind)
    if f.status:
        query = query.where(inc.status == f.status)
    if f.conduct:
        query = query.where(
            exists().where(
                m.IncidentConduct.incident_id == inc.id, m.IncidentConduct.conduct.in_(f.conduct)
            )
        )
    if f.agency:
        query = query.where(
            exists().where(
                m.AgentObservation.incident_id == inc.id, m.AgentObservation.agency == f.agency
            )
        )
    if f.identifier_key:
        key = f.identifier_key
        query = query.where(
            exists().where(
                m.AgentObservation.incident_id == inc.id,
                m.IdentifierKeyRow.observation_id == m.AgentObservation.id,
                m.IdentifierKeyRow.kind == key.kind,
                m.IdentifierKeyRow.value == key.value,
            )
        )
    return query


def search(
    db: Database, filters: SearchFilters, *, page_size: int = 0, page_token: str = ""
) -> SearchPage:
    """Incidents matching every filter, newest first."""
    if page_size < 0 or page_size > MAX_PAGE:
        raise InvalidArgumentError("page_size", f"at most {MAX_PAGE}")
    size = page_size or DEFAULT_PAGE
    inc = m.Incident
    query = (
        _filtered(select(inc), filters)
        .order_by(inc.occurred_at.desc(), inc.id.desc())
        .limit(size + 1)
    )
    if page_token:
        when, ident = _parse_page_token(page_token)
        query = query.where(
            or_(inc.occurred_at < when, and_(inc.occurred_at == when, inc.id < ident))
        )
    with db.read() as s:
        rows = list(s.scalars(query.options(selectinload(inc.conduct))))
        page, more = rows[:size], len(rows) > size
        ids = [r.id for r in page]
        agencies: dict[int, set[str]] = {i: set() for i in ids}
        agents: dict[int, int] = dict.fromkeys(ids, 0)
        evidence: dict[int, int] = dict.fromkeys(ids, 0)
        if ids:
            for incident_id, agency in s.execute(
                select(m.AgentObservation.incident_id, m.AgentObservation.agency).where(
                    m.AgentObservation.incident_id.in_(ids)
                )
            ):
                agents[incident_id] += 1
                if agency:
                    agencies[incident_id].add(agency)
            for incident_id, count in s.execute(
                select(m.EvidenceItem.incident_id, func.count(distinct(m.EvidenceItem.id)))
                .where(m.EvidenceItem.incident_id.in_(ids))
                .group_by(m.EvidenceItem.incident_id)
            ):
                evidence[incident_id] = count
        summaries = tuple(
            IncidentSummary(
                global_id=r.global_id,
                external_id=r.external_id,
                occurred_at=Timestamp.from_stored(r.occurred_at, r.occurred_offset_min),
                county=r.county,
                city=r.city,
                location_kind=r.location_kind,
                conduct=tuple(c.conduct for c in r.conduct),
                status=r.status,
                agencies=tuple(sorted(agencies[r.id])),
                agent_count=agents[r.id],
                evidence_count=evidence[r.id],
                state=r.state,
            )
            for r in page
        )
    return SearchPage(summaries, _page_token(page[-1]) if more and page else "")


def evidence_item(db: Database, global_id: str, sha256: str) -> tuple[int, EvidenceView]:
    """The evidence item with this SHA-256 within this incident."""
    with db.read() as s:
        row = s.scalars(
            select(m.EvidenceItem)
            .join(m.Incident)
            .where(m.Incident.global_id == global_id, m.EvidenceItem.sha256 == sha256)
            .options(selectinload(m.EvidenceItem.custody))
            .order_by(m.EvidenceItem.position)
        ).first()
        if row is None:
            raise NotFoundError("no evidence item with that SHA-256 in that incident")
        return row.id, _evidence_view(row)


def record_custody(
    db: Database, evidence_id: int, *, kind: str, actor: str, detail: dict[str, Any], target: str
) -> None:
    """A custody event and its audit event, in one transaction."""
    now = datetime.now(UTC)
    with db.write() as s:
        s.add(
            m.CustodyEvent(evidence_id=evidence_id, kind=kind, at=now, actor=actor, detail=detail)
        )
        audit(s, actor=actor, action=f"evidence_{kind}", target=target, detail=detail, now=now)


def parse_date(field: str, value: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidArgumentError(field, "expected a date YYYY-MM-DD") from None
