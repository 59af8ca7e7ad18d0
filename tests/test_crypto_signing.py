"""crypto.signing: RFC 8032 vectors, Wycheproof-style negatives, key checks, properties.

The negative cases are built from the literature and checked here with an
independent pure-Python edwards25519 (after RFC 8032, section 6), so each
"rejected" test also shows that a lax verifier would have accepted the input:

* S >= L: RFC 8032 section 5.1.7 (malleability; Wycheproof "SignatureMalleability").
* The 8 small-order points and their non-canonical encodings: libsodium's
  ``ge25519_has_small_order`` blocklist (src/libsodium/crypto_core/ed25519/ref10/
  ed25519_ref10.c) and Chalkias, Garillot, Nikolaenko, "Taming the many EdDSAs"
  (SSR 2020), table of small-order encodings; re-derived below from the arithmetic.
* Mixed-order keys (a prime-order key plus a torsion point), points off the
  curve, non-canonical y: same paper; Wycheproof eddsa_test.json.
"""

from __future__ import annotations

import dataclasses
import hashlib

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import x25519
from crypto.errors import CryptoError, EncodingError, VerificationError
from crypto.keystore import key_id
from crypto.signing import KeyId, PublicKey, SigningKey

# --- an independent edwards25519, after RFC 8032 section 6 --------------------------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]  # extended homogeneous coordinates (X, Y, Z, T)
IDENTITY: Point = (0, 1, 1, 0)


def point_add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def point_mul(s: int, p: Point) -> Point:
    q = IDENTITY
    while s > 0:
        if s & 1:
            q = point_add(q, p)
        p = point_add(p, p)
        s >>= 1
    return q


def point_equal(p: Point, q: Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % P == 0 and (p[1] * q[2] - q[1] * p[2]) % P == 0


def decode_lax(s: bytes) -> Point | None:
    """Decode like a lax verifier: y taken mod p, a "negative zero" x allowed."""
    y = int.from_bytes(s, "little")
    sign, y = y >> 255, (y & ((1 << 255) - 1)) % P
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None  # not on the curve
    if x != 0 and (x & 1) != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def encode(p: Point) -> bytes:
    z_inv = pow(p[2], P - 2, P)
    x, y = p[0] * z_inv % P, p[1] * z_inv % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def base_point() -> Point:
    """B: y = 4/5, x even (RFC 8032 section 5.1)."""
    b = decode_lax((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))
    assert b is not None
    return b


BASE = base_point()


def lax_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """The cofactorless equation [S]B = R + [k]A with no checks on S, R or A."""
    a, r = decode_lax(public), decode_lax(signature[:32])
    if a is None or r is None or len(signature) != 64:
        return False
    s = int.from_bytes(signature[32:], "little")
    k = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % L
    return point_equal(point_mul(s, BASE), point_add(r, point_mul(k, a)))


def h(hex_string: str) -> bytes:
    return bytes.fromhex(hex_string)


# --- vectors ------------------------------------------------------------------------------

# RFC 8032 section 7.1: TEST 1, TEST 2, TEST 3 (secret key = seed, public key, message, sig).
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]

# The 8 points of order dividing 8, canonically encoded (y little-endian, bit 255 = sign of x),
# and 6 non-canonical encodings of the same points (y >= p, or x = 0 with the sign bit set).
# Sources: libsodium ge25519_has_small_order; "Taming the many EdDSAs" (SSR 2020).
SMALL_ORDER_CANONICAL = {
    "0100000000000000000000000000000000000000000000000000000000000000": "identity",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f": "order 2 (y = -1)",
    "0000000000000000000000000000000000000000000000000000000000000000": "order 4 (y = 0)",
    "0000000000000000000000000000000000000000000000000000000000000080": "order 4 (y = 0, -x)",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05": "order 8",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85": "order 8",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a": "order 8",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa": "order 8",
}
SMALL_ORDER_NON_CANONICAL = {
    "0100000000000000000000000000000000000000000000000000000000000080": "identity, x = -0",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff": "order 2, x = -0",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f": "y = p (= 0)",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff": "y = p (= 0), -x",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f": "y = p + 1 (= 1)",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff": "y = p + 1, x = -0",
}
SMALL_ORDER = {**SMALL_ORDER_CANONICAL, **SMALL_ORDER_NON_CANONICAL}
IDENTITY_ENCODING = "01" + "00" * 31

SK1 = SigningKey.from_seed(h(RFC8032[0][0]))
MESSAGE = b"incident IL-1234: custody event 7"
SIGNATURE = SK1.sign(MESSAGE)


def assert_rejected(public: PublicKey, message: bytes, signature: bytes) -> None:
    with pytest.raises(VerificationError) as info:
        public.verify(message, signature)
    assert type(info.value) is VerificationError
    assert str(info.value) == "Ed25519 signature does not verify"
    assert info.value.__cause__ is None and info.value.__context__ is None


