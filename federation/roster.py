"""The compact's roster: who the members are, and how a new version is trusted.

A roster version lists every member state (endpoint, TLS key pin, Ed25519
signing key, X25519 encryption key), a change threshold, a version number and
an expiry. It travels as a DSSE envelope (payload type ``PAYLOAD_TYPE``) whose
payload is the roster's canonical JSON (docs/roster.md).

Trust follows TUF's root metadata:

- **Version 1** is trusted because its payload's SHA-256 equals the pin the
  founding members compared out of band, and it is signed by at least its own
  threshold of its own members (``verify_initial``).
- **Version n+1** is accepted only if at least the threshold of version n's
  members signed it (checked before its payload is parsed), *and* at least its
  own threshold of its own members signed it (so new or rotated keys prove
  possession), and its version is exactly n+1 (``verify_update``; a roll-back,
  a replay or a skipped version is ``RosterRollbackError``).
- **Expiry**: a roster past its expiry stops federation traffic
  (``check_in_force``, ``RosterExpiredError``); an update that is already
  expired when it is verified is refused.

Signatures count distinct member keys (crypto.dsse): duplicated signatures,
signatures by non-members and signatures by members of neither version count
for nothing. Time is injected (``now``), never read here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from crypto import signing, x25519
from crypto.dsse import Envelope, VerificationPolicy, add_signature, sign_envelope, verify_envelope
from crypto.errors import CryptoError, EncodingError
from crypto.tls import certificate_fingerprint
from federation.encoding import canonical_json, load_json_object
from federation.errors import CeremonyError, RosterError, RosterExpiredError, RosterRollbackError
from federation.oprf_public import OprfPublic
from node.vocab import STATES

PAYLOAD_TYPE: Final = "application/vnd.compact.roster.v1+json"
FORMAT: Final = "compact-roster-v1"
CARD_FORMAT: Final = "compact-member-card-v1"
MAX_CARD_FILE_BYTES: Final = 16 * 1024
MAX_MEMBERS: Final = 64
MAX_PAYLOAD_BYTES: Final = 256 * 1024
# Anchored with \Z, not $ (which also matches before a final newline).
_HEX64: Final = re.compile(r"^[0-9a-f]{64}\Z")
_ENDPOINT: Final = re.compile(
    r"^[A-Za-z0-9.-]{1,253}:[0-9]{1,5}\Z|^\[[0-9A-Fa-f:.]{2,45}\]:[0-9]{1,5}\Z"
)
_MEMBER_FIELDS: Final = frozenset({"state", "endpoint", "tls_pin", "signing_key", "encryption_key"})
_ROSTER_FIELDS: Final = frozenset({"format", "version", "expires", "threshold", "members"})
_OPTIONAL_FIELDS: Final = frozenset({"oprf"})


@dataclass(frozen=True, slots=True)
class Member:
    """One member state as the roster names it."""

    state: str
    endpoint: str
    tls_pin: str  # lowercase hex SHA-256 of the DER of the member's TLS certificate
    signing_key: signing.PublicKey
    encryption_key: x25519.PublicKey

    def to_json(self) -> dict[str, str]:
        return {
            "state": self.state,
            "endpoint": self.endpoint,
            "tls_pin": self.tls_pin,
            "signing_key": self.signing_key.raw.hex(),
            "encryption_key": self.encryption_key.raw.hex(),
        }

    def card(self) -> bytes:
        """The member card a node exports for a roster proposal (canonical JSON)."""
        return canonical_json({"format": CARD_FORMAT, **self.to_json()})


@dataclass(frozen=True, slots=True)
class Roster:
    """One version of the compact's membership."""

    version: int
    expires: datetime
    threshold: int
    members: tuple[Member, ...]
    # The compact OPRF key's public record (from the key ceremony), once there is one.
    oprf: OprfPublic | None = None

    def __post_init__(self) -> None:
        _check_roster(self)

    def payload(self) -> bytes:
        """The canonical JSON that members sign."""
        obj: dict[str, Any] = {
            "format": FORMAT,
            "version": self.version,
            "expires": _format_time(self.expires),
            "threshold": self.threshold,
            "members": [m.to_json() for m in self.members],
        }
        if self.oprf is not None:
            obj["oprf"] = self.oprf.to_obj()
        return canonical_json(obj)

    def payload_sha256(self) -> str:
        return hashlib.sha256(self.payload()).hexdigest()

    def policy(self) -> VerificationPolicy:
        """The members' signing keys, with this version's threshold."""
        return VerificationPolicy([m.signing_key for m in self.members], self.threshold)

    def member(self, state: str) -> Member | None:
        return next((m for m in self.members if m.state == state), None)

    def member_by_pin(self, tls_pin: str) -> Member | None:
        return next((m for m in self.members if hmac.compare_digest(m.tls_pin, tls_pin)), None)

    @classmethod
    def from_payload(cls, data: bytes) -> Roster:
        """Parse a roster payload (strict: canonical JSON only; RosterError otherwise)."""
        obj = _load(data, MAX_PAYLOAD_BYTES, "roster")
        _exact_fields(obj, _ROSTER_FIELDS, "roster", optional=_OPTIONAL_FIELDS)
        if obj["format"] != FORMAT:
            raise RosterError("roster: unknown format")
        version, threshold = obj["version"], obj["threshold"]
        if type(version) is not int or type(threshold) is not int:
            raise RosterError("roster: version and threshold must be integers")
        members = obj["members"]
        if not isinstance(members, list):
            raise RosterError("roster: members must be a list")
        roster = cls(
            version=version,
            expires=_parse_time(obj["expires"]),
            threshold=threshold,
            members=tuple(_member(m, f"members[{i}]") for i, m in enumerate(members)),
            oprf=_oprf(obj["oprf"]) if "oprf" in obj else None,
        )
        if roster.payload() != data:
            raise RosterError("roster: the payload is not in canonical form")
        return roster


