"""crypto.ristretto and crypto.h2c: RFC 9496 and RFC 9380 vectors, and libsodium's pitfalls.

The identity passes libsodium's point check, scalar multiplication accepts scalars
at or above the group order, and a sum can be the identity: each of these is
refused here by type or by an explicit check.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.errors import EncodingError
from crypto.h2c import MAX_DST_SIZE, expand_message_xmd, hash_to_group, hash_to_scalar
from crypto.ristretto import (
    GENERATOR,
    Element,
    L,
    Scalar,
    base_mult,
    element_add,
    element_from_uniform_bytes,
    element_sub,
    random_scalar,
    scalar_add,
    scalar_invert,
    scalar_mul,
    scalar_mult,
    scalar_negate,
    scalar_reduce64,
    scalar_sub,
)

VECTORS = Path(__file__).parent / "vectors"
GROUP: dict[str, Any] = json.loads((VECTORS / "rfc9496_ristretto255_group.json").read_text())
XMD: dict[str, Any] = json.loads((VECTORS / "rfc9380_expand_message_xmd_SHA512.json").read_text())
IDENTITY = bytes(32)

scalars = st.integers(min_value=0, max_value=L - 1)
nonzero_scalars = st.integers(min_value=1, max_value=L - 1)


def le(value: int) -> bytes:
    return value.to_bytes(32, "little")


# --- RFC 9496 vectors ----------------------------------------------------------------------


def test_vector_file_sizes() -> None:
    assert len(GROUP["small_multiples_of_generator"]) == 16
    assert len(GROUP["invalid_encodings"]) == 29
    assert len(GROUP["from_hash"]) == 7
    assert len(XMD["tests"]) == 10


@pytest.mark.parametrize(
    "case", GROUP["small_multiples_of_generator"][1:], ids=lambda c: f"{c['scalar']}G"
)
def test_small_multiples_of_the_generator(case: dict[str, Any]) -> None:
    k, want = case["scalar"], bytes.fromhex(case["encoding"])
    assert base_mult(Scalar.from_int(k)).to_bytes() == want
    assert scalar_mult(Scalar.from_int(k), GENERATOR).to_bytes() == want
    assert Element.from_bytes(want).to_bytes() == want
    # k*G as repeated addition, and (k+1)*G - G.
    total = GENERATOR
    for _ in range(k - 1):
        total = element_add(total, GENERATOR)
    assert total.to_bytes() == want
    assert element_sub(base_mult(Scalar.from_int(k + 1)), GENERATOR).to_bytes() == want


def test_zero_times_the_generator_is_the_identity_and_is_refused() -> None:
    case = GROUP["small_multiples_of_generator"][0]
    assert case["scalar"] == 0 and bytes.fromhex(case["encoding"]) == IDENTITY
    with pytest.raises(EncodingError, match="identity"):
        Element.from_bytes(IDENTITY)
    with pytest.raises(ValueError, match="identity"):
        base_mult(Scalar.from_int(0))
    with pytest.raises(ValueError, match="identity"):
        scalar_mult(Scalar.from_int(0), GENERATOR)


def test_generator_constant_is_one_times_g() -> None:
    assert base_mult(Scalar.from_int(1)) == GENERATOR
    assert GENERATOR.to_bytes().hex() == GROUP["small_multiples_of_generator"][1]["encoding"]


@pytest.mark.parametrize("hex_encoding", GROUP["invalid_encodings"])
def test_every_invalid_encoding_is_rejected(hex_encoding: str) -> None:
    with pytest.raises(EncodingError, match="canonical"):
        Element.from_bytes(bytes.fromhex(hex_encoding))


@pytest.mark.parametrize("case", GROUP["from_hash"], ids=lambda c: c["label"][:24])
def test_from_hash(case: dict[str, Any]) -> None:
    uniform = bytes.fromhex(case["sha512_of_label"])
    assert hashlib.sha512(case["label"].encode()).digest() == uniform
    assert element_from_uniform_bytes(uniform).to_bytes().hex() == case["element"]


# --- identity and overflow pitfalls ------------------------------------------------------------


def test_identity_rejected_although_libsodium_calls_it_valid() -> None:
    import pysodium

    assert pysodium.crypto_core_ristretto255_is_valid_point(IDENTITY)  # the pitfall
    with pytest.raises(EncodingError):
        Element(IDENTITY)


@pytest.mark.parametrize("size", [0, 1, 31, 33, 64])
def test_wrong_lengths_are_encoding_errors(size: int) -> None:
    with pytest.raises(EncodingError):
        Element.from_bytes(bytes(GENERATOR.to_bytes() * 3)[:size])
    with pytest.raises(EncodingError):
        Scalar.from_bytes(b"\x01" * size)


def test_non_bytes_are_type_errors() -> None:
    with pytest.raises(TypeError):
        Element.from_bytes(bytearray(GENERATOR.to_bytes()))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Scalar.from_bytes("00" * 32)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Scalar.from_int(True)


@pytest.mark.parametrize(
    "value",
    [L, L + 1, 2 * L, 2**255 - 1, 2**255, 2**255 + 1, 2**256 - 1],
    ids=["L", "L+1", "2L", "2^255-1", "2^255", "2^255+1", "2^256-1"],
)
def test_scalars_at_or_above_the_order_are_rejected(value: int) -> None:
    # libsodium would multiply by these (dropping bit 255): 2^255+1 acts like 1.
    with pytest.raises(EncodingError, match="canonical"):
        Scalar.from_bytes(le(value))


def test_largest_canonical_scalar_is_accepted() -> None:
    s = Scalar.from_bytes(le(L - 1))
    assert s.to_int() == L - 1
    assert scalar_add(s, Scalar.from_int(1)).is_zero()
    assert base_mult(s) == element_sub(GENERATOR, element_add(GENERATOR, GENERATOR))


def test_sum_to_identity_is_refused() -> None:
    p = base_mult(random_scalar())
    minus_p = base_mult(scalar_negate(Scalar.from_bytes(le(1))))
    assert minus_p != GENERATOR
    with pytest.raises(ValueError, match="identity"):
        element_add(GENERATOR, minus_p)
    with pytest.raises(ValueError, match="identity"):
        element_sub(p, p)


def test_zero_has_no_inverse() -> None:
    with pytest.raises(ValueError, match="inverse"):
        scalar_invert(Scalar.from_int(0))


def test_values_are_immutable_and_scalars_do_not_show() -> None:
    s = Scalar.from_int(12345)
    with pytest.raises(AttributeError):
        s._encoding = bytes(32)
    with pytest.raises(AttributeError):
        GENERATOR._encoding = bytes(32)
    assert "12345" not in repr(s) and "3930" not in repr(s)
    assert repr(s) == "Scalar(<redacted>)"
    assert GENERATOR.to_bytes().hex() in repr(GENERATOR)
    assert bytes(s) == s.to_bytes() == le(12345)
    assert bytes(GENERATOR) == GENERATOR.to_bytes()


def test_equality_and_hashing() -> None:
    assert Scalar.from_int(5) == Scalar.from_bytes(le(5))
    assert Scalar.from_int(5) != Scalar.from_int(6)
    assert Scalar.from_int(-1) == Scalar.from_int(L - 1)
    assert len({Scalar.from_int(5), Scalar.from_int(5 + L)}) == 1
    assert len({GENERATOR, base_mult(Scalar.from_int(1)), base_mult(Scalar.from_int(2))}) == 2
    assert Scalar.from_int(1) != GENERATOR  # different types never compare equal


def test_random_scalars_are_nonzero_and_distinct() -> None:
    drawn = {random_scalar() for _ in range(64)}
    assert len(drawn) == 64
    assert not any(s.is_zero() for s in drawn)


# --- scalar field and group laws (Hypothesis) --------------------------------------------------


@given(a=scalars, b=scalars)
def test_scalar_arithmetic_matches_integers(a: int, b: int) -> None:
    sa, sb = Scalar.from_bytes(le(a)), Scalar.from_bytes(le(b))
    assert scalar_add(sa, sb).to_int() == (a + b) % L
    assert scalar_sub(sa, sb).to_int() == (a - b) % L
    assert scalar_mul(sa, sb).to_int() == (a * b) % L
    assert scalar_negate(sa).to_int() == -a % L
    assert Scalar.from_int(a).to_int() == a


@given(a=nonzero_scalars)
def test_scalar_inverse(a: int) -> None:
    inv = scalar_invert(Scalar.from_int(a))
    assert inv.to_int() == pow(a, -1, L)
    assert scalar_mul(inv, Scalar.from_int(a)) == Scalar.from_int(1)


@given(wide=st.binary(min_size=64, max_size=64))
def test_reduce64_is_little_endian_mod_l(wide: bytes) -> None:
    assert scalar_reduce64(wide).to_int() == int.from_bytes(wide, "little") % L


@given(value=st.integers())
def test_from_int_reduces_any_integer(value: int) -> None:
    assert Scalar.from_int(value).to_int() == value % L


@given(a=nonzero_scalars, b=nonzero_scalars)
def test_scalar_multiplication_is_a_homomorphism(a: int, b: int) -> None:
    sa, sb = Scalar.from_int(a), Scalar.from_int(b)
    ga, gb = base_mult(sa), base_mult(sb)
    assert scalar_mult(sa, gb) == scalar_mult(sb, ga) == base_mult(scalar_mul(sa, sb))
    if (a + b) % L:
        assert element_add(ga, gb) == base_mult(scalar_add(sa, sb))
    if a != b:
        assert element_sub(ga, gb) == base_mult(scalar_sub(sa, sb))
    assert Element.from_bytes(ga.to_bytes()) == ga


@given(encoding=st.binary(min_size=32, max_size=32))
def test_decoding_arbitrary_bytes_never_yields_the_identity(encoding: bytes) -> None:
    try:
        e = Element.from_bytes(encoding)
    except EncodingError:
        return
    assert e.to_bytes() == encoding != IDENTITY
    assert scalar_mult(Scalar.from_int(L - 1), e) != e


def test_bad_uniform_lengths_are_caller_errors() -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        scalar_reduce64(bytes(32))
    with pytest.raises(ValueError, match="64 bytes"):
        element_from_uniform_bytes(bytes(63))
    with pytest.raises(ValueError, match="identity"):
        element_from_uniform_bytes(bytes(64))  # the one-way map sends 0 to the identity


# --- RFC 9380 expand_message_xmd (SHA-512) ------------------------------------------------------


@pytest.mark.parametrize(
    "case", XMD["tests"], ids=lambda c: f"{c['msg'][:8] or 'empty'}-{int(c['len_in_bytes'], 16)}"
)
def test_expand_message_xmd_vectors(case: dict[str, Any]) -> None:
    dst = XMD["DST"].encode()
    assert bytes.fromhex(case["DST_prime"]) == dst + bytes([len(dst)])
    n = int(case["len_in_bytes"], 16)
    msg = case["msg"].encode()
    assert bytes.fromhex(case["msg_prime"]) == (
        bytes(128) + msg + n.to_bytes(2, "big") + b"\x00" + dst + bytes([len(dst)])
    )
    assert expand_message_xmd(msg, dst, n).hex() == case["uniform_bytes"]


def test_oversize_dst_is_hashed_first() -> None:
    long_dst = b"D" * (MAX_DST_SIZE + 1)
    hashed = hashlib.sha512(b"H2C-OVERSIZE-DST-" + long_dst).digest()
    assert expand_message_xmd(b"abc", long_dst, 96) == expand_message_xmd(b"abc", hashed, 96)
    at_limit = b"D" * MAX_DST_SIZE
    hashed_at_limit = hashlib.sha512(b"H2C-OVERSIZE-DST-" + at_limit).digest()
    assert expand_message_xmd(b"abc", at_limit, 32) != expand_message_xmd(
        b"abc", hashed_at_limit, 32
    )


@pytest.mark.parametrize("n", [0, -1, 255 * 64 + 1, 65535, 65536])
def test_expand_message_xmd_length_limits(n: int) -> None:
    with pytest.raises(ValueError, match="len_in_bytes"):
        expand_message_xmd(b"abc", b"DST", n)


def test_expand_message_xmd_longest_output_and_prefixes() -> None:
    out = expand_message_xmd(b"abc", b"DST", 255 * 64)
    assert len(out) == 255 * 64
    assert len(set(out[i : i + 64] for i in range(0, len(out), 64))) == 255
    # The length is hashed in: a shorter output is not a prefix of a longer one.
    assert expand_message_xmd(b"abc", b"DST", 32) != out[:32]


def test_empty_dst_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        expand_message_xmd(b"abc", b"", 32)


@given(msg=st.binary(max_size=300))
def test_hash_to_scalar_and_group_are_the_documented_compositions(msg: bytes) -> None:
    dst = b"HashToScalar-test"
    uniform = expand_message_xmd(msg, dst, 64)
    assert hash_to_scalar(msg, dst).to_int() == int.from_bytes(uniform, "little") % L
    assert hash_to_group(msg, dst) == element_from_uniform_bytes(uniform)
