"""Evidence bundles: the signed documents two members exchange (docs/design/bundles.md).

Four documents, each the canonical JSON (federation.encoding) of a closed schema with a
``"format"`` field, signed as a DSSE envelope by one node's Ed25519 roster key and
verified against the roster before its payload is parsed (as index entries are; every
``verify_*`` takes the key history too, federation.keyhistory, for documents signed
before the signer rotated its key):

- ``BundleRequest`` (``REQUEST_TYPE``): a requester asks a holder for an incident's
  bundle; signed by the requester.
- ``BundleDecision`` (``DECISION_TYPE``): the holder approves (naming the bundle id) or
  denies (with a reason); signed by the holder.
- ``CustodyRecord`` (``CUSTODY_TYPE``): one custody event of one evidence item as a node
  signs it and enters it in its own transparency log; signed by that node.
- ``BundleManifest`` (``MANIFEST_TYPE``): what a bundle holds (the incident record, each
  evidence item with its custody entries, the incident's index entry, a checkpoint of the
  holder's log and the sealed stream's values); signed by the holder.
  ``check_manifest_proofs`` checks its checkpoint and every inclusion proof in it.
- ``BundleReceipt`` (``RECEIPT_TYPE``): the requester confirms that it verified and
  stored a bundle (naming the manifest and the sealed stream by their SHA-256); signed by
  the requester and kept by the holder as proof of delivery.

Everything here is pure: no I/O, no database, no clock. Constructors check every field
and raise ``ValueError`` naming the field (a caller's mistake); parsing and verification
of untrusted input raise ``BundleFormatError``, and nothing else, for anything malformed,
forged or inconsistent. No message ever holds a field's value (values may be personal
data): they name the field and the rule it breaks.

Timestamps are UTC with whole seconds, written ``YYYY-MM-DDTHH:MM:SSZ`` and held as
aware ``datetime`` values in UTC. Integers are JSON integers (never booleans) below
2**63. JSON numbers with a fraction are refused everywhere (federation.encoding), so an
incident record must carry no floats.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from crypto import signing
from crypto.dsse import Envelope
from crypto.errors import CryptoError, EncodingError, ThresholdError, VerificationError
from crypto.merkle import leaf_hash, verify_inclusion
from crypto.sealing import SealedStreamInfo
from federation import schema
from federation.encoding import canonical_json
from federation.errors import FederationError
from federation.index_entry import IndexEntry, IndexEntryError, verify_entry
from federation.keyhistory import (
    KeyHistory,
    member_log_verifiers,
    verify_member_checkpoint,
    witness_verifiers,
)
from federation.naming import log_origin
from federation.roster import Roster
from federation.schema import CONTROL_IMPORT as _CONTROL_IMPORT
from federation.schema import CONTROL_NAME as _CONTROL_NAME
from federation.schema import HASH_SIZE as _HASH_SIZE
from federation.schema import SURROGATE as _SURROGATE
from federation.schema import D as _D
from federation.schema import as_list as _list
from federation.schema import as_tuple as _tuple
from federation.schema import b64 as _b64
from federation.schema import check_format as _format
from federation.schema import check_time as _time
from federation.schema import fail as _fail
from federation.schema import fields as _fields
from federation.schema import format_time
from federation.schema import global_id as _global_id
from federation.schema import hash_hex as _hash_hex
from federation.schema import hex64 as _hex64
from federation.schema import integer as _int
from federation.schema import json_object as _json_object
from federation.schema import match as _match
from federation.schema import name as _name
from federation.schema import one_of as _one_of
from federation.schema import opt_str as _opt_str
from federation.schema import parse_time as _parse_time
from federation.schema import request_id as _request_id
from federation.schema import set_field as _set
from federation.schema import sign as _sign
from federation.schema import sorted_unique as _sorted_unique
from federation.schema import state as _state
from federation.schema import string as _str
from federation.schema import text as _text
from federation.schema import within as _within

__all__ = [
    "CUSTODY_FORMAT",
    "CUSTODY_KINDS",
    "CUSTODY_TYPE",
    "DECISIONS",
    "DECISION_FORMAT",
    "DECISION_TYPE",
    "DELIVERIES",
    "MANIFEST_FORMAT",
    "MANIFEST_TYPE",
    "MAX_CHECKPOINT_BYTES",
    "MAX_CUSTODY_BYTES",
    "MAX_CUSTODY_EVENTS",
    "MAX_DECISION_BYTES",
    "MAX_DETAIL_BYTES",
    "MAX_EVIDENCE",
    "MAX_HELD_EVIDENCE",
    "MAX_LOGGED_ENVELOPE_BYTES",
    "MAX_MANIFEST_BYTES",
    "MAX_PROOF_HASHES",
    "MAX_REQUEST_BYTES",
    "RECEIPT_FORMAT",
    "RECEIPT_TYPE",
    "REDACTIONS",
    "REQUEST_FORMAT",
    "REQUEST_TYPE",
    "BundleDecision",
    "BundleFormatError",
    "BundleManifest",
    "BundleReceipt",
    "BundleRequest",
    "CustodyRecord",
    "LoggedEntry",
    "ManifestEvidence",
    "VerifiedProofs",
    "check_manifest_proofs",
    "format_time",
    "sign_custody",
    "sign_decision",
    "sign_manifest",
    "sign_receipt",
    "sign_request",
    "verify_custody",
    "verify_decision",
    "verify_manifest",
    "verify_receipt",
    "verify_request",
]

REQUEST_TYPE: Final = "application/vnd.compact.bundle-request.v1+json"
REQUEST_FORMAT: Final = "compact-bundle-request-v1"
DECISION_TYPE: Final = "application/vnd.compact.bundle-decision.v1+json"
DECISION_FORMAT: Final = "compact-bundle-decision-v1"
MANIFEST_TYPE: Final = "application/vnd.compact.bundle-manifest.v1+json"
MANIFEST_FORMAT: Final = "compact-bundle-manifest-v1"
CUSTODY_TYPE: Final = "application/vnd.compact.custody-event.v1+json"
CUSTODY_FORMAT: Final = "compact-custody-event-v1"
RECEIPT_TYPE: Final = "application/vnd.compact.bundle-receipt.v1+json"
RECEIPT_FORMAT: Final = "compact-bundle-receipt-v1"

CUSTODY_KINDS: Final = ("collected", "received", "copied", "viewed", "sent", "exported")
REDACTIONS: Final = ("narrative", "people")
DECISIONS: Final = ("approved", "denied")
DELIVERIES: Final = ("included", "held")

# Every request and decision that can be constructed fits its limit: 1,000 held SHA-256
# values are 67,000 bytes, and a text of 2,000 characters outside the BMP is 24,000
# bytes of \u escapes.
MAX_REQUEST_BYTES: Final = 128 * 1024
MAX_DECISION_BYTES: Final = 32 * 1024
MAX_CUSTODY_BYTES: Final = 32 * 1024
MAX_MANIFEST_BYTES: Final = 4 * 1024 * 1024
MAX_RECEIPT_BYTES: Final = 4 * 1024
MAX_DETAIL_BYTES: Final = 16 * 1024
MAX_CHECKPOINT_BYTES: Final = 64 * 1024
MAX_LOGGED_ENVELOPE_BYTES: Final = 256 * 1024
MAX_HELD_EVIDENCE: Final = 1000
MAX_EVIDENCE: Final = 1000
MAX_CUSTODY_EVENTS: Final = 1000
MAX_PROOF_HASHES: Final = 64

_MAX_FILE_NAME: Final = 255
# As the node stores them (node.models: TEXT columns of 1,000 characters); a description
# is bounded by the manifest's size.
_MAX_CAPTURED_BY: Final = 1000
_MAX_ACTOR: Final = 1000
_MAX_DESCRIPTION: Final = 1_000_000

_MATTER: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_POLICY_RULE: Final = re.compile(r"[a-z0-9_-]{1,40}")
_MEDIA_TYPE: Final = re.compile(
    r"[a-z0-9][a-z0-9!#$&^.+_-]{0,63}/[a-z0-9][a-z0-9!#$&^.+_-]{0,126}"
)  # as federation.index_entry
_CAPTURED_AT: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?([+-][0-9]{2}:[0-9]{2}|Z)"
)

_POLICY_PREFIX: Final = "policy:"


class BundleFormatError(FederationError):
    """A bundle document that must not be accepted: malformed, forged or inconsistent.

    The message names the document and the field, never a field's value.
    """


# --- field rules ---------------------------------------------------------------------


def _redactions(value: object, where: str) -> tuple[str, ...]:
    items = _tuple(value, where, len(REDACTIONS))
    for i, item in enumerate(items):
        _one_of(item, f"{where}[{i}]", REDACTIONS)
    _sorted_unique(items, where)
    return items


def _parse(data: bytes, limit: int, what: str, build: Callable[[dict[str, Any]], _D]) -> _D:
    return schema.parse(data, limit, what, build, BundleFormatError)


# --- 1. requests ---------------------------------------------------------------------

_REQUEST_FIELDS: Final = frozenset(
    {
        "format",
        "request_id",
        "requester",
        "holder",
        "incident",
        "purpose",
        "matter",
        "requested_by",
        "requested_at",
        "held_evidence",
    }
)


@dataclass(frozen=True)
class BundleRequest:
    """A requester asks the holder of `incident` for its bundle (signed by the requester).

    `held_evidence`: the SHA-256 values (hex) of the incident's evidence that the
    requester holds already, sorted, so that those files are not sent again.
    """

    request_id: str
    requester: str
    holder: str
    incident: str
    purpose: str = field(repr=False)
    matter: str | None
    requested_by: str = field(repr=False)
    requested_at: datetime
    held_evidence: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _request_id(self.request_id, "request_id")
        _state(self.requester, "requester")
        _state(self.holder, "holder")
        if self.holder == self.requester:
            _fail("holder", "the same state as the requester")
        _global_id(self.incident, "incident", self.holder)
        _text(self.purpose, "purpose")
        if self.matter is not None:
            _match(self.matter, "matter", _MATTER, "a matter id")
        _name(self.requested_by, "requested_by")
        _time(self.requested_at, "requested_at")
        held = _tuple(self.held_evidence, "held_evidence", MAX_HELD_EVIDENCE)
        for i, sha in enumerate(held):
            _hex64(sha, f"held_evidence[{i}]")
        _sorted_unique(held, "held_evidence")

    def payload(self) -> bytes:
        return canonical_json(
            {
                "format": REQUEST_FORMAT,
                "request_id": self.request_id,
                "requester": self.requester,
                "holder": self.holder,
                "incident": self.incident,
                "purpose": self.purpose,
                "matter": self.matter,
                "requested_by": self.requested_by,
                "requested_at": format_time(self.requested_at),
                "held_evidence": list(self.held_evidence),
            }
        )

    @classmethod
    def from_payload(cls, data: bytes) -> BundleRequest:
        """Parse a request (strict, closed schema, canonical form only; BundleFormatError)."""
        return _parse(data, MAX_REQUEST_BYTES, "bundle request", _request_from_obj)


def _request_from_obj(obj: dict[str, Any]) -> BundleRequest:
    _fields(obj, _REQUEST_FIELDS)
    _format(obj, REQUEST_FORMAT)
    return BundleRequest(
        request_id=obj["request_id"],
        requester=obj["requester"],
        holder=obj["holder"],
        incident=obj["incident"],
        purpose=obj["purpose"],
        matter=obj["matter"],
        requested_by=obj["requested_by"],
        requested_at=_parse_time(obj["requested_at"], "requested_at"),
        held_evidence=_list(obj["held_evidence"], "held_evidence", MAX_HELD_EVIDENCE),
    )


def sign_request(request: BundleRequest, key: signing.SigningKey) -> Envelope:
    """The request signed with the requester's roster key."""
    return _sign(REQUEST_TYPE, request, BundleRequest.from_payload, key)


