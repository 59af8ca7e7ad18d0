"""The storage contract for reads, on SQLite and PostgreSQL: search, get, evidence, audit."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select

from crypto.fields import FieldCipher
from node import models as m
from node import queries
from node.errors import InvalidArgumentError, NotFoundError
from node.ingest import NodeStorage, ingest_file
from node.normalize import parse_query_key
from node.records import SearchFilters
from tests.helpers import make_storage, record, write_jsonl

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def storage(database_url: str, tmp_path: Path) -> NodeStorage:
    s = make_storage(database_url, tmp_path / "node")
    path = REPO / "examples" / "incidents.jsonl"
    report = ingest_file(
        s,
        path,
        actor="t",
    )
    assert report.imported == 6
    return s


def ids(storage: NodeStorage, **filters: object) -> list[str]:
    page = queries.search(storage.db, SearchFilters(**filters))  # type: ignore[arg-type]
    return [s.external_id for s in page.incidents]


def key(text: str) -> object:
    return parse_query_key(text, default_state="IL")


def test_search_filters(storage: NodeStorage) -> None:
    from datetime import date

    assert ids(storage, location_kind="school") == ["IL-HL-2025-000123"]
    assert ids(storage, occurred_from=date(2025, 10, 12), occurred_to=date(2025, 10, 15)) == [
        "IL-NW-2025-000007",
        "IL-HL-2025-000140",
    ]
    assert ids(storage, county="COOK", status="reported") == ["IL-HL-2025-000140"]
    assert ids(storage, conduct=("chemical_agent",)) == ["IL-HL-2025-000124"]
    assert ids(storage, agency="ICE-HSI") == ["IL-HL-2025-000124"]
    assert ids(storage, identifier_key=key("name_agency:ICE-ERO:John Smith")) == [
        "IL-HL-2025-000151",
        "IL-HL-2025-000124",
        "IL-HL-2025-000123",
    ]
    assert ids(storage, identifier_key=key("badge:ICE-HSI:hs-0093")) == ["IL-HL-2025-000124"]
    assert ids(storage, identifier_key=key("badge:FBI:1")) == []


def test_occurred_date_is_the_local_date(storage: NodeStorage, tmp_path: Path) -> None:
    from datetime import date

    # 23:30 in Chicago on the 1st is the 2nd in UTC; the local date is what counts.
    rec = record("LATE", occurred_at="2025-11-01T23:30:00-05:00")
    ingest_file(
        storage,
        write_jsonl(tmp_path, [rec]),
        actor="t",
    )
    assert ids(storage, occurred_from=date(2025, 11, 1), occurred_to=date(2025, 11, 1)) == ["LATE"]
    assert ids(storage, occurred_from=date(2025, 11, 2)) == []


def test_paging_is_stable_and_complete(storage: NodeStorage) -> None:
    seen: list[str] = []
    token = ""
    while True:
        page = queries.search(storage.db, SearchFilters(), page_size=4, page_token=token)
        seen += [s.global_id for s in page.incidents]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 6
    with pytest.raises(InvalidArgumentError, match="page_token"):
        queries.search(storage.db, SearchFilters(), page_token="bm90IGEgdG9rZW4")
    with pytest.raises(InvalidArgumentError, match="page_size"):
        queries.search(storage.db, SearchFilters(), page_size=501)


def test_summary_counts(storage: NodeStorage) -> None:
    page = queries.search(storage.db, SearchFilters(location_kind="school"))
    s = page.incidents[0]
    assert (s.agent_count, s.evidence_count, s.agencies) == (2, 2, ("ICE-ERO",))
    assert s.occurred_at.isoformat() == "2025-10-04T07:15:00-05:00"


def test_get_incident_personal_and_not(storage: NodeStorage) -> None:
    gid = queries.search(storage.db, SearchFilters(location_kind="school")).incidents[0].global_id
    full = queries.get_incident(storage.db, storage.fields, gid, actor="ivy", personal=True)
    assert full.narrative and full.people[0].name == "Jane Roe" and full.location.address
    redacted = queries.get_incident(storage.db, storage.fields, gid, actor="ana", personal=False)
    assert redacted.restricted_withheld
    assert (redacted.narrative, redacted.people, redacted.location.address) == (None, (), None)
    with storage.db.read() as s:
        actions = [(a.actor, a.action) for a in s.scalars(select(m.AuditEvent))]
    assert ("ivy", "read_personal") in actions
    assert ("ana", "read_personal") not in actions


def test_personal_fields_cannot_be_read_with_another_key_or_in_another_row(
    storage: NodeStorage,
) -> None:
    from crypto.errors import DecryptionError

    gids = [s.global_id for s in queries.search(storage.db, SearchFilters(county="Cook")).incidents]
    with pytest.raises(DecryptionError):
        queries.get_incident(
            storage.db, FieldCipher(b"\x01" * 32), gids[-1], actor="x", personal=True
        )
    # Move one incident's narrative ciphertext to another incident: it must not open there.
    with storage.db.write() as s:
        rows = s.scalars(select(m.Incident).where(m.Incident.narrative_enc.is_not(None))).all()
        rows[0].narrative_enc, rows[1].narrative_enc = rows[1].narrative_enc, rows[0].narrative_enc
        moved = rows[0].global_id
    with pytest.raises(DecryptionError):
        queries.get_incident(storage.db, storage.fields, moved, actor="x", personal=True)


def test_get_incident_not_found(storage: NodeStorage) -> None:
    with pytest.raises(NotFoundError):
        queries.get_incident(storage.db, storage.fields, "IL-nope", actor="x", personal=False)


def test_evidence_lookup_and_custody(storage: NodeStorage) -> None:
    gid = queries.search(storage.db, SearchFilters(location_kind="school")).incidents[0].global_id
    sha = hashlib.sha256((REPO / "examples" / "media" / "clip1.mp4").read_bytes()).hexdigest()
    evidence_id, view = queries.evidence_item(storage.db, gid, sha)
    assert [c.kind for c in view.custody] == ["collected", "received"]
    queries.record_custody(
        storage.db, evidence_id, kind="viewed", actor="ivy", detail={"via": "test"}, target=gid
    )
    _, view = queries.evidence_item(storage.db, gid, sha)
    assert [c.kind for c in view.custody] == ["collected", "received", "viewed"]
    data = b"".join(storage.blobs.read(sha, chunk_size=4096))
    assert hashlib.sha256(data).hexdigest() == sha
    with pytest.raises(NotFoundError):
        queries.evidence_item(storage.db, gid, "0" * 64)
