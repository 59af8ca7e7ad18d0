"""crypto.keystore: round trips, wrong secrets, every header field altered, hostile files."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

import nacl.bindings
import nacl.utils
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.public import PrivateKey
from nacl.pwhash import argon2id
from nacl.signing import SigningKey

from crypto import keystore as ks
from crypto.errors import CryptoError, DecryptionError, KeyFormatError
from crypto.keystore import NodeKeys, open_keystore, public_info, seal_keystore

PASSPHRASE = b"correct horse battery staple"
DECRYPTION_FAILED = (
    "keystore could not be decrypted: wrong passphrase or key file, or the file was altered"
)

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def keys() -> NodeKeys:
    return ks.generate_node_keys()


@pytest.fixture(scope="module")
def key_file_secret() -> bytes:
    return ks.generate_key_file_secret()


@pytest.fixture(scope="module")
def sealed_pass(keys: NodeKeys) -> bytes:
    return seal_keystore(keys, passphrase=PASSPHRASE, strength="interactive")


@pytest.fixture(scope="module")
def sealed_keyfile(keys: NodeKeys, key_file_secret: bytes) -> bytes:
    return seal_keystore(keys, key_file_secret=key_file_secret)


def load(data: bytes) -> Doc:
    doc = json.loads(data)
    assert isinstance(doc, dict)
    return doc


def dump(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def flip_b64(text: str, index: int = 0) -> str:
    raw = bytearray(unb64(text))
    raw[index] ^= 0x01
    return b64(bytes(raw))


def assert_same_keys(a: NodeKeys, b: NodeKeys) -> None:
    assert a.signing_key.encode() == b.signing_key.encode()
    assert a.encryption_key.encode() == b.encryption_key.encode()
    assert a.tls_key_pem == b.tls_key_pem
    assert a.data_key == b.data_key


# --- round trips ------------------------------------------------------------------------


def test_generated_keys_have_the_documented_types(keys: NodeKeys) -> None:
    assert isinstance(keys.signing_key, SigningKey)
    assert isinstance(keys.encryption_key, PrivateKey)
    assert len(keys.data_key) == 32
    tls = serialization.load_pem_private_key(keys.tls_key_pem, password=None)
    assert isinstance(tls, ec.EllipticCurvePrivateKey)
    assert isinstance(tls.curve, ec.SECP256R1)
    assert keys.tls_key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted


def test_generated_keys_differ_each_time(keys: NodeKeys) -> None:
    other = ks.generate_node_keys()
    assert other.signing_key.encode() != keys.signing_key.encode()
    assert other.encryption_key.encode() != keys.encryption_key.encode()
    assert other.tls_key_pem != keys.tls_key_pem
    assert other.data_key != keys.data_key
    assert other != keys


def test_passphrase_round_trip(keys: NodeKeys, sealed_pass: bytes) -> None:
    opened = open_keystore(sealed_pass, passphrase=PASSPHRASE)
    assert_same_keys(opened, keys)
    assert opened == keys


def test_key_file_round_trip(keys: NodeKeys, sealed_keyfile: bytes, key_file_secret: bytes) -> None:
    opened = open_keystore(sealed_keyfile, key_file_secret=key_file_secret)
    assert_same_keys(opened, keys)


def test_minimum_passphrase_length_is_accepted(keys: NodeKeys) -> None:
    sealed = seal_keystore(keys, passphrase=b"x" * 12, strength="interactive")
    assert_same_keys(open_keystore(sealed, passphrase=b"x" * 12), keys)


def test_longer_key_file_secrets_are_accepted(keys: NodeKeys) -> None:
    secret = nacl.utils.random(100)
    sealed = seal_keystore(keys, key_file_secret=secret)
    assert_same_keys(open_keystore(sealed, key_file_secret=secret), keys)


def test_sealing_twice_uses_fresh_salt_and_nonce(keys: NodeKeys, key_file_secret: bytes) -> None:
    a = load(seal_keystore(keys, key_file_secret=key_file_secret))
    b = load(seal_keystore(keys, key_file_secret=key_file_secret))
    assert a["kdf"]["salt"] != b["kdf"]["salt"]
    assert a["nonce"] != b["nonce"]
    assert a["ciphertext"] != b["ciphertext"]


def test_file_layout_is_as_documented(keys: NodeKeys, sealed_pass: bytes) -> None:
    doc = load(sealed_pass)
    assert set(doc) == {"format", "version", "kdf", "nonce", "public", "ciphertext"}
    assert doc["format"] == "compact-keystore"
    assert doc["version"] == 1
    assert doc["kdf"]["name"] == "argon2id"
    assert doc["kdf"]["opslimit"] == argon2id.OPSLIMIT_INTERACTIVE
    assert doc["kdf"]["memlimit"] == argon2id.MEMLIMIT_INTERACTIVE
    assert len(unb64(doc["kdf"]["salt"])) == 16
    assert len(unb64(doc["nonce"])) == 24
    assert unb64(doc["public"]["ed25519"]) == keys.signing_key.verify_key.encode()
    assert unb64(doc["public"]["x25519"]) == keys.encryption_key.public_key.encode()
    for secret in (keys.data_key, keys.signing_key.encode(), keys.encryption_key.encode()):
        assert b64(secret).encode() not in sealed_pass
        assert secret not in sealed_pass


def test_key_file_layout_is_as_documented(sealed_keyfile: bytes) -> None:
    kdf = load(sealed_keyfile)["kdf"]
    assert set(kdf) == {"name", "salt"}
    assert kdf["name"] == "keyfile-hkdf-sha256"
    assert len(unb64(kdf["salt"])) == 16


def test_default_strength_is_moderate(keys: NodeKeys, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    def fake_kdf(size: int, password: bytes, salt: bytes, *, opslimit: int, memlimit: int) -> bytes:
        calls.append((opslimit, memlimit))
        return hashlib.sha256(password + salt).digest()[:size]

    monkeypatch.setattr(argon2id, "kdf", fake_kdf)
    doc = load(seal_keystore(keys, passphrase=PASSPHRASE))
    assert calls == [(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)]
    assert (doc["kdf"]["opslimit"], doc["kdf"]["memlimit"]) == calls[0]


def test_independent_reader_following_the_documented_format(
    keys: NodeKeys, sealed_keyfile: bytes, key_file_secret: bytes
) -> None:
    """The module docstring is enough to decrypt a keystore without this module."""
    doc = load(sealed_keyfile)
    header = {k: v for k, v in doc.items() if k != "ciphertext"}
    aad = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    wrapping = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=unb64(doc["kdf"]["salt"]),
        info=b"compact keystore v1",
    ).derive(key_file_secret)
    plaintext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
        unb64(doc["ciphertext"]), aad, unb64(doc["nonce"]), wrapping
    )
    inner = json.loads(plaintext)
    assert plaintext == json.dumps(inner, sort_keys=True, separators=(",", ":")).encode()
    assert unb64(inner["data_key"]) == keys.data_key
    assert unb64(inner["ed25519_seed"]) == keys.signing_key.encode()
    assert unb64(inner["x25519_private"]) == keys.encryption_key.encode()
    assert unb64(inner["tls_key_pem"]) == keys.tls_key_pem


def test_reformatted_json_still_opens(
    keys: NodeKeys, sealed_keyfile: bytes, key_file_secret: bytes
) -> None:
    """The AAD is the canonical header, not the file's bytes: layout changes are harmless."""
    doc = load(sealed_keyfile)
    reordered = {k: doc[k] for k in reversed(list(doc))}
    data = json.dumps(reordered, indent=7).encode()
    assert data != sealed_keyfile
    assert_same_keys(open_keystore(data, key_file_secret=key_file_secret), keys)


