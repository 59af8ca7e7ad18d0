"""The public record of the compact's OPRF key, as the roster carries it.

A ceremony (federation.ceremony) deals the compact key t-of-n; its public
outcome is the threshold, the group public key and each member's share
commitment (share·G). The record goes into the roster so that every member
verifies every share holder's DLEQ proof against the commitment the roster
signed, and checks that the commitments are a consistent t-of-n sharing of
the public key (any t of them interpolate to it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from crypto.errors import CryptoError
from crypto.ristretto import Element
from crypto.threshold_oprf import ShareCommitment, verify_commitments
from federation.encoding import canonical_json, load_json_object
from federation.errors import CeremonyError

PUBLIC_FORMAT: Final = "compact-oprf-public-v1"
_FIELDS: Final = frozenset({"format", "threshold", "public_key", "commitments"})


@dataclass(frozen=True)
class OprfPublic:
    """The public outcome of a ceremony, recorded in the roster."""

    threshold: int
    public_key: Element
    commitments: Mapping[str, ShareCommitment]  # by state

    def to_obj(self) -> dict[str, Any]:
        return {
            "format": PUBLIC_FORMAT,
            "threshold": self.threshold,
            "public_key": self.public_key.to_bytes().hex(),
            "commitments": {
                state: {"index": c.index, "element": c.element.to_bytes().hex()}
                for state, c in sorted(self.commitments.items())
            },
        }

    def to_json(self) -> bytes:
        return canonical_json(self.to_obj())

    @classmethod
    def from_obj(cls, obj: Any) -> OprfPublic:
        """Parse and check a record (CeremonyError if malformed or inconsistent)."""
        try:
            if (
                not isinstance(obj, dict)
                or obj.get("format") != PUBLIC_FORMAT
                or set(obj) != _FIELDS
            ):
                raise CeremonyError("OPRF public record: unknown format or fields")
            if not isinstance(obj["commitments"], dict):
                raise CeremonyError("OPRF public record: commitments must be an object")
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

    @classmethod
    def from_json(cls, data: bytes) -> OprfPublic:
        try:
            obj = load_json_object(data, limit=64 * 1024)
        except ValueError as e:
            raise CeremonyError(f"OPRF public record: {e}") from None
        return cls.from_obj(obj)

    def check(self) -> None:
        """CeremonyError unless the commitments are a t-of-n sharing of the public key."""
        try:
            verify_commitments(list(self.commitments.values()), self.public_key, t=self.threshold)
        except CryptoError as e:
            raise CeremonyError(f"OPRF public record: {e}") from None

    def commitment_table(self) -> dict[int, Element]:
        """Share index -> commitment, as crypto.threshold_oprf.combine takes it."""
        return {c.index: c.element for c in self.commitments.values()}


def _integer(value: object) -> int:
    if type(value) is not int:  # not bool, not a string of digits
        raise TypeError("expected an integer")
    return value