def verify_request(
    envelope: Envelope, roster: Roster, *, requester: str, history: KeyHistory | None = None
) -> BundleRequest:
    """A request signed by `requester`'s roster key (with `history`: any key it had in a
    roster version) and naming `requester`."""
    return _verified(
        envelope, roster, requester, REQUEST_TYPE, "bundle request",
        BundleRequest.from_payload, "requester", lambda r: r.requester, history,
    )  # fmt: skip


# --- 2. decisions --------------------------------------------------------------------

_DECISION_FIELDS: Final = frozenset(
    {
        "format",
        "request_id",
        "requester",
        "holder",
        "decision",
        "reason",
        "redactions",
        "decided_by",
        "decided_at",
        "bundle_id",
    }
)


@dataclass(frozen=True)
class BundleDecision:
    """The holder's answer to a request (signed by the holder).

    Approved: `bundle_id` names the bundle, `reason` is optional, `redactions` lists
    what the bundle leaves out. Denied: `reason` is required, no redactions, no bundle.
    `decided_by` is a reviewer's user name or ``policy:<rule>``.
    """

    request_id: str
    requester: str
    holder: str
    decision: str
    reason: str | None = field(repr=False)
    redactions: tuple[str, ...]
    decided_by: str = field(repr=False)
    decided_at: datetime
    bundle_id: str | None

    def __post_init__(self) -> None:
        _request_id(self.request_id, "request_id")
        _state(self.requester, "requester")
        _state(self.holder, "holder")
        if self.holder == self.requester:
            _fail("holder", "the same state as the requester")
        _one_of(self.decision, "decision", DECISIONS)
        if self.reason is not None:
            _text(self.reason, "reason")
        _redactions(self.redactions, "redactions")
        _decided_by(self.decided_by, "decided_by")
        _time(self.decided_at, "decided_at")
        if self.bundle_id is not None:
            _hex64(self.bundle_id, "bundle_id")
        if self.decision == "denied":
            if self.reason is None:
                _fail("reason", "required when the request is denied")
            if self.redactions:
                _fail("redactions", "must be empty when the request is denied")
            if self.bundle_id is not None:
                _fail("bundle_id", "must be null when the request is denied")
        elif self.bundle_id is None:
            _fail("bundle_id", "required when the request is approved")

    @property
    def approved(self) -> bool:
        return self.decision == "approved"

    def payload(self) -> bytes:
        return canonical_json(
            {
                "format": DECISION_FORMAT,
                "request_id": self.request_id,
                "requester": self.requester,
                "holder": self.holder,
                "decision": self.decision,
                "reason": self.reason,
                "redactions": list(self.redactions),
                "decided_by": self.decided_by,
                "decided_at": format_time(self.decided_at),
                "bundle_id": self.bundle_id,
            }
        )

    @classmethod
    def from_payload(cls, data: bytes) -> BundleDecision:
        """Parse a decision (strict, closed schema, canonical form only; BundleFormatError)."""
        return _parse(data, MAX_DECISION_BYTES, "bundle decision", _decision_from_obj)