# --- wrong secrets ------------------------------------------------------------------------


def test_wrong_passphrase(sealed_pass: bytes) -> None:
    with pytest.raises(DecryptionError) as info:
        open_keystore(sealed_pass, passphrase=PASSPHRASE + b"!")
    assert str(info.value) == DECRYPTION_FAILED
    # Nothing chained: no library exception rides along into logs.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    assert PASSPHRASE.decode() not in str(info.value)


def test_wrong_key_file(sealed_keyfile: bytes, key_file_secret: bytes) -> None:
    wrong = bytearray(key_file_secret)
    wrong[-1] ^= 1
    with pytest.raises(DecryptionError, match=r"^keystore could not be decrypted"):
        open_keystore(sealed_keyfile, key_file_secret=bytes(wrong))


def test_key_file_secret_with_an_extra_newline_fails(
    sealed_keyfile: bytes, key_file_secret: bytes
) -> None:
    with pytest.raises(DecryptionError):
        open_keystore(sealed_keyfile, key_file_secret=key_file_secret + b"\n")


def test_passphrase_given_for_a_key_file_keystore(sealed_keyfile: bytes) -> None:
    with pytest.raises(DecryptionError, match="key file, not a passphrase"):
        open_keystore(sealed_keyfile, passphrase=PASSPHRASE)