def parse_member_card(data: bytes) -> Member:
    """A member card exported by `Member.card` (strict)."""
    obj = _load(data, 4096, "member card")
    if obj.get("format") != CARD_FORMAT:
        raise RosterError("member card: unknown format")
    return _member({k: v for k, v in obj.items() if k != "format"}, "member card")


def member_card_file(member: Member, certificate_pem: bytes) -> bytes:
    """A member card file: the card's fields plus the member's TLS certificate (PEM).

    This is what `compact roster card` writes; `parse_member_card_file` reads it.
    """
    return canonical_json(
        {
            "format": CARD_FORMAT,
            **member.to_json(),
            "tls_certificate": certificate_pem.decode("ascii"),
        }
    )


def parse_member_card_file(data: bytes) -> tuple[Member, bytes]:
    """A member card file (strict): the member and its TLS certificate (PEM).

    The certificate must be exactly one PEM certificate whose SHA-256 fingerprint is
    the card's `tls_pin`; RosterError otherwise.
    """
    obj = _load(data, MAX_CARD_FILE_BYTES, "member card")
    if obj.get("format") != CARD_FORMAT:
        raise RosterError("member card: unknown format")
    _exact_fields(obj, _MEMBER_FIELDS | {"format", "tls_certificate"}, "member card")
    pem_text = obj["tls_certificate"]
    if not isinstance(pem_text, str) or not pem_text.isascii():
        raise RosterError("member card.tls_certificate: expected a PEM certificate")
    member = _member({k: obj[k] for k in _MEMBER_FIELDS}, "member card")
    pem = pem_text.encode("ascii")
    try:
        fingerprint = certificate_fingerprint(pem)
    except ValueError:
        raise RosterError("member card.tls_certificate: not exactly one PEM certificate") from None
    if not hmac.compare_digest(fingerprint, member.tls_pin):
        raise RosterError("member card: the TLS certificate does not match the card's tls_pin")
    return member, pem


def sign_roster(roster: Roster, signer: signing.SigningKey) -> Envelope:
    """A new envelope for `roster`, signed by one member."""
    return sign_envelope(PAYLOAD_TYPE, roster.payload(), [signer])


def cosign_roster(envelope: Envelope, signer: signing.SigningKey) -> Envelope:
    """Add one more member's signature to a roster envelope."""
    return add_signature(envelope, signer)


def check_in_force(roster: Roster, *, now: datetime) -> None:
    """RosterExpiredError once `roster` has expired (federation traffic must stop)."""
    if now >= roster.expires:
        raise RosterExpiredError(
            f"the roster (version {roster.version}) expired at {_format_time(roster.expires)}; "
            "apply a newer version"
        )


def verify_initial(
    envelope: Envelope, *, pinned_sha256: str, now: datetime, check_expiry: bool = True
) -> Roster:
    """Trust roster version 1: its payload matches the out-of-band pin and its members signed
    it (and it is in force, unless `check_expiry` is false: a member joining later walks
    the chain from version 1, and only the newest version must be in force)."""
    digest = hashlib.sha256(envelope.payload).hexdigest()
    if not hmac.compare_digest(digest, pinned_sha256.lower()):
        raise RosterError("the roster is not the one whose SHA-256 was pinned")
    roster = Roster.from_payload(envelope.payload)  # pinned bytes: safe to parse
    if roster.version != 1:
        raise RosterRollbackError(f"an initial roster must be version 1, not {roster.version}")
    _verify(envelope, roster, "its own members")
    if check_expiry:
        check_in_force(roster, now=now)
    return roster


