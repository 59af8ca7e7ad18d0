"""The one module that converts between protobuf messages and domain types.

Domain code never imports `*_pb2`; the server and the command-line client call
these functions at the edge. Every conversion has a round-trip test.
"""

from __future__ import annotations

from datetime import UTC, datetime

from compact.v1 import node_pb2 as pb
from node.normalize import IdentifierKey
from node.records import (
    AgentView,
    CustodyView,
    EvidenceView,
    IncidentSummary,
    IncidentView,
    IngestReport,
    LineError,
    LocationInput,
    PersonInput,
    SearchPage,
    SearchQuery,
    Timestamp,
)


def _ts(value: Timestamp | None) -> str:
    return value.isoformat() if value else ""


def _parse_ts(value: str) -> Timestamp | None:
    return Timestamp.from_aware(datetime.fromisoformat(value)) if value else None


def _req_ts(value: str) -> Timestamp:
    ts = _parse_ts(value)
    if ts is None:
        raise ValueError("missing timestamp")
    return ts


def _opt(value: str) -> str | None:
    return value or None


def custody_to_proto(c: CustodyView) -> pb.CustodyEvent:
    return pb.CustodyEvent(kind=c.kind, at=_ts(c.at), actor=c.actor, detail=c.detail)


def custody_from_proto(msg: pb.CustodyEvent) -> CustodyView:
    return CustodyView(msg.kind, _req_ts(msg.at), msg.actor, msg.detail)


def evidence_to_proto(e: EvidenceView) -> pb.EvidenceItem:
    return pb.EvidenceItem(
        sha256=e.sha256,
        size=e.size,
        media_type=e.media_type,
        captured_at=_ts(e.captured_at),
        captured_by=e.captured_by or "",
        description=e.description or "",
        file_name=e.file_name,
        custody=[custody_to_proto(c) for c in e.custody],
    )


def evidence_from_proto(msg: pb.EvidenceItem) -> EvidenceView:
    return EvidenceView(
        sha256=msg.sha256,
        size=msg.size,
        media_type=msg.media_type,
        file_name=msg.file_name,
        captured_at=_parse_ts(msg.captured_at),
        captured_by=_opt(msg.captured_by),
        description=_opt(msg.description),
        custody=tuple(custody_from_proto(c) for c in msg.custody),
    )


def _agent_to_proto(a: AgentView) -> pb.AgentObservation:
    msg = pb.AgentObservation(
        name=a.name or "",
        badge=a.badge or "",
        agency=a.agency or "",
        unit=a.unit or "",
        vehicle_plate=a.vehicle_plate or "",
        role=a.role,
        identifier_keys=[pb.IdentifierKey(kind=k.kind, value=k.value) for k in a.keys],
    )
    for name in ("masked", "identified_self", "body_camera"):
        value = getattr(a, name)
        if value is not None:
            setattr(msg, name, value)
    return msg


def _agent_from_proto(msg: pb.AgentObservation) -> AgentView:
    def flag(name: str) -> bool | None:
        return bool(getattr(msg, name)) if msg.HasField(name) else None  # type: ignore[arg-type]

    return AgentView(
        role=msg.role,
        agency=_opt(msg.agency),
        name=_opt(msg.name),
        badge=_opt(msg.badge),
        unit=_opt(msg.unit),
        vehicle_plate=_opt(msg.vehicle_plate),
        masked=flag("masked"),
        identified_self=flag("identified_self"),
        body_camera=flag("body_camera"),
        keys=tuple(IdentifierKey(k.kind, k.value) for k in msg.identifier_keys),
    )


def incident_to_proto(v: IncidentView) -> pb.Incident:
    loc = pb.Location(
        address=v.location.address or "",
        city=v.location.city or "",
        county=v.location.county,
        state=v.location.state,
        kind=v.location.kind,
    )
    if v.location.lat is not None and v.location.lon is not None:
        loc.lat, loc.lon = v.location.lat, v.location.lon
    return pb.Incident(
        global_id=v.global_id,
        external_id=v.external_id,
        state=v.state,
        occurred_at=_ts(v.occurred_at),
        reported_at=_ts(v.reported_at),
        location=loc,
        conduct=list(v.conduct),
        status=v.status,
        source=v.source,
        sharing=v.sharing,
        narrative=v.narrative or "",
        agents=[_agent_to_proto(a) for a in v.agents],
        people=[
            pb.Person(role=p.role, name=p.name or "", contact=p.contact or "") for p in v.people
        ],
        evidence=[evidence_to_proto(e) for e in v.evidence],
        restricted_withheld=v.restricted_withheld,
        recorded_at=v.recorded_at.astimezone(UTC).isoformat(),
    )


