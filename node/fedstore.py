"""This node's federation state in its database: rosters, certificates, its OPRF share, pseudonyms.

Every roster version the node applied is kept as the signed envelope; the one
in force is the newest. A version is stored only after it verified against
the version before it (or, for version 1, against the SHA-256 the founding
members pinned out of band): `apply_roster`. Members' TLS certificates are
stored only when they match a pin of the roster being applied.

The node's share of the compact OPRF key is stored field-encrypted under the
node's data key (crypto.fields, context bound to the public record's SHA-256),
and only after `federation.ceremony.open_share` checked it against the
roster's public record.

Pseudonyms are cached per OPRF public record: a new compact key gives new
pseudonyms, never a mix.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from crypto import x25519
from crypto.dsse import Envelope
from crypto.errors import CryptoError
from crypto.fields import FieldCipher
from crypto.ristretto import Scalar
from crypto.threshold_oprf import KeyShare
from crypto.tls import certificate_fingerprint
from federation.ceremony import open_share, public_sha256
from federation.errors import CeremonyError, FederationError, RosterError
from federation.keyhistory import KeyHistory
from federation.roster import Roster, verify_initial, verify_update
from node import models as m
from node.db import Database

MAX_CERTIFICATE_BYTES: Final = 16 * 1024
_SHARE_CONTEXT: Final = b"compact/oprf-share/v1:"


class NotInCompactError(FederationError):
    """This node has not applied a roster yet (it is not part of a compact)."""


def current_roster(db: Database) -> Roster | None:
    """The roster in force in `db` (the newest applied version), or None before the
    first; needs no key material."""
    with db.read() as s:
        return _current(s)


# The newest version (number and payload SHA-256) each database's history was built from.
_HISTORIES: Final[weakref.WeakKeyDictionary[Database, tuple[int, str, KeyHistory]]] = (
    weakref.WeakKeyDictionary()
)
_HISTORIES_LOCK: Final = threading.Lock()


def key_history(db: Database) -> KeyHistory:
    """Every signing key each state had in the roster versions applied in `db`
    (federation.keyhistory; empty before the first); needs no key material.

    Versions are parsed, not verified again: each was verified against the one before
    when it was stored. The history is kept per database until a newer version is
    applied, so a call costs one small query while the roster does not change.
    """
    with db.read() as s:
        newest = s.execute(
            select(m.RosterVersion.version, m.RosterVersion.payload_sha256)
            .order_by(m.RosterVersion.version.desc())
            .limit(1)
        ).first()
        if newest is None:
            return KeyHistory({}, 0)
        stamp = (int(newest[0]), str(newest[1]))
        with _HISTORIES_LOCK:
            cached = _HISTORIES.get(db)
        if cached is not None and cached[:2] == stamp:
            return cached[2]
        rows = s.scalars(
            select(m.RosterVersion.envelope)
            .where(m.RosterVersion.version <= stamp[0])
            .order_by(m.RosterVersion.version)
        ).all()
        # Stored only after verification; parsed again (not re-verified) when read.
        history = KeyHistory.from_rosters(
            [Roster.from_payload(Envelope.from_json(bytes(row)).payload) for row in rows]
        )
    with _HISTORIES_LOCK:
        _HISTORIES[db] = (*stamp, history)
    return history


class FederationStore:
    """Rosters, member certificates, the OPRF share and pseudonyms of one node."""

    def __init__(self, db: Database, fields: FieldCipher, state: str) -> None:
        self.db = db
        self._fields = fields
        self.state = state

    # --- rosters ----------------------------------------------------------------------

    def roster(self) -> Roster | None:
        """The roster in force (the newest applied version), or None before the first."""
        return current_roster(self.db)

    def key_history(self) -> KeyHistory:
        """Every signing key each state had in the applied roster versions (`key_history`)."""
        return key_history(self.db)

    def require_roster(self) -> Roster:
        roster = self.roster()
        if roster is None:
            raise NotInCompactError(
                "this node is not part of a compact yet: apply a roster (compact roster apply)"
            )
        return roster

    def roster_envelopes(self, *, after_version: int = 0) -> list[bytes]:
        """The signed envelopes (JSON) of versions after `after_version`, oldest first."""
        with self.db.read() as s:
            return [
                bytes(e)
                for e in s.scalars(
                    select(m.RosterVersion.envelope)
                    .where(m.RosterVersion.version > after_version)
                    .order_by(m.RosterVersion.version)
                )
            ]

    def apply_roster(
        self,
        envelope: Envelope,
        certificates: Sequence[bytes],
        *,
        now: datetime,
        pinned_sha256: str | None = None,
        check_expiry: bool = True,
    ) -> Roster:
        """Verify and install the next roster version, with its members' certificates.

        Version 1 needs `pinned_sha256` (the SHA-256 of its payload the founding members
        compared out of band); later versions must be signed by the threshold of the
        version in force (federation.roster). Every member of the new version must have
        a certificate matching its pin, given here or already stored. Nothing is written
        unless everything checks (RosterError, RosterRollbackError, RosterExpiredError).
        `check_expiry=False` is for a version that a newer one, applied next in the same
        walk, supersedes (only the newest must be in force).
        """
        with self.db.write() as s:
            return _apply(s, envelope, certificates, now, pinned_sha256, check_expiry)

    def apply_rosters(
        self,
        versions: Sequence[tuple[Envelope, Sequence[bytes]]],
        *,
        now: datetime,
        pinned_sha256: str | None = None,
    ) -> Roster:
        """`apply_roster` for consecutive versions, in order, in one transaction: all of
        them or none. Only the last must be in force (a member catching up walks versions
        that have expired since). RosterWalkError names the one refused."""
        with self.db.write() as s:
            roster: Roster | None = None
            for i, (envelope, certificates) in enumerate(versions):
                try:
                    roster = _apply(
                        s, envelope, certificates, now, pinned_sha256, i == len(versions) - 1
                    )
                except FederationError as e:
                    raise RosterWalkError(i, e) from None
            if roster is None:
                raise ValueError("no roster version given")
            return roster

    def certificates(self, roster: Roster) -> dict[str, bytes]:
        """The stored TLS certificate (PEM) of each member of `roster`, by state."""
        pins = {member.tls_pin: member.state for member in roster.members}
        with self.db.read() as s:
            rows = s.execute(
                select(m.MemberCertificate.tls_pin, m.MemberCertificate.certificate).where(
                    m.MemberCertificate.tls_pin.in_(pins)
                )
            ).all()
        return {pins[pin]: bytes(pem) for pin, pem in rows}

    # --- the OPRF share ---------------------------------------------------------------

    def import_share(self, sealed: bytes, private_key: x25519.PrivateKey, *, now: datetime) -> int:
        """Open, check and store this node's sealed share; returns its index."""
        roster = self.require_roster()
        share = open_share(sealed, state=self.state, private_key=private_key, roster=roster)
        assert roster.oprf is not None  # open_share refuses a roster without one
        digest = public_sha256(roster.oprf)
        token = self._fields.seal(
            share.scalar.to_bytes().hex(), context=_SHARE_CONTEXT + digest.encode()
        )
        with self.db.write() as s:
            stored = s.get(m.OprfShare, digest)
            if stored is not None:
                if stored.share_index != share.index:  # pragma: no cover - open_share checks
                    raise CeremonyError("a different share is already stored for this key")
                return share.index
            s.add(
                m.OprfShare(
                    oprf_sha256=digest, share_index=share.index, share_enc=token, imported_at=now
                )
            )
        return share.index

    def share(self, roster: Roster) -> KeyShare | None:
        """This node's share of the key in `roster`, if it holds one."""
        if roster.oprf is None:
            return None
        digest = public_sha256(roster.oprf)
        with self.db.read() as s:
            row = s.get(m.OprfShare, digest)
            if row is None:
                return None
            index, token = row.share_index, bytes(row.share_enc)
        try:
            hex_scalar = self._fields.open(token, context=_SHARE_CONTEXT + digest.encode())
            return KeyShare(index, Scalar.from_bytes(bytes.fromhex(hex_scalar)))
        except (CryptoError, ValueError):
            raise CeremonyError(
                "the stored OPRF share cannot be opened with this node's key"
            ) from None

    # --- pseudonyms -------------------------------------------------------------------

    def cached_pseudonyms(self, oprf_sha256: str, keys: Iterable[str]) -> dict[str, str]:
        """The cached pseudonyms of those of `keys` that have one."""
        wanted = sorted(set(keys))
        out: dict[str, str] = {}
        with self.db.read() as s:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                out.update(
                    (str(k), str(v))
                    for k, v in s.execute(
                        select(m.Pseudonym.key, m.Pseudonym.pseudonym).where(
                            m.Pseudonym.oprf_sha256 == oprf_sha256, m.Pseudonym.key.in_(chunk)
                        )
                    )
                )
        return out

    def cache_pseudonyms(self, oprf_sha256: str, pseudonyms: Mapping[str, str]) -> None:
        if not pseudonyms:
            return
        now = datetime.now(UTC)
        with self.db.write() as s:
            existing = set(
                s.scalars(
                    select(m.Pseudonym.key).where(
                        m.Pseudonym.oprf_sha256 == oprf_sha256,
                        m.Pseudonym.key.in_(list(pseudonyms)),
                    )
                )
            )
            s.add_all(
                m.Pseudonym(oprf_sha256=oprf_sha256, key=k, pseudonym=v, created_at=now)
                for k, v in pseudonyms.items()
                if k not in existing
            )

    def forget_pseudonyms(self, *, except_for: str) -> None:
        """Drop pseudonyms under any other OPRF key than `except_for` (after a new ceremony)."""
        with self.db.write() as s:
            s.execute(delete(m.Pseudonym).where(m.Pseudonym.oprf_sha256 != except_for))