# --- known answers ------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032)
def test_rfc8032_vectors(seed: str, public: str, message: str, signature: str) -> None:
    key = SigningKey.from_seed(h(seed))
    assert key.public_key.raw == h(public)
    assert key.sign(h(message)) == h(signature)
    PublicKey.from_bytes(h(public)).verify(h(message), h(signature))


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032)
def test_rfc8032_signature_does_not_verify_another_message(
    seed: str, public: str, message: str, signature: str
) -> None:
    assert_rejected(PublicKey.from_bytes(h(public)), h(message) + b"\x00", h(signature))


def test_rfc8032_signature_does_not_verify_under_another_key() -> None:
    other = PublicKey.from_bytes(h(RFC8032[1][1]))
    assert_rejected(other, b"", h(RFC8032[0][3]))


# --- key ids ------------------------------------------------------------------------------


def test_key_id_is_the_keystore_scheme() -> None:
    raw = h(RFC8032[0][1])
    expected = hashlib.sha256(raw).digest()[:16].hex()
    assert PublicKey.from_bytes(raw).key_id == expected == key_id(raw)
    assert SK1.key_id == expected
    assert len(expected) == 32 and expected == expected.lower()


def test_key_ids_differ_between_keys() -> None:
    ids = {KeyId(SigningKey.generate().key_id) for _ in range(20)}
    assert len(ids) == 20


# --- PublicKey: type, equality, hashing ---------------------------------------------------


def test_public_key_equality_and_hash_by_raw_bytes() -> None:
    raw = h(RFC8032[0][1])
    a, b = PublicKey.from_bytes(raw), PublicKey(bytes(bytearray(raw)))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != PublicKey.from_bytes(h(RFC8032[1][1]))
    assert a == SK1.public_key


def test_public_key_is_not_equal_to_an_x25519_key_with_the_same_bytes() -> None:
    raw = h(RFC8032[0][1])  # bit 255 clear, below p: a valid X25519 encoding too
    ed25519_key: object = PublicKey.from_bytes(raw)
    assert ed25519_key != x25519.PublicKey.from_bytes(raw)
    assert x25519.PublicKey.from_bytes(raw) != ed25519_key


def test_public_key_is_frozen() -> None:
    pk = PublicKey.from_bytes(h(RFC8032[0][1]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        pk.raw = h(RFC8032[1][1])  # type: ignore[misc]


def test_public_key_repr_shows_the_key_id() -> None:
    pk = PublicKey.from_bytes(h(RFC8032[0][1]))
    assert repr(pk) == f"PublicKey(key_id={pk.key_id})"


@pytest.mark.parametrize("raw", ["d75a98" * 10, bytearray(32), memoryview(bytes(32)), None, 32])
def test_public_key_wrong_type(raw: object) -> None:
    with pytest.raises(TypeError):
        PublicKey.from_bytes(raw)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1, 31, 33, 64])
def test_public_key_wrong_length(size: int) -> None:
    raw = (h(RFC8032[0][1]) * 3)[:size]
    with pytest.raises(EncodingError, match="32 bytes"):
        PublicKey.from_bytes(raw)


# --- PublicKey: small order, non-canonical, off the curve, mixed order --------------------


def test_small_order_list_is_exactly_the_8_torsion_points() -> None:
    """Re-derive the 14 encodings from the arithmetic, so the list above is not taken on trust."""
    torsion: Point | None = None
    for y in range(2, 100):
        q = decode_lax(y.to_bytes(32, "little"))
        if q is None:
            continue
        t = point_mul(L, q)  # kills the prime-order part: what is left has order dividing 8
        if not point_equal(point_mul(4, t), IDENTITY):
            torsion = t  # order exactly 8
            break
    assert torsion is not None
    points = [point_mul(k, torsion) for k in range(8)]
    canonical = {encode(p).hex() for p in points}
    non_canonical = set()
    for p in points:
        z_inv = pow(p[2], P - 2, P)
        x, y = p[0] * z_inv % P, p[1] * z_inv % P
        if x == 0:
            non_canonical.add((y | 1 << 255).to_bytes(32, "little").hex())
        if y + P < 2**255:
            non_canonical.add((y + P | (x & 1) << 255).to_bytes(32, "little").hex())
            if x == 0:
                non_canonical.add((y + P | 1 << 255).to_bytes(32, "little").hex())
    assert canonical == set(SMALL_ORDER_CANONICAL)
    assert non_canonical == set(SMALL_ORDER_NON_CANONICAL)


