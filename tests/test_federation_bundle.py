"""Evidence bundle documents: round trips, strict parsing, forgeries, and every proof checked.

The holder is IL, the requester MN, and CA a third member; NY is not a member. A real
transparency log of IL is built in memory (crypto.merkle), with a checkpoint signed by
IL's log key and cosigned by MN as witness, so that the manifest's proofs are real.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import signing
from crypto.checkpoint import Checkpoint, add_cosignature, sign_checkpoint
from crypto.dsse import Envelope, Signature, sign_envelope
from crypto.merkle import inclusion_proof, leaf_hash, root_hash
from crypto.sealing import SealedStreamInfo, open_stream, seal_stream
from federation.bundle import (
    CUSTODY_TYPE,
    DECISION_TYPE,
    MANIFEST_TYPE,
    MAX_REQUEST_BYTES,
    RECEIPT_TYPE,
    REQUEST_TYPE,
    BundleDecision,
    BundleFormatError,
    BundleManifest,
    BundleReceipt,
    BundleRequest,
    CustodyRecord,
    LoggedEntry,
    ManifestEvidence,
    VerifiedProofs,
    check_manifest_proofs,
    format_time,
    sign_custody,
    sign_decision,
    sign_manifest,
    sign_receipt,
    sign_request,
    verify_custody,
    verify_decision,
    verify_manifest,
    verify_receipt,
    verify_request,
)
from federation.encoding import canonical_json
from federation.index_entry import PAYLOAD_TYPE as ENTRY_TYPE
from federation.index_entry import EntryContent, IndexEntry, sign_entry, withdrawal
from federation.naming import log_origin, log_signer, witness_signer
from tests.helpers import record
from tests.test_federation_roster import CA, IL, MN, NY, Node, roster

ROSTER = roster(1, [IL, MN, CA])
NOW = datetime(2026, 11, 21, 12, 0, 5, tzinfo=UTC)
TIMESTAMP = int(NOW.timestamp())
GID = "IL-44717613-8a84-4971-a218-2ebd1ba3d81e"
OTHER_GID = "IL-5d0c8a4e-1f3b-4c2d-9e8f-0a1b2c3d4e5f"
MN_GID = "MN-44717613-8a84-4971-a218-2ebd1ba3d81e"
REQUEST_ID = "3f2b8c1e-9a4d-4e6f-b1c2-d3e4f5a6b7c8"
BUNDLE_RAW = bytes(range(32))
BUNDLE_ID = BUNDLE_RAW.hex()
# A distinctive value: it must never appear in an error message.
SECRET = "Quokka-Zebra-7731"

F0, F1, F2 = b"first file: a phone video", b"a file MN holds already", b"third file"
SHA0, SHA1, SHA2 = (hashlib.sha256(f).hexdigest() for f in (F0, F1, F2))
SHA_OTHER = hashlib.sha256(b"another file").hexdigest()


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


# --- documents -----------------------------------------------------------------------

REQUEST = BundleRequest(
    request_id=REQUEST_ID,
    requester="MN",
    holder="IL",
    incident=GID,
    purpose=f"Investigation {SECRET}\nsecond line\twith a tab, and non-ASCII: é ✓",
    matter="MN-2026:joint.case_1",
    requested_by="analyst.one",
    requested_at=NOW,
    held_evidence=(SHA1,),
)
APPROVAL = BundleDecision(
    request_id=REQUEST_ID,
    requester="MN",
    holder="IL",
    decision="approved",
    reason=None,
    redactions=("people",),
    decided_by="policy:compact_auto",
    decided_at=NOW,
    bundle_id=BUNDLE_ID,
)
DENIAL = BundleDecision(
    request_id=REQUEST_ID,
    requester="MN",
    holder="IL",
    decision="denied",
    reason=f"Not shared: {SECRET}",
    redactions=(),
    decided_by="reviewer.two",
    decided_at=NOW,
    bundle_id=None,
)


def custody(
    position: int,
    sha256: str,
    event_id: int,
    kind: str = "collected",
    *,
    global_id: str = GID,
    state: str = "IL",
) -> CustodyRecord:
    return CustodyRecord(
        state=state,
        global_id=global_id,
        evidence_sha256=sha256,
        evidence_position=position,
        event_id=event_id,
        kind=kind,
        at=NOW,
        actor="import",
        detail={"source": "hotline", "count": 2, "nested": {"list": [1, None, True, "x"]}},
    )


CUSTODY = custody(0, SHA0, 1)
CONTENT = EntryContent(
    day="2025-10-04",
    county="Cook",
    location_kind="school",
    conduct=("masked_agent", "warrantless_arrest"),
    status="substantiated",
    agents=(),
    evidence={"application/pdf": 1, "image/jpeg": 1, "video/mp4": 1},
)
ENTRY = IndexEntry("IL", GID, 1, CONTENT)


def env_bytes(envelope: Envelope) -> bytes:
    return envelope.to_json()


# IL's transparency log: what each index holds is named so that tests can pick entries.
LEAVES: list[bytes] = [
    b"an entry of another kind",  # 0: not an envelope
    env_bytes(sign_entry(ENTRY, IL.key)),  # 1: the incident's index entry
    b"another entry",  # 2
    env_bytes(sign_entry(IndexEntry("IL", OTHER_GID, 1, CONTENT), IL.key)),  # 3
    env_bytes(sign_entry(withdrawal("IL", GID, revision=2), IL.key)),  # 4
    env_bytes(sign_custody(custody(0, SHA0, 1), IL.key)),  # 5: item 0
    env_bytes(sign_custody(custody(0, SHA0, 2, "viewed"), IL.key)),  # 6: item 0
    env_bytes(sign_custody(custody(1, SHA1, 3), IL.key)),  # 7: item 1
    env_bytes(sign_custody(custody(3, SHA2, 4), IL.key)),  # 8: item 2 (position 3)
    env_bytes(sign_custody(custody(0, SHA_OTHER, 5), IL.key)),  # 9: another file
    env_bytes(sign_custody(custody(0, SHA0, 6), MN.key)),  # 10: signed by MN
    env_bytes(sign_custody(custody(0, SHA0, 7, global_id=OTHER_GID), IL.key)),  # 11
    b"",  # 12: filled below with the bytes of 5 (one event logged twice)
    env_bytes(sign_entry(ENTRY, MN.key)),  # 13: IL's entry, signed by MN
    env_bytes(sign_custody(custody(1, SHA2, 8), IL.key)),  # 14: item 2's file, position 1
    b"the latest entry",  # 15
]
LEAVES[12] = LEAVES[5]
HASHES = [leaf_hash(x) for x in LEAVES]


def logged(index: int) -> LoggedEntry:
    return LoggedEntry(index, LEAVES[index], tuple(inclusion_proof(HASHES, index)))


def note(
    *,
    log_key: signing.SigningKey = IL.key,
    witnesses: Sequence[Node] = (MN,),
    size: int = len(LEAVES),
    origin: str = "IL",
) -> str:
    checkpoint = Checkpoint(log_origin(origin), size, root_hash(HASHES[:size]))
    text = sign_checkpoint(checkpoint, log_signer(origin, log_key))
    for w in witnesses:
        line = witness_signer(w.state, w.key).cosign(checkpoint, timestamp=TIMESTAMP)
        text = add_cosignature(text, line)
    return text


def sealed(data: bytes, bundle_id: bytes = BUNDLE_RAW) -> tuple[bytes, SealedStreamInfo]:
    out = io.BytesIO()
    info = seal_stream(
        io.BytesIO(data), out, [MN.enc.public_key], chunk_size=1024, bundle_id=bundle_id
    )
    return out.getvalue(), info


SEALED, SEALED_INFO = sealed(F0 + F2)
ITEM0 = ManifestEvidence(
    position=0,
    sha256=SHA0,
    size=len(F0),
    media_type="video/mp4",
    file_name="clip.mp4",
    captured_at="2025-10-04T07:15:00-05:00",
    captured_by="bystander",
    description=f"phone video\r\n{SECRET}",
    delivery="included",
    offset=0,
    custody=(logged(5), logged(6)),
)
ITEM1 = ManifestEvidence(
    position=1,
    sha256=SHA1,
    size=len(F1),
    media_type="application/pdf",
    file_name="report.pdf",
    captured_at=None,
    captured_by=None,
    description=None,
    delivery="held",
    offset=None,
    custody=(logged(7),),
)
ITEM2 = ManifestEvidence(
    position=3,
    sha256=SHA2,
    size=len(F2),
    media_type="image/jpeg",
    file_name="photo.jpg",
    captured_at="2025-10-04T12:15:00.5Z",
    captured_by=None,
    description=None,
    delivery="included",
    offset=len(F0),
    custody=(logged(8),),
)
INCIDENT = {k: v for k, v in record("IL-HL-1").items() if k != "people"}
MANIFEST = BundleManifest(
    bundle_id=BUNDLE_ID,
    request_id=REQUEST_ID,
    requester="MN",
    holder="IL",
    global_id=GID,
    incident=INCIDENT,
    redactions=("people",),
    evidence=(ITEM0, ITEM1, ITEM2),
    index_entry=logged(1),
    checkpoint=note(),
    sealed_stream=SEALED_INFO,
    created_at=NOW,
)

RECEIPT = BundleReceipt(
    bundle_id=BUNDLE_ID,
    request_id=REQUEST_ID,
    requester="MN",
    holder="IL",
    manifest_sha256=SHA2,
    sealed_sha256=SHA_OTHER,
    received_at=NOW,
)

Document = BundleRequest | BundleDecision | CustodyRecord | BundleManifest | BundleReceipt
DOCS: dict[str, tuple[Document, Callable[[bytes], Document]]] = {
    "request": (REQUEST, BundleRequest.from_payload),
    "approval": (APPROVAL, BundleDecision.from_payload),
    "denial": (DENIAL, BundleDecision.from_payload),
    "custody": (CUSTODY, CustodyRecord.from_payload),
    "manifest": (MANIFEST, BundleManifest.from_payload),
    "receipt": (RECEIPT, BundleReceipt.from_payload),
}


def obj_of(doc: Document) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(doc.payload())
    return obj


def parse_error(name: str, obj: object) -> str:
    """The message of the BundleFormatError raised when parsing `obj` as document `name`."""
    _doc, parse = DOCS[name]
    with pytest.raises(BundleFormatError) as info:
        parse(canonical_json(obj))
    return str(info.value)


_DELETE = object()


def changed(name: str, path: Sequence[str | int], value: object) -> dict[str, Any]:
    """Document `name` as a JSON object with the value at `path` replaced (or deleted)."""
    obj = obj_of(DOCS[name][0])
    target: Any = obj
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


# --- round trips ---------------------------------------------------------------------


def test_request_round_trip() -> None:
    envelope = sign_request(REQUEST, MN.key)
    assert envelope.payload_type == REQUEST_TYPE
    assert verify_request(envelope, ROSTER, requester="MN") == REQUEST
    assert verify_request(Envelope.from_json(envelope.to_json()), ROSTER, requester="MN") == REQUEST


@pytest.mark.parametrize(
    "decision",
    [
        APPROVAL,
        DENIAL,
        replace(
            APPROVAL, reason="ok", redactions=("narrative", "people"), decided_by="reviewer.two"
        ),
    ],
)
def test_decision_round_trip(decision: BundleDecision) -> None:
    envelope = sign_decision(decision, IL.key)
    assert envelope.payload_type == DECISION_TYPE
    assert verify_decision(envelope, ROSTER, holder="IL") == decision
    assert decision.approved == (decision.decision == "approved")


def test_custody_round_trip() -> None:
    envelope = sign_custody(CUSTODY, IL.key)
    assert envelope.payload_type == CUSTODY_TYPE
    assert verify_custody(envelope, ROSTER, state="IL") == CUSTODY


def test_custody_of_another_states_incident() -> None:
    """A requester records custody of evidence a bundle brought it: its own state, the
    holder's global id."""
    record = custody(0, SHA0, 1, "received", state="MN")
    assert verify_custody(sign_custody(record, MN.key), ROSTER, state="MN") == record