def _decided_by(value: object, where: str) -> None:
    if isinstance(value, str) and value.startswith(_POLICY_PREFIX):
        if not _POLICY_RULE.fullmatch(value[len(_POLICY_PREFIX) :]):
            _fail(where, "expected policy:<rule> with a rule of a-z, 0-9, _ and -")
    else:
        _name(value, where)


def _decision_from_obj(obj: dict[str, Any]) -> BundleDecision:
    _fields(obj, _DECISION_FIELDS)
    _format(obj, DECISION_FORMAT)
    return BundleDecision(
        request_id=obj["request_id"],
        requester=obj["requester"],
        holder=obj["holder"],
        decision=obj["decision"],
        reason=obj["reason"],
        redactions=_list(obj["redactions"], "redactions", len(REDACTIONS)),
        decided_by=obj["decided_by"],
        decided_at=_parse_time(obj["decided_at"], "decided_at"),
        bundle_id=obj["bundle_id"],
    )


def sign_decision(decision: BundleDecision, key: signing.SigningKey) -> Envelope:
    """The decision signed with the holder's roster key."""
    return _sign(DECISION_TYPE, decision, BundleDecision.from_payload, key)


def verify_decision(
    envelope: Envelope, roster: Roster, *, holder: str, history: KeyHistory | None = None
) -> BundleDecision:
    """A decision signed by `holder`'s roster key (with `history`: any key it had in a
    roster version) and naming `holder`."""
    return _verified(
        envelope, roster, holder, DECISION_TYPE, "bundle decision",
        BundleDecision.from_payload, "holder", lambda d: d.holder, history,
    )  # fmt: skip


