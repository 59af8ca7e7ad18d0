"""Ed25519 signing keys and public keys (RFC 8032), strict on untrusted input.

:class:`SigningKey` signs bytes and gives detached 64-byte signatures.
:class:`PublicKey` is the only way to hold a verification key: it is built
from untrusted bytes by :meth:`PublicKey.from_bytes`, which rejects (with
:class:`~crypto.errors.EncodingError`) anything but a canonical encoding of a
point of the prime-order subgroup, so keys of small order (the identity, the
points of order 2, 4 and 8), non-canonical encodings (``y >= p``, a "negative
zero" ``x``), points off the curve and points with a torsion component never
reach verification. No honest key generator produces any of these.

:meth:`PublicKey.verify` returns ``None`` or raises
:class:`~crypto.errors.VerificationError`, for every way a signature can be
wrong: wrong length, ``S`` not below the group order ``L`` (checked here, and
again by libsodium), a small-order ``R``, or an equation that does not hold.
Verification is libsodium's ``crypto_sign_open`` (cofactorless, strict).

Key identifiers (:data:`KeyId`) are :func:`crypto.keystore.key_id` of the raw
32-byte public key: the lowercase hex of the first 16 bytes of its SHA-256.
Because the encoding is canonical, one key has exactly one key id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NewType

import nacl.bindings
import nacl.exceptions
import nacl.signing

from crypto.errors import EncodingError, VerificationError
from crypto.keystore import key_id

__all__ = [
    "PUBLIC_KEY_SIZE",
    "SEED_SIZE",
    "SIGNATURE_SIZE",
    "KeyId",
    "PublicKey",
    "SigningKey",
]

#: A key identifier: :func:`crypto.keystore.key_id` of the raw public key (32 hex digits).
KeyId = NewType("KeyId", str)

PUBLIC_KEY_SIZE: Final = nacl.bindings.crypto_sign_PUBLICKEYBYTES
SEED_SIZE: Final = nacl.bindings.crypto_sign_SEEDBYTES
SIGNATURE_SIZE: Final = nacl.bindings.crypto_sign_BYTES

#: The order of the prime-order subgroup of edwards25519 (RFC 8032, section 5.1).
_L: Final = 2**252 + 27742317777372353535851937790883648493

if not nacl.bindings.has_crypto_core_ed25519:  # pragma: no cover - minimal libsodium builds
    raise ImportError("crypto.signing needs a libsodium with crypto_core_ed25519")


def _canonical_s(signature: bytes) -> bool:
    """Whether the scalar ``S`` (the last 32 bytes, little-endian) is below ``L``.

    RFC 8032 section 5.1.7 requires rejecting ``S >= L``; otherwise ``S + L``
    gives a second valid signature for the same message (malleability).
    """
    return int.from_bytes(signature[32:], "little") < _L


@dataclass(frozen=True, slots=True, repr=False)
class PublicKey:
    """An Ed25519 public key, checked on construction; equal and hashed by its raw bytes.

    Build it with :meth:`from_bytes` (or ``PublicKey(raw)``, which runs the
    same checks).
    """

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes):
            raise TypeError("an Ed25519 public key must be bytes")
        if len(self.raw) != PUBLIC_KEY_SIZE:
            raise EncodingError(f"an Ed25519 public key must be {PUBLIC_KEY_SIZE} bytes")
        # Canonical, on the curve, not of small order, in the prime-order subgroup.
        if not nacl.bindings.crypto_core_ed25519_is_valid_point(self.raw):
            raise EncodingError(
                "not a valid Ed25519 public key (small order, non-canonical or not on the curve)"
            )

    @classmethod
    def from_bytes(cls, raw: bytes) -> PublicKey:
        """Load a raw 32-byte public key from untrusted input.

        Raises :class:`EncodingError` if ``raw`` has the wrong length or is not
        a canonical encoding of a prime-order point; ``TypeError`` if it is
        not ``bytes``.
        """
        return cls(raw)

    @property
    def key_id(self) -> KeyId:
        """This key's identifier (see the module docstring)."""
        return KeyId(key_id(self.raw))

    def verify(self, message: bytes, signature: bytes) -> None:
        """Check a detached signature over ``message``; raise :class:`VerificationError` if bad.

        Returns nothing on success: there is no boolean to forget to check.
        ``TypeError`` if either argument is not ``bytes``.
        """
        if not isinstance(message, bytes):
            raise TypeError("message must be bytes")
        if not isinstance(signature, bytes):
            raise TypeError("signature must be bytes")
        valid = len(signature) == SIGNATURE_SIZE and _canonical_s(signature)
        if valid:
            try:
                nacl.bindings.crypto_sign_open(signature + message, self.raw)
            except nacl.exceptions.BadSignatureError:
                valid = False
        # Raised outside the except block so that nothing is chained to it.
        if not valid:
            raise VerificationError("Ed25519 signature does not verify")

    def __repr__(self) -> str:
        return f"PublicKey(key_id={self.key_id})"


class SigningKey:
    """An Ed25519 signing key (the 32-byte RFC 8032 seed, held by PyNaCl).

    Compared by identity only; the ``repr`` shows the key id, never the seed.
    """

    __slots__ = ("_key", "_public_key")

    _key: nacl.signing.SigningKey
    _public_key: PublicKey

    def __init__(self, key: nacl.signing.SigningKey) -> None:
        """Wrap a PyNaCl signing key (e.g. ``NodeKeys.signing_key`` from the keystore)."""
        if not isinstance(key, nacl.signing.SigningKey):
            raise TypeError("key must be a nacl.signing.SigningKey")
        self._key = key
        self._public_key = PublicKey(key.verify_key.encode())

    @classmethod
    def generate(cls) -> SigningKey:
        """A new key from the operating system's CSPRNG."""
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """The key for a 32-byte RFC 8032 seed (a secret: ``ValueError`` if not 32 bytes)."""
        if not isinstance(seed, bytes):
            raise TypeError("seed must be bytes")
        if len(seed) != SEED_SIZE:
            raise ValueError(f"an Ed25519 seed must be {SEED_SIZE} bytes")
        return cls(nacl.signing.SigningKey(seed))

    @property
    def public_key(self) -> PublicKey:
        return self._public_key

    @property
    def key_id(self) -> KeyId:
        return self._public_key.key_id

    def sign(self, message: bytes) -> bytes:
        """The detached 64-byte Ed25519 signature of ``message`` (deterministic)."""
        if not isinstance(message, bytes):
            raise TypeError("message must be bytes")
        return self._key.sign(message).signature

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id})"