def test_receipt_round_trip() -> None:
    envelope = sign_receipt(RECEIPT, MN.key)
    assert envelope.payload_type == RECEIPT_TYPE
    assert verify_receipt(envelope, ROSTER, requester="MN") == RECEIPT
    assert verify_receipt(Envelope.from_json(envelope.to_json()), ROSTER, requester="MN") == RECEIPT


def test_receipt_signed_by_another_member() -> None:
    with pytest.raises(BundleFormatError, match="bundle receipt: not signed by MN's roster key"):
        verify_receipt(sign_receipt(RECEIPT, IL.key), ROSTER, requester="MN")


def test_receipt_naming_another_requester() -> None:
    forged = sign_envelope(RECEIPT_TYPE, replace(RECEIPT, requester="CA").payload(), [MN.key])
    with pytest.raises(BundleFormatError, match="names another requester"):
        verify_receipt(forged, ROSTER, requester="MN")


def test_manifest_round_trip() -> None:
    envelope = sign_manifest(MANIFEST, IL.key)
    assert envelope.payload_type == MANIFEST_TYPE
    got = verify_manifest(envelope, ROSTER, holder="IL", requester="MN")
    assert got == MANIFEST
    assert got.incident == INCIDENT
    assert got.evidence[1].offset is None
    assert got.index_entry.leaf_hash() == HASHES[1]


@pytest.mark.parametrize(
    "doc",
    [
        replace(REQUEST, matter=None, held_evidence=()),
        replace(REQUEST, held_evidence=tuple(sorted(sha(i) for i in range(1000)))),
        replace(CUSTODY, detail={}),
        replace(MANIFEST, redactions=(), evidence=(), sealed_stream=sealed(b"")[1]),
    ],
    ids=["request-minimal", "request-1000-held", "custody-empty-detail", "manifest-empty"],
)
def test_other_round_trips(doc: Document) -> None:
    assert type(doc).from_payload(doc.payload()) == doc