def test_key_file_given_for_a_passphrase_keystore(
    sealed_pass: bytes, key_file_secret: bytes
) -> None:
    with pytest.raises(DecryptionError, match="passphrase, not a key file"):
        open_keystore(sealed_pass, key_file_secret=key_file_secret)


def test_passphrase_bytes_as_key_file_secret_do_not_open(keys: NodeKeys) -> None:
    """A 32+-byte passphrase handed over as a key file is refused before any KDF."""
    long_passphrase = b"p" * 40
    sealed = seal_keystore(keys, passphrase=long_passphrase, strength="interactive")
    with pytest.raises(DecryptionError):
        open_keystore(sealed, key_file_secret=long_passphrase)


# --- every header field altered -------------------------------------------------------------


def _set(path: tuple[str, ...], value: Callable[[Any], Any]) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value(target[path[-1]])

    return mutate


OTHER_PUBLIC = b64(bytes(range(32)))

# (name, mutation, exception expected, applies to passphrase/key file keystores)
HEADER_ALTERATIONS: list[tuple[str, Callable[[Doc], None], type[CryptoError], str]] = [
    ("format", _set(("format",), lambda _: "compact-keystore-x"), KeyFormatError, "both"),
    ("version", _set(("version",), lambda _: 2), KeyFormatError, "both"),
    ("kdf.name", _set(("kdf", "name"), lambda _: "scrypt"), KeyFormatError, "both"),
    ("kdf.salt", _set(("kdf", "salt"), flip_b64), DecryptionError, "both"),
    ("nonce", _set(("nonce",), flip_b64), DecryptionError, "both"),
    ("nonce.last", _set(("nonce",), lambda v: flip_b64(v, -1)), DecryptionError, "both"),
    (
        "public.ed25519",
        _set(("public", "ed25519"), lambda _: OTHER_PUBLIC),
        DecryptionError,
        "both",
    ),
    ("public.x25519", _set(("public", "x25519"), lambda _: OTHER_PUBLIC), DecryptionError, "both"),
    ("kdf.opslimit", _set(("kdf", "opslimit"), lambda v: v + 1), DecryptionError, "pass"),
    ("kdf.memlimit", _set(("kdf", "memlimit"), lambda v: v + 1024), DecryptionError, "pass"),
]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [pytest.param(m, e, id=name) for name, m, e, kind in HEADER_ALTERATIONS if kind != "keyfile"],
)
def test_altered_header_field_fails_passphrase(
    sealed_pass: bytes, mutate: Callable[[Doc], None], expected: type[CryptoError]
) -> None:
    doc = load(sealed_pass)
    mutate(doc)
    altered = dump(doc)
    assert load(altered) != load(sealed_pass)
    with pytest.raises(expected) as info:
        open_keystore(altered, passphrase=PASSPHRASE)
    if expected is DecryptionError:
        assert str(info.value) == DECRYPTION_FAILED


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [pytest.param(m, e, id=name) for name, m, e, kind in HEADER_ALTERATIONS if kind == "both"],
)
def test_altered_header_field_fails_key_file(
    sealed_keyfile: bytes,
    key_file_secret: bytes,
    mutate: Callable[[Doc], None],
    expected: type[CryptoError],
) -> None:
    doc = load(sealed_keyfile)
    mutate(doc)
    with pytest.raises(expected) as info:
        open_keystore(dump(doc), key_file_secret=key_file_secret)
    if expected is DecryptionError:
        assert str(info.value) == DECRYPTION_FAILED


