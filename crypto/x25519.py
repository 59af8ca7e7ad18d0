"""X25519 encryption keys (RFC 7748) and libsodium sealed boxes.

:class:`PublicKey` is built from untrusted bytes by :meth:`PublicKey.from_bytes`,
which accepts only the canonical encoding of a point that is not of low order:

* 32 bytes, with bit 255 clear and the value ``u`` below ``p = 2**255 - 19``
  (RFC 7748 tells receivers to *mask* bit 255 and reduce ``u``; we reject
  instead, so that one key has exactly one encoding and one key id, and no
  honest implementation writes anything else);
* ``u`` not one of the five canonical low-order values ``0``, ``1``,
  ``p - 1`` and the two order-8 values listed in :data:`_LOW_ORDER` (private
  scalars are multiples of 8, so with a low-order key the shared secret is all
  zeros whatever the private key: the key exchange is not contributory).

Every rejection raises :class:`~crypto.errors.EncodingError`: a low-order
point is a malformed group element, not a failed signature.
:func:`shared_secret` raises :class:`~crypto.errors.EncodingError` as well if
the result is nevertheless all zeros (defence in depth; it cannot happen for a
key that passed the checks above). It returns the raw X25519 output, which is
not a uniformly random key: pass it, with both public keys, through a KDF.

:func:`seal` and :func:`open_sealed` are libsodium sealed boxes
(``crypto_box_seal``: an ephemeral X25519 key, XSalsa20-Poly1305). They are
anonymous: a sealed box says nothing about who made it, so sign (DSSE) what
you seal when the sender matters. Any failure to open, of any kind, is
:class:`~crypto.errors.DecryptionError`.

Key ids use the scheme of :mod:`crypto.signing` (:func:`crypto.keystore.key_id`
of the raw public key); an X25519 key id names an encryption key, never a
signing key, and the two must not be looked up in the same table.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final

import nacl.bindings
import nacl.exceptions
import nacl.public

from crypto.errors import DecryptionError, EncodingError
from crypto.keystore import key_id
from crypto.signing import KeyId

__all__ = [
    "KEY_SIZE",
    "SEAL_OVERHEAD",
    "PrivateKey",
    "PublicKey",
    "open_sealed",
    "seal",
    "shared_secret",
]

KEY_SIZE: Final = nacl.bindings.crypto_scalarmult_BYTES
#: Sealed box length minus plaintext length: ephemeral public key (32) + tag (16).
SEAL_OVERHEAD: Final = nacl.bindings.crypto_box_SEALBYTES

_P: Final = 2**255 - 19

#: The canonical ``u`` of every point of order 2, 4 or 8 on Curve25519 and its twist: the
#: values below ``p`` in D. J. Bernstein's list of public keys to reject
#: (https://cr.yp.to/ecdh.html, "Which public keys should be rejected?"), the same as
#: libsodium's ``has_small_order`` (crypto_scalarmult/curve25519/ref10/x25519_ref10.c).
#: Their other encodings (``p``, ``p + 1``, bit 255 set) fail the canonical check first.
_LOW_ORDER: Final = frozenset(
    {
        0,  # (0, 0), order 2; the ladder also encodes the point at infinity as 0
        1,  # order 4
        _P - 1,  # order 4, on the twist
        325606250916557431795983626356110631294008115727848805560023387167927233504,  # order 8
        39382357235489614581723060781553021112529911719440698176882885853963445705823,  # order 8
    }
)

_OPEN_FAILED: Final = "sealed box could not be opened"


@dataclass(frozen=True, slots=True, repr=False)
class PublicKey:
    """An X25519 public key, checked on construction; equal and hashed by its raw bytes."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes):
            raise TypeError("an X25519 public key must be bytes")
        if len(self.raw) != KEY_SIZE:
            raise EncodingError(f"an X25519 public key must be {KEY_SIZE} bytes")
        u = int.from_bytes(self.raw, "little")
        if u >= _P:  # also every value with bit 255 set
            raise EncodingError("not a canonical X25519 public key")
        if u in _LOW_ORDER:
            raise EncodingError("X25519 public key is a low-order point")

    @classmethod
    def from_bytes(cls, raw: bytes) -> PublicKey:
        """Load a raw 32-byte public key from untrusted input (:class:`EncodingError` if bad)."""
        return cls(raw)

    @property
    def key_id(self) -> KeyId:
        return KeyId(key_id(self.raw))

    def __repr__(self) -> str:
        return f"x25519.PublicKey(key_id={self.key_id})"