@pytest.mark.parametrize("name", sorted(DOCS))
def test_payload_is_canonical_json(name: str) -> None:
    doc, parse = DOCS[name]
    payload = doc.payload()
    assert payload == canonical_json(json.loads(payload))
    assert payload.isascii()
    assert parse(payload) == doc
    assert parse(payload).payload() == payload


def test_payload_encodings() -> None:
    obj = obj_of(REQUEST)
    assert obj["format"] == "compact-bundle-request-v1"
    assert obj["requested_at"] == "2026-11-21T12:00:05Z"
    assert obj["held_evidence"] == [SHA1]
    assert obj_of(APPROVAL)["format"] == "compact-bundle-decision-v1"
    assert obj_of(CUSTODY)["format"] == "compact-custody-event-v1"
    m = obj_of(MANIFEST)
    assert m["format"] == "compact-bundle-manifest-v1"
    assert m["sealed_stream"] == SEALED_INFO.to_manifest_dict()
    assert m["index_entry"]["proof"] == [h.hex() for h in logged(1).proof]
    assert m["evidence"][1]["offset"] is None
    assert format_time(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0999-01-02T03:04:05Z"


def test_old_years_round_trip() -> None:
    early = replace(REQUEST, requested_at=datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert BundleRequest.from_payload(early.payload()) == early


def test_stream_order_carves_the_sealed_plaintext() -> None:
    out = io.BytesIO()
    info = open_stream(io.BytesIO(SEALED), out, MN.enc, expected=MANIFEST.sealed_stream)
    assert info == MANIFEST.sealed_stream
    plaintext = out.getvalue()
    order = MANIFEST.stream_order()
    assert [item.position for item in order] == [0, 3]
    for item in order:
        assert item.offset is not None
        piece = plaintext[item.offset : item.offset + item.size]
        assert hashlib.sha256(piece).hexdigest() == item.sha256


def test_fields_with_personal_data_are_left_out_of_repr() -> None:
    for doc in (REQUEST, DENIAL, MANIFEST, ITEM0):
        assert SECRET not in repr(doc)


def test_documents_keep_private_copies_of_json_objects() -> None:
    detail: dict[str, Any] = {"a": [1]}
    rec = replace(CUSTODY, detail=detail)
    detail["a"].append(2)
    assert rec.detail == {"a": [1]}
    incident = dict(INCIDENT)
    manifest = replace(MANIFEST, incident=incident)
    incident["evidence"] = []
    assert "evidence" not in manifest.incident


# --- closed schemas ------------------------------------------------------------------

FIELD_CASES = [(name, key) for name in sorted(DOCS) for key in sorted(obj_of(DOCS[name][0]))]


@pytest.mark.parametrize(("name", "key"), FIELD_CASES)
def test_a_missing_field_is_refused(name: str, key: str) -> None:
    assert f"missing field {key}" in parse_error(name, changed(name, [key], _DELETE))


@pytest.mark.parametrize("name", sorted(DOCS))
def test_an_unknown_field_is_refused(name: str) -> None:
    message = parse_error(name, changed(name, [SECRET], "x"))
    assert "unknown field" in message
    assert SECRET not in message


NESTED = [
    ["evidence", 0],
    ["evidence", 0, "custody", 0],
    ["index_entry"],
]


@pytest.mark.parametrize("path", NESTED, ids=str)
def test_nested_objects_are_closed_too(path: list[str | int]) -> None:
    obj = obj_of(MANIFEST)
    target: Any = obj
    for key in path:
        target = target[key]
    target["extra"] = 1
    where = ".".join(str(k) for k in path).replace(".0", "[0]")
    assert f"{where}: has an unknown field" in parse_error("manifest", obj)
    first = sorted(k for k in target if k != "extra")[0]
    del target["extra"]
    del target[first]
    assert f"{where}: missing field {first}" in parse_error("manifest", obj)


def test_sealed_stream_entry_is_closed() -> None:
    obj = obj_of(MANIFEST)
    obj["sealed_stream"]["extra"] = 1
    assert "sealed_stream: not a valid sealed stream entry" in parse_error("manifest", obj)
    del obj["sealed_stream"]["extra"]
    del obj["sealed_stream"]["chunk_size"]
    assert "sealed_stream: not a valid sealed stream entry" in parse_error("manifest", obj)


@pytest.mark.parametrize(
    "data",
    [b"", b"{}", b"[]", b"\xff", b"null", b'{"format": 1.5}', b"x" * (MAX_REQUEST_BYTES + 1)],
)
def test_unparseable_payloads(data: bytes) -> None:
    for _name, (_doc, parse) in DOCS.items():
        with pytest.raises(BundleFormatError):
            parse(data)


@pytest.mark.parametrize("name", sorted(DOCS))
def test_non_canonical_payloads(name: str) -> None:
    doc, parse = DOCS[name]
    payload = doc.payload()
    variants = [
        payload.replace(b",", b", ", 1),
        json.dumps(json.loads(payload), sort_keys=False).encode(),
        payload + b"\n",
        json.dumps(
            json.loads(payload), ensure_ascii=False, separators=(",", ":"), sort_keys=True
        ).encode(),
    ]
    for variant in variants:
        if variant == payload:
            continue
        with pytest.raises(BundleFormatError, match="canonical"):
            parse(variant)


def test_a_duplicate_key_is_not_canonical() -> None:
    payload = REQUEST.payload()
    duplicated = payload.replace(b'{"format"', b'{"format":"x","format"', 1)
    with pytest.raises(BundleFormatError, match="canonical"):
        BundleRequest.from_payload(duplicated)


# --- bad values ----------------------------------------------------------------------

BAD_TIMES: list[object] = [
    "2026-11-21T12:00:05+00:00",
    "2026-11-21T12:00:05.000Z",
    "2026-11-21T12:00:05.5Z",
    "2026-11-21 12:00:05Z",
    "2026-11-21T12:00Z",
    "2026-11-21T12:00:05z",
    "2026-11-21T12:00:05",
    "2026-11-21t12:00:05Z",
    "20261121T120005Z",
    "2026-11-21T12:00:05Z\n",
    " 2026-11-21T12:00:05Z",
    "2026-13-21T12:00:05Z",
    "2026-02-30T12:00:05Z",
    "2026-11-21T24:00:00Z",
    "2026-11-21T12:00:60Z",
    "0000-01-01T00:00:00Z",
    "٢٠٢٦-11-21T12:00:05Z",
    "",
    1763726405,
    None,
    [],
]

BAD_TEXT: list[object] = [
    "",
    "a\x00b",
    "a\rb",
    "a\x0bb",
    "a\x7fb",
    "a\x85b",
    "a\ud800b",
    5,
    None,
    [],
]
BAD_NAMES: list[object] = ["", "x" * 101, "a\nb", "a\tb", "a\x00", "a\x9f", "\udfff", 1, None]
BAD_STATES: list[object] = ["XX", "il", "IL ", "", 1, None, ["IL"], {"IL": 1}]
BAD_HEX: list[object] = [SHA0.upper(), SHA0[:63], SHA0 + "0", "g" * 64, SHA0 + "\n", 1, None]
BAD_UUIDS: list[object] = [
    REQUEST_ID.upper(),
    REQUEST_ID.replace("-", ""),
    "{" + REQUEST_ID + "}",
    REQUEST_ID[:-1],
    REQUEST_ID + "\n",
    "urn:uuid:" + REQUEST_ID,
    1,
    None,
]
BAD_INTS: list[object] = [True, False, -1, "0", 2**63, None, [0]]


def _nested(depth: int) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for _ in range(depth):
        obj = {"a": obj}
    return obj


def cases(
    name: str, where: str | list[str | int], values: Sequence[object]
) -> list[tuple[str, list[str | int], object]]:
    path: list[str | int] = [where] if isinstance(where, str) else where
    return [(name, path, v) for v in values]


BAD_VALUES: list[tuple[str, list[str | int], object]] = [
    ("request", ["format"], "compact-bundle-request-v2"),
    ("request", ["format"], None),
    *cases("request", "request_id", BAD_UUIDS),
    *cases("request", "requester", [*BAD_STATES, "IL"]),  # IL: the holder itself
    *cases("request", "holder", BAD_STATES),
    *cases("request", "incident", [MN_GID, "IL-1", GID.upper(), GID + "\n", GID[:-1], None, 7]),
    *cases("request", "purpose", [*BAD_TEXT, "x" * 2001]),
    *cases("request", "matter", ["", "-x", ".x", "a" * 65, "a b", "a/b", "é", 1, []]),
    *cases("request", "requested_by", BAD_NAMES),
    *cases("request", "requested_at", BAD_TIMES),
    *cases(
        "request",
        "held_evidence",
        [
            [SHA2, SHA0] if SHA2 > SHA0 else [SHA0, SHA2],
            [SHA0, SHA0],
            [SHA0.upper()],
            [SHA0[:10]],
            [1],
            SHA0,
            None,
            {"a": SHA0},
            sorted(sha(i) for i in range(1001)),
        ],
    ),
    ("approval", ["format"], "compact-bundle-request-v1"),
    *cases("approval", "request_id", BAD_UUIDS),
    *cases("approval", "requester", [*BAD_STATES, "IL"]),
    *cases("approval", "holder", BAD_STATES),
    *cases("approval", "decision", ["Approved", "maybe", "", None, True]),
    *cases("approval", "reason", [*BAD_TEXT[:-2], "x" * 2001]),  # None is allowed
    *cases(
        "approval",
        "redactions",
        [["people", "narrative"], ["people", "people"], ["faces"], "people", None, [1]],
    ),
    *cases(
        "approval",
        "decided_by",
        [*BAD_NAMES, "policy:", "policy:Auto", "policy:a b", "policy:" + "a" * 41, "policy:x\n"],
    ),
    *cases("approval", "decided_at", BAD_TIMES),
    *cases("approval", "bundle_id", [*BAD_HEX[:-1], None]),  # None: required when approved
    *cases("denial", "reason", [None, "", "x" * 2001, "a\x1b"]),
    *cases("denial", "redactions", [["people"]]),
    *cases("denial", "bundle_id", [BUNDLE_ID]),
    *cases("denial", "decision", ["denied "]),
    ("custody", ["format"], "compact-custody-event-v2"),
    *cases("custody", "state", BAD_STATES),
    *cases("custody", "global_id", ["IL-x", "il-44717613-8a84-4971-a218-2ebd1ba3d81e", None]),
    *cases("custody", "evidence_sha256", BAD_HEX),
    *cases("custody", "evidence_position", BAD_INTS),
    *cases("custody", "event_id", [*BAD_INTS, 0]),
    *cases("custody", "kind", ["destroyed", "Collected", "", None]),
    *cases("custody", "at", BAD_TIMES),
    *cases("custody", "actor", ["", "x" * 1001, "a\x00", "a\x7f", "\udfff", 1, None]),
    *cases(
        "custody",
        "detail",
        [[], "x", None, 1, {"big": "x" * 17_000}, {"k": "\ud800"}, {"k": 2**63}, _nested(40)],
    ),
    ("receipt", ["format"], "compact-bundle-receipt-v2"),
    *cases("receipt", "bundle_id", BAD_HEX),
    *cases("receipt", "request_id", BAD_UUIDS),
    *cases("receipt", "requester", [*BAD_STATES, "IL"]),
    *cases("receipt", "holder", BAD_STATES),
    *cases("receipt", "manifest_sha256", BAD_HEX),
    *cases("receipt", "sealed_sha256", BAD_HEX),
    *cases("receipt", "received_at", BAD_TIMES),
    ("manifest", ["format"], "compact-bundle-manifest-v0"),
    *cases("manifest", "bundle_id", BAD_HEX),
    *cases("manifest", "bundle_id", ["ff" * 32]),  # not the sealed stream's
    *cases("manifest", "request_id", BAD_UUIDS),
    *cases("manifest", "requester", [*BAD_STATES, "IL"]),
    *cases("manifest", "holder", BAD_STATES),
    *cases("manifest", "global_id", [MN_GID, OTHER_GID[:-2], None]),
    *cases(
        "manifest",
        "incident",
        [
            None,
            [],
            "x",
            {**INCIDENT, "evidence": []},
            {k: v for k, v in INCIDENT.items() if k != "external_id"},
            {**INCIDENT, "external_id": 5},
            {**INCIDENT, "people": [{"name": "x"}]},  # redacted, yet present
            {**INCIDENT, "k": 2**63},
        ],
    ),
    *cases("manifest", "redactions", [["people", "people"], ["faces"], "people", None]),
    *cases("manifest", "evidence", [None, {}, "x"]),
    *cases("manifest", "checkpoint", ["", None, 1, "x" * (64 * 1024 + 1), "\ud800"]),
    *cases("manifest", "created_at", BAD_TIMES),
    *cases("manifest", "index_entry", [None, [], "x"]),
    ("manifest", ["index_entry", "log_index"], True),
    ("manifest", ["index_entry", "log_index"], -1),
    ("manifest", ["index_entry", "log_index"], 2**63),
    ("manifest", ["index_entry", "proof"], "ab"),
    ("manifest", ["index_entry", "proof"], ["ab" * 32] * 65),
    ("manifest", ["index_entry", "proof", 0], "AB" * 32),
    ("manifest", ["index_entry", "proof", 0], "ab" * 31),
    ("manifest", ["index_entry", "proof", 0], None),
    ("manifest", ["index_entry", "envelope"], ""),
    ("manifest", ["index_entry", "envelope"], "eyJhIjoxfQ"),  # no padding
    ("manifest", ["index_entry", "envelope"], "eyJh Ijox fQ=="),
    ("manifest", ["index_entry", "envelope"], "eyJhIjoxfR=="),  # stray bits: not canonical
    ("manifest", ["index_entry", "envelope"], "_-8="),  # URL-safe alphabet
    ("manifest", ["index_entry", "envelope"], None),
    ("manifest", ["sealed_stream"], None),
    ("manifest", ["sealed_stream", "version"], True),
    ("manifest", ["sealed_stream", "plaintext_size"], 0),
    ("manifest", ["sealed_stream", "bundle_id"], BUNDLE_ID.upper()),
    ("manifest", ["evidence", 0], None),
    *cases("manifest", ["evidence", 0, "position"], BAD_INTS),
    ("manifest", ["evidence", 0, "position"], 1),  # not before item 1's position
    *cases("manifest", ["evidence", 0, "sha256"], BAD_HEX),
    *cases("manifest", ["evidence", 0, "size"], BAD_INTS),
    ("manifest", ["evidence", 0, "size"], len(F0) + 1),  # the offsets after it move
    ("manifest", ["evidence", 2, "size"], len(F2) - 1),  # the total is not the stream's
    *cases(
        "manifest",
        ["evidence", 0, "media_type"],
        ["Video/MP4", "video", "video/", "/mp4", "video/mp4 ", "video/mp4\n", "", None],
    ),
    *cases(
        "manifest",
        ["evidence", 0, "file_name"],
        ["", "a/b", "a\\b", ".", "..", "x" * 256, "a\x00", "a\nb", "a\x85", None, 1],
    ),
    *cases(
        "manifest",
        ["evidence", 0, "captured_at"],
        [
            "2025-10-04 07:15:00-05:00",
            "2025-10-04T07:15-05:00",
            "2025-10-04T07:15:00",
            "2025-10-04T07:15:00.1234567Z",
            "2025-13-04T07:15:00Z",
            "2025-10-04T07:15:00+24:00",
            "2025-10-04T07:15:00-0500",
            "2025-10-04T07:15:00-05:00\n",
            "",
            1,
        ],
    ),
    *cases("manifest", ["evidence", 0, "captured_by"], ["", "x" * 1001, "a\x00", "a\x0c", 1]),
    *cases(
        "manifest",
        ["evidence", 0, "description"],
        ["", "x" * 1_000_001, "a\x00", "a\x7f", "\ud800", []],
    ),
    *cases("manifest", ["evidence", 0, "delivery"], ["sent", "Included", "", None]),
    ("manifest", ["evidence", 0, "delivery"], "held"),  # held, yet with an offset
    ("manifest", ["evidence", 1, "delivery"], "included"),  # included, without an offset
    ("manifest", ["evidence", 1, "offset"], 0),  # held, with an offset
    ("manifest", ["evidence", 2, "offset"], len(F0) + 1),  # a gap in the stream
    ("manifest", ["evidence", 2, "offset"], 0),  # overlaps item 0
    ("manifest", ["evidence", 0, "offset"], True),
    ("manifest", ["evidence", 0, "offset"], None),
    ("manifest", ["evidence", 0, "custody"], None),
    ("manifest", ["evidence", 0, "custody"], [None]),
    ("manifest", ["evidence", 0, "custody", 0, "log_index"], 1),  # the index entry's index
    ("manifest", ["evidence", 2, "custody", 0, "log_index"], 5),  # item 0's event's index
    ("manifest", ["evidence", 0, "custody", 0, "proof", 0], "00"),
]


def expected_where(name: str, path: Sequence[str | int], value: object) -> str:
    """The field that the error message must name for this change."""
    where = ""
    for key in path:
        where += f"[{key}]" if isinstance(key, int) else (f".{key}" if where else key)
    if (
        name in ("request", "approval", "manifest", "receipt")
        and path == ["requester"]
        and value == "IL"
    ):
        return "holder"
    if name == "manifest" and path == ["bundle_id"] and value == "ff" * 32:
        return "sealed_stream.bundle_id"
    if name == "manifest" and path[:1] == ["sealed_stream"]:
        return "sealed_stream"
    if name == "manifest" and (path, value) == (["evidence", 0, "size"], len(F0) + 1):
        return "evidence[2].offset"
    if name == "manifest" and (path, value) == (["evidence", 2, "size"], len(F2) - 1):
        return "sealed_stream.plaintext_size"
    if (
        name == "manifest"
        and path == ["evidence", 0, "position"]
        and type(value) is int
        and value == 1
    ):
        return "evidence[1].position"
    if name == "manifest" and path[-1] == "delivery" and value in ("held", "included"):
        return f"evidence[{path[1]}].offset"
    if name == "manifest" and path[-1] == "incident" and isinstance(value, dict):
        if "external_id" not in value or not isinstance(value["external_id"], str):
            return "incident.external_id"
        if "people" in value:
            return "incident.people"
        return "incident"
    return where


@pytest.mark.parametrize(("name", "path", "value"), BAD_VALUES, ids=repr)
def test_bad_values_are_refused(name: str, path: list[str | int], value: object) -> None:
    message = parse_error(name, changed(name, path, value))
    where = expected_where(name, path, value)
    assert re.search(rf": {re.escape(where)}[:\[.]", message), message
    if isinstance(value, str) and len(value) >= 4 and value != "policy:":
        assert value not in message


def test_a_float_anywhere_is_refused() -> None:
    for name in sorted(DOCS):
        data = DOCS[name][0].payload().replace(b'"format":', b'"format":1.5,"x":', 1)
        with pytest.raises(BundleFormatError, match="not valid JSON"):
            DOCS[name][1](data)


def test_a_too_large_payload_is_refused() -> None:
    detail = {"k": "x" * 40_000}
    data = canonical_json({**obj_of(CUSTODY), "detail": detail})
    with pytest.raises(BundleFormatError, match="larger than"):
        CustodyRecord.from_payload(data)


def test_the_largest_request_fits_its_limit() -> None:
    emoji = "\U0001f600"
    big = replace(
        REQUEST,
        purpose=emoji * 2000,
        requested_by=emoji * 100,
        matter="m" * 64,
        held_evidence=tuple(sorted(sha(i) for i in range(1000))),
    )
    assert BundleRequest.from_payload(big.payload()) == big
    largest = replace(APPROVAL, reason=emoji * 2000, decided_by=emoji * 100)
    assert BundleDecision.from_payload(largest.payload()) == largest


def test_a_manifest_too_large_is_not_signed() -> None:
    _data, empty = sealed(b"")
    items = tuple(
        ManifestEvidence(
            i, sha(i), 1, "text/plain", "f.txt", None, None, "\U0001f600" * 4000, "held", None, ()
        )
        for i in range(100)
    )
    big = replace(MANIFEST, evidence=items, sealed_stream=empty)
    with pytest.raises(BundleFormatError, match="larger than"):
        sign_manifest(big, IL.key)


# --- construction --------------------------------------------------------------------


def untyped(value: object) -> Any:
    """`value`, hidden from the type checker: for constructing what the types forbid."""
    return value


NAIVE = datetime(2026, 11, 21, 12, 0, 5)
NON_UTC = datetime(2026, 11, 21, 12, 0, 5, tzinfo=timezone(timedelta(hours=-5)))
FRACTION = NOW.replace(microsecond=1)


@pytest.mark.parametrize(
    "make",
    [
        lambda: replace(REQUEST, requested_at=NAIVE),
        lambda: replace(REQUEST, requested_at=NON_UTC),
        lambda: replace(REQUEST, requested_at=FRACTION),
        lambda: replace(REQUEST, requested_at=untyped("2026-11-21T12:00:05Z")),
        lambda: replace(REQUEST, held_evidence=untyped([SHA1])),
        lambda: replace(REQUEST, holder="MN"),
        lambda: replace(APPROVAL, decided_at=NAIVE),
        lambda: replace(APPROVAL, redactions=untyped(["people"])),
        lambda: replace(APPROVAL, bundle_id=None),
        lambda: replace(DENIAL, reason=None),
        lambda: replace(DENIAL, redactions=("people",)),
        lambda: replace(DENIAL, bundle_id=BUNDLE_ID),
        lambda: replace(CUSTODY, at=NAIVE),
        lambda: replace(CUSTODY, at=NON_UTC),
        lambda: replace(CUSTODY, detail={"x": 1.5}),
        lambda: replace(CUSTODY, detail=untyped({1: "x"})),
        lambda: replace(CUSTODY, detail={"x": (1, 2)}),
        lambda: replace(CUSTODY, detail={"x": b"raw"}),
        lambda: replace(CUSTODY, detail=_nested(40)),
        lambda: replace(MANIFEST, created_at=NAIVE),
        lambda: replace(MANIFEST, evidence=untyped([ITEM0, ITEM1, ITEM2])),
        lambda: replace(MANIFEST, evidence=(ITEM1, ITEM0, ITEM2)),
        lambda: replace(MANIFEST, evidence=(ITEM0, ITEM1)),  # the total is not the stream's
        lambda: replace(
            MANIFEST, evidence=(ITEM0, replace(ITEM1, delivery="included", offset=len(F0)), ITEM2)
        ),
        lambda: replace(MANIFEST, sealed_stream=sealed(F0 + F2, bytes(32))[1]),
        lambda: replace(MANIFEST, incident={**INCIDENT, "evidence": []}),
        lambda: replace(MANIFEST, incident={**INCIDENT, "lat": 41.84}),
        lambda: replace(MANIFEST, index_entry=logged(5)),  # the same entry as a custody event
        lambda: replace(MANIFEST, checkpoint=untyped(b"note")),
        lambda: replace(MANIFEST, sealed_stream=untyped(SEALED_INFO.to_manifest_dict())),
        lambda: replace(ITEM1, offset=0),
        lambda: replace(ITEM0, offset=None),
        lambda: replace(ITEM0, custody=untyped([logged(5)])),
        lambda: replace(ITEM0, custody=untyped((b"x",))),
        lambda: LoggedEntry(-1, b"x", ()),
        lambda: LoggedEntry(True, b"x", ()),
        lambda: LoggedEntry(0, b"", ()),
        lambda: LoggedEntry(0, untyped("x"), ()),
        lambda: LoggedEntry(0, b"x", (b"\x00" * 31,)),
        lambda: LoggedEntry(0, b"x", (b"\x00" * 32,) * 65),
        lambda: LoggedEntry(0, b"x", untyped([b"\x00" * 32])),
    ],
)
def test_construction_refuses_invalid_documents(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match=r"^[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?)*: "):
        make()


def test_construction_errors_name_the_field_not_the_value() -> None:
    with pytest.raises(ValueError, match=r"^purpose: longer than 2000 characters$") as info:
        replace(REQUEST, purpose=SECRET * 200)
    assert SECRET not in str(info.value)
    with pytest.raises(ValueError, match="requested_at: a naive datetime"):
        replace(REQUEST, requested_at=NAIVE)
    with pytest.raises(
        ValueError, match=r"evidence\[1\]\.offset: not where the items before it end"
    ):
        replace(MANIFEST, evidence=(ITEM0, replace(ITEM2, offset=len(F0) + 1)))
    with pytest.raises(ValueError, match=r"sealed_stream\.bundle_id: not the manifest's bundle_id"):
        replace(MANIFEST, sealed_stream=sealed(F0 + F2, bytes(32))[1])
    with pytest.raises(ValueError, match="offset: must be null for an item the requester holds"):
        replace(ITEM1, offset=0)


def test_decided_by_accepts_users_and_policy_rules() -> None:
    for who in ("reviewer", "Jane Q. Reviewer", "policy:compact", "policy:a_b-9", "x" * 100):
        assert replace(APPROVAL, decided_by=who).decided_by == who


# --- signatures ----------------------------------------------------------------------


def test_request_signed_by_another_member() -> None:
    with pytest.raises(BundleFormatError, match="bundle request: not signed by MN's roster key"):
        verify_request(sign_request(REQUEST, IL.key), ROSTER, requester="MN")


def test_request_signed_by_a_non_member() -> None:
    request = replace(REQUEST, requester="NY")
    with pytest.raises(BundleFormatError, match="NY is not a member of roster version 1"):
        verify_request(sign_request(request, NY.key), ROSTER, requester="NY")
    with pytest.raises(BundleFormatError, match="not signed by MN's roster key"):
        verify_request(sign_request(REQUEST, NY.key), ROSTER, requester="MN")


def test_request_naming_another_requester() -> None:
    request = replace(REQUEST, requester="CA")
    with pytest.raises(BundleFormatError, match="names another requester"):
        verify_request(sign_request(request, MN.key), ROSTER, requester="MN")


def test_request_from_a_member_removed_from_the_roster() -> None:
    without_mn = roster(2, [IL, CA])
    with pytest.raises(BundleFormatError, match="MN is not a member of roster version 2"):
        verify_request(sign_request(REQUEST, MN.key), without_mn, requester="MN")


def test_decision_signed_by_another_member() -> None:
    with pytest.raises(BundleFormatError, match="bundle decision: not signed by IL's roster key"):
        verify_decision(sign_decision(APPROVAL, MN.key), ROSTER, holder="IL")


def test_decision_naming_another_holder() -> None:
    decision = replace(APPROVAL, holder="CA")
    with pytest.raises(BundleFormatError, match="names another holder"):
        verify_decision(sign_decision(decision, IL.key), ROSTER, holder="IL")


def test_custody_signed_by_another_member() -> None:
    with pytest.raises(BundleFormatError, match="custody event: not signed by IL's roster key"):
        verify_custody(sign_custody(CUSTODY, MN.key), ROSTER, state="IL")


def test_custody_naming_another_state() -> None:
    record = custody(0, SHA0, 1, global_id="CA-44717613-8a84-4971-a218-2ebd1ba3d81e", state="CA")
    with pytest.raises(BundleFormatError, match="names another state"):
        verify_custody(sign_custody(record, IL.key), ROSTER, state="IL")


def test_manifest_signed_by_another_member() -> None:
    with pytest.raises(BundleFormatError, match="bundle manifest: not signed by IL's roster key"):
        verify_manifest(sign_manifest(MANIFEST, MN.key), ROSTER, holder="IL", requester="MN")


def test_manifest_naming_another_holder_or_requester() -> None:
    envelope = sign_manifest(MANIFEST, IL.key)
    with pytest.raises(BundleFormatError, match="made for another requester than CA"):
        verify_manifest(envelope, ROSTER, holder="IL", requester="CA")
    ca_manifest = replace(
        MANIFEST, holder="CA", requester="MN", global_id="CA-44717613-8a84-4971-a218-2ebd1ba3d81e"
    )
    forged = sign_envelope(MANIFEST_TYPE, ca_manifest.payload(), [IL.key])
    with pytest.raises(BundleFormatError, match="names another holder"):
        verify_manifest(forged, ROSTER, holder="IL", requester="MN")


@pytest.mark.parametrize(
    ("payload_type", "verify"),
    [
        (DECISION_TYPE, lambda e: verify_request(e, ROSTER, requester="MN")),
        (REQUEST_TYPE, lambda e: verify_decision(e, ROSTER, holder="MN")),
        (ENTRY_TYPE, lambda e: verify_custody(e, ROSTER, state="MN")),
        (REQUEST_TYPE, lambda e: verify_manifest(e, ROSTER, holder="MN", requester="IL")),
        (REQUEST_TYPE + " ", lambda e: verify_request(e, ROSTER, requester="MN")),
    ],
)
def test_payload_type_mismatch(payload_type: str, verify: Callable[[Envelope], object]) -> None:
    envelope = sign_envelope(payload_type, REQUEST.payload(), [MN.key])
    with pytest.raises(BundleFormatError, match="payload type"):
        verify(envelope)


def test_a_request_payload_under_the_decision_type_does_not_parse() -> None:
    envelope = sign_envelope(DECISION_TYPE, REQUEST.payload(), [IL.key])
    with pytest.raises(BundleFormatError, match="bundle decision: missing field"):
        verify_decision(envelope, ROSTER, holder="IL")


def test_an_envelope_without_signatures() -> None:
    envelope = Envelope(REQUEST_TYPE, REQUEST.payload(), ())
    with pytest.raises(BundleFormatError, match="not signed by MN"):
        verify_request(envelope, ROSTER, requester="MN")


def test_a_signature_copied_under_another_key_id() -> None:
    good = sign_request(REQUEST, MN.key)
    other = sign_request(replace(REQUEST, purpose="something else"), MN.key)
    mixed = Envelope(
        REQUEST_TYPE, other.payload, (Signature(MN.key.key_id, good.signatures[0].sig),)
    )
    with pytest.raises(BundleFormatError, match="not signed by MN"):
        verify_request(mixed, ROSTER, requester="MN")


def test_verify_refuses_caller_mistakes() -> None:
    with pytest.raises(ValueError, match="state"):
        verify_request(sign_request(REQUEST, MN.key), ROSTER, requester="mn")
    with pytest.raises(TypeError):
        verify_request(REQUEST.payload(), ROSTER, requester="MN")  # type: ignore[arg-type]


SIGNED_REQUEST = sign_request(REQUEST, MN.key)


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(SIGNED_REQUEST.payload) - 1), mask=st.integers(1, 255))
def test_flipping_any_payload_byte_is_refused(index: int, mask: int) -> None:
    payload = bytearray(SIGNED_REQUEST.payload)
    payload[index] ^= mask
    tampered = Envelope(REQUEST_TYPE, bytes(payload), SIGNED_REQUEST.signatures)
    with pytest.raises(BundleFormatError, match="not signed by MN"):
        verify_request(tampered, ROSTER, requester="MN")


