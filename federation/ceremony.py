"""The OPRF key ceremony: split the compact key t-of-n and seal each share to its member.

`run_ceremony` takes a proposed roster (its members' X25519 keys), generates the
compact's OPRF key, splits it into one Shamir share per member (index i for the
i-th member in roster order, that is sorted by state), seals each share to that
member's X25519 key, and returns the same roster with the public record
(threshold, group public key, one commitment per state) entered in it, ready
for the members to sign. It keeps no copy of the key; Python cannot wipe
memory, so the ceremony host must be trusted exactly as docs/oprf-ceremony.md
says.

`open_share` is what each node runs on the sealed share it received: it opens
the sealed box with its own X25519 key, checks the share belongs to this state
and to the public record of the roster in force (bound by the record's
SHA-256), that the share matches its commitment (share·G), and that the
commitments are a consistent t-of-n sharing of the public key (every t-subset
interpolates to it). A share that fails any check is refused (CeremonyError);
nothing is stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from crypto import x25519
from crypto.errors import CryptoError
from crypto.ristretto import Scalar, base_mult, random_scalar
from crypto.threshold_oprf import KeyShare, split_key
from federation.encoding import canonical_json, load_json_object
from federation.errors import CeremonyError
from federation.oprf_public import OprfPublic
from federation.roster import Roster

__all__ = [
    "CeremonyError",
    "CeremonyOutput",
    "OprfPublic",
    "open_share",
    "public_sha256",
    "run_ceremony",
]

SHARE_FORMAT: Final = "compact-oprf-share-v1"
_MAX_SEALED: Final = 4096


@dataclass(frozen=True)
class CeremonyOutput:
    roster: Roster  # the proposal with the public record entered, for members to sign
    public: OprfPublic
    sealed_shares: Mapping[str, bytes]  # by state: the sealed box to send to that member


def public_sha256(public: OprfPublic) -> str:
    return hashlib.sha256(public.to_json()).hexdigest()


def threshold_problem(threshold: int, members: int) -> str | None:
    """Why `threshold` cannot split the compact key among `members`, or None.

    A threshold of 1 among several members would give each of them the whole key: any
    one member could then compute every pseudonym offline, without the others and
    without their rate limits, which is what the threshold OPRF exists to prevent. It
    is allowed only for a compact of one member."""
    if not 1 <= threshold <= members:
        return f"must be between 1 and {members} (the number of members)"
    if threshold == 1 and members > 1:
        return (
            "must be at least 2 when there are several members: with 1, "
            "each member would hold the whole key and could compute pseudonyms alone"
        )
    return None


def run_ceremony(roster: Roster, *, threshold: int) -> CeremonyOutput:
    """Generate the compact key, split it, seal each share to its member; keep nothing."""
    members = roster.members
    problem = threshold_problem(threshold, len(members))
    if problem:
        raise CeremonyError(f"threshold {threshold}: {problem}")
    key = random_scalar()
    split = split_key(key, t=threshold, n=len(members))
    del key
    commitments = {
        member.state: commitment
        for member, commitment in zip(members, split.commitments, strict=True)
    }
    public = OprfPublic(threshold, split.public_key, commitments)
    public.check()
    digest = public_sha256(public)
    sealed: dict[str, bytes] = {}
    for member, share in zip(members, split.shares, strict=True):
        body = canonical_json(
            {
                "format": SHARE_FORMAT,
                "state": member.state,
                "index": share.index,
                "share": share.scalar.to_bytes().hex(),
                "oprf_sha256": digest,
            }
        )
        sealed[member.state] = x25519.seal(member.encryption_key, body)
    return CeremonyOutput(dataclasses.replace(roster, oprf=public), public, sealed)


def open_share(
    sealed: bytes, *, state: str, private_key: x25519.PrivateKey, roster: Roster
) -> KeyShare:
    """Open this node's sealed share and check it against the roster's public record."""
    public = roster.oprf
    if public is None:
        raise CeremonyError("the roster in force has no OPRF public record")
    if len(sealed) > _MAX_SEALED:
        raise CeremonyError("sealed share: too large")
    try:
        body = x25519.open_sealed(private_key, sealed)
    except CryptoError:
        raise CeremonyError("sealed share: cannot be opened with this node's key") from None
    obj = _load(body, _MAX_SEALED)
    fields = {"format", "state", "index", "share", "oprf_sha256"}
    if obj.get("format") != SHARE_FORMAT or set(obj) != fields:
        raise CeremonyError("sealed share: unknown format or fields")
    if obj["state"] != state:
        raise CeremonyError("sealed share: made for another state")
    if not isinstance(obj["oprf_sha256"], str) or not hmac.compare_digest(
        obj["oprf_sha256"], public_sha256(public)
    ):
        raise CeremonyError("sealed share: made for another OPRF key than the roster's")
    try:
        share = KeyShare(_integer(obj["index"]), Scalar.from_bytes(bytes.fromhex(obj["share"])))
    except (TypeError, ValueError, CryptoError):
        raise CeremonyError("sealed share: malformed") from None
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