# --- 3. custody records --------------------------------------------------------------

_CUSTODY_FIELDS: Final = frozenset(
    {
        "format",
        "state",
        "global_id",
        "evidence_sha256",
        "evidence_position",
        "event_id",
        "kind",
        "at",
        "actor",
        "detail",
    }
)


@dataclass(frozen=True)
class CustodyRecord:
    """One custody event of one evidence item, as `state`'s node signs and logs it.

    `event_id` is the node's own id of the event (from 1); `detail` a JSON object (no
    floats) of at most ``MAX_DETAIL_BYTES`` in canonical form, held as a private copy.
    `global_id` may be another state's: a requester records custody (``received``,
    ``viewed``) of the evidence a bundle brought it from the holder.
    """

    state: str
    global_id: str
    evidence_sha256: str
    evidence_position: int
    event_id: int
    kind: str
    at: datetime
    actor: str = field(repr=False)
    detail: dict[str, Any] = field(repr=False)

    def __post_init__(self) -> None:
        _state(self.state, "state")
        _global_id(self.global_id, "global_id", None)
        _hex64(self.evidence_sha256, "evidence_sha256")
        _int(self.evidence_position, "evidence_position", 0)
        _int(self.event_id, "event_id", 1)
        _one_of(self.kind, "kind", CUSTODY_KINDS)
        _time(self.at, "at")
        # The actor of a `collected` event is the import's `captured_by`: its rule.
        _str(self.actor, "actor", max_chars=_MAX_ACTOR, control=_CONTROL_IMPORT)
        detail = _json_object(self.detail, "detail")
        if len(canonical_json(detail)) > MAX_DETAIL_BYTES:
            _fail("detail", f"larger than {MAX_DETAIL_BYTES} bytes as canonical JSON")
        _set(self, "detail", detail)

    def payload(self) -> bytes:
        return canonical_json(
            {
                "format": CUSTODY_FORMAT,
                "state": self.state,
                "global_id": self.global_id,
                "evidence_sha256": self.evidence_sha256,
                "evidence_position": self.evidence_position,
                "event_id": self.event_id,
                "kind": self.kind,
                "at": format_time(self.at),
                "actor": self.actor,
                "detail": self.detail,
            }
        )

    @classmethod
    def from_payload(cls, data: bytes) -> CustodyRecord:
        """Parse a custody record (strict, closed schema, canonical form only)."""
        return _parse(data, MAX_CUSTODY_BYTES, "custody event", _custody_from_obj)


def _custody_from_obj(obj: dict[str, Any]) -> CustodyRecord:
    _fields(obj, _CUSTODY_FIELDS)
    _format(obj, CUSTODY_FORMAT)
    return CustodyRecord(
        state=obj["state"],
        global_id=obj["global_id"],
        evidence_sha256=obj["evidence_sha256"],
        evidence_position=obj["evidence_position"],
        event_id=obj["event_id"],
        kind=obj["kind"],
        at=_parse_time(obj["at"], "at"),
        actor=obj["actor"],
        detail=obj["detail"],
    )


def sign_custody(record: CustodyRecord, key: signing.SigningKey) -> Envelope:
    """The record signed with its state's roster key (then entered in that state's log)."""
    return _sign(CUSTODY_TYPE, record, CustodyRecord.from_payload, key)


def verify_custody(
    envelope: Envelope, roster: Roster, *, state: str, history: KeyHistory | None = None
) -> CustodyRecord:
    """A custody record signed by `state`'s roster key (with `history`: any key it had in a
    roster version) and naming `state`."""
    return _verified(
        envelope, roster, state, CUSTODY_TYPE, "custody event",
        CustodyRecord.from_payload, "state", lambda r: r.state, history,
    )  # fmt: skip


# --- 3b. receipts --------------------------------------------------------------------

_RECEIPT_FIELDS: Final = frozenset(
    {
        "format",
        "bundle_id",
        "request_id",
        "requester",
        "holder",
        "manifest_sha256",
        "sealed_sha256",
        "received_at",
    }
)


@dataclass(frozen=True)
class BundleReceipt:
    """The requester's statement that it received, verified and stored a bundle (signed
    by the requester). `manifest_sha256` is the SHA-256 of the manifest envelope's exact
    bytes, `sealed_sha256` that of the sealed stream (the manifest binds it too)."""

    bundle_id: str
    request_id: str
    requester: str
    holder: str
    manifest_sha256: str
    sealed_sha256: str
    received_at: datetime

    def __post_init__(self) -> None:
        _hex64(self.bundle_id, "bundle_id")
        _request_id(self.request_id, "request_id")
        _state(self.requester, "requester")
        _state(self.holder, "holder")
        if self.holder == self.requester:
            _fail("holder", "the same state as the requester")
        _hex64(self.manifest_sha256, "manifest_sha256")
        _hex64(self.sealed_sha256, "sealed_sha256")
        _time(self.received_at, "received_at")

    def payload(self) -> bytes:
        return canonical_json(
            {
                "format": RECEIPT_FORMAT,
                "bundle_id": self.bundle_id,
                "request_id": self.request_id,
                "requester": self.requester,
                "holder": self.holder,
                "manifest_sha256": self.manifest_sha256,
                "sealed_sha256": self.sealed_sha256,
                "received_at": format_time(self.received_at),
            }
        )

    @classmethod
    def from_payload(cls, data: bytes) -> BundleReceipt:
        """Parse a receipt (strict, closed schema, canonical form only; BundleFormatError)."""
        return _parse(data, MAX_RECEIPT_BYTES, "bundle receipt", _receipt_from_obj)