# --- the manifest's proofs -----------------------------------------------------------


def test_proofs_verify() -> None:
    proofs = check_manifest_proofs(MANIFEST, ROSTER)
    assert isinstance(proofs, VerifiedProofs)
    assert proofs.checkpoint_size == len(LEAVES)
    assert proofs.root == root_hash(HASHES)
    assert proofs.witnesses == ("compact-witness/MN",)
    assert proofs.index_entry == ENTRY
    assert proofs.custody == (
        (custody(0, SHA0, 1), custody(0, SHA0, 2, "viewed")),
        (custody(1, SHA1, 3),),
        (custody(3, SHA2, 4),),
    )


def test_proofs_after_a_round_trip_and_with_two_witnesses() -> None:
    manifest = replace(MANIFEST, checkpoint=note(witnesses=(CA, MN)))
    parsed = verify_manifest(sign_manifest(manifest, IL.key), ROSTER, holder="IL", requester="MN")
    proofs = check_manifest_proofs(parsed, ROSTER)
    assert proofs.witnesses == ("compact-witness/CA", "compact-witness/MN")


def test_proofs_of_a_manifest_without_evidence() -> None:
    manifest = replace(MANIFEST, evidence=(), sealed_stream=sealed(b"")[1])
    assert check_manifest_proofs(manifest, ROSTER).custody == ()