def test_kdf_switched_to_key_file_is_refused(sealed_pass: bytes) -> None:
    doc = load(sealed_pass)
    doc["kdf"] = {"name": "keyfile-hkdf-sha256", "salt": doc["kdf"]["salt"]}
    with pytest.raises(DecryptionError):
        open_keystore(dump(doc), passphrase=PASSPHRASE)
    with pytest.raises(DecryptionError, match=DECRYPTION_FAILED):
        open_keystore(dump(doc), key_file_secret=PASSPHRASE + b"-padded-to-32-bytes-----")


def test_kdf_switched_to_passphrase_is_refused(
    sealed_keyfile: bytes, key_file_secret: bytes
) -> None:
    doc = load(sealed_keyfile)
    doc["kdf"] = {
        "name": "argon2id",
        "opslimit": argon2id.OPSLIMIT_INTERACTIVE,
        "memlimit": argon2id.MEMLIMIT_INTERACTIVE,
        "salt": doc["kdf"]["salt"],
    }
    with pytest.raises(DecryptionError):
        open_keystore(dump(doc), key_file_secret=key_file_secret)
    with pytest.raises(DecryptionError, match=DECRYPTION_FAILED):
        open_keystore(dump(doc), passphrase=key_file_secret)


# --- altered or truncated ciphertext, truncated file ---------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 100, -17, -16, -1])
def test_flipped_ciphertext_byte(sealed_pass: bytes, index: int) -> None:
    doc = load(sealed_pass)
    doc["ciphertext"] = flip_b64(doc["ciphertext"], index)
    with pytest.raises(DecryptionError, match=DECRYPTION_FAILED):
        open_keystore(dump(doc), passphrase=PASSPHRASE)


@pytest.mark.parametrize("keep", [0, 1, 15, 16, 17, -16, -1])
def test_truncated_ciphertext(sealed_keyfile: bytes, key_file_secret: bytes, keep: int) -> None:
    doc = load(sealed_keyfile)
    raw = unb64(doc["ciphertext"])
    doc["ciphertext"] = b64(raw[:keep])
    assert len(unb64(doc["ciphertext"])) < len(raw)
    with pytest.raises(DecryptionError, match=DECRYPTION_FAILED):
        open_keystore(dump(doc), key_file_secret=key_file_secret)


def test_extended_ciphertext(sealed_keyfile: bytes, key_file_secret: bytes) -> None:
    doc = load(sealed_keyfile)
    doc["ciphertext"] = b64(unb64(doc["ciphertext"]) + b"\x00")
    with pytest.raises(DecryptionError, match=DECRYPTION_FAILED):
        open_keystore(dump(doc), key_file_secret=key_file_secret)