class PrivateKey:
    """An X25519 private key. Compared by identity only; the ``repr`` never shows it."""

    __slots__ = ("_key", "_public_key")

    _key: nacl.public.PrivateKey
    _public_key: PublicKey

    def __init__(self, key: nacl.public.PrivateKey) -> None:
        """Wrap a PyNaCl private key (e.g. ``NodeKeys.encryption_key`` from the keystore)."""
        if not isinstance(key, nacl.public.PrivateKey):
            raise TypeError("key must be a nacl.public.PrivateKey")
        self._key = key
        self._public_key = PublicKey(key.public_key.encode())

    @classmethod
    def generate(cls) -> PrivateKey:
        """A new key from the operating system's CSPRNG."""
        return cls(nacl.public.PrivateKey.generate())

    @classmethod
    def from_bytes(cls, raw: bytes) -> PrivateKey:
        """The key for a 32-byte scalar (a secret: ``ValueError`` if not 32 bytes)."""
        if not isinstance(raw, bytes):
            raise TypeError("an X25519 private key must be bytes")
        if len(raw) != KEY_SIZE:
            raise ValueError(f"an X25519 private key must be {KEY_SIZE} bytes")
        return cls(nacl.public.PrivateKey(raw))

    @property
    def public_key(self) -> PublicKey:
        return self._public_key

    @property
    def key_id(self) -> KeyId:
        return self._public_key.key_id

    def __repr__(self) -> str:
        return f"x25519.PrivateKey(key_id={self.key_id})"


def _check_private(private: object) -> PrivateKey:
    if not isinstance(private, PrivateKey):
        raise TypeError("private must be a crypto.x25519.PrivateKey")
    return private


def _check_public(public: object) -> PublicKey:
    if not isinstance(public, PublicKey):
        raise TypeError("public must be a crypto.x25519.PublicKey")
    return public


def shared_secret(private: PrivateKey, public: PublicKey) -> bytes:
    """The raw 32-byte X25519 output; :class:`EncodingError` for a low-order ``public``.

    Not a key by itself: derive keys from it with a KDF over the output and
    both public keys.
    """
    _check_private(private)
    _check_public(public)
    out: bytes | None = None
    try:
        out = nacl.bindings.crypto_scalarmult(private._key.encode(), public.raw)
    except nacl.exceptions.RuntimeError:  # libsodium refuses a low-order point
        out = None
    if out is None or hmac.compare_digest(out, bytes(KEY_SIZE)):
        raise EncodingError("X25519 public key is a low-order point")
    return out


def seal(recipient: PublicKey, plaintext: bytes) -> bytes:
    """Encrypt ``plaintext`` to ``recipient`` in an anonymous sealed box.

    The result is ``SEAL_OVERHEAD`` bytes longer than ``plaintext``; every
    call uses a fresh ephemeral key.
    """
    _check_public(recipient)
    if not isinstance(plaintext, bytes):
        raise TypeError("plaintext must be bytes")
    return nacl.bindings.crypto_box_seal(plaintext, recipient.raw)


def open_sealed(private: PrivateKey, ciphertext: bytes) -> bytes:
    """Open a sealed box made for ``private``'s public key.

    :class:`DecryptionError`, with no further detail, if it was made for
    another key, altered, truncated, or carries a low-order ephemeral key.
    """
    _check_private(private)
    if not isinstance(ciphertext, bytes):
        raise TypeError("ciphertext must be bytes")
    plaintext: bytes | None = None
    if len(ciphertext) >= SEAL_OVERHEAD:
        try:
            plaintext = nacl.bindings.crypto_box_seal_open(
                ciphertext, private.public_key.raw, private._key.encode()
            )
        except nacl.exceptions.CryptoError:
            plaintext = None
    # Raised outside the except block so that nothing is chained to it.
    if plaintext is None:
        raise DecryptionError(_OPEN_FAILED)
    return plaintext