def with_custody(changes: dict[int, tuple[LoggedEntry, ...]]) -> BundleManifest:
    items = tuple(
        replace(item, custody=changes.get(i, item.custody))
        for i, item in enumerate(MANIFEST.evidence)
    )
    return replace(MANIFEST, evidence=items)


def flipped(entry: LoggedEntry, hash_index: int = 0) -> LoggedEntry:
    proof = list(entry.proof)
    proof[hash_index] = bytes([proof[hash_index][0] ^ 1]) + proof[hash_index][1:]
    return replace(entry, proof=tuple(proof))


PROOF_FAILURES: list[tuple[str, BundleManifest, str]] = [
    (
        "wrong log key",
        replace(MANIFEST, checkpoint=note(log_key=MN.key)),
        "checkpoint: does not verify as IL's log",
    ),
    (
        "another log",
        replace(MANIFEST, checkpoint=note(origin="MN", log_key=MN.key)),
        "checkpoint: does not verify as IL's log",
    ),
    (
        "no cosignature",
        replace(MANIFEST, checkpoint=note(witnesses=())),
        "checkpoint: not cosigned by any other member",
    ),
    (
        "cosigned by the holder",
        replace(MANIFEST, checkpoint=note(witnesses=(IL,))),
        "checkpoint: not cosigned by any other member",
    ),
    (
        "cosigned by a non-member",
        replace(MANIFEST, checkpoint=note(witnesses=(NY,))),
        "checkpoint: not cosigned by any other member",
    ),
    (
        "a cosignature of another checkpoint",
        replace(
            MANIFEST,
            checkpoint=add_cosignature(
                note(witnesses=()),
                witness_signer("MN", MN.key).cosign(
                    Checkpoint(log_origin("IL"), 3, root_hash(HASHES[:3])), timestamp=TIMESTAMP
                ),
            ),
        ),
        "checkpoint: does not verify as IL's log",
    ),
    ("not a note", replace(MANIFEST, checkpoint="hello"), "checkpoint: does not verify"),
    (
        "a smaller tree",
        replace(MANIFEST, checkpoint=note(size=10)),
        "index_entry: inclusion proof does not verify",
    ),
    (
        "tampered proof",
        replace(MANIFEST, index_entry=flipped(logged(1))),
        "index_entry: inclusion proof does not verify",
    ),
    (
        "tampered last proof hash",
        replace(MANIFEST, index_entry=flipped(logged(1), -1)),
        "index_entry: inclusion proof does not verify",
    ),
    (
        "truncated proof",
        replace(MANIFEST, index_entry=replace(logged(1), proof=logged(1).proof[:-1])),
        "index_entry: inclusion proof does not verify",
    ),
    (
        "wrong log index",
        replace(MANIFEST, index_entry=replace(logged(1), log_index=2)),
        "index_entry: inclusion proof does not verify",
    ),
    (
        "index past the tree",
        replace(MANIFEST, index_entry=replace(logged(1), log_index=len(LEAVES))),
        "index_entry: inclusion proof does not verify",
    ),
    (
        "entry of another incident",
        replace(MANIFEST, index_entry=logged(3)),
        "index_entry: the entry of another incident",
    ),
    ("withdrawal", replace(MANIFEST, index_entry=logged(4)), "index_entry: a withdrawal"),
    (
        "entry signed by another member",
        replace(MANIFEST, index_entry=logged(13)),
        "index_entry: the entry is not signed by IL's roster key",
    ),
    (
        "entry not an envelope",
        replace(MANIFEST, index_entry=logged(0)),
        "index_entry: not a DSSE envelope",
    ),
    (
        "a custody record as the entry",
        replace(MANIFEST, index_entry=logged(9)),
        "index_entry: the entry is not signed by IL's roster key",
    ),
    (
        "custody of another item",
        with_custody({0: (logged(7),), 1: ()}),
        "evidence[0].custody[0]: a custody event of another evidence item",
    ),
    (
        "custody of another position",
        with_custody({2: (logged(14),)}),
        "evidence[2].custody[0]: a custody event of another evidence item",
    ),
    (
        "custody of another file",
        with_custody({0: (logged(5), logged(9))}),
        "evidence[0].custody[1]: a custody event of another evidence item",
    ),
    (
        "custody of another incident",
        with_custody({0: (logged(11),)}),
        "evidence[0].custody[0]: a custody event of another incident",
    ),
    (
        "custody signed by another member",
        with_custody({2: (logged(8), logged(10))}),
        "evidence[2].custody[1]: custody event: not signed by IL's roster key",
    ),
    (
        "custody that is an index entry",
        with_custody({0: (logged(3),)}),
        "evidence[0].custody[0]: custody event: the envelope's payload type",
    ),
    (
        "custody not an envelope",
        with_custody({0: (logged(2),)}),
        "evidence[0].custody[0]: not a DSSE envelope",
    ),
    (
        "the same event twice",
        with_custody({0: (logged(5), logged(12))}),
        "evidence[0].custody[1]: the same custody event twice",
    ),
    (
        "tampered custody proof",
        with_custody({2: (flipped(logged(8)),)}),
        "evidence[2].custody[0]: inclusion proof does not verify",
    ),
    (
        "custody at a wrong index",
        with_custody({2: (replace(logged(8), log_index=9),)}),
        "evidence[2].custody[0]: inclusion proof does not verify",
    ),
]


