"""The standalone verifier's own Ed25519 and Merkle code agrees with crypto/ and the RFCs.

federation/verify_package.py may import nothing of ours, so it carries RFC 9162 proof
verification and a strict Ed25519 check (with `cryptography`, PyNaCl or pure Python
underneath). These tests hold it to the same answers as crypto.merkle, crypto.signing and
the published Merkle vectors, for every backend.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto import merkle, signing
from federation import verify_package as vp

VECTORS = Path(__file__).resolve().parent / "vectors" / "rfc6962_merkle_transparency-dev.json"
L = 2**252 + 27742317777372353535851937790883648493
# The points of small order: encodings libsodium refuses as keys and as R.
SMALL_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
]


@pytest.fixture(params=["default", "pure-python"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "pure-python":
        monkeypatch.setattr(vp, "_verify_raw", vp._pure_verify)
    return str(request.param)


def test_the_default_backend_is_a_library() -> None:
    assert vp.BACKEND == "cryptography"


def test_valid_and_altered_signatures(backend: str) -> None:
    key = signing.SigningKey.generate()
    public = key.public_key.raw
    for message in (b"", b"x", b"DSSEv1 4 type 3 abc", bytes(range(256)) * 4):
        sig = key.sign(message)
        assert vp.ed25519_verify(public, message, sig)
        assert not vp.ed25519_verify(public, message + b"!", sig)
        for i in (0, 31, 32, 63):
            bad = bytearray(sig)
            bad[i] ^= 0x01
            assert not vp.ed25519_verify(public, message, bytes(bad))
        other = signing.SigningKey.generate().public_key.raw
        assert not vp.ed25519_verify(other, message, sig)


def test_s_not_below_the_group_order_is_refused(backend: str) -> None:
    key = signing.SigningKey.generate()
    sig = key.sign(b"m")
    s = int.from_bytes(sig[32:], "little") + L  # the same signature, S not reduced
    malleated = sig[:32] + s.to_bytes(32, "little")
    assert not vp.ed25519_verify(key.public_key.raw, b"m", malleated)


@pytest.mark.parametrize("point", SMALL_ORDER)
def test_keys_and_r_of_small_order_are_refused(backend: str, point: bytes) -> None:
    # With A of small order and S = 0, [S]B = R + [k]A holds for R = -[k]A: a
    # signature every message "verifies" under with a lax verifier.
    assert not vp.ed25519_verify(point, b"m", point + bytes(32))
    key = signing.SigningKey.generate()
    assert not vp.ed25519_verify(key.public_key.raw, b"m", point + key.sign(b"m")[32:])


def test_the_small_order_y_list_is_the_whole_torsion_subgroup() -> None:
    """R is refused by its y-coordinate alone: the eight multiples of a point of order 8
    (the torsion subgroup is cyclic) have exactly the listed y-coordinates."""
    t8 = vp._decode_point(SMALL_ORDER[3])
    assert t8 is not None
    multiples = [vp._encode_point(vp._mul(k, t8)) for k in range(8)]
    assert len(set(multiples)) == 8
    ys = {int.from_bytes(e, "little") & ((1 << 255) - 1) for e in multiples}
    assert ys == set(vp._SMALL_ORDER_Y)


def test_r_not_a_canonical_point_is_refused(backend: str) -> None:
    key = signing.SigningKey.generate()
    sig = key.sign(b"m")
    for bad_r in (
        (2**255 - 19 + 1).to_bytes(32, "little"),  # y >= p: not canonical
        (2**255 - 1).to_bytes(32, "little"),
        (2).to_bytes(32, "little"),  # y = 2 is not on the curve
    ):
        assert not vp.ed25519_verify(key.public_key.raw, b"m", bad_r + sig[32:])


def test_a_non_canonical_key_is_refused() -> None:
    y_too_big = (2**255 - 19 + 1).to_bytes(32, "little")  # y >= p
    assert not vp.ed25519_verify(y_too_big, b"m", bytes(64))


def test_key_ids_and_pae_match_crypto() -> None:
    from crypto.dsse import pae
    from crypto.keystore import key_id

    key = signing.SigningKey.generate().public_key.raw
    assert vp.key_id(key) == key_id(key)
    assert vp.pae("application/x", b"body") == pae("application/x", b"body")


def _trees() -> Iterator[list[bytes]]:
    rng = random.Random(7)
    for size in [*range(1, 20), 31, 32, 33, 64, 100]:
        yield [merkle.leaf_hash(rng.randbytes(8)) for _ in range(size)]


def test_inclusion_agrees_with_crypto_merkle() -> None:
    for leaves in _trees():
        root = merkle.root_hash(leaves)
        for index in range(len(leaves)):
            proof = merkle.inclusion_proof(leaves, index)
            assert vp.verify_inclusion(leaves[index], index, len(leaves), proof, root)
            if proof:
                assert not vp.verify_inclusion(leaves[index], index, len(leaves), proof[:-1], root)
                bad = [*proof]
                bad[0] = hashlib.sha256(bad[0]).digest()
                assert not vp.verify_inclusion(leaves[index], index, len(leaves), bad, root)
            assert not vp.verify_inclusion(leaves[index], len(leaves), len(leaves), proof, root)


def test_consistency_agrees_with_crypto_merkle() -> None:
    for leaves in _trees():
        new_root = merkle.root_hash(leaves)
        for old in range(1, len(leaves) + 1):
            old_root = merkle.root_hash(leaves[:old])
            proof = merkle.consistency_proof(leaves, old)
            assert vp.verify_consistency(old, len(leaves), old_root, new_root, proof)
            if old < len(leaves):
                assert not vp.verify_consistency(old, len(leaves), new_root, new_root, proof)
                assert not vp.verify_consistency(old, len(leaves), old_root, old_root, proof)


def _hashes(texts: list[str] | None) -> list[bytes]:
    return [bytes.fromhex(h) for h in texts or []]


def test_every_published_probe() -> None:
    """All RFC 9162 probes of transparency-dev (valid and corrupted proofs): the verifier
    accepts exactly those it should. Sizes past 2**63 cannot occur in a package."""
    probes = json.loads(VECTORS.read_text(encoding="utf-8"))["probes"]
    for p in probes["inclusion"]:
        if not 0 <= p["leafIdx"] < 2**63 or not 0 <= p["treeSize"] < 2**63:
            continue
        ok = vp.verify_inclusion(
            bytes.fromhex(p["leafHash"]), p["leafIdx"], p["treeSize"], _hashes(p["proof"]),
            bytes.fromhex(p["root"]),
        )  # fmt: skip
        assert ok is not p["wantErr"], p["file"]
    for p in probes["consistency"]:
        if not 0 < p["size1"] < 2**63 or not 0 <= p["size2"] < 2**63:
            continue  # size 0 is never proved in a package (the empty log is a prefix)
        ok = vp.verify_consistency(
            p["size1"], p["size2"], bytes.fromhex(p["root1"]), bytes.fromhex(p["root2"]),
            _hashes(p["proof"]),
        )  # fmt: skip
        assert ok is not p["wantErr"], p["file"]
