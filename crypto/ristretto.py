"""ristretto255 (RFC 9496): scalars and group elements over the system libsodium.

The only module of the package that calls pysodium. It turns libsodium's byte
strings and error codes into two typed values and a few recipes:

* :class:`Scalar`: an integer modulo the group order :data:`L`, held as its
  canonical 32-byte little-endian encoding.
* :class:`Element`: a group element *other than the identity*, held as its
  canonical 32-byte encoding.

Both types are closed under the checks: every way to make one from untrusted
bytes (:meth:`Scalar.from_bytes`, :meth:`Element.from_bytes`) validates, and
the arithmetic below only returns values that satisfy the type. Untrusted
input that fails raises :class:`~crypto.errors.EncodingError`.

libsodium's behaviour that this layer guards against (docs: PITFALLS):

* ``crypto_core_ristretto255_is_valid_point`` accepts the identity (the
  all-zero encoding); :meth:`Element.from_bytes` rejects it.
* ``crypto_scalarmult_ristretto255`` ignores the top bit of the scalar and
  accepts scalars at or above ``L``, and fails with the same code for an
  invalid point and an identity result; here scalars are reduced by type and
  a zero scalar is refused before the call.
* ``crypto_core_ristretto255_add``/``sub`` return the identity without error
  when the sum is the identity; here that raises ``ValueError``.

In a group of prime order a non-zero scalar times a non-identity element is
never the identity, so :func:`scalar_mult` and :func:`base_mult` only refuse a
zero scalar. A sum or difference of two valid elements can be the identity:
:func:`element_add` and :func:`element_sub` refuse it. Protocol code that
computes on untrusted elements turns that ``ValueError`` into the protocol's
own error.

Secret scalars are compared with :func:`hmac.compare_digest` and their
``repr`` is redacted; scalar arithmetic runs in libsodium (constant time).
"""

from __future__ import annotations

import hmac
from typing import Final, final

import pysodium

from crypto.errors import EncodingError

__all__ = [
    "ELEMENT_SIZE",
    "GENERATOR",
    "SCALAR_SIZE",
    "UNIFORM_SIZE",
    "Element",
    "L",
    "Scalar",
    "base_mult",
    "element_add",
    "element_from_uniform_bytes",
    "element_sub",
    "random_scalar",
    "scalar_add",
    "scalar_invert",
    "scalar_mul",
    "scalar_mult",
    "scalar_negate",
    "scalar_reduce64",
    "scalar_sub",
]

#: The order of the ristretto255 group (and of its base point): 2**252 + 27742...493.
L: Final = 2**252 + 27742317777372353535851937790883648493
SCALAR_SIZE: Final = 32
ELEMENT_SIZE: Final = 32
#: Bytes taken by :func:`scalar_reduce64` and :func:`element_from_uniform_bytes`.
UNIFORM_SIZE: Final = 64

_ZERO32: Final = bytes(32)
_PAD32: Final = bytes(32)

assert pysodium.crypto_core_ristretto255_SCALARBYTES == SCALAR_SIZE
assert pysodium.crypto_core_ristretto255_BYTES == ELEMENT_SIZE
assert pysodium.crypto_core_ristretto255_HASHBYTES == UNIFORM_SIZE
assert pysodium.crypto_core_ristretto255_NONREDUCEDSCALARBYTES == UNIFORM_SIZE


# --- typed wrappers over the pysodium calls used (pysodium has no type stubs) ------------


def _sodium_reduce(wide: bytes) -> bytes:
    out: bytes = pysodium.crypto_core_ristretto255_scalar_reduce(wide)
    return out


def _sodium_is_valid_point(encoding: bytes) -> bool:
    return bool(pysodium.crypto_core_ristretto255_is_valid_point(encoding))


# --- values -------------------------------------------------------------------------------