def test_truncated_file_is_malformed(sealed_keyfile: bytes, key_file_secret: bytes) -> None:
    stripped = sealed_keyfile.rstrip()
    for cut in (0, 1, len(stripped) // 3, len(stripped) // 2, len(stripped) - 1):
        with pytest.raises(KeyFormatError):
            open_keystore(stripped[:cut], key_file_secret=key_file_secret)


# --- malformed files -------------------------------------------------------------------


def _without(*path: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _with(value: Any, *path: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


MALFORMATIONS: dict[str, Callable[[Doc], None]] = {
    **{f"missing {f}": _without(f) for f in ("format", "version", "kdf", "nonce", "public")},
    "missing ciphertext": _without("ciphertext"),
    "missing kdf.name": _without("kdf", "name"),
    "missing kdf.salt": _without("kdf", "salt"),
    "missing kdf.opslimit": _without("kdf", "opslimit"),
    "missing kdf.memlimit": _without("kdf", "memlimit"),
    "missing public.ed25519": _without("public", "ed25519"),
    "missing public.x25519": _without("public", "x25519"),
    "unknown top field": _with(1, "comment"),
    "unknown kdf field": _with(1, "kdf", "parallelism"),
    "unknown public field": _with(OTHER_PUBLIC, "public", "rsa"),
    "version 2": _with(2, "version"),
    "version 0": _with(0, "version"),
    "version as string": _with("1", "version"),
    "version as float": _with(1.0, "version"),
    "version as bool": _with(True, "version"),
    "format other": _with("age-encryption.org/v1", "format"),
    "format missing value": _with(None, "format"),
    "kdf not object": _with("argon2id", "kdf"),
    "kdf unknown name": _with("pbkdf2", "kdf", "name"),
    "opslimit as string": _with("2", "kdf", "opslimit"),
    "opslimit as float": _with(2.0, "kdf", "opslimit"),
    "opslimit as bool": _with(True, "kdf", "opslimit"),
    "salt 15 bytes": _with(b64(bytes(15)), "kdf", "salt"),
    "salt 32 bytes": _with(b64(bytes(32)), "kdf", "salt"),
    "salt not base64": _with("!!!!", "kdf", "salt"),
    "salt not string": _with(12345, "kdf", "salt"),
    "nonce 12 bytes": _with(b64(bytes(12)), "nonce"),
    "nonce urlsafe alphabet": _with("_" * 32, "nonce"),
    "nonce with newline": _with(b64(bytes(24))[:16] + "\n" + b64(bytes(24))[16:], "nonce"),
    "salt non-canonical padding bits": _with("A" * 21 + "B==", "kdf", "salt"),
    "salt without padding": _with("A" * 22, "kdf", "salt"),
    "public not object": _with([], "public"),
    "public.ed25519 31 bytes": _with(b64(bytes(31)), "public", "ed25519"),
    "public.x25519 33 bytes": _with(b64(bytes(33)), "public", "x25519"),
    "ciphertext not base64": _with("not base64!", "ciphertext"),
    "ciphertext null": _with(None, "ciphertext"),
}


@pytest.mark.parametrize("mutate", list(MALFORMATIONS.values()), ids=list(MALFORMATIONS))
def test_malformed_header_is_key_format_error(
    sealed_pass: bytes, mutate: Callable[[Doc], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_kdf(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("the KDF must not run on a malformed keystore")

    doc = load(sealed_pass)
    mutate(doc)
    data = dump(doc)
    monkeypatch.setattr(argon2id, "kdf", no_kdf)
    with pytest.raises(KeyFormatError):
        open_keystore(data, passphrase=PASSPHRASE)
    with pytest.raises(KeyFormatError):
        public_info(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not json"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'"compact-keystore"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"\xff\xfe{}", id="not utf-8"),
        pytest.param(b"\xef\xbb\xbf{}", id="utf-8 bom"),
        pytest.param(b'{"format": NaN}', id="nan"),
        pytest.param(b"[" * 10000 + b"]" * 10000, id="deep nesting"),
        pytest.param(b'{"format": "compact-keystore", "version": 1e0}', id="float version"),
    ],
)
def test_not_a_keystore_is_key_format_error(data: bytes) -> None:
    with pytest.raises(KeyFormatError):
        open_keystore(data, passphrase=PASSPHRASE)


def test_duplicate_field_is_key_format_error(sealed_keyfile: bytes, key_file_secret: bytes) -> None:
    text = sealed_keyfile.decode()
    # A second "nonce" first in the object: a lax parser would take the later, valid one.
    duped = text.replace("{", '{"nonce": "' + b64(bytes(24)) + '",', 1)
    with pytest.raises(KeyFormatError, match="duplicate"):
        open_keystore(duped.encode(), key_file_secret=key_file_secret)


def test_oversized_file_is_key_format_error(sealed_keyfile: bytes, key_file_secret: bytes) -> None:
    padded = sealed_keyfile + b" " * (ks.MAX_KEYSTORE_BYTES - len(sealed_keyfile))
    assert_same_keys(
        open_keystore(padded, key_file_secret=key_file_secret),
        open_keystore(sealed_keyfile, key_file_secret=key_file_secret),
    )
    with pytest.raises(KeyFormatError, match="too large"):
        open_keystore(padded + b" ", key_file_secret=key_file_secret)


# --- hostile KDF parameters ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("memlimit", 2**40),
        ("memlimit", argon2id.MEMLIMIT_SENSITIVE),
        ("memlimit", argon2id.MEMLIMIT_MODERATE + 1),
        ("memlimit", argon2id.MEMLIMIT_INTERACTIVE - 1),
        ("memlimit", 0),
        ("memlimit", -1),
        ("memlimit", 10**400),
        ("opslimit", 2**32 - 1),
        ("opslimit", argon2id.OPSLIMIT_MODERATE + 1),
        ("opslimit", argon2id.OPSLIMIT_INTERACTIVE - 1),
        ("opslimit", 0),
    ],
)
def test_hostile_kdf_limits_are_rejected_before_any_kdf(
    sealed_pass: bytes, field: str, value: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_kdf(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("the KDF must not run with hostile limits")

    monkeypatch.setattr(argon2id, "kdf", no_kdf)
    doc = load(sealed_pass)
    doc["kdf"][field] = value
    with pytest.raises(KeyFormatError, match=field):
        open_keystore(dump(doc), passphrase=PASSPHRASE)


@pytest.mark.parametrize(
    ("opslimit", "memlimit"),
    [
        (argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE),
        (argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE),
    ],
)
def test_kdf_limit_bounds_are_inclusive(sealed_pass: bytes, opslimit: int, memlimit: int) -> None:
    doc = load(sealed_pass)
    doc["kdf"]["opslimit"] = opslimit
    doc["kdf"]["memlimit"] = memlimit
    assert set(public_info(dump(doc))) == {"ed25519", "x25519"}


# --- authenticated but malformed contents (crafted with the documented format) -------------


def craft(
    inner: Doc, key_file_secret: bytes, *, public: tuple[bytes, bytes], raw: bytes | None = None
) -> bytes:
    """A key file keystore built from the documented format, with arbitrary contents."""
    salt, nonce = nacl.utils.random(16), nacl.utils.random(24)
    header: Doc = {
        "format": "compact-keystore",
        "version": 1,
        "kdf": {"name": "keyfile-hkdf-sha256", "salt": b64(salt)},
        "nonce": b64(nonce),
        "public": {"ed25519": b64(public[0]), "x25519": b64(public[1])},
    }
    aad = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    wrapping = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=b"compact keystore v1"
    ).derive(key_file_secret)
    plaintext = raw if raw is not None else json.dumps(inner).encode()
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, aad, nonce, wrapping
    )
    return dump({**header, "ciphertext": b64(ciphertext)})


def inner_of(keys: NodeKeys) -> Doc:
    return {
        "data_key": b64(keys.data_key),
        "ed25519_seed": b64(keys.signing_key.encode()),
        "tls_key_pem": b64(keys.tls_key_pem),
        "x25519_private": b64(keys.encryption_key.encode()),
    }


def public_of(keys: NodeKeys) -> tuple[bytes, bytes]:
    return keys.signing_key.verify_key.encode(), keys.encryption_key.public_key.encode()


def test_crafted_keystore_control(keys: NodeKeys, key_file_secret: bytes) -> None:
    data = craft(inner_of(keys), key_file_secret, public=public_of(keys))
    assert_same_keys(open_keystore(data, key_file_secret=key_file_secret), keys)


def test_public_keys_must_match_private_keys(keys: NodeKeys, key_file_secret: bytes) -> None:
    other = ks.generate_node_keys()
    for public in (
        public_of(other),
        (public_of(keys)[0], public_of(other)[1]),
        (public_of(other)[0], public_of(keys)[1]),
    ):
        data = craft(inner_of(keys), key_file_secret, public=public)
        with pytest.raises(KeyFormatError, match="do not match"):
            open_keystore(data, key_file_secret=key_file_secret)


def _p384_pem() -> bytes:
    return ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: d.pop("data_key"), id="missing data_key"),
        pytest.param(lambda d: d.update(extra="x"), id="extra field"),
        pytest.param(lambda d: d.update(data_key=b64(bytes(31))), id="short data_key"),
        pytest.param(lambda d: d.update(ed25519_seed=b64(bytes(33))), id="long seed"),
        pytest.param(lambda d: d.update(tls_key_pem=b64(b"not a pem")), id="tls not pem"),
        pytest.param(lambda d: d.update(tls_key_pem=b64(_p384_pem())), id="tls P-384"),
        pytest.param(lambda d: d.update(tls_key_pem="%%%"), id="tls not base64"),
    ],
)
def test_malformed_contents_are_key_format_error(
    keys: NodeKeys, key_file_secret: bytes, change: Callable[[Doc], object]
) -> None:
    inner = inner_of(keys)
    change(inner)
    data = craft(inner, key_file_secret, public=public_of(keys))
    with pytest.raises(KeyFormatError) as info:
        open_keystore(data, key_file_secret=key_file_secret)
    assert info.value.__context__ is None
    assert b64(keys.data_key) not in str(info.value)


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b"\xff" + bytes(40)])
def test_contents_not_a_json_object(keys: NodeKeys, key_file_secret: bytes, raw: bytes) -> None:
    data = craft({}, key_file_secret, public=public_of(keys), raw=raw)
    with pytest.raises(KeyFormatError, match="keystore contents") as info:
        open_keystore(data, key_file_secret=key_file_secret)
    # The JSON parser's exception would carry the decrypted plaintext: it must not be chained.
    assert info.value.__context__ is None
    assert info.value.__cause__ is None