def _receipt_from_obj(obj: dict[str, Any]) -> BundleReceipt:
    _fields(obj, _RECEIPT_FIELDS)
    _format(obj, RECEIPT_FORMAT)
    return BundleReceipt(
        bundle_id=obj["bundle_id"],
        request_id=obj["request_id"],
        requester=obj["requester"],
        holder=obj["holder"],
        manifest_sha256=obj["manifest_sha256"],
        sealed_sha256=obj["sealed_sha256"],
        received_at=_parse_time(obj["received_at"], "received_at"),
    )


def sign_receipt(receipt: BundleReceipt, key: signing.SigningKey) -> Envelope:
    """The receipt signed with the requester's roster key."""
    return _sign(RECEIPT_TYPE, receipt, BundleReceipt.from_payload, key)


def verify_receipt(
    envelope: Envelope, roster: Roster, *, requester: str, history: KeyHistory | None = None
) -> BundleReceipt:
    """A receipt signed by `requester`'s roster key (with `history`: any key it had in a
    roster version) and naming `requester`."""
    return _verified(
        envelope, roster, requester, RECEIPT_TYPE, "bundle receipt",
        BundleReceipt.from_payload, "requester", lambda r: r.requester, history,
    )  # fmt: skip


# --- 4. log entries with their inclusion proofs --------------------------------------

_LOGGED_FIELDS: Final = frozenset({"log_index", "envelope", "proof"})


@dataclass(frozen=True)
class LoggedEntry:
    """An envelope as stored in a transparency log, its index and its inclusion proof.

    `envelope_bytes` are the exact bytes of the log entry (the leaf is their hash);
    in JSON they are canonical padded standard base64 (key ``"envelope"``), and the
    proof's hashes are lowercase hex. The proof is checked by ``check_manifest_proofs``
    against the manifest's checkpoint.
    """

    log_index: int
    envelope_bytes: bytes = field(repr=False)
    proof: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _int(self.log_index, "log_index", 0)
        if not isinstance(self.envelope_bytes, bytes):
            _fail("envelope", "expected bytes")
        if not 0 < len(self.envelope_bytes) <= MAX_LOGGED_ENVELOPE_BYTES:
            _fail("envelope", f"expected 1 to {MAX_LOGGED_ENVELOPE_BYTES} bytes")
        proof = _tuple(self.proof, "proof", MAX_PROOF_HASHES)
        for i, h in enumerate(proof):
            if not isinstance(h, bytes) or len(h) != _HASH_SIZE:
                _fail(f"proof[{i}]", f"expected {_HASH_SIZE} bytes")

    def leaf_hash(self) -> bytes:
        """The RFC 9162 leaf hash of the entry: ``SHA-256(0x00 || envelope_bytes)``."""
        return leaf_hash(self.envelope_bytes)

    def to_obj(self) -> dict[str, Any]:
        return {
            "log_index": self.log_index,
            "envelope": base64.b64encode(self.envelope_bytes).decode("ascii"),
            "proof": [h.hex() for h in self.proof],
        }


def _logged_from_obj(value: object) -> LoggedEntry:
    obj = _fields(value, _LOGGED_FIELDS)
    proof = _list(obj["proof"], "proof", MAX_PROOF_HASHES)
    return LoggedEntry(
        log_index=obj["log_index"],
        envelope_bytes=_b64(obj["envelope"], "envelope"),
        proof=tuple(_hash_hex(h, f"proof[{i}]") for i, h in enumerate(proof)),
    )


# --- 5. evidence items of a manifest -------------------------------------------------

_EVIDENCE_FIELDS: Final = frozenset(
    {
        "position",
        "sha256",
        "size",
        "media_type",
        "file_name",
        "captured_at",
        "captured_by",
        "description",
        "delivery",
        "offset",
        "custody",
    }
)