def read_roster(db: Database) -> Roster | None:
    """The roster in force, for readers that hold no keys (`compact peers`)."""
    with db.read() as s:
        return _current(s)


class RosterWalkError(FederationError):
    """A version of a walk (`apply_rosters`) was refused; nothing of the walk was applied."""

    def __init__(self, position: int, cause: FederationError) -> None:
        super().__init__(str(cause))
        self.position = position  # 0-based, in the order given
        self.cause = cause


def _apply(
    s: Session,
    envelope: Envelope,
    certificates: Sequence[bytes],
    now: datetime,
    pinned_sha256: str | None,
    check_expiry: bool,
) -> Roster:
    for pem in certificates:
        if not isinstance(pem, bytes) or len(pem) > MAX_CERTIFICATE_BYTES:
            raise RosterError("a member certificate is too large")
    current = _current(s)
    if current is None:
        if not pinned_sha256:
            raise RosterError("the first roster needs the SHA-256 pin the founding members agreed")
        roster = verify_initial(
            envelope, pinned_sha256=pinned_sha256, now=now, check_expiry=check_expiry
        )
    else:
        roster = verify_update(current, envelope, now=now, check_expiry=check_expiry)
    known = set(s.scalars(select(m.MemberCertificate.tls_pin)))
    given: dict[str, bytes] = {}
    for pem in certificates:
        try:
            given[certificate_fingerprint(pem)] = pem
        except (CryptoError, ValueError):
            raise RosterError("a member certificate cannot be read") from None
    for member in roster.members:
        if member.tls_pin in known:
            continue
        cert = given.get(member.tls_pin)
        if cert is None:
            raise RosterError(f"no certificate matches the TLS pin of {member.state}")
        s.add(
            m.MemberCertificate(
                tls_pin=member.tls_pin, state=member.state, certificate=cert, added_at=now
            )
        )
    s.add(
        m.RosterVersion(
            version=roster.version,
            envelope=envelope.to_json(),
            payload_sha256=roster.payload_sha256(),
            applied_at=now,
        )
    )
    return roster


def _current(s: Session) -> Roster | None:
    row = s.scalars(
        select(m.RosterVersion.envelope).order_by(m.RosterVersion.version.desc()).limit(1)
    ).first()
    if row is None:
        return None
    # Stored only after verification; parsed again (not re-verified) when read.
    return Roster.from_payload(Envelope.from_json(bytes(row)).payload)
