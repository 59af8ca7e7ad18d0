"""Hashing to ristretto255 and to its scalars with ``expand_message_xmd`` (RFC 9380) and SHA-512.

* :func:`expand_message_xmd`: RFC 9380 section 5.3.1 with SHA-512 (``b_in_bytes`` 64,
  ``s_in_bytes`` 128), including the rule of section 5.3.3 for tags longer than 255
  bytes.
* :func:`hash_to_group`: ``ristretto255 one-way map(expand_message_xmd(msg, dst, 64))``,
  the HashToGroup of RFC 9497 section 4.1 (and RFC 9380's
  ``ristretto255_XMD:SHA-512_R255MAP_RO_``).
* :func:`hash_to_scalar`: ``expand_message_xmd(msg, dst, 64)`` read little-endian and
  reduced modulo ``L``, the HashToScalar of RFC 9497 section 4.1.

Domain separation tags must be non-empty (RFC 9380 section 3.1).
"""

from __future__ import annotations

import hashlib
from typing import Final

from crypto.ristretto import (
    UNIFORM_SIZE,
    Element,
    Scalar,
    element_from_uniform_bytes,
    scalar_reduce64,
)

__all__ = ["MAX_DST_SIZE", "expand_message_xmd", "hash_to_group", "hash_to_scalar"]

_B_IN_BYTES: Final = 64  # SHA-512 output
_S_IN_BYTES: Final = 128  # SHA-512 block
_MAX_ELL: Final = 255
_MAX_LEN: Final = 65535
#: Longer tags are replaced by ``SHA-512("H2C-OVERSIZE-DST-" || DST)`` (RFC 9380 5.3.3).
MAX_DST_SIZE: Final = 255
_OVERSIZE_PREFIX: Final = b"H2C-OVERSIZE-DST-"

# Z_pad is exactly one SHA-512 block: hash it once and copy the state for every call.
_Z_PAD_STATE: Final = hashlib.sha512(bytes(_S_IN_BYTES))


def _dst_prime(dst: bytes) -> bytes:
    if not isinstance(dst, bytes):
        raise TypeError("dst must be bytes")
    if not dst:
        raise ValueError("the domain separation tag must not be empty")
    if len(dst) > MAX_DST_SIZE:
        dst = hashlib.sha512(_OVERSIZE_PREFIX + dst).digest()
    return dst + len(dst).to_bytes(1, "big")


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """``len_in_bytes`` uniform bytes from ``msg`` under the tag ``dst`` (RFC 9380 5.3.1, SHA-512).

    ``ValueError`` for an empty tag, or a length below 1, above 65535 or above
    255 blocks of 64 bytes (16320).
    """
    if not isinstance(msg, bytes):
        raise TypeError("msg must be bytes")
    if isinstance(len_in_bytes, bool) or not isinstance(len_in_bytes, int):
        raise TypeError("len_in_bytes must be an int")
    ell = -(-len_in_bytes // _B_IN_BYTES)
    if len_in_bytes < 1 or ell > _MAX_ELL or len_in_bytes > _MAX_LEN:
        raise ValueError(f"len_in_bytes must be between 1 and {_MAX_ELL * _B_IN_BYTES}")
    dst_prime = _dst_prime(dst)
    h0 = _Z_PAD_STATE.copy()
    h0.update(msg + len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime)
    b_0 = h0.digest()
    b_i = hashlib.sha512(b_0 + b"\x01" + dst_prime).digest()
    if ell == 1:
        return b_i[:len_in_bytes]
    blocks = [b_i]
    b_0_int = int.from_bytes(b_0, "big")
    for i in range(2, ell + 1):
        mixed = (b_0_int ^ int.from_bytes(b_i, "big")).to_bytes(_B_IN_BYTES, "big")
        b_i = hashlib.sha512(mixed + i.to_bytes(1, "big") + dst_prime).digest()
        blocks.append(b_i)
    return b"".join(blocks)[:len_in_bytes]


def hash_to_group(msg: bytes, dst: bytes) -> Element:
    """RFC 9497 HashToGroup for ristretto255-SHA512.

    ``ValueError`` if the result is the identity (RFC 9497's InvalidInputError;
    it happens with negligible probability).
    """
    return element_from_uniform_bytes(expand_message_xmd(msg, dst, UNIFORM_SIZE))


def hash_to_scalar(msg: bytes, dst: bytes) -> Scalar:
    """RFC 9497 HashToScalar for ristretto255-SHA512 (may be zero, with probability 1/L)."""
    return scalar_reduce64(expand_message_xmd(msg, dst, UNIFORM_SIZE))