@dataclass(frozen=True)
class ManifestEvidence:
    """One evidence item of a bundle: its metadata and its custody events (logged).

    `delivery` is ``"included"`` (the file is in the sealed stream, at plaintext
    `offset`) or ``"held"`` (the requester holds it already; `offset` is None).
    `captured_at` is kept as the import format's RFC 3339 text with its UTC offset.
    """

    position: int
    sha256: str
    size: int
    media_type: str
    file_name: str = field(repr=False)
    captured_at: str | None
    captured_by: str | None = field(repr=False)
    description: str | None = field(repr=False)
    delivery: str
    offset: int | None
    custody: tuple[LoggedEntry, ...]

    def __post_init__(self) -> None:
        _int(self.position, "position", 0)
        _hex64(self.sha256, "sha256")
        _int(self.size, "size", 0)
        _match(self.media_type, "media_type", _MEDIA_TYPE, "a lowercase media type")
        _str(self.file_name, "file_name", max_chars=_MAX_FILE_NAME, control=_CONTROL_NAME)
        if "/" in self.file_name or "\\" in self.file_name or self.file_name in (".", ".."):
            _fail("file_name", "must be a plain file name (no / or \\, not . or ..)")
        if self.captured_at is not None:
            _captured_at(self.captured_at, "captured_at")
        _opt_str(
            self.captured_by, "captured_by", max_chars=_MAX_CAPTURED_BY, control=_CONTROL_IMPORT
        )
        _opt_str(
            self.description, "description", max_chars=_MAX_DESCRIPTION, control=_CONTROL_IMPORT
        )
        _one_of(self.delivery, "delivery", DELIVERIES)
        if self.delivery == "included":
            _int(self.offset, "offset", 0)
        elif self.offset is not None:
            _fail("offset", "must be null for an item the requester holds")
        custody = _tuple(self.custody, "custody", MAX_CUSTODY_EVENTS)
        for i, logged in enumerate(custody):
            if not isinstance(logged, LoggedEntry):
                _fail(f"custody[{i}]", "expected a LoggedEntry")

    @property
    def included(self) -> bool:
        return self.delivery == "included"

    def to_obj(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "sha256": self.sha256,
            "size": self.size,
            "media_type": self.media_type,
            "file_name": self.file_name,
            "captured_at": self.captured_at,
            "captured_by": self.captured_by,
            "description": self.description,
            "delivery": self.delivery,
            "offset": self.offset,
            "custody": [c.to_obj() for c in self.custody],
        }


def _captured_at(value: object, where: str) -> None:
    text = _match(value, where, _CAPTURED_AT, "an RFC 3339 time with seconds and a UTC offset")
    valid = True
    try:
        datetime.fromisoformat(text)
    except ValueError:  # the message holds the value: not chained, not shown
        valid = False
    if not valid:
        _fail(where, "not a valid date and time")


def _evidence_from_obj(value: object) -> ManifestEvidence:
    obj = _fields(value, _EVIDENCE_FIELDS)
    custody = []
    for i, item in enumerate(_list(obj["custody"], "custody", MAX_CUSTODY_EVENTS)):
        with _within(f"custody[{i}]"):
            custody.append(_logged_from_obj(item))
    return ManifestEvidence(
        position=obj["position"],
        sha256=obj["sha256"],
        size=obj["size"],
        media_type=obj["media_type"],
        file_name=obj["file_name"],
        captured_at=obj["captured_at"],
        captured_by=obj["captured_by"],
        description=obj["description"],
        delivery=obj["delivery"],
        offset=obj["offset"],
        custody=tuple(custody),
    )


# --- 6. manifests --------------------------------------------------------------------

_MANIFEST_FIELDS: Final = frozenset(
    {
        "format",
        "bundle_id",
        "request_id",
        "requester",
        "holder",
        "global_id",
        "incident",
        "redactions",
        "evidence",
        "index_entry",
        "checkpoint",
        "sealed_stream",
        "created_at",
    }
)


@dataclass(frozen=True)
class BundleManifest:
    """What one bundle holds, signed by the holder.

    `incident` is the incident as an import-format record (a JSON object without floats
    and without ``"evidence"``: the evidence is listed here; the node layer checks the
    rest), held as a private copy. `index_entry` is the incident's index entry in the
    holder's log, `checkpoint` a signed (and cosigned) checkpoint of that log under which
    every proof verifies (``check_manifest_proofs``), `sealed_stream` binds the sealed
    stream. The included items, in position order, are the stream's plaintext one after
    another (``stream_order``).
    """

    bundle_id: str
    request_id: str
    requester: str
    holder: str
    global_id: str
    incident: dict[str, Any] = field(repr=False)
    redactions: tuple[str, ...]
    evidence: tuple[ManifestEvidence, ...]
    index_entry: LoggedEntry
    checkpoint: str = field(repr=False)
    sealed_stream: SealedStreamInfo
    created_at: datetime

    def __post_init__(self) -> None:
        _hex64(self.bundle_id, "bundle_id")
        _request_id(self.request_id, "request_id")
        _state(self.requester, "requester")
        _state(self.holder, "holder")
        if self.holder == self.requester:
            _fail("holder", "the same state as the requester")
        _global_id(self.global_id, "global_id", self.holder)
        redactions = _redactions(self.redactions, "redactions")
        _set(self, "incident", _incident(self.incident, redactions))
        evidence = _tuple(self.evidence, "evidence", MAX_EVIDENCE)
        for i, item in enumerate(evidence):
            if not isinstance(item, ManifestEvidence):
                _fail(f"evidence[{i}]", "expected a ManifestEvidence")
        if not isinstance(self.index_entry, LoggedEntry):
            _fail("index_entry", "expected a LoggedEntry")
        _checkpoint_text(self.checkpoint, "checkpoint")
        if not isinstance(self.sealed_stream, SealedStreamInfo):
            _fail("sealed_stream", "expected a SealedStreamInfo")
        _time(self.created_at, "created_at")
        self._check_consistency()

    def _check_consistency(self) -> None:
        if self.sealed_stream.bundle_id.hex() != self.bundle_id:
            _fail("sealed_stream.bundle_id", "not the manifest's bundle_id")
        log_indexes = {self.index_entry.log_index}
        position = -1
        offset = 0
        for i, item in enumerate(self.evidence):
            if item.position <= position:
                _fail(f"evidence[{i}].position", "positions must increase strictly")
            position = item.position
            if item.included:
                if item.offset != offset:
                    _fail(f"evidence[{i}].offset", "not where the items before it end")
                offset += item.size
            for j, logged in enumerate(item.custody):
                if logged.log_index in log_indexes:
                    _fail(f"evidence[{i}].custody[{j}].log_index", "the same log entry twice")
                log_indexes.add(logged.log_index)
        if offset != self.sealed_stream.plaintext_size:
            _fail(
                "sealed_stream.plaintext_size",
                "not the total size of the included evidence",
            )

    def stream_order(self) -> tuple[ManifestEvidence, ...]:
        """The included items in the order (and at the offsets) of the stream's plaintext."""
        return tuple(item for item in self.evidence if item.included)

    def payload(self) -> bytes:
        return canonical_json(
            {
                "format": MANIFEST_FORMAT,
                "bundle_id": self.bundle_id,
                "request_id": self.request_id,
                "requester": self.requester,
                "holder": self.holder,
                "global_id": self.global_id,
                "incident": self.incident,
                "redactions": list(self.redactions),
                "evidence": [e.to_obj() for e in self.evidence],
                "index_entry": self.index_entry.to_obj(),
                "checkpoint": self.checkpoint,
                "sealed_stream": self.sealed_stream.to_manifest_dict(),
                "created_at": format_time(self.created_at),
            }
        )

    @classmethod
    def from_payload(cls, data: bytes) -> BundleManifest:
        """Parse a manifest (strict, closed schema, canonical form only; BundleFormatError).

        Only the structure and consistency are checked here: the proofs are checked by
        ``check_manifest_proofs``.
        """
        return _parse(data, MAX_MANIFEST_BYTES, "bundle manifest", _manifest_from_obj)