# --- arguments ------------------------------------------------------------------------


def test_exactly_one_secret(keys: NodeKeys, sealed_pass: bytes, key_file_secret: bytes) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        seal_keystore(keys)
    with pytest.raises(ValueError, match="exactly one"):
        seal_keystore(keys, passphrase=PASSPHRASE, key_file_secret=key_file_secret)
    with pytest.raises(ValueError, match="exactly one"):
        open_keystore(sealed_pass)
    with pytest.raises(ValueError, match="exactly one"):
        open_keystore(sealed_pass, passphrase=PASSPHRASE, key_file_secret=key_file_secret)


def test_secret_lengths(keys: NodeKeys, sealed_keyfile: bytes, sealed_pass: bytes) -> None:
    with pytest.raises(ValueError, match="at least 12"):
        seal_keystore(keys, passphrase=b"x" * 11, strength="interactive")
    with pytest.raises(ValueError, match="at least 32"):
        seal_keystore(keys, key_file_secret=b"k" * 31)
    with pytest.raises(ValueError, match="at least 32"):
        open_keystore(sealed_keyfile, key_file_secret=b"k" * 31)
    with pytest.raises(ValueError, match="must not be empty"):
        open_keystore(sealed_pass, passphrase=b"")


def test_secret_types(keys: NodeKeys, sealed_pass: bytes) -> None:
    with pytest.raises(TypeError):
        seal_keystore(keys, passphrase="a str passphrase", strength="interactive")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        open_keystore(sealed_pass, passphrase=bytearray(PASSPHRASE))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        open_keystore(sealed_pass.decode(), passphrase=PASSPHRASE)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        seal_keystore("keys", passphrase=PASSPHRASE)  # type: ignore[arg-type]


