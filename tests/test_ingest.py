"""Importing: every record kind stored, idempotence, and every bad input named.

Each bad-input test checks the error names the line and field, and that the
database and the blob store are exactly as they were.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from node import models as m
from node.errors import StorageError
from node.importfile import ImportFileError
from node.ingest import NodeStorage, ingest_file
from node.records import IngestReport
from tests.helpers import make_storage, record, small_limits, snapshot, write_jsonl


@pytest.fixture
def storage(database_url: str, tmp_path: Path) -> NodeStorage:
    return make_storage(database_url, tmp_path / "node")


def run(storage: NodeStorage, path: Path, *, skip_invalid: bool = False) -> IngestReport:
    return ingest_file(
        storage,
        path,
        actor="test",
        skip_invalid=skip_invalid,
    )


def with_evidence(
    folder: Path, name: str = "media/clip.mp4", data: bytes = b"video bytes" * 1000
) -> dict[str, Any]:
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return {
        "path": name,
        "media_type": "video/mp4",
        "captured_at": "2025-10-04T07:16:02-05:00",
        "captured_by": "bystander",
    }


def assert_rejected(
    storage: NodeStorage, path: Path, line: int, field: str, reason_part: str
) -> IngestReport:
    before = snapshot(storage)
    report = run(storage, path)
    assert report.imported == 0
    assert any(
        e.line_number == line and e.field == field and reason_part in e.reason
        for e in report.errors
    ), report.errors
    assert snapshot(storage) == before
    return report


# --- what a good import stores -------------------------------------------------------------


def test_import_stores_every_record_kind(storage: NodeStorage, tmp_path: Path) -> None:
    folder = tmp_path / "import"
    ev = with_evidence(folder)
    path = write_jsonl(folder, [record(evidence=[ev]), record("IL-T-2", agents=[], people=[])])
    report = run(storage, path)
    assert (report.imported, report.rejected, report.evidence_stored) == (2, 0, 1)
    with storage.db.read() as s:
        inc = s.scalars(select(m.Incident).where(m.Incident.external_id == "IL-T-1")).one()
        assert inc.global_id.startswith("IL-")
        assert inc.occurred_offset_min == -300
        assert inc.occurred_on.isoformat() == "2025-10-04"
        assert [c.conduct for c in inc.conduct] == ["masked_agent", "warrantless_arrest"]
        keys = {f"{k.kind}:{k.value}" for k in inc.agents[0].keys}
        assert keys == {
            "badge:ICE-ERO:4471",
            "name:john smith",
            "name_agency:ICE-ERO:john smith",
            "plate:IL:ABC1234",
            "unit:ICE-ERO:chicago srt",
        }
        kinds = [c.kind for c in inc.evidence[0].custody]
        assert kinds == ["collected", "received"]
        assert inc.evidence[0].sha256 == hashlib.sha256(b"video bytes" * 1000).hexdigest()
        audit = s.scalars(select(m.AuditEvent).where(m.AuditEvent.action == "ingest")).one()
        assert audit.detail["imported"] == 2


def test_personal_data_is_encrypted_at_rest(storage: NodeStorage, tmp_path: Path) -> None:
    folder = tmp_path / "import"
    plaintext = b"unmistakable evidence content " * 100
    ev = with_evidence(folder, data=plaintext)
    rec = record(evidence=[ev])
    rec["location"]["address"] = "2700 S Pulaski Rd"
    run(storage, write_jsonl(folder, [rec]))
    with storage.db.read() as s:
        row = s.execute(text("SELECT narrative_enc, address_enc FROM incidents")).one()
        people = s.execute(text("SELECT name_enc, contact_enc FROM people")).one()
    for blob, secret in [
        (row[0], b"secret narrative"),
        (row[1], b"Pulaski"),
        (people[0], b"Jane Roe"),
        (people[1], b"555 0100"),
    ]:
        assert blob is not None
        assert secret not in bytes(blob)
    stored = list((storage.blobs.root).rglob("*"))
    files = [p for p in stored if p.is_file() and not p.name.startswith(".")]
    assert len(files) == 1
    assert b"unmistakable" not in files[0].read_bytes()


def test_reimporting_the_same_file_changes_nothing(storage: NodeStorage, tmp_path: Path) -> None:
    folder = tmp_path / "import"
    path = write_jsonl(folder, [record(evidence=[with_evidence(folder)]), record("IL-T-2")])
    assert run(storage, path).imported == 2
    before = snapshot(storage)
    report = run(storage, path)
    assert (report.imported, report.unchanged, report.rejected) == (0, 2, 0)
    after = snapshot(storage)
    # Only the audit log records the second (empty) import.
    before.pop("audit_events"), after.pop("audit_events")
    assert after == before


def test_key_order_and_spacing_do_not_make_a_record_different(
    storage: NodeStorage, tmp_path: Path
) -> None:
    rec = record()
    run(storage, write_jsonl(tmp_path / "a", [rec]))
    reordered = json.dumps(dict(reversed(list(rec.items()))), indent=None, separators=(" ,", " : "))
    report = run(storage, write_jsonl(tmp_path / "b", [reordered]))
    assert (report.imported, report.unchanged) == (0, 1)


def test_identical_duplicate_lines_import_once(storage: NodeStorage, tmp_path: Path) -> None:
    report = run(storage, write_jsonl(tmp_path, [record(), record()]))
    assert (report.imported, report.rejected) == (1, 0)


def test_evidence_shared_by_two_incidents_is_stored_once(
    storage: NodeStorage, tmp_path: Path
) -> None:
    folder = tmp_path / "import"
    ev = with_evidence(folder)
    report = run(
        storage, write_jsonl(folder, [record(evidence=[ev]), record("IL-T-2", evidence=[ev])])
    )
    assert (report.imported, report.evidence_stored) == (2, 1)
    report = run(storage, write_jsonl(folder, [record("IL-T-3", evidence=[ev])], name="more.jsonl"))
    assert (report.evidence_stored, report.evidence_already_held) == (0, 1)


def test_skip_invalid_imports_the_good_lines(storage: NodeStorage, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [record(), "{not json", record("IL-T-3", status="bogus")])
    report = run(storage, path, skip_invalid=True)
    assert (report.imported, report.rejected) == (1, 2)
    assert {e.line_number for e in report.errors} == {2, 3}


def test_csv_form_imports_the_same_record(storage: NodeStorage, tmp_path: Path) -> None:
    header = (
        "external_id,occurred_at,location.county,location.state,location.kind,location.lat,"
        "location.lon,conduct,status,source,agents.0.badge,agents.0.agency,agents.0.masked,"
        "people.0.role,people.0.name\n"
    )
    row = (
        "IL-C-1,2025-10-04T07:15:00-05:00,Cook,IL,street,41.8,-87.7,"
        '"masked_agent; excessive_force",reported,hotline,04471,ICE-ERO,true,victim,Jane Roe\n'
    )
    path = tmp_path / "incidents.csv"
    path.write_text(header + row, encoding="utf-8")
    report = run(storage, path)
    assert report.imported == 1, report.errors
    with storage.db.read() as s:
        obs = s.scalars(select(m.AgentObservation)).one()
        assert obs.masked is True
        assert [f"{k.kind}:{k.value}" for k in obs.keys] == ["badge:ICE-ERO:4471"]


def test_csv_with_an_unknown_column_is_refused(storage: NodeStorage, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("external_id,occured_at\nX,Y\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match="occured_at"):
        run(storage, path)


# --- bad input, named ----------------------------------------------------------------------


def test_malformed_json_line(storage: NodeStorage, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [record(), '{"external_id": "IL-T-2",'])
    assert_rejected(storage, path, 2, "", "not valid JSON")


def test_a_line_that_is_not_an_object(storage: NodeStorage, tmp_path: Path) -> None:
    assert_rejected(
        storage, write_jsonl(tmp_path, [record(), "[1, 2]"]), 2, "", "expected a JSON object"
    )


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"conduct": "masked_agent"}, "conduct", "expected a non-empty list"),
        ({"conduct": []}, "conduct", "expected a non-empty list"),
        ({"conduct": [7]}, "conduct[0]", "expected a string"),
        ({"status": 3}, "status", "expected a string"),
        ({"occurred_at": "2025-10-04T07:15:00"}, "occurred_at", "UTC offset"),
        ({"occurred_at": "2025-02-30T07:15:00Z"}, "occurred_at", "not a valid date"),
        ({"agents": {"name": "x"}}, "agents", "expected a list"),
        ({"agents": ["x"]}, "agents[0]", "expected an object"),
        ({"agents": [{"masked": "yes"}]}, "agents[0].masked", "expected true or false"),
        ({"location": "Chicago"}, "location", "expected an object"),
    ],
)
def test_wrong_type(
    storage: NodeStorage, tmp_path: Path, changes: dict[str, Any], field: str, reason: str
) -> None:
    assert_rejected(storage, write_jsonl(tmp_path, [record(**changes)]), 1, field, reason)


def test_wrong_type_of_a_number(storage: NodeStorage, tmp_path: Path) -> None:
    rec = record()
    rec["location"].update(lat="41.8", lon=-87.7)
    assert_rejected(storage, write_jsonl(tmp_path, [rec]), 1, "location.lat", "expected a number")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"conduct": ["masked_agent", "jaywalking"]}, "conduct[1]"),
        ({"status": "done"}, "status"),
        ({"source": "rumour"}, "source"),
        ({"sharing": "public"}, "sharing"),
        ({"agents": [{"agency": "ICE", "role": "primary"}]}, "agents[0].agency"),
        ({"agents": [{"role": "boss"}]}, "agents[0].role"),
        ({"people": [{"role": "bystander"}]}, "people[0].role"),
    ],
)
def test_unknown_vocabulary_value(
    storage: NodeStorage, tmp_path: Path, changes: dict[str, Any], field: str
) -> None:
    assert_rejected(
        storage,
        write_jsonl(tmp_path, [record(**changes)]),
        1,
        field,
        "not one of the allowed values",
    )


def test_unknown_location_kind(storage: NodeStorage, tmp_path: Path) -> None:
    rec = record()
    rec["location"]["kind"] = "mall"
    assert_rejected(
        storage, write_jsonl(tmp_path, [rec]), 1, "location.kind", "not one of the allowed"
    )


@pytest.mark.parametrize(
    "missing", ["external_id", "occurred_at", "status", "source", "conduct", "location"]
)
def test_missing_required_field(storage: NodeStorage, tmp_path: Path, missing: str) -> None:
    rec = record()
    del rec[missing]
    assert_rejected(storage, write_jsonl(tmp_path, [rec]), 1, missing, "required")


@pytest.mark.parametrize("missing", ["state", "county", "kind"])
def test_missing_required_location_field(
    storage: NodeStorage, tmp_path: Path, missing: str
) -> None:
    rec = record()
    del rec["location"][missing]
    assert_rejected(storage, write_jsonl(tmp_path, [rec]), 1, f"location.{missing}", "required")


def test_unknown_field_is_an_error_not_silently_dropped(
    storage: NodeStorage, tmp_path: Path
) -> None:
    assert_rejected(
        storage, write_jsonl(tmp_path, [record(occured_at="x")]), 1, "occured_at", "unknown field"
    )


def test_incident_of_another_state(storage: NodeStorage, tmp_path: Path) -> None:
    rec = record()
    rec["location"]["state"] = "MN"
    assert_rejected(
        storage, write_jsonl(tmp_path, [rec]), 1, "location.state", "records incidents of IL"
    )


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../outside.mp4", "must not leave the import folder"),
        ("media/../../outside.mp4", "must not leave the import folder"),
        ("/etc/passwd", "relative path"),
        ("C:/evidence.mp4", "relative path"),
        ("media\\clip.mp4", "separator"),
    ],
)
def test_evidence_path_outside_the_import_folder(
    storage: NodeStorage, tmp_path: Path, path: str, reason: str
) -> None:
    folder = tmp_path / "import"
    (tmp_path / "outside.mp4").write_bytes(b"x")
    rec = record(evidence=[{"path": path, "media_type": "video/mp4"}])
    assert_rejected(storage, write_jsonl(folder, [rec]), 1, "evidence[0].path", reason)


def test_evidence_symlink_out_of_the_import_folder(storage: NodeStorage, tmp_path: Path) -> None:
    folder = tmp_path / "import"
    (folder / "media").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not yours")
    (folder / "media" / "link.txt").symlink_to(secret)
    rec = record(evidence=[{"path": "media/link.txt", "media_type": "text/plain"}])
    assert_rejected(
        storage, write_jsonl(folder, [rec]), 1, "evidence[0].path", "outside the import folder"
    )


def test_evidence_symlink_within_the_folder_is_allowed(
    storage: NodeStorage, tmp_path: Path
) -> None:
    folder = tmp_path / "import"
    with_evidence(folder, "media/real.mp4")
    (folder / "media" / "alias.mp4").symlink_to(folder / "media" / "real.mp4")
    rec = record(evidence=[{"path": "media/alias.mp4", "media_type": "video/mp4"}])
    assert run(storage, write_jsonl(folder, [rec])).imported == 1


def test_missing_evidence_file(storage: NodeStorage, tmp_path: Path) -> None:
    rec = record(evidence=[{"path": "media/nowhere.mp4", "media_type": "video/mp4"}])
    assert_rejected(storage, write_jsonl(tmp_path, [rec]), 1, "evidence[0].path", "file not found")


def test_evidence_that_is_a_folder(storage: NodeStorage, tmp_path: Path) -> None:
    (tmp_path / "media").mkdir()
    rec = record(evidence=[{"path": "media", "media_type": "video/mp4"}])
    assert_rejected(
        storage, write_jsonl(tmp_path, [rec]), 1, "evidence[0].path", "not a regular file"
    )


def test_duplicate_external_id_with_different_content_in_one_file(
    storage: NodeStorage, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path, [record(), record(status="closed")])
    assert_rejected(storage, path, 2, "external_id", "appears on line 1 with different content")


def test_duplicate_external_id_with_different_content_than_stored(
    storage: NodeStorage, tmp_path: Path
) -> None:
    run(storage, write_jsonl(tmp_path / "a", [record()]))
    path = write_jsonl(tmp_path / "b", [record("IL-T-9"), record(status="closed")])
    assert_rejected(storage, path, 2, "external_id", "already imported with different content")


def test_changed_evidence_bytes_make_a_record_different(
    storage: NodeStorage, tmp_path: Path
) -> None:
    folder = tmp_path / "import"
    path = write_jsonl(folder, [record(evidence=[with_evidence(folder, data=b"first")])])
    run(storage, path)
    with_evidence(folder, data=b"second")
    assert_rejected(storage, path, 1, "external_id", "already imported with different content")


def test_oversized_field(storage: NodeStorage, tmp_path: Path) -> None:
    storage = make_storage_like(storage, max_text_chars=50)
    rec = record(agents=[{"name": "x" * 51, "agency": "ICE-ERO", "role": "primary"}])
    report = assert_rejected(
        storage, write_jsonl(tmp_path, [rec]), 1, "agents[0].name", "limit of 50"
    )
    assert "xxxx" not in str(report.errors)


def test_oversized_narrative(storage: NodeStorage, tmp_path: Path) -> None:
    storage = make_storage_like(storage, max_narrative_chars=100)
    assert_rejected(
        storage,
        write_jsonl(tmp_path, [record(narrative="n" * 101)]),
        1,
        "narrative",
        "limit of 100",
    )


def test_oversized_line(storage: NodeStorage, tmp_path: Path) -> None:
    storage = make_storage_like(storage, max_line_bytes=2048)
    path = write_jsonl(
        tmp_path, [record(), record("IL-T-2", narrative="n" * 5000), record("IL-T-3")]
    )
    assert_rejected(storage, path, 2, "", "longer than the limit of 2048 bytes")


def test_oversized_evidence_file(storage: NodeStorage, tmp_path: Path) -> None:
    storage = make_storage_like(storage, max_evidence_file_bytes=1000)
    rec = record(evidence=[with_evidence(tmp_path, data=b"z" * 1001)])
    assert_rejected(
        storage, write_jsonl(tmp_path, [rec]), 1, "evidence[0].path", "larger than the limit"
    )


def test_too_many_agents(storage: NodeStorage, tmp_path: Path) -> None:
    storage = make_storage_like(storage, max_list_items=2)
    rec = record(agents=[{"role": "unknown"}] * 3)
    assert_rejected(storage, write_jsonl(tmp_path, [rec]), 1, "agents", "more than the limit")


def test_control_characters(storage: NodeStorage, tmp_path: Path) -> None:
    assert_rejected(
        storage,
        write_jsonl(tmp_path, [record("IL-\u0000-1")]),
        1,
        "external_id",
        "control characters",
    )


def test_non_utf8_line(storage: NodeStorage, tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    good = json.dumps(record()).encode()
    bad = (
        json.dumps(record("IL-T-2", narrative="caf\u00e9"))
        .encode()
        .replace(b"caf\\u00e9", "café".encode("latin-1"))
    )
    path.write_bytes(good + b"\n" + bad + b"\n")
    assert_rejected(storage, path, 2, "", "not valid UTF-8")


def test_non_utf8_csv(storage: NodeStorage, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("external_id,narrative\nX,caf\u00e9\n".encode("latin-1"))
    before = snapshot(storage)
    with pytest.raises(ImportFileError, match="UTF-8"):
        run(storage, path)
    assert snapshot(storage) == before


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_file(storage: NodeStorage, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    before = snapshot(storage)
    with pytest.raises(ImportFileError, match="no records"):
        run(storage, path)
    assert snapshot(storage) == before


def test_every_bad_line_is_reported(storage: NodeStorage, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path, [record("A", status="x"), record("B"), "nope", record("C", source=1)]
    )
    report = assert_rejected(storage, path, 1, "status", "allowed values")
    assert [e.line_number for e in report.errors] == [1, 3, 4]
    assert report.rejected == 3


def test_a_failing_database_write_leaves_no_blob_behind(
    storage: NodeStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import node.ingest as ingest_module

    def boom(*_a: Any, **_k: Any) -> None:
        raise OSError("disk full")

    folder = tmp_path / "import"
    before = snapshot(storage)
    monkeypatch.setattr(ingest_module, "_insert_batch", boom)
    with pytest.raises(StorageError, match="undone"):
        run(storage, write_jsonl(folder, [record(evidence=[with_evidence(folder)])]))
    after = snapshot(storage)
    assert {k: v for k, v in after.items() if k != "blob_files"} == {
        k: v for k, v in before.items() if k != "blob_files"
    }
    assert [f for f in after["blob_files"] if not f.startswith(".")] == []


def test_undo_keeps_a_blob_that_a_committed_import_references(
    storage: NodeStorage, tmp_path: Path
) -> None:
    """Two imports store the same file; the one that fails must not delete the other's."""
    import node.ingest as ingest_module

    folder = tmp_path / "import"
    run(storage, write_jsonl(folder, [record(evidence=[with_evidence(folder)])]))
    sha = hashlib.sha256(b"video bytes" * 1000).hexdigest()
    ingest_module._undo(storage, [sha])
    assert storage.blobs.has(sha)
    orphan = hashlib.sha256(b"orphan").hexdigest()
    (folder / "orphan").write_bytes(b"orphan")
    storage.blobs.put_file(folder / "orphan", orphan)
    ingest_module._undo(storage, [orphan])
    assert not storage.blobs.has(orphan)


def test_a_committed_blob_removed_by_a_concurrent_undo_is_restored(
    storage: NodeStorage, tmp_path: Path
) -> None:
    import node.ingest as ingest_module
    from node.evidence import ResolvedEvidence

    folder = tmp_path / "import"
    run(storage, write_jsonl(folder, [record(evidence=[with_evidence(folder)])]))
    sha = hashlib.sha256(b"video bytes" * 1000).hexdigest()
    storage.blobs.remove(sha)
    ingest_module._ensure_present(
        storage, [ResolvedEvidence(folder / "media/clip.mp4", sha, 11000)]
    )
    assert b"".join(storage.blobs.read(sha, chunk_size=4096)) == b"video bytes" * 1000


def make_storage_like(storage: NodeStorage, **limits: Any) -> NodeStorage:
    from dataclasses import replace

    return replace(storage, limits=small_limits(**limits))