@pytest.mark.parametrize(
    ("manifest", "message"),
    [(m, msg) for _, m, msg in PROOF_FAILURES],
    ids=[n for n, _, _ in PROOF_FAILURES],
)
def test_proof_failures(manifest: BundleManifest, message: str) -> None:
    with pytest.raises(BundleFormatError) as info:
        check_manifest_proofs(manifest, ROSTER)
    assert message in str(info.value)
    assert SECRET not in str(info.value)


def test_proofs_need_the_holder_in_the_roster() -> None:
    with pytest.raises(
        BundleFormatError, match="checkpoint: IL is not a member of roster version 2"
    ):
        check_manifest_proofs(MANIFEST, roster(2, [MN, CA]))


def test_proofs_need_another_member_to_witness() -> None:
    with pytest.raises(BundleFormatError, match="no other member to witness"):
        check_manifest_proofs(MANIFEST, roster(2, [IL], threshold=1))


def test_a_witness_that_left_the_roster_does_not_count() -> None:
    with pytest.raises(BundleFormatError, match="not cosigned by any other member"):
        check_manifest_proofs(MANIFEST, roster(2, [IL, CA]))


# --- no values in messages -----------------------------------------------------------

LEAKS: list[tuple[str, list[str | int], object]] = [
    ("request", ["purpose"], SECRET * 200),
    ("request", ["purpose"], SECRET + "\x00"),
    ("request", ["requested_by"], SECRET + "\n"),
    ("request", ["matter"], SECRET + " x"),
    ("request", ["incident"], SECRET),
    ("request", ["requested_at"], SECRET),
    ("request", ["held_evidence"], [SECRET]),
    ("request", ["format"], SECRET),
    ("approval", ["decided_by"], "policy:" + SECRET),
    ("approval", ["reason"], SECRET + "\x07"),
    ("denial", ["bundle_id"], SECRET),
    ("custody", ["detail"], {"note": SECRET * 2000}),
    ("custody", ["kind"], SECRET),
    ("custody", ["actor"], SECRET * 60),
    ("manifest", ["incident"], {**INCIDENT, "evidence": SECRET}),
    ("manifest", ["incident"], {**INCIDENT, "external_id": 5, "narrative": SECRET}),
    ("manifest", ["evidence", 0, "file_name"], SECRET + "/x"),
    ("manifest", ["evidence", 0, "captured_at"], SECRET),
    ("manifest", ["evidence", 0, "description"], SECRET + "\x00"),
    ("manifest", ["index_entry", "envelope"], SECRET),
    ("manifest", ["checkpoint"], SECRET * 5000),
]


def chain(error: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in out:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


@pytest.mark.parametrize(("name", "path", "value"), LEAKS, ids=repr)
def test_error_messages_hold_no_values(name: str, path: list[str | int], value: object) -> None:
    _doc, parse = DOCS[name]
    with pytest.raises(BundleFormatError) as info:
        parse(canonical_json(changed(name, path, value)))
    for error in chain(info.value):
        assert SECRET not in str(error)
        assert SECRET not in repr(error)


def test_the_json_decoder_error_is_not_chained() -> None:
    with pytest.raises(BundleFormatError) as info:
        BundleRequest.from_payload(b'{"purpose": "' + SECRET.encode() + b'"')
    assert [type(e) for e in chain(info.value)] == [BundleFormatError]


def test_parsed_documents_with_secrets_verify_without_leaking() -> None:
    envelope = sign_request(REQUEST, MN.key)
    with pytest.raises(BundleFormatError) as info:
        verify_request(envelope, ROSTER, requester="CA")
    assert SECRET not in str(info.value)
    envelope = sign_decision(DENIAL, IL.key)
    with pytest.raises(BundleFormatError) as info:
        verify_decision(envelope, ROSTER, holder="CA")
    assert SECRET not in str(info.value)
