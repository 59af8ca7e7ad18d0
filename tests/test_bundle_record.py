"""node.bundle_record: an incident written into a manifest reads back, through the import
parser, as the record that was imported (evidence aside), and redactions hold."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from federation.encoding import canonical_json
from node.bundle_record import incident_record, record_from_manifest
from node.config import LimitSettings
from node.importformat import parse_record
from node.ingest import NodeStorage, ingest_file
from node.queries import get_incident
from node.records import IncidentInput, IncidentView
from tests.helpers import make_storage, record, write_jsonl

FULL = record(
    "IL-R-1",
    reported_at="2025-10-04T09:00:00-05:00",
    location={
        "address": "2700 S Pulaski Rd",
        "city": "Chicago",
        "county": "Cook",
        "state": "IL",
        "kind": "school",
        "lat": 41.84361,
        "lon": -87.72,
    },
    sharing="compact",
    narrative="Two agents, one masked — «ICE» written on the vest.\nSecond line.",
    agents=[
        {"name": "Núñez-García, María José", "badge": "HS 0093", "agency": "ICE-HSI",
         "masked": False, "identified_self": True, "body_camera": False, "role": "primary"},
        {"agency": "ICE-ERO", "masked": True, "role": "participant"},
        {"unit": "Chicago SRT", "agency": "CBP-BORTAC", "vehicle_plate": "IL ABC 1234",
         "role": "supervisor"},
    ],
    people=[
        {"role": "victim", "name": "Jane Roe", "contact": "+1 312 555 0100"},
        {"role": "witness"},
    ],
)  # fmt: skip


def _comparable(parsed: IncidentInput) -> IncidentInput:
    return dataclasses.replace(parsed, line_number=0, canonical_hash="", evidence=())


def _parse(value: Any) -> IncidentInput:
    parsed = parse_record(1, value, node_state="IL", limits=LimitSettings())
    assert isinstance(parsed, IncidentInput), parsed
    return parsed


def _view(tmp_path: Path, rec: dict[str, Any]) -> tuple[NodeStorage, IncidentView]:
    storage = make_storage(f"sqlite:///{tmp_path / 'il.db'}", tmp_path)
    assert ingest_file(storage, write_jsonl(tmp_path / "in", [rec]), actor="clerk").imported == 1
    from sqlalchemy import select

    from node import models as m

    with storage.db.read() as s:
        gid = s.scalars(select(m.Incident.global_id)).one()
    view = get_incident(storage.db, storage.fields, gid, actor="test", personal=True)
    return storage, view


def _through_the_wire(value: dict[str, Any]) -> Any:
    """What the requester sees: the record as canonical JSON (no floats allowed), read back."""
    return record_from_manifest(json.loads(canonical_json(value)))


def test_the_record_reads_back_as_it_was_imported(tmp_path: Path) -> None:
    storage, view = _view(tmp_path, FULL)
    written = incident_record(view, redactions=())
    assert "evidence" not in written
    assert written["location"]["lat"] == "41.84361"
    back = _parse(_through_the_wire(written))
    assert _comparable(back) == _comparable(_parse(FULL))
    storage.db.dispose()


@pytest.mark.parametrize(
    ("redactions", "narrative", "people"),
    [
        (("people",), FULL["narrative"], ()),
        (("narrative",), None, "kept"),
        (("narrative", "people"), None, ()),
    ],
)
def test_redactions_leave_people_or_the_narrative_out(
    tmp_path: Path, redactions: tuple[str, ...], narrative: str | None, people: Any
) -> None:
    storage, view = _view(tmp_path, FULL)
    written = incident_record(view, redactions=redactions)
    text = canonical_json(written).decode()
    if "people" in redactions:
        assert "Jane Roe" not in text and "555" not in text
    if "narrative" in redactions:
        assert "Second line" not in text
    back = _parse(_through_the_wire(written))
    assert back.narrative == narrative
    assert back.people == (_parse(FULL).people if people == "kept" else people)
    assert back.agents == _parse(FULL).agents  # the agents' real identifiers always travel
    storage.db.dispose()


def test_an_incident_without_optional_fields(tmp_path: Path) -> None:
    bare = {k: v for k, v in record("IL-R-2").items() if k not in ("narrative", "people")}
    bare["agents"] = []
    storage, view = _view(tmp_path, bare)
    back = _parse(_through_the_wire(incident_record(view, redactions=())))
    assert _comparable(back) == _comparable(_parse(bare))
    storage.db.dispose()


def test_a_view_without_personal_fields_is_refused(tmp_path: Path) -> None:
    storage, view = _view(tmp_path, FULL)
    withheld = dataclasses.replace(view, narrative=None, people=(), restricted_withheld=True)
    with pytest.raises(ValueError, match="personal"):
        incident_record(withheld, redactions=())
    storage.db.dispose()


@pytest.mark.parametrize("bad", ["41.840", "4.184e1", "nan", "inf", "north", ""])
def test_a_coordinate_not_written_by_a_holder_is_refused_by_name(bad: str) -> None:
    value = json.loads(json.dumps(FULL))
    value["location"]["lat"] = bad
    parsed = parse_record(1, record_from_manifest(value), node_state="IL", limits=LimitSettings())
    assert isinstance(parsed, list)
    assert [e.field for e in parsed] == ["location.lat"]