def _incident(value: object, redactions: tuple[str, ...]) -> dict[str, Any]:
    incident = _json_object(value, "incident")
    if "evidence" in incident:
        _fail("incident", "must not hold evidence (the manifest lists it)")
    if not isinstance(incident.get("external_id"), str):
        _fail("incident.external_id", "expected a string")
    for redacted in redactions:
        if incident.get(redacted) not in (None, "", []):
            _fail(f"incident.{redacted}", "present although redacted")
    return incident


def _checkpoint_text(value: object, where: str) -> None:
    if not isinstance(value, str) or not value:
        _fail(where, "expected a non-empty string")
    if _SURROGATE.search(value):
        _fail(where, "holds an unpaired surrogate")
    if len(value.encode("utf-8")) > MAX_CHECKPOINT_BYTES:
        _fail(where, f"larger than {MAX_CHECKPOINT_BYTES} bytes")


def _manifest_from_obj(obj: dict[str, Any]) -> BundleManifest:
    _fields(obj, _MANIFEST_FIELDS)
    _format(obj, MANIFEST_FORMAT)
    evidence = []
    for i, item in enumerate(_list(obj["evidence"], "evidence", MAX_EVIDENCE)):
        with _within(f"evidence[{i}]"):
            evidence.append(_evidence_from_obj(item))
    with _within("index_entry"):
        index_entry = _logged_from_obj(obj["index_entry"])
    entry = obj["sealed_stream"]
    if not isinstance(entry, dict):
        _fail("sealed_stream", "expected a JSON object")
    sealed: SealedStreamInfo | None
    try:
        sealed = SealedStreamInfo.from_manifest_dict(entry)
    except EncodingError:
        sealed = None
    if sealed is None:
        _fail("sealed_stream", "not a valid sealed stream entry")
    return BundleManifest(
        bundle_id=obj["bundle_id"],
        request_id=obj["request_id"],
        requester=obj["requester"],
        holder=obj["holder"],
        global_id=obj["global_id"],
        incident=obj["incident"],
        redactions=_list(obj["redactions"], "redactions", len(REDACTIONS)),
        evidence=tuple(evidence),
        index_entry=index_entry,
        checkpoint=obj["checkpoint"],
        sealed_stream=sealed,
        created_at=_parse_time(obj["created_at"], "created_at"),
    )


def sign_manifest(manifest: BundleManifest, key: signing.SigningKey) -> Envelope:
    """The manifest signed with the holder's roster key.

    BundleFormatError if its payload is larger than ``MAX_MANIFEST_BYTES``.
    """
    return _sign(MANIFEST_TYPE, manifest, BundleManifest.from_payload, key)


def verify_manifest(
    envelope: Envelope,
    roster: Roster,
    *,
    holder: str,
    requester: str,
    history: KeyHistory | None = None,
) -> BundleManifest:
    """A manifest signed by `holder`'s roster key (with `history`: any key `holder` had in a
    roster version), naming `holder` and `requester`.

    The proofs it carries are not checked here: call ``check_manifest_proofs``.
    """
    manifest = _verified(
        envelope, roster, holder, MANIFEST_TYPE, "bundle manifest",
        BundleManifest.from_payload, "holder", lambda m: m.holder, history,
    )  # fmt: skip
    if manifest.requester != requester:
        raise BundleFormatError(f"bundle manifest: made for another requester than {requester}")
    return manifest


# --- 7. the proofs of a manifest -----------------------------------------------------


@dataclass(frozen=True)
class VerifiedProofs:
    """What ``check_manifest_proofs`` proved.

    The holder's log of `checkpoint_size` entries has root `root`, as the witnesses
    named in `witnesses` (their note key names, e.g. ``compact-witness/MN``) cosigned;
    it holds `index_entry` and, per evidence item in manifest order, `custody`.
    """

    checkpoint_size: int
    root: bytes
    witnesses: tuple[str, ...]
    index_entry: IndexEntry
    custody: tuple[tuple[CustodyRecord, ...], ...]


