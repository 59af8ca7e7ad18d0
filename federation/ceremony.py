"""The OPRF key ceremony: split the compact key t-of-n and seal each share to its member.

`run_ceremony` generates the compact's OPRF key, splits it into one Shamir share
per roster member (index i for the i-th member in roster order, that is sorted
by state), seals each share to that member's X25519 key from the roster, and
returns the public record (threshold, group public key, one commitment per
state) for the next roster version. It keeps no copy of the key; Python
cannot wipe memory, so the ceremony host must be trusted exactly as
docs/oprf-ceremony.md says.

`open_share` is what each node runs on the sealed share it received: it
opens the sealed box with its own X25519 key, checks the share belongs to
this state, this roster and this public record, that the share matches its
commitment (share·G), and that the commitments are a consistent t-of-n sharing
of the public key (every t-subset interpolates to it). A share that fails any
check is refused (CeremonyError); nothing is stored.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from crypto import x25519
from crypto.errors import CryptoError
from crypto.ristretto import Element, Scalar, base_mult, random_scalar
from crypto.threshold_oprf import KeyShare, ShareCommitment, split_key, verify_commitments
from federation.encoding import canonical_json, load_json_object
from federation.errors import FederationError
from federation.roster import Roster

SHARE_FORMAT: Final = "compact-oprf-share-v1"
PUBLIC_FORMAT: Final = "compact-oprf-public-v1"
_MAX_SEALED: Final = 4096


class CeremonyError(FederationError):
    """A sealed share or public record that must not be used."""


@dataclass(frozen=True)
class OprfPublic:
    """The public outcome of a ceremony, recorded in the roster."""

    threshold: int
    public_key: Element
    commitments: Mapping[str, ShareCommitment]  # by state

    def to_json(self) -> bytes:
        return canonical_json(
            {
                "format": PUBLIC_FORMAT,
                "threshold": self.threshold,
                "public_key": self.public_key.to_bytes().hex(),
                "commitments": {
                    state: {"index": c.index, "element": c.element.to_bytes().hex()}
                    for state, c in sorted(self.commitments.items())
                },
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> OprfPublic:
        obj = _load(data, 64 * 1024)
        try:
            if obj.get("format") != PUBLIC_FORMAT or set(obj) != {
                "format",
                "threshold",
                "public_key",
                "commitments",
            }:
                raise CeremonyError("OPRF public record: unknown format or fields")
            commitments = {
                state: ShareCommitment(
                    _integer(c["index"]), Element.from_bytes(bytes.fromhex(c["element"]))
                )
                for state, c in obj["commitments"].items()
            }
            public = cls(
                threshold=_integer(obj["threshold"]),
                public_key=Element.from_bytes(bytes.fromhex(obj["public_key"])),
                commitments=commitments,
            )
        except (KeyError, TypeError, ValueError, AttributeError, CryptoError):
            raise CeremonyError("OPRF public record: malformed") from None
        public.check()
        return public

    def check(self) -> None:
        """CeremonyError unless the commitments are a t-of-n sharing of the public key."""
        try:
            verify_commitments(list(self.commitments.values()), self.public_key, t=self.threshold)
        except CryptoError as e:
            raise CeremonyError(f"OPRF public record: {e}") from None


@dataclass(frozen=True)
class CeremonyOutput:
    public: OprfPublic
    sealed_shares: Mapping[str, bytes]  # by state: the sealed box to send to that member


def run_ceremony(roster: Roster, *, threshold: int) -> CeremonyOutput:
    """Generate the compact key, split it, seal each share to its member; keep nothing."""
    members = roster.members
    if not 1 <= threshold <= len(members):
        raise CeremonyError("the threshold must be between 1 and the number of members")
    key = random_scalar()
    split = split_key(key, t=threshold, n=len(members))
    del key
    roster_sha256 = roster.payload_sha256()
    sealed: dict[str, bytes] = {}
    commitments: dict[str, ShareCommitment] = {}
    for member, share, commitment in zip(members, split.shares, split.commitments, strict=True):
        body = canonical_json(
            {
                "format": SHARE_FORMAT,
                "state": member.state,
                "index": share.index,
                "threshold": threshold,
                "share": share.scalar.to_bytes().hex(),
                "public_key": split.public_key.to_bytes().hex(),
                "roster_sha256": roster_sha256,
            }
        )
        sealed[member.state] = x25519.seal(member.encryption_key, body)
        commitments[member.state] = commitment
    public = OprfPublic(threshold, split.public_key, commitments)
    public.check()
    return CeremonyOutput(public, sealed)


def open_share(
    sealed: bytes,
    *,
    state: str,
    private_key: x25519.PrivateKey,
    public: OprfPublic,
    roster: Roster,
) -> KeyShare:
    """Open this node's sealed share and check it against the public record."""
    if len(sealed) > _MAX_SEALED:
        raise CeremonyError("sealed share: too large")
    try:
        body = x25519.open_sealed(private_key, sealed)
    except CryptoError:
        raise CeremonyError("sealed share: cannot be opened with this node's key") from None
    obj = _load(body, _MAX_SEALED)
    fields = {"format", "state", "index", "threshold", "share", "public_key", "roster_sha256"}
    if obj.get("format") != SHARE_FORMAT or set(obj) != fields:
        raise CeremonyError("sealed share: unknown format or fields")
    if obj["state"] != state:
        raise CeremonyError("sealed share: made for another state")
    if not isinstance(obj["roster_sha256"], str) or not hmac.compare_digest(
        obj["roster_sha256"], roster.payload_sha256()
    ):
        raise CeremonyError("sealed share: made for another roster version")
    try:
        share = KeyShare(_integer(obj["index"]), Scalar.from_bytes(bytes.fromhex(obj["share"])))
        share_public = Element.from_bytes(bytes.fromhex(obj["public_key"]))
    except (TypeError, ValueError, CryptoError):
        raise CeremonyError("sealed share: malformed") from None
    if obj["threshold"] != public.threshold or share_public != public.public_key:
        raise CeremonyError("sealed share: does not belong to this public record")
    commitment = public.commitments.get(state)
    if commitment is None or commitment.index != share.index:
        raise CeremonyError("sealed share: no commitment for this state and index")
    try:
        matches = base_mult(share.scalar) == commitment.element
    except ValueError:  # a zero share
        matches = False
    if not matches:
        raise CeremonyError("sealed share: does not match its commitment")
    public.check()
    return share


def _integer(value: object) -> int:
    if type(value) is not int:  # not bool, not a string of digits
        raise TypeError("expected an integer")
    return value


def _load(data: bytes, limit: int) -> dict[str, Any]:
    try:
        return load_json_object(data, limit=limit)
    except ValueError as e:
        raise CeremonyError(str(e)) from None