def test_unknown_strength(keys: NodeKeys) -> None:
    with pytest.raises(ValueError, match="strength"):
        seal_keystore(keys, passphrase=PASSPHRASE, strength="sensitive")  # type: ignore[arg-type]


# --- public info, key ids, NodeKeys --------------------------------------------------------------


def test_public_info(keys: NodeKeys, sealed_pass: bytes, sealed_keyfile: bytes) -> None:
    expected = {
        "ed25519": keys.signing_key.verify_key.encode(),
        "x25519": keys.encryption_key.public_key.encode(),
    }
    assert public_info(sealed_pass) == expected
    assert public_info(sealed_keyfile) == expected


def test_key_id_known_value() -> None:
    # SHA-256 of 32 zero bytes is 66687aad f862bd77 6c8fc18b 8e9f8e20 089714856ee233b3...
    assert ks.key_id(bytes(32)) == "66687aadf862bd776c8fc18b8e9f8e20"


def test_key_id_of_a_real_key(keys: NodeKeys) -> None:
    raw = keys.signing_key.verify_key.encode()
    kid = ks.key_id(raw)
    assert kid == hashlib.sha256(raw).hexdigest()[:32]
    assert kid != ks.key_id(keys.encryption_key.public_key.encode())


@pytest.mark.parametrize("raw", [b"", bytes(31), bytes(33), bytes(64)])
def test_key_id_needs_a_raw_32_byte_key(raw: bytes) -> None:
    with pytest.raises(ValueError, match="32-byte"):
        ks.key_id(raw)


