"""Every protobuf <-> domain conversion round-trips."""

from __future__ import annotations

from datetime import UTC, datetime

from node import serde
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
    Timestamp,
)

T1 = Timestamp.from_aware(datetime.fromisoformat("2025-10-04T07:15:00-05:00"))
T2 = Timestamp.from_aware(datetime.fromisoformat("2025-10-04T12:16:02.250000+00:00"))

EVIDENCE = EvidenceView(
    sha256="ab" * 32,
    size=131072,
    media_type="video/mp4",
    file_name="clip.mp4",
    captured_at=T2,
    captured_by="bystander",
    description="phone video",
    custody=(CustodyView("received", T2, "cli:alice", '{"line": 1}'),),
)


def incident(**changes: object) -> IncidentView:
    base = IncidentView(
        global_id="IL-44717613-8a84-4971-a218-2ebd1ba3d81e",
        external_id="IL-HL-1",
        state="IL",
        occurred_at=T1,
        reported_at=T2,
        location=LocationInput(
            "IL", "Cook", "school", "2700 S Pulaski Rd", "Chicago", 41.84, -87.72
        ),
        conduct=("masked_agent", "warrantless_arrest"),
        status="substantiated",
        source="hotline",
        sharing="index",
        recorded_at=datetime(2026, 11, 21, 5, 0, tzinfo=UTC),
        narrative="text",
        agents=(
            AgentView(
                "primary",
                "ICE-ERO",
                "Smith, John",
                "04471",
                "SRT",
                "IL ABC 1234",
                True,
                False,
                None,
                (IdentifierKey("badge", "ICE-ERO:4471"), IdentifierKey("name", "john smith")),
            ),
            AgentView("unknown", None, None, None, None, None, None, None, None, ()),
        ),
        people=(PersonInput("victim", "Jane Roe", None),),
        evidence=(EVIDENCE,),
        restricted_withheld=False,
    )
    from dataclasses import replace

    return replace(base, **changes)  # type: ignore[arg-type]


def test_incident_round_trip() -> None:
    for v in (
        incident(),
        incident(reported_at=None, narrative=None, people=(), restricted_withheld=True),
        incident(location=LocationInput("IL", "Lake", "street"), evidence=(), agents=()),
    ):
        assert serde.incident_from_proto(serde.incident_to_proto(v)) == v


def test_false_flags_survive_and_unknown_flags_stay_unknown() -> None:
    msg = serde.incident_to_proto(incident())
    assert msg.agents[0].HasField("identified_self") and msg.agents[0].identified_self is False
    assert not msg.agents[0].HasField("body_camera")
    assert not msg.agents[1].HasField("masked")


def test_evidence_round_trip() -> None:
    assert serde.evidence_from_proto(serde.evidence_to_proto(EVIDENCE)) == EVIDENCE


def test_summary_and_page_round_trip() -> None:
    s = IncidentSummary(
        "IL-x", "E-1", T1, "Cook", None, "school", ("other",), "closed", ("FBI",), 2, 1, "IL"
    )
    page = SearchPage((s, s), "token")
    assert serde.page_from_proto(serde.page_to_proto(page)) == page
    assert serde.page_from_proto(serde.page_to_proto(SearchPage(()))) == SearchPage(())


def test_report_round_trip() -> None:
    r = IngestReport(3, 1, 2, 4, 5, (LineError(2, "status", "bad"), LineError(9, "", "not JSON")))
    assert serde.report_from_proto(serde.report_to_proto(r)) == r


def test_offsets_are_kept() -> None:
    msg = serde.incident_to_proto(incident())
    assert msg.occurred_at == "2025-10-04T07:15:00-05:00"


def test_search_query_round_trip() -> None:
    from node.records import SearchQuery

    q = SearchQuery(
        occurred_from="2025-10-01",
        occurred_to="2025-10-31",
        county="Cook",
        location_kind="school",
        conduct=("masked_agent", "other"),
        agency="ICE-ERO",
        status="reported",
        identifier_key="badge:ICE-ERO:04471",
        page_size=20,
        page_token="abc",
    )
    assert serde.query_from_proto(serde.query_to_proto(q)) == q
    assert serde.query_from_proto(serde.query_to_proto(SearchQuery())) == SearchQuery()