@pytest.mark.parametrize("encoding", sorted(SMALL_ORDER), ids=lambda e: SMALL_ORDER[e])
def test_small_order_public_key_rejected(encoding: str) -> None:
    point = decode_lax(h(encoding))
    assert point is not None and point_equal(point_mul(8, point), IDENTITY)
    with pytest.raises(EncodingError, match="not a valid Ed25519 public key"):
        PublicKey.from_bytes(h(encoding))


@pytest.mark.parametrize("encoding", sorted(SMALL_ORDER), ids=lambda e: SMALL_ORDER[e])
def test_small_order_key_universal_forgery(encoding: str) -> None:
    """With a small-order key A, R = identity and S = 0 pass the lax equation [0]B = O + [k]A
    for every message whose k is a multiple of A's order: one in 8 at worst, no key needed.

    Our loader refuses such a key, and libsodium refuses the forgery as well.
    """
    forged = h(IDENTITY_ENCODING) + bytes(32)  # R = O, S = 0
    message = next(
        (
            m
            for m in (b"never signed %d" % i for i in range(200))
            if lax_verify(h(encoding), m, forged)
        ),
        None,
    )
    assert message is not None, "no lax forgery found: the oracle is wrong"
    with pytest.raises(EncodingError):
        PublicKey.from_bytes(h(encoding))
    with pytest.raises(nacl.exceptions.BadSignatureError):
        nacl.bindings.crypto_sign_open(forged + message, h(encoding))


@pytest.mark.parametrize("offset", range(2, 19))
def test_non_canonical_y_rejected(offset: int) -> None:
    """y = p + offset is a second encoding of y = offset; only y < p is canonical."""
    for sign in (0, 1):
        raw = (P + offset | sign << 255).to_bytes(32, "little")
        with pytest.raises(EncodingError):
            PublicKey.from_bytes(raw)


def test_point_off_the_curve_rejected() -> None:
    off_curve = [y for y in range(2, 40) if decode_lax(y.to_bytes(32, "little")) is None]
    assert off_curve
    for y in off_curve:
        with pytest.raises(EncodingError):
            PublicKey.from_bytes(y.to_bytes(32, "little"))


@pytest.mark.parametrize(
    "torsion", [e for e, name in SMALL_ORDER_CANONICAL.items() if name != "identity"]
)
def test_mixed_order_public_key_rejected(torsion: str) -> None:
    """A + T (T of small order) is on the curve and canonical, but not in the prime-order group."""
    a = decode_lax(h(RFC8032[0][1]))
    t = decode_lax(h(torsion))
    assert a is not None and t is not None
    mixed = encode(point_add(a, t))
    assert mixed != h(RFC8032[0][1])
    PublicKey.from_bytes(encode(a))  # the prime-order key itself is fine
    with pytest.raises(EncodingError):
        PublicKey.from_bytes(mixed)


# --- signatures: S >= L, R changes, bit flips, lengths ------------------------------------


def test_s_plus_l_rejected_although_the_lax_equation_holds() -> None:
    s = int.from_bytes(SIGNATURE[32:], "little")
    malleated = SIGNATURE[:32] + (s + L).to_bytes(32, "little")
    assert lax_verify(SK1.public_key.raw, MESSAGE, malleated)  # a real second signature
    assert_rejected(SK1.public_key, MESSAGE, malleated)


@pytest.mark.parametrize(
    "s_value",
    [L, L + 1, 2**253 - 1, 2**255, 2**256 - 1],
    ids=["L", "L+1", "2^253-1", "2^255", "max"],
)
def test_s_at_or_above_l_rejected(s_value: int) -> None:
    assert_rejected(SK1.public_key, MESSAGE, SIGNATURE[:32] + s_value.to_bytes(32, "little"))


def test_our_own_s_check_has_the_right_boundary() -> None:
    """The explicit S < L check does not rely on libsodium (which checks it as well)."""
    from crypto.signing import _canonical_s

    assert _canonical_s(bytes(32) + (L - 1).to_bytes(32, "little"))
    assert not _canonical_s(bytes(32) + L.to_bytes(32, "little"))
    assert not _canonical_s(bytes(32) + (2**256 - 1).to_bytes(32, "little"))


@pytest.mark.parametrize("s_value", [0, 1, L - 1])
def test_s_below_l_but_wrong_rejected(s_value: int) -> None:
    assert_rejected(SK1.public_key, MESSAGE, SIGNATURE[:32] + s_value.to_bytes(32, "little"))


@pytest.mark.parametrize("r", sorted(SMALL_ORDER), ids=lambda e: SMALL_ORDER[e])
def test_small_order_r_rejected(r: str) -> None:
    for s in (bytes(32), SIGNATURE[32:]):
        assert_rejected(SK1.public_key, MESSAGE, h(r) + s)


def test_r_replaced_by_another_signatures_r_rejected() -> None:
    other = SK1.sign(MESSAGE + b"!")
    assert_rejected(SK1.public_key, MESSAGE, other[:32] + SIGNATURE[32:])