def test_node_keys_repr_shows_no_secrets(keys: NodeKeys) -> None:
    text = repr(keys) + str(keys)
    assert ks.key_id(keys.signing_key.verify_key.encode()) in text
    for secret in (keys.data_key, keys.signing_key.encode(), keys.encryption_key.encode()):
        assert secret.hex() not in text
        assert repr(secret) not in text
        assert b64(secret) not in text
    assert "PRIVATE KEY" not in text


def test_node_keys_equality(keys: NodeKeys) -> None:
    same = NodeKeys(
        signing_key=SigningKey(keys.signing_key.encode()),
        encryption_key=PrivateKey(keys.encryption_key.encode()),
        tls_key_pem=keys.tls_key_pem,
        data_key=keys.data_key,
    )
    assert same == keys
    changed = NodeKeys(
        signing_key=keys.signing_key,
        encryption_key=keys.encryption_key,
        tls_key_pem=keys.tls_key_pem,
        data_key=bytes(32),
    )
    assert changed != keys
    assert keys != "keys"
    with pytest.raises(TypeError):
        hash(keys)


def test_node_keys_checks_its_fields(keys: NodeKeys) -> None:
    with pytest.raises(ValueError, match="data_key"):
        NodeKeys(keys.signing_key, keys.encryption_key, keys.tls_key_pem, bytes(16))
    with pytest.raises(ValueError, match="P-256"):
        NodeKeys(keys.signing_key, keys.encryption_key, _p384_pem(), keys.data_key)
    with pytest.raises(TypeError):
        NodeKeys(keys.encryption_key, keys.encryption_key, keys.tls_key_pem, keys.data_key)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        NodeKeys(keys.signing_key, keys.signing_key, keys.tls_key_pem, keys.data_key)  # type: ignore[arg-type]


def test_generate_key_file_secret() -> None:
    a, b = ks.generate_key_file_secret(), ks.generate_key_file_secret()
    assert len(a) == 32
    assert a != b