def incident_from_proto(msg: pb.Incident) -> IncidentView:
    loc = msg.location
    return IncidentView(
        global_id=msg.global_id,
        external_id=msg.external_id,
        state=msg.state,
        occurred_at=_req_ts(msg.occurred_at),
        reported_at=_parse_ts(msg.reported_at),
        location=LocationInput(
            state=loc.state,
            county=loc.county,
            kind=loc.kind,
            address=_opt(loc.address),
            city=_opt(loc.city),
            lat=loc.lat if loc.HasField("lat") else None,
            lon=loc.lon if loc.HasField("lon") else None,
        ),
        conduct=tuple(msg.conduct),
        status=msg.status,
        source=msg.source,
        sharing=msg.sharing,
        recorded_at=datetime.fromisoformat(msg.recorded_at),
        narrative=_opt(msg.narrative),
        agents=tuple(_agent_from_proto(a) for a in msg.agents),
        people=tuple(PersonInput(p.role, _opt(p.name), _opt(p.contact)) for p in msg.people),
        evidence=tuple(evidence_from_proto(e) for e in msg.evidence),
        restricted_withheld=msg.restricted_withheld,
    )


def summary_to_proto(s: IncidentSummary) -> pb.IncidentSummary:
    return pb.IncidentSummary(
        global_id=s.global_id,
        external_id=s.external_id,
        occurred_at=_ts(s.occurred_at),
        county=s.county,
        city=s.city or "",
        location_kind=s.location_kind,
        conduct=list(s.conduct),
        status=s.status,
        agencies=list(s.agencies),
        agent_count=s.agent_count,
        evidence_count=s.evidence_count,
        state=s.state,
    )


def summary_from_proto(msg: pb.IncidentSummary) -> IncidentSummary:
    return IncidentSummary(
        global_id=msg.global_id,
        external_id=msg.external_id,
        occurred_at=_req_ts(msg.occurred_at),
        county=msg.county,
        city=_opt(msg.city),
        location_kind=msg.location_kind,
        conduct=tuple(msg.conduct),
        status=msg.status,
        agencies=tuple(msg.agencies),
        agent_count=msg.agent_count,
        evidence_count=msg.evidence_count,
        state=msg.state,
    )


def query_to_proto(q: SearchQuery) -> pb.SearchIncidentsRequest:
    return pb.SearchIncidentsRequest(
        occurred_from=q.occurred_from,
        occurred_to=q.occurred_to,
        county=q.county,
        location_kind=q.location_kind,
        conduct=list(q.conduct),
        agency=q.agency,
        status=q.status,
        identifier_key=q.identifier_key,
        page_size=q.page_size,
        page_token=q.page_token,
    )


def query_from_proto(msg: pb.SearchIncidentsRequest) -> SearchQuery:
    return SearchQuery(
        occurred_from=msg.occurred_from,
        occurred_to=msg.occurred_to,
        county=msg.county,
        location_kind=msg.location_kind,
        conduct=tuple(msg.conduct),
        agency=msg.agency,
        status=msg.status,
        identifier_key=msg.identifier_key,
        page_size=msg.page_size,
        page_token=msg.page_token,
    )


def page_to_proto(page: SearchPage) -> pb.SearchIncidentsResponse:
    return pb.SearchIncidentsResponse(
        incidents=[summary_to_proto(s) for s in page.incidents],
        next_page_token=page.next_page_token,
    )


def page_from_proto(msg: pb.SearchIncidentsResponse) -> SearchPage:
    return SearchPage(tuple(summary_from_proto(s) for s in msg.incidents), msg.next_page_token)


def report_to_proto(r: IngestReport) -> pb.IngestResponse:
    return pb.IngestResponse(
        imported=r.imported,
        unchanged=r.unchanged,
        rejected=r.rejected,
        evidence_stored=r.evidence_stored,
        evidence_already_held=r.evidence_already_held,
        errors=[
            pb.LineError(line_number=e.line_number, field=e.field, reason=e.reason)
            for e in r.errors
        ],
    )


def report_from_proto(msg: pb.IngestResponse) -> IngestReport:
    return IngestReport(
        imported=msg.imported,
        unchanged=msg.unchanged,
        rejected=msg.rejected,
        evidence_stored=msg.evidence_stored,
        evidence_already_held=msg.evidence_already_held,
        errors=tuple(LineError(e.line_number, e.field, e.reason) for e in msg.errors),
    )
