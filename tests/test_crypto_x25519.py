"""crypto.x25519: RFC 7748 vectors, low-order and non-canonical keys, sealed boxes.

Low-order points: D. J. Bernstein's list of the 12 public keys to reject
(https://cr.yp.to/ecdh.html, "Which public keys should be rejected?"), plus
the same values with bit 255 set, which RFC 7748 section 5 tells decoders to
mask (libsodium's ``has_small_order`` does the same). Each entry is checked
with an independent pure-Python Montgomery ladder (RFC 7748 section 5), and
the canonical ones are tied to the Ed25519 small-order list through the
birational map u = (1 + y) / (1 - y) (RFC 7748 section 4.1). Wycheproof's
x25519_test.json has the same cases (flags LowOrderPublic, NonCanonicalPublic,
ZeroSharedSecret).
"""

from __future__ import annotations

import hashlib
import secrets

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import x25519
from crypto.errors import DecryptionError, EncodingError
from crypto.keystore import key_id
from crypto.x25519 import (
    SEAL_OVERHEAD,
    PrivateKey,
    PublicKey,
    open_sealed,
    seal,
    shared_secret,
)

P = 2**255 - 19


def ladder(k: int, u: int) -> int:
    """X25519 scalar multiplication, RFC 7748 section 5, with u already decoded."""
    x1, x2, z2, x3, z3, swap = u % P, 1, 0, u % P, 1, 0
    for t in reversed(range(255)):
        bit = (k >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % P, (x2 - z2) % P
        aa, bb = a * a % P, b * b % P
        e = (aa - bb) % P
        c, d = (x3 + z3) % P, (x3 - z3) % P
        da, cb = d * a % P, c * b % P
        x3, z3 = (da + cb) ** 2 % P, x1 * (da - cb) ** 2 % P
        x2, z2 = aa * bb % P, e * (aa + 121665 * e) % P
    if swap:
        x2, z2 = x3, z3
    return x2 * pow(z2, P - 2, P) % P


def clamp(scalar: bytes) -> int:
    k = bytearray(scalar)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return int.from_bytes(k, "little")


def le(value: int) -> bytes:
    return value.to_bytes(32, "little")


C1 = 325606250916557431795983626356110631294008115727848805560023387167927233504
C2 = 39382357235489614581723060781553021112529911719440698176882885853963445705823
# Bernstein's 12 values (cr.yp.to/ecdh.html), all below 2**256.
BERNSTEIN = [0, 1, C1, C2, P - 1, P, P + 1, P + C1, P + C2, 2 * P - 1, 2 * P, 2 * P + 1]
# The ones below 2**255 decode to low-order points; with bit 255 set they still do (masked).
LOW_ORDER_MASKED = [v for v in BERNSTEIN if v < 2**255]
TOP_BIT_TWINS = [v | 1 << 255 for v in LOW_ORDER_MASKED]
REJECTED = BERNSTEIN + TOP_BIT_TWINS

ALICE = PrivateKey.generate()
BOB = PrivateKey.generate()


# --- RFC 7748 vectors ---------------------------------------------------------------------


def test_rfc7748_section_6_1_diffie_hellman() -> None:
    alice = PrivateKey.from_bytes(
        bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    bob = PrivateKey.from_bytes(
        bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    )
    assert alice.public_key.raw.hex() == (
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    )
    assert bob.public_key.raw.hex() == (
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    )
    expected = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    assert shared_secret(alice, bob.public_key).hex() == expected
    assert shared_secret(bob, alice.public_key).hex() == expected


def test_rfc7748_section_5_2_first_vector() -> None:
    scalar = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    u = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    expected = "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"
    assert shared_secret(PrivateKey.from_bytes(scalar), PublicKey.from_bytes(u)).hex() == expected
    assert le(ladder(clamp(scalar), int.from_bytes(u, "little"))).hex() == expected


def test_rfc7748_section_5_2_second_vector_has_bit_255_set_and_is_refused() -> None:
    """RFC 7748 masks bit 255 of u; we refuse such encodings (one key, one encoding, one id).

    libsodium itself masks and gives the RFC's answer, so the refusal is ours, on purpose.
    """
    scalar = bytes.fromhex("4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d")
    u = bytes.fromhex("e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493")
    expected = "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"
    assert u[31] & 0x80
    assert nacl.bindings.crypto_scalarmult(scalar, u).hex() == expected
    with pytest.raises(EncodingError, match="canonical"):
        PublicKey.from_bytes(u)
    masked = u[:31] + bytes([u[31] & 0x7F])
    assert shared_secret(PrivateKey.from_bytes(scalar), PublicKey.from_bytes(masked)).hex() == (
        expected
    )


# --- low-order and non-canonical public keys ----------------------------------------------


def test_low_order_list_matches_the_ed25519_list_under_the_birational_map() -> None:
    """u = (1 + y) / (1 - y) maps the Ed25519 small-order y (libsodium's list) onto ours."""
    ed25519_y = [
        0,
        P - 1,
        2707385501144840649318225287225658788936804267575313519463743609750303402022,
        55188659117513257062467267217118295137698188065244968500265048394206261417927,
    ]  # y = 1 (the identity) maps to the point at infinity
    mapped = {(1 + y) * pow(1 - y, P - 2, P) % P for y in ed25519_y}
    assert mapped == {1, 0, C1, C2}
    assert set(x25519._LOW_ORDER) == mapped | {P - 1}  # p - 1: the twist's point of order 4


@pytest.mark.parametrize("value", REJECTED, ids=lambda v: hex(v)[:10] + "…" + hex(v)[-4:])
def test_low_order_and_non_canonical_public_keys_rejected(value: int) -> None:
    masked = value & ((1 << 255) - 1)
    if value in LOW_ORDER_MASKED or value in TOP_BIT_TWINS:
        # Low order once decoded as RFC 7748 says: every clamped scalar gives 0.
        for _ in range(3):
            assert ladder(clamp(secrets.token_bytes(32)), masked) == 0
    else:
        assert value >= 2**255  # Bernstein's values above p + 1 are non-canonical here
    with pytest.raises(EncodingError) as info:
        PublicKey.from_bytes(le(value))
    assert str(info.value) in {
        "not a canonical X25519 public key",
        "X25519 public key is a low-order point",
    }
    assert le(value).hex() not in str(info.value)


@pytest.mark.parametrize("value", sorted(x25519._LOW_ORDER))
def test_canonical_low_order_key_refused_as_low_order(value: int) -> None:
    with pytest.raises(EncodingError, match="low-order"):
        PublicKey.from_bytes(le(value))


@pytest.mark.parametrize("value", sorted(x25519._LOW_ORDER))
def test_libsodium_also_refuses_low_order_points(value: int) -> None:
    with pytest.raises(nacl.exceptions.RuntimeError):
        nacl.bindings.crypto_scalarmult(ALICE._key.encode(), le(value))


@pytest.mark.parametrize("offset", range(2, 19))
def test_non_canonical_u_rejected(offset: int) -> None:
    """u = p + offset is a second encoding of u = offset."""
    with pytest.raises(EncodingError, match="canonical"):
        PublicKey.from_bytes(le(P + offset))
    PublicKey.from_bytes(le(offset))  # the canonical form is fine (on the curve or the twist)


def test_valid_key_with_bit_255_set_rejected() -> None:
    raw = ALICE.public_key.raw
    assert not raw[31] & 0x80
    with pytest.raises(EncodingError, match="canonical"):
        PublicKey.from_bytes(raw[:31] + bytes([raw[31] | 0x80]))


def test_twist_points_are_accepted() -> None:
    """Curve25519 is twist-secure (RFC 7748 section 7): keys on the twist are not refused."""
    twist = next(
        u for u in range(2, 100) if pow((u**3 + 486662 * u * u + u) % P, (P - 1) // 2, P) != 1
    )
    public = PublicKey.from_bytes(le(twist))
    assert len(shared_secret(ALICE, public)) == 32


@pytest.mark.parametrize("size", [0, 1, 31, 33, 64])
def test_public_key_wrong_length(size: int) -> None:
    with pytest.raises(EncodingError, match="32 bytes"):
        PublicKey.from_bytes((ALICE.public_key.raw * 3)[:size])


@pytest.mark.parametrize("raw", ["ab" * 16, bytearray(32), memoryview(bytes(32)), None])
def test_public_key_wrong_type(raw: object) -> None:
    with pytest.raises(TypeError):
        PublicKey.from_bytes(raw)  # type: ignore[arg-type]


def test_shared_secret_refuses_a_low_order_key_that_skipped_validation() -> None:
    """Defence in depth: even a PublicKey built around the checks gives no all-zero secret."""
    for value in sorted(x25519._LOW_ORDER):
        forged = object.__new__(PublicKey)
        object.__setattr__(forged, "raw", le(value))
        with pytest.raises(EncodingError, match="low-order") as info:
            shared_secret(ALICE, forged)
        assert info.value.__cause__ is None and info.value.__context__ is None


def test_shared_secret_refuses_an_all_zero_output_even_if_the_library_returns_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Our own zero check, independent of libsodium's (older or other builds may lack it)."""
    monkeypatch.setattr(nacl.bindings, "crypto_scalarmult", lambda n, p: bytes(32))
    with pytest.raises(EncodingError, match="low-order"):
        shared_secret(ALICE, BOB.public_key)


# --- keys ---------------------------------------------------------------------------------


def test_key_id_is_the_keystore_scheme() -> None:
    raw = ALICE.public_key.raw
    assert ALICE.key_id == ALICE.public_key.key_id == key_id(raw)
    assert ALICE.key_id == hashlib.sha256(raw).digest()[:16].hex()


def test_public_key_equality_and_hash() -> None:
    a = PublicKey.from_bytes(ALICE.public_key.raw)
    assert a == ALICE.public_key and hash(a) == hash(ALICE.public_key)
    assert a != BOB.public_key


def test_private_key_wraps_nacl_and_checks_types() -> None:
    nacl_key = nacl.public.PrivateKey.generate()
    assert PrivateKey(nacl_key).public_key.raw == nacl_key.public_key.encode()
    for bad in (nacl_key.encode(), nacl.signing.SigningKey.generate(), None):
        with pytest.raises(TypeError):
            PrivateKey(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PrivateKey.from_bytes("ab" * 16)  # type: ignore[arg-type]
    for size in (0, 31, 33):
        with pytest.raises(ValueError, match="32 bytes"):
            PrivateKey.from_bytes(bytes(size))


def test_private_key_repr_hides_the_secret() -> None:
    secret = bytes(range(32))
    key = PrivateKey.from_bytes(secret)
    assert repr(key) == f"x25519.PrivateKey(key_id={key.key_id})"
    assert secret.hex() not in repr(key)


def test_shared_secret_symmetric_and_peer_specific() -> None:
    carol = PrivateKey.generate()
    ab = shared_secret(ALICE, BOB.public_key)
    assert ab == shared_secret(BOB, ALICE.public_key)
    assert ab != shared_secret(ALICE, carol.public_key)


def test_shared_secret_checks_types() -> None:
    with pytest.raises(TypeError):
        shared_secret(ALICE, BOB.public_key.raw)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        shared_secret(BOB.public_key, ALICE.public_key)  # type: ignore[arg-type]


# --- sealed boxes -------------------------------------------------------------------------


def assert_cannot_open(private: PrivateKey, ciphertext: bytes) -> None:
    with pytest.raises(DecryptionError) as info:
        open_sealed(private, ciphertext)
    assert str(info.value) == "sealed box could not be opened"
    assert info.value.__cause__ is None and info.value.__context__ is None


SECRET = b"agent badge 1234, seen at the courthouse"
BOX = seal(ALICE.public_key, SECRET)


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=5000))
def test_seal_round_trip(plaintext: bytes) -> None:
    box = seal(ALICE.public_key, plaintext)
    assert len(box) == len(plaintext) + SEAL_OVERHEAD == len(plaintext) + 48
    assert open_sealed(ALICE, box) == plaintext


def test_seal_is_randomised() -> None:
    assert seal(ALICE.public_key, SECRET) != seal(ALICE.public_key, SECRET)


def test_seal_to_another_key_cannot_be_opened() -> None:
    assert_cannot_open(BOB, BOX)


def test_every_single_bit_flip_of_a_sealed_box_rejected() -> None:
    for bit in range(len(BOX) * 8):
        changed = bytearray(BOX)
        changed[bit // 8] ^= 1 << (bit % 8)
        assert_cannot_open(ALICE, bytes(changed))


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_of_a_sealed_box_rejected(data: st.DataObject) -> None:
    changed = bytearray(BOX)
    changed[data.draw(st.integers(0, len(BOX) - 1))] ^= data.draw(st.integers(1, 255))
    assert_cannot_open(ALICE, bytes(changed))


def test_truncated_or_extended_sealed_box_rejected() -> None:
    for size in range(len(BOX)):
        assert_cannot_open(ALICE, BOX[:size])
    assert_cannot_open(ALICE, BOX + b"\x00")


@pytest.mark.parametrize("value", LOW_ORDER_MASKED + TOP_BIT_TWINS)
def test_sealed_box_with_a_low_order_ephemeral_key_rejected(value: int) -> None:
    assert_cannot_open(ALICE, le(value) + BOX[32:])


def test_seal_checks_types() -> None:
    with pytest.raises(TypeError):
        seal(ALICE.public_key, "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        seal(ALICE.public_key.raw, SECRET)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        open_sealed(ALICE, bytearray(BOX))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        open_sealed(ALICE.public_key, BOX)  # type: ignore[arg-type]