@final
class Scalar:
    """An integer modulo :data:`L`, as its canonical 32-byte little-endian encoding.

    Immutable; equality is constant time; ``repr`` does not show the value (a
    scalar is often a key, a key share or a blind). Zero is a valid scalar:
    protocols that must not use it (keys, blinds) refuse it themselves.
    """

    __slots__ = ("_encoding",)
    _encoding: bytes

    def __init__(self, encoding: bytes, /) -> None:
        if not isinstance(encoding, bytes):
            raise TypeError("a scalar encoding must be bytes")
        if len(encoding) != SCALAR_SIZE:
            raise EncodingError(f"a scalar is {SCALAR_SIZE} bytes")
        # Canonical iff reducing it changes nothing: a constant-time check in libsodium.
        if not hmac.compare_digest(_sodium_reduce(encoding + _PAD32), encoding):
            raise EncodingError("scalar is not canonical (at or above the group order)")
        object.__setattr__(self, "_encoding", encoding)

    @classmethod
    def from_bytes(cls, encoding: bytes) -> Scalar:
        """Decode a received scalar: 32 bytes, little-endian, below ``L`` (else EncodingError)."""
        return cls(encoding)

    @classmethod
    def from_int(cls, value: int) -> Scalar:
        """``value mod L`` for any integer (negative too): for public values such as
        Lagrange coefficients and share indexes; Python integers are not constant time."""
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError("value must be an int")
        return cls._trusted((value % L).to_bytes(SCALAR_SIZE, "little"))

    @classmethod
    def _trusted(cls, encoding: bytes) -> Scalar:
        """Wrap the output of libsodium, already canonical: no second check."""
        self = object.__new__(cls)
        object.__setattr__(self, "_encoding", encoding)
        return self

    def to_bytes(self) -> bytes:
        """The canonical 32-byte little-endian encoding (RFC 9497 SerializeScalar)."""
        return self._encoding

    def __bytes__(self) -> bytes:
        return self._encoding

    def to_int(self) -> int:
        """The value in ``[0, L)``, for public scalars (indexes, coefficients, tests)."""
        return int.from_bytes(self._encoding, "little")

    def is_zero(self) -> bool:
        return hmac.compare_digest(self._encoding, _ZERO32)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scalar):
            return NotImplemented
        return hmac.compare_digest(self._encoding, other._encoding)

    def __hash__(self) -> int:
        return hash((Scalar, self._encoding))

    def __repr__(self) -> str:
        return "Scalar(<redacted>)"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Scalar is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Scalar is immutable")


@final
class Element:
    """A ristretto255 group element other than the identity, as its canonical encoding.

    Immutable. Every element built from bytes was checked: a canonical
    encoding of a group element (RFC 9496 Decode) that is not the identity.
    """

    __slots__ = ("_encoding",)
    _encoding: bytes

    def __init__(self, encoding: bytes, /) -> None:
        if not isinstance(encoding, bytes):
            raise TypeError("an element encoding must be bytes")
        if len(encoding) != ELEMENT_SIZE:
            raise EncodingError(f"a group element is {ELEMENT_SIZE} bytes")
        if not _sodium_is_valid_point(encoding):
            raise EncodingError("not a canonical ristretto255 encoding")
        if hmac.compare_digest(encoding, _ZERO32):
            raise EncodingError("the identity element is not accepted")
        object.__setattr__(self, "_encoding", encoding)

    @classmethod
    def from_bytes(cls, encoding: bytes) -> Element:
        """Decode a received element (RFC 9497 DeserializeElement): EncodingError unless
        ``encoding`` is a canonical ristretto255 encoding of an element other than the identity."""
        return cls(encoding)

    @classmethod
    def _trusted(cls, encoding: bytes) -> Element:
        """Wrap the output of libsodium after the identity was ruled out: no second check."""
        self = object.__new__(cls)
        object.__setattr__(self, "_encoding", encoding)
        return self

    def to_bytes(self) -> bytes:
        """The canonical 32-byte encoding (RFC 9497 SerializeElement)."""
        return self._encoding

    def __bytes__(self) -> bytes:
        return self._encoding

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Element):
            return NotImplemented
        return hmac.compare_digest(self._encoding, other._encoding)

    def __hash__(self) -> int:
        return hash((Element, self._encoding))

    def __repr__(self) -> str:
        return f"Element({self._encoding.hex()!r})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Element is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Element is immutable")


#: The generator of RFC 9496 (section 4.4), the base point of the group.
GENERATOR: Final = Element(
    bytes.fromhex("e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76")
)


# --- scalar arithmetic (libsodium, constant time) ------------------------------------------