def verify_update(
    trusted: Roster, envelope: Envelope, *, now: datetime, check_expiry: bool = True
) -> Roster:
    """Trust the next roster version: signed by the previous and by its own threshold."""
    verified = _verify(envelope, trusted, f"version {trusted.version}'s members")
    roster = Roster.from_payload(verified)
    if roster.version != trusted.version + 1:
        raise RosterRollbackError(
            f"roster version {roster.version} cannot follow version {trusted.version}"
        )
    _verify(envelope, roster, "its own members")
    if check_expiry:
        check_in_force(roster, now=now)
    return roster


def verify_chain(trusted: Roster, envelopes: Sequence[Envelope], *, now: datetime) -> Roster:
    """Walk from the trusted roster through consecutive versions; only the last must be current."""
    roster = trusted
    for i, envelope in enumerate(envelopes):
        roster = verify_update(roster, envelope, now=now, check_expiry=i == len(envelopes) - 1)
    return roster


def _verify(envelope: Envelope, roster: Roster, whose: str) -> bytes:
    try:
        return verify_envelope(envelope, roster.policy(), payload_type=PAYLOAD_TYPE).payload
    except CryptoError as e:
        raise RosterError(f"the roster is not signed by enough of {whose}: {e}") from None


# --- validation and encoding -------------------------------------------------------------


def _check_roster(r: Roster) -> None:
    if type(r.version) is not int or r.version < 1:
        raise RosterError("roster: the version must be a positive integer")
    if r.expires.tzinfo is None or r.expires.microsecond:
        raise RosterError("roster: the expiry must carry a time zone and be whole seconds")
    if not 1 <= len(r.members) <= MAX_MEMBERS:
        raise RosterError(f"roster: between 1 and {MAX_MEMBERS} members")
    if type(r.threshold) is not int or not 1 <= r.threshold <= len(r.members):
        raise RosterError("roster: the threshold must be between 1 and the number of members")
    states = [m.state for m in r.members]
    if states != sorted(states):
        raise RosterError("roster: members must be sorted by state")
    for what, values in (
        ("state", states),
        ("TLS pin", [m.tls_pin for m in r.members]),
        ("signing key", [m.signing_key.raw for m in r.members]),
        ("encryption key", [m.encryption_key.raw for m in r.members]),
    ):
        if len(set(values)) != len(values):
            raise RosterError(f"roster: two members share a {what}")
    if r.oprf is not None and set(r.oprf.commitments) != set(states):
        raise RosterError("roster.oprf: one share commitment per member is required")


def _member(obj: Any, where: str) -> Member:
    if not isinstance(obj, dict):
        raise RosterError(f"{where}: expected an object")
    _exact_fields(obj, _MEMBER_FIELDS, where)
    if not all(isinstance(v, str) for v in obj.values()):
        raise RosterError(f"{where}: every field must be a string")
    if obj["state"] not in STATES:
        raise RosterError(f"{where}.state: not a US state, DC or territory code")
    if (
        not _ENDPOINT.match(obj["endpoint"])
        or not 1 <= int(obj["endpoint"].rsplit(":", 1)[1]) <= 65535
    ):
        raise RosterError(f"{where}.endpoint: expected host:port")
    for field in ("tls_pin", "signing_key", "encryption_key"):
        if not _HEX64.match(obj[field]):
            raise RosterError(f"{where}.{field}: expected 64 lowercase hex digits")
    try:
        signing_key = signing.PublicKey.from_bytes(bytes.fromhex(obj["signing_key"]))
        encryption_key = x25519.PublicKey.from_bytes(bytes.fromhex(obj["encryption_key"]))
    except EncodingError:
        raise RosterError(f"{where}: a public key is not usable") from None
    return Member(obj["state"], obj["endpoint"], obj["tls_pin"], signing_key, encryption_key)


def _oprf(obj: Any) -> OprfPublic:
    try:
        return OprfPublic.from_obj(obj)
    except CeremonyError as e:
        raise RosterError(f"roster.oprf: {e}") from None


def _exact_fields(
    obj: dict[str, Any],
    fields: frozenset[str],
    where: str,
    *,
    optional: frozenset[str] = frozenset(),
) -> None:
    missing, extra = sorted(fields - set(obj)), sorted(set(obj) - fields - optional)
    if missing or extra:
        raise RosterError(f"{where}: missing {missing or 'nothing'}, unknown {extra or 'nothing'}")


def _load(data: bytes, limit: int, what: str) -> dict[str, Any]:
    try:
        return load_json_object(data, limit=limit)
    except ValueError as e:
        raise RosterError(f"{what}: {e}") from None


def _format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str) or not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$", value):
        raise RosterError("roster.expires: expected YYYY-MM-DDTHH:MM:SSZ")
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise RosterError("roster.expires: not a valid date and time") from None