def check_manifest_proofs(
    manifest: BundleManifest, roster: Roster, history: KeyHistory | None = None
) -> VerifiedProofs:
    """Check a (verified) manifest's checkpoint and every inclusion proof it carries.

    The checkpoint must be signed with the holder's log key and cosigned by at least one
    other member of `roster` as witness (the holder's own cosignature does not count).
    With `history` (federation.keyhistory), any key a state had in a roster version is
    its key here: the holder's log key, each witness's key (a witness counts once, with
    however many of its keys it cosigned) and the key of the logged entries it signed.
    The index entry must be the holder's signed entry of the manifest's incident, not a
    withdrawal; each custody entry the holder's signed record of that very evidence item
    (incident, SHA-256 and position), each event once. Every entry must be in the log at
    its index under the checkpoint. BundleFormatError names what failed.

    This proves that the entries were logged, not that no later revision exists: the
    index entry may have been corrected or withdrawn after the checkpoint.
    """
    holder = manifest.holder
    member = roster.member(holder)
    if member is None:
        raise BundleFormatError(
            f"checkpoint: {holder} is not a member of roster version {roster.version}"
        )
    witnesses = witness_verifiers(roster.members, history, exclude=holder)
    if not witnesses:
        raise BundleFormatError("checkpoint: the roster has no other member to witness it")
    try:
        verified = verify_member_checkpoint(
            manifest.checkpoint,
            logs=member_log_verifiers(member, history),
            witnesses=witnesses,
            threshold=1,
            origin=log_origin(holder),
        )
    except ThresholdError:
        raise BundleFormatError(
            "checkpoint: not cosigned by any other member of the roster"
        ) from None
    except CryptoError:
        raise BundleFormatError(f"checkpoint: does not verify as {holder}'s log") from None
    size, root = verified.checkpoint.size, verified.checkpoint.root_hash

    def included(logged: LoggedEntry, where: str) -> None:
        try:
            verify_inclusion(logged.leaf_hash(), logged.log_index, size, logged.proof, root)
        except VerificationError:
            raise BundleFormatError(f"{where}: inclusion proof does not verify") from None

    envelope = _logged_envelope(manifest.index_entry, "index_entry")
    entry: IndexEntry | None = None
    problem = ""
    try:
        entry = verify_entry(envelope, roster, state=holder, history=history)
    except IndexEntryError as e:
        problem = str(e)
    if entry is None:  # raised here: the index entry's own chain is left behind
        raise BundleFormatError(f"index_entry: {problem}")
    if entry.global_id != manifest.global_id:
        raise BundleFormatError("index_entry: the entry of another incident")
    if entry.withdrawn:
        raise BundleFormatError("index_entry: a withdrawal")
    included(manifest.index_entry, "index_entry")

    custody: list[tuple[CustodyRecord, ...]] = []
    events: set[int] = set()
    for i, item in enumerate(manifest.evidence):
        records: list[CustodyRecord] = []
        for j, logged in enumerate(item.custody):
            where = f"evidence[{i}].custody[{j}]"
            envelope = _logged_envelope(logged, where)
            record: CustodyRecord | None = None
            try:
                record = verify_custody(envelope, roster, state=holder, history=history)
            except BundleFormatError as e:
                problem = str(e)
            if record is None:
                raise BundleFormatError(f"{where}: {problem}")
            if record.global_id != manifest.global_id:
                raise BundleFormatError(f"{where}: a custody event of another incident")
            if record.evidence_sha256 != item.sha256 or record.evidence_position != item.position:
                raise BundleFormatError(f"{where}: a custody event of another evidence item")
            if record.event_id in events:
                raise BundleFormatError(f"{where}: the same custody event twice")
            events.add(record.event_id)
            included(logged, where)
            records.append(record)
        custody.append(tuple(records))
    return VerifiedProofs(
        checkpoint_size=size,
        root=root,
        witnesses=tuple(sorted(c.name for c in verified.cosignatures)),
        index_entry=entry,
        custody=tuple(custody),
    )


def _logged_envelope(logged: LoggedEntry, where: str) -> Envelope:
    try:
        return Envelope.from_json(logged.envelope_bytes, max_size=MAX_LOGGED_ENVELOPE_BYTES)
    except EncodingError:
        raise BundleFormatError(f"{where}: not a DSSE envelope") from None


# --- signing and verifying -----------------------------------------------------------


def _verified(
    envelope: Envelope,
    roster: Roster,
    state: str,
    payload_type: str,
    what: str,
    parse: Callable[[bytes], _D],
    role: str,
    named: Callable[[_D], str],
    history: KeyHistory | None = None,
) -> _D:
    """The document in `envelope`, signed by `state`'s roster key (with `history`: any key
    `state` had in a roster version) and naming `state` as its `role` (the field `named`
    reads)."""
    return schema.verified(
        envelope, roster, state, payload_type, what, parse, role, named, BundleFormatError,
        history,
    )  # fmt: skip


def _verified_payload(
    envelope: Envelope,
    roster: Roster,
    state: str,
    payload_type: str,
    what: str,
    history: KeyHistory | None = None,
) -> bytes:
    """The payload of `envelope` once `state`'s roster key (with `history`: any key `state`
    had in a roster version) is proven to have signed it."""
    return schema.verified_payload(
        envelope, roster, state, payload_type, what, BundleFormatError, history=history
    )