def random_scalar() -> Scalar:
    """A uniformly random scalar in ``[1, L)`` (libsodium never returns zero)."""
    out: bytes = pysodium.crypto_core_ristretto255_scalar_random()
    return Scalar._trusted(out)


def scalar_reduce64(uniform: bytes) -> Scalar:
    """A 64-byte string read little-endian, reduced modulo ``L`` (for hash-to-scalar)."""
    if not isinstance(uniform, bytes) or len(uniform) != UNIFORM_SIZE:
        raise ValueError(f"scalar_reduce64 takes {UNIFORM_SIZE} bytes")
    return Scalar._trusted(_sodium_reduce(uniform))


def scalar_add(a: Scalar, b: Scalar) -> Scalar:
    out: bytes = pysodium.crypto_core_ristretto255_scalar_add(a._encoding, b._encoding)
    return Scalar._trusted(out)


def scalar_sub(a: Scalar, b: Scalar) -> Scalar:
    out: bytes = pysodium.crypto_core_ristretto255_scalar_sub(a._encoding, b._encoding)
    return Scalar._trusted(out)


def scalar_mul(a: Scalar, b: Scalar) -> Scalar:
    out: bytes = pysodium.crypto_core_ristretto255_scalar_mul(a._encoding, b._encoding)
    return Scalar._trusted(out)


def scalar_negate(a: Scalar) -> Scalar:
    out: bytes = pysodium.crypto_core_ristretto255_scalar_negate(a._encoding)
    return Scalar._trusted(out)


def scalar_invert(a: Scalar) -> Scalar:
    """``1/a mod L``; ``ValueError`` for zero, which has no inverse."""
    if a.is_zero():
        raise ValueError("zero has no inverse")
    try:
        out: bytes = pysodium.crypto_core_ristretto255_scalar_invert(a._encoding)
    except ValueError:
        raise ValueError("zero has no inverse") from None
    return Scalar._trusted(out)


# --- group arithmetic ----------------------------------------------------------------------


def scalar_mult(s: Scalar, e: Element) -> Element:
    """``s * e``; ``ValueError`` for a zero scalar (the result would be the identity)."""
    if s.is_zero():
        raise ValueError("scalar multiplication by zero gives the identity")
    try:
        out: bytes = pysodium.crypto_scalarmult_ristretto255(s._encoding, e._encoding)
    except ValueError:  # unreachable: a valid non-identity element and 0 < s < L
        raise ValueError("scalar multiplication gave the identity") from None
    return Element._trusted(out)


def base_mult(s: Scalar) -> Element:
    """``s * GENERATOR``; ``ValueError`` for a zero scalar."""
    if s.is_zero():
        raise ValueError("scalar multiplication by zero gives the identity")
    try:
        out: bytes = pysodium.crypto_scalarmult_ristretto255_base(s._encoding)
    except ValueError:  # unreachable for 0 < s < L
        raise ValueError("scalar multiplication gave the identity") from None
    return Element._trusted(out)


def element_add(a: Element, b: Element) -> Element:
    """``a + b``; ``ValueError`` if the sum is the identity."""
    out: bytes = pysodium.crypto_core_ristretto255_add(a._encoding, b._encoding)
    if hmac.compare_digest(out, _ZERO32):
        raise ValueError("the sum is the identity")
    return Element._trusted(out)


def element_sub(a: Element, b: Element) -> Element:
    """``a - b``; ``ValueError`` if the difference is the identity (``a == b``)."""
    out: bytes = pysodium.crypto_core_ristretto255_sub(a._encoding, b._encoding)
    if hmac.compare_digest(out, _ZERO32):
        raise ValueError("the difference is the identity")
    return Element._trusted(out)


def element_from_uniform_bytes(uniform: bytes) -> Element:
    """RFC 9496 section 4.3.4 one-way map (``crypto_core_ristretto255_from_hash``) from 64
    uniformly random bytes; ``ValueError`` in the negligible case that it gives the identity."""
    if not isinstance(uniform, bytes) or len(uniform) != UNIFORM_SIZE:
        raise ValueError(f"element_from_uniform_bytes takes {UNIFORM_SIZE} bytes")
    out: bytes = pysodium.crypto_core_ristretto255_from_hash(uniform)
    if hmac.compare_digest(out, _ZERO32):
        raise ValueError("the map gave the identity")
    return Element._trusted(out)