def test_every_single_bit_flip_rejected() -> None:
    for bit in range(512):
        flipped = bytearray(SIGNATURE)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert_rejected(SK1.public_key, MESSAGE, bytes(flipped))


@pytest.mark.parametrize("size", range(64))
def test_truncated_signature_rejected(size: int) -> None:
    assert_rejected(SK1.public_key, MESSAGE, SIGNATURE[:size])


@pytest.mark.parametrize("suffix", [b"\x00", b"\xff", SIGNATURE, bytes(64)])
def test_extended_signature_rejected(suffix: bytes) -> None:
    assert_rejected(SK1.public_key, MESSAGE, SIGNATURE + suffix)


def test_signature_with_message_prepended_rejected() -> None:
    """crypto_sign_open takes sig || message: a combined blob must not pass as a signature."""
    assert_rejected(SK1.public_key, b"", SIGNATURE + MESSAGE)


# --- empty and edge messages --------------------------------------------------------------


def test_empty_message() -> None:
    sig = SK1.sign(b"")
    SK1.public_key.verify(b"", sig)
    assert_rejected(SK1.public_key, b"\x00", sig)
    assert_rejected(SK1.public_key, b"", SK1.sign(b"\x00"))


def test_signature_by_another_key_rejected() -> None:
    other = SigningKey.generate()
    assert_rejected(SK1.public_key, MESSAGE, other.sign(MESSAGE))


def test_error_messages_hold_no_key_or_signature() -> None:
    with pytest.raises(CryptoError) as info:
        SK1.public_key.verify(MESSAGE, bytes(64))
    text = str(info.value)
    assert SK1.public_key.raw.hex() not in text and SK1.key_id not in text
    order_8 = "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"
    with pytest.raises(CryptoError) as info:
        PublicKey.from_bytes(h(order_8))
    assert order_8 not in str(info.value) and "26e8" not in str(info.value)


# --- properties ---------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=2000))
def test_round_trip(seed: bytes, message: bytes) -> None:
    key = SigningKey.from_seed(seed)
    sig = key.sign(message)
    assert len(sig) == 64 and sig == key.sign(message)  # deterministic
    PublicKey.from_bytes(key.public_key.raw).verify(message, sig)
    assert sig == nacl.signing.SigningKey(seed).sign(message).signature


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, 63), delta=st.integers(1, 255))
def test_any_single_byte_change_of_the_signature_rejected(index: int, delta: int) -> None:
    changed = bytearray(SIGNATURE)
    changed[index] ^= delta
    assert_rejected(SK1.public_key, MESSAGE, bytes(changed))


@settings(max_examples=200, deadline=None)
@given(message=st.binary(min_size=1, max_size=200), data=st.data())
def test_any_single_byte_change_of_the_message_rejected(
    message: bytes, data: st.DataObject
) -> None:
    sig = SK1.sign(message)
    index = data.draw(st.integers(0, len(message) - 1))
    changed = bytearray(message)
    changed[index] ^= data.draw(st.integers(1, 255))
    assert_rejected(SK1.public_key, bytes(changed), sig)


# --- SigningKey ---------------------------------------------------------------------------


def test_signing_key_wraps_a_nacl_key() -> None:
    nacl_key = nacl.signing.SigningKey(h(RFC8032[0][0]))
    key = SigningKey(nacl_key)
    assert key.public_key == SK1.public_key
    assert key.sign(MESSAGE) == SIGNATURE


@pytest.mark.parametrize("bad", [h(RFC8032[0][0]), nacl.public.PrivateKey(h(RFC8032[0][0])), None])
def test_signing_key_refuses_other_types(bad: object) -> None:
    with pytest.raises(TypeError):
        SigningKey(bad)  # type: ignore[arg-type]


def test_from_seed_checks() -> None:
    with pytest.raises(TypeError):
        SigningKey.from_seed(RFC8032[0][0])  # type: ignore[arg-type]
    for size in (0, 31, 33, 64):
        with pytest.raises(ValueError, match="32 bytes"):
            SigningKey.from_seed(bytes(size))


def test_generate_gives_distinct_keys() -> None:
    assert SigningKey.generate().public_key != SigningKey.generate().public_key


def test_signing_key_repr_hides_the_seed() -> None:
    text = repr(SK1)
    assert text == f"SigningKey(key_id={SK1.key_id})"
    assert RFC8032[0][0] not in text


def test_sign_and_verify_refuse_non_bytes() -> None:
    with pytest.raises(TypeError):
        SK1.sign("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SK1.public_key.verify("text", SIGNATURE)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SK1.public_key.verify(MESSAGE, bytearray(SIGNATURE))  # type: ignore[arg-type]
