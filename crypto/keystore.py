"""A node's secret keys, sealed at rest in one JSON file.

A node holds four secrets (:class:`NodeKeys`): an Ed25519 signing key, an
X25519 encryption key, the ECDSA P-256 TLS key (PKCS#8 PEM) and the 32-byte
data key from which the field and blob encryption keys are derived
(:mod:`crypto.fields`, :mod:`crypto.blobs`). They are sealed together under a
wrapping key derived from either

* a **passphrase** (at least 12 bytes): Argon2id
  (``crypto_pwhash_argon2id``, 32-byte output) with a random 16-byte salt and
  the libsodium MODERATE limits (INTERACTIVE on request, for tests); or
* a **key file** secret (at least 32 random bytes kept outside the data
  folder, see :func:`generate_key_file_secret`): HKDF-SHA256 with the random
  16-byte salt as HKDF salt and ``info = b"compact keystore v1"``.

File format, version 1 (UTF-8 JSON, one object)::

    {
      "format": "compact-keystore",
      "version": 1,
      "kdf": {"name": "argon2id", "opslimit": <int>, "memlimit": <int>, "salt": <b64>}
           | {"name": "keyfile-hkdf-sha256", "salt": <b64>},
      "nonce": <b64, 24 bytes>,
      "public": {"ed25519": <b64, 32 bytes>, "x25519": <b64, 32 bytes>},
      "ciphertext": <b64>
    }

``<b64>`` is standard base64 with padding, in its canonical form (what
``base64.b64encode`` produces); salts are 16 bytes. Every field is required
and no other field is allowed; integers must be JSON integers.

The *header* is the object without ``"ciphertext"``. The ciphertext is
XChaCha20-Poly1305-IETF (``crypto_aead_xchacha20poly1305_ietf``) under the
wrapping key with the 24-byte random nonce, and its associated data is the
canonical JSON of the header: keys sorted, no whitespace (separators ``,`` and
``:``), ASCII only. Changing any header field (the format, the version, a KDF
parameter, the salt, the nonce or a public key) therefore makes decryption
fail.

The plaintext is the canonical JSON of::

    {"data_key": <b64, 32 bytes>, "ed25519_seed": <b64, 32 bytes>,
     "tls_key_pem": <b64 of the PKCS#8 PEM>, "x25519_private": <b64, 32 bytes>}

The clear ``"public"`` keys let tools show the node's public keys without
unlocking it (:func:`public_info`). They are only *authenticated* once the
keystore is opened, which also checks that they match the private keys.

Hostile files: a file larger than :data:`MAX_KEYSTORE_BYTES`, or with Argon2id
limits outside the range this module writes (INTERACTIVE to MODERATE), is
rejected with :class:`KeyFormatError` before any key derivation, so a crafted
file cannot make the node allocate gigabytes or spin for minutes.

Errors: :class:`KeyFormatError` for a file that is not a well-formed keystore
(including a file cut short inside its JSON); :class:`DecryptionError` for a
wrong passphrase or key file, a secret of the other kind, or an altered or
truncated ciphertext or header; ``ValueError``/``TypeError`` for caller
mistakes (both or neither secret, too short a secret, an unknown strength).

Python cannot wipe ``bytes`` from memory; unlocked keys live as long as the
objects that hold them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

import nacl.bindings
import nacl.exceptions
import nacl.utils
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.public import PrivateKey
from nacl.pwhash import argon2id
from nacl.signing import SigningKey

from crypto.errors import DecryptionError, KeyFormatError
from crypto.tls import generate_tls_key, load_tls_key

__all__ = [
    "ARGON2_MEMLIMIT_RANGE",
    "ARGON2_OPSLIMIT_RANGE",
    "DATA_KEY_SIZE",
    "FORMAT",
    "KDF_ARGON2ID",
    "KDF_KEYFILE",
    "KEY_FILE_HKDF_INFO",
    "MAX_KEYSTORE_BYTES",
    "MIN_KEY_FILE_SECRET_BYTES",
    "MIN_PASSPHRASE_BYTES",
    "VERSION",
    "NodeKeys",
    "Strength",
    "generate_key_file_secret",
    "generate_node_keys",
    "key_id",
    "open_keystore",
    "public_info",
    "seal_keystore",
]

FORMAT: Final = "compact-keystore"
VERSION: Final = 1
KDF_ARGON2ID: Final = "argon2id"
KDF_KEYFILE: Final = "keyfile-hkdf-sha256"
KEY_FILE_HKDF_INFO: Final = b"compact keystore v1"

DATA_KEY_SIZE: Final = 32
MIN_PASSPHRASE_BYTES: Final = 12
MIN_KEY_FILE_SECRET_BYTES: Final = 32
#: Files larger than this are rejected unread (a real keystore is about 1 KiB).
MAX_KEYSTORE_BYTES: Final = 64 * 1024

#: Argon2id limits accepted when opening: the range :func:`seal_keystore` writes.
ARGON2_OPSLIMIT_RANGE: Final = (argon2id.OPSLIMIT_INTERACTIVE, argon2id.OPSLIMIT_MODERATE)
ARGON2_MEMLIMIT_RANGE: Final = (argon2id.MEMLIMIT_INTERACTIVE, argon2id.MEMLIMIT_MODERATE)

Strength = Literal["moderate", "interactive"]
_STRENGTHS: Final[Mapping[str, tuple[int, int]]] = {
    "moderate": (argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE),
    "interactive": (argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE),
}

_SALT_SIZE: Final = 16
_NONCE_SIZE: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
_KEY_SIZE: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
_TAG_SIZE: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES
_RAW_KEY_SIZE: Final = 32  # Ed25519 seed, X25519 scalar, their public keys
_MAX_TLS_PEM_BYTES: Final = 16 * 1024

_DECRYPTION_FAILED: Final = (
    "keystore could not be decrypted: wrong passphrase or key file, or the file was altered"
)

_TOP_FIELDS: Final = frozenset({"format", "version", "kdf", "nonce", "public", "ciphertext"})
_ARGON2_FIELDS: Final = frozenset({"name", "opslimit", "memlimit", "salt"})
_KEYFILE_FIELDS: Final = frozenset({"name", "salt"})
_PUBLIC_FIELDS: Final = frozenset({"ed25519", "x25519"})
_SECRET_FIELDS: Final = frozenset({"data_key", "ed25519_seed", "tls_key_pem", "x25519_private"})


def key_id(verify_key_bytes: bytes) -> str:
    """A short, stable identifier of a raw 32-byte public key.

    The lowercase hex of the first 16 bytes of SHA-256 over the raw public key
    (32 hex characters), e.g. ``key_id(keys.signing_key.verify_key.encode())``.
    It names a key in logs, listings and file names; 128 bits make accidental
    collisions negligible, but it is a label, not a substitute for comparing
    or pinning the full key when authenticating.
    """
    if not isinstance(verify_key_bytes, bytes):
        raise TypeError("verify_key_bytes must be bytes")
    if len(verify_key_bytes) != _RAW_KEY_SIZE:
        raise ValueError("verify_key_bytes must be a raw 32-byte public key")
    return hashlib.sha256(verify_key_bytes).digest()[:16].hex()


@dataclass(frozen=True, eq=False, repr=False)
class NodeKeys:
    """A node's secret keys, as unlocked from the keystore.

    ``signing_key`` (Ed25519), ``encryption_key`` (X25519), ``tls_key_pem``
    (ECDSA P-256, unencrypted PKCS#8 PEM), ``data_key`` (32 random bytes, the
    root key of at-rest encryption). Checked on construction. The ``repr``
    shows key ids only; equality is constant-time; instances are not hashable.
    """

    signing_key: SigningKey
    encryption_key: PrivateKey
    tls_key_pem: bytes
    data_key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.signing_key, SigningKey):
            raise TypeError("signing_key must be a nacl.signing.SigningKey")
        if not isinstance(self.encryption_key, PrivateKey):
            raise TypeError("encryption_key must be a nacl.public.PrivateKey")
        if not isinstance(self.data_key, bytes) or len(self.data_key) != DATA_KEY_SIZE:
            raise ValueError(f"data_key must be {DATA_KEY_SIZE} bytes")
        load_tls_key(self.tls_key_pem)  # ValueError/TypeError unless P-256 PEM

    def _secret_parts(self) -> tuple[bytes, ...]:
        return (
            self.signing_key.encode(),
            self.encryption_key.encode(),
            self.tls_key_pem,
            self.data_key,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NodeKeys):
            return NotImplemented
        same = True
        for mine, theirs in zip(self._secret_parts(), other._secret_parts(), strict=True):
            # Length-prefixed so the comparison cannot be fooled by shifted boundaries.
            same &= hmac.compare_digest(
                len(mine).to_bytes(8, "big") + mine, len(theirs).to_bytes(8, "big") + theirs
            )
        return same

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        ed = key_id(self.signing_key.verify_key.encode())
        x = key_id(self.encryption_key.public_key.encode())
        return f"NodeKeys(ed25519={ed}, x25519={x}, tls_key_pem=<P-256>, data_key=<redacted>)"


def generate_node_keys() -> NodeKeys:
    """Fresh keys for a new node, from the operating system's CSPRNG."""
    return NodeKeys(
        signing_key=SigningKey.generate(),
        encryption_key=PrivateKey.generate(),
        tls_key_pem=generate_tls_key(),
        data_key=nacl.utils.random(DATA_KEY_SIZE),
    )


def generate_key_file_secret() -> bytes:
    """A new key file secret: 32 random bytes, to be written to a file kept elsewhere."""
    return nacl.utils.random(MIN_KEY_FILE_SECRET_BYTES)


# --- the header ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Header:
    argon2: tuple[int, int] | None  # (opslimit, memlimit); None: a key file keystore
    salt: bytes
    nonce: bytes
    ed25519: bytes
    x25519: bytes

    def to_json(self) -> dict[str, object]:
        kdf: dict[str, object]
        if self.argon2 is not None:
            opslimit, memlimit = self.argon2
            kdf = {
                "name": KDF_ARGON2ID,
                "opslimit": opslimit,
                "memlimit": memlimit,
                "salt": _b64(self.salt),
            }
        else:
            kdf = {"name": KDF_KEYFILE, "salt": _b64(self.salt)}
        return {
            "format": FORMAT,
            "version": VERSION,
            "kdf": kdf,
            "nonce": _b64(self.nonce),
            "public": {"ed25519": _b64(self.ed25519), "x25519": _b64(self.x25519)},
        }

    def aad(self) -> bytes:
        return _canonical_json(self.to_json())


def _canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class _Invalid:
    """Marker for a value that failed to parse."""


_INVALID: Final = _Invalid()


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise KeyFormatError(f"keystore has a duplicate field {key!r}")
        obj[key] = value
    return obj


def _reject_float(_text: str) -> object:
    raise KeyFormatError("keystore numbers must be integers")


def _reject_constant(_text: str) -> object:
    raise KeyFormatError("keystore numbers must be integers")


def _json_object(data: bytes, what: str) -> dict[str, object]:
    """Strictly parse one JSON object; never chains the parser's exception (it may hold secrets)."""
    parsed: object = _INVALID
    # ValueError includes UnicodeDecodeError and JSONDecodeError (whose .doc is the input).
    with contextlib.suppress(ValueError, RecursionError):
        parsed = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
        )
    if isinstance(parsed, _Invalid):
        raise KeyFormatError(f"{what} is not valid UTF-8 JSON")
    if not isinstance(parsed, dict):
        raise KeyFormatError(f"{what} is not a JSON object")
    return parsed


def _fields(obj: object, expected: frozenset[str], what: str) -> dict[str, object]:
    if not isinstance(obj, dict):
        raise KeyFormatError(f"{what} must be a JSON object")
    missing = sorted(expected - obj.keys())
    if missing:
        raise KeyFormatError(f"{what} is missing field {missing[0]!r}")
    extra = sorted(obj.keys() - expected)
    if extra:
        raise KeyFormatError(f"{what} has unknown field {extra[0]!r}")
    return obj


def _int_field(obj: Mapping[str, object], key: str, what: str) -> int:
    value = obj[key]
    if type(value) is not int:  # bool is a subclass of int: excluded on purpose
        raise KeyFormatError(f"{what} field {key!r} must be an integer")
    return value


def _b64_field(obj: Mapping[str, object], key: str, what: str, size: int | None = None) -> bytes:
    value = obj[key]
    raw: bytes | None = None
    if isinstance(value, str) and value.isascii():
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:  # binascii.Error
            raw = None
        if raw is not None and _b64(raw) != value:
            raw = None  # only the canonical encoding is accepted
    if raw is None:
        raise KeyFormatError(f"{what} field {key!r} must be canonical base64")
    if size is not None and len(raw) != size:
        raise KeyFormatError(f"{what} field {key!r} must be {size} bytes")
    return raw


def _parse(data: bytes) -> tuple[_Header, bytes]:
    """The header and ciphertext of a keystore file; KeyFormatError unless well-formed."""
    if not isinstance(data, bytes):
        raise TypeError("keystore data must be bytes")
    if len(data) > MAX_KEYSTORE_BYTES:
        raise KeyFormatError("keystore file is too large")
    doc = _json_object(data, "keystore")
    if doc.get("format") != FORMAT:
        raise KeyFormatError("not a compact keystore (format field)")
    if "version" not in doc:
        raise KeyFormatError("keystore is missing field 'version'")
    version = _int_field(doc, "version", "keystore")
    if version != VERSION:
        raise KeyFormatError(f"unsupported keystore version {version}")
    _fields(doc, _TOP_FIELDS, "keystore")

    kdf_obj = doc["kdf"]
    if not isinstance(kdf_obj, dict):
        raise KeyFormatError("keystore field 'kdf' must be a JSON object")
    name = kdf_obj.get("name")
    argon2: tuple[int, int] | None = None
    if name == KDF_ARGON2ID:
        kdf = _fields(kdf_obj, _ARGON2_FIELDS, "keystore kdf")
        opslimit = _int_field(kdf, "opslimit", "keystore kdf")
        memlimit = _int_field(kdf, "memlimit", "keystore kdf")
        lo, hi = ARGON2_OPSLIMIT_RANGE
        if not lo <= opslimit <= hi:
            raise KeyFormatError(f"keystore argon2id opslimit must be from {lo} to {hi}")
        lo, hi = ARGON2_MEMLIMIT_RANGE
        if not lo <= memlimit <= hi:
            raise KeyFormatError(f"keystore argon2id memlimit must be from {lo} to {hi} bytes")
        argon2 = (opslimit, memlimit)
    elif name == KDF_KEYFILE:
        kdf = _fields(kdf_obj, _KEYFILE_FIELDS, "keystore kdf")
    else:
        raise KeyFormatError("keystore kdf name is not one this version knows")
    salt = _b64_field(kdf, "salt", "keystore kdf", _SALT_SIZE)

    public = _fields(doc["public"], _PUBLIC_FIELDS, "keystore public")
    header = _Header(
        argon2=argon2,
        salt=salt,
        nonce=_b64_field(doc, "nonce", "keystore", _NONCE_SIZE),
        ed25519=_b64_field(public, "ed25519", "keystore public", _RAW_KEY_SIZE),
        x25519=_b64_field(public, "x25519", "keystore public", _RAW_KEY_SIZE),
    )
    ciphertext = _b64_field(doc, "ciphertext", "keystore")
    return header, ciphertext


# --- secrets and key derivation -----------------------------------------------------


def _check_secrets(
    passphrase: bytes | None, key_file_secret: bytes | None, *, sealing: bool
) -> None:
    if (passphrase is None) == (key_file_secret is None):
        raise ValueError("give exactly one of passphrase and key_file_secret")
    if passphrase is not None:
        if not isinstance(passphrase, bytes):
            raise TypeError("passphrase must be bytes")
        if not passphrase:
            raise ValueError("the passphrase must not be empty")
        # Checked when sealing only: a later, stricter minimum must not lock out old keystores.
        if sealing and len(passphrase) < MIN_PASSPHRASE_BYTES:
            raise ValueError(f"the passphrase must be at least {MIN_PASSPHRASE_BYTES} bytes")
    if key_file_secret is not None:
        if not isinstance(key_file_secret, bytes):
            raise TypeError("key_file_secret must be bytes")
        if len(key_file_secret) < MIN_KEY_FILE_SECRET_BYTES:
            raise ValueError(
                f"the key file secret must be at least {MIN_KEY_FILE_SECRET_BYTES} bytes"
            )


def _wrapping_key(header: _Header, secret: bytes) -> bytes:
    if header.argon2 is not None:
        opslimit, memlimit = header.argon2
        return argon2id.kdf(_KEY_SIZE, secret, header.salt, opslimit=opslimit, memlimit=memlimit)
    return HKDF(
        algorithm=hashes.SHA256(), length=_KEY_SIZE, salt=header.salt, info=KEY_FILE_HKDF_INFO
    ).derive(secret)


# --- sealing and opening ------------------------------------------------------------


def seal_keystore(
    keys: NodeKeys,
    *,
    passphrase: bytes | None = None,
    key_file_secret: bytes | None = None,
    strength: Strength = "moderate",
) -> bytes:
    """Seal ``keys`` under a passphrase or a key file secret (exactly one).

    ``strength`` chooses the Argon2id limits for a passphrase ("moderate": the
    default and the one to use; "interactive": for tests). Returns the
    keystore file (UTF-8 JSON, format in the module docstring). Every call
    uses a fresh random salt and nonce.
    """
    if not isinstance(keys, NodeKeys):
        raise TypeError("keys must be NodeKeys")
    _check_secrets(passphrase, key_file_secret, sealing=True)
    if strength not in _STRENGTHS:
        raise ValueError("strength must be 'moderate' or 'interactive'")
    argon2: tuple[int, int] | None
    if passphrase is not None:
        secret, argon2 = passphrase, _STRENGTHS[strength]
    elif key_file_secret is not None:
        secret, argon2 = key_file_secret, None
    else:  # excluded by _check_secrets
        raise ValueError("give exactly one of passphrase and key_file_secret")
    header = _Header(
        argon2=argon2,
        salt=nacl.utils.random(_SALT_SIZE),
        nonce=nacl.utils.random(_NONCE_SIZE),
        ed25519=keys.signing_key.verify_key.encode(),
        x25519=keys.encryption_key.public_key.encode(),
    )
    plaintext = _canonical_json(
        {
            "data_key": _b64(keys.data_key),
            "ed25519_seed": _b64(keys.signing_key.encode()),
            "tls_key_pem": _b64(keys.tls_key_pem),
            "x25519_private": _b64(keys.encryption_key.encode()),
        }
    )
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, header.aad(), header.nonce, _wrapping_key(header, secret)
    )
    doc = header.to_json()
    doc["ciphertext"] = _b64(ciphertext)
    return (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def open_keystore(
    data: bytes,
    *,
    passphrase: bytes | None = None,
    key_file_secret: bytes | None = None,
) -> NodeKeys:
    """Unlock a keystore file with its passphrase or key file secret (exactly one).

    Raises :class:`KeyFormatError` if ``data`` is not a well-formed keystore
    (checked before any key derivation) and :class:`DecryptionError` if the
    secret is wrong or of the other kind, or the file was altered.
    """
    _check_secrets(passphrase, key_file_secret, sealing=False)
    header, ciphertext = _parse(data)
    if passphrase is not None:
        if header.argon2 is None:
            raise DecryptionError("this keystore is unlocked by a key file, not a passphrase")
        secret = passphrase
    elif key_file_secret is not None:
        if header.argon2 is not None:
            raise DecryptionError("this keystore is unlocked by a passphrase, not a key file")
        secret = key_file_secret
    else:  # excluded by _check_secrets
        raise ValueError("give exactly one of passphrase and key_file_secret")
    wrapping_key = _wrapping_key(header, secret)

    plaintext: bytes | None = None
    if len(ciphertext) >= _TAG_SIZE:
        try:
            plaintext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                ciphertext, header.aad(), header.nonce, wrapping_key
            )
        except nacl.exceptions.CryptoError:
            plaintext = None
    # Raised outside the except block so that nothing is chained to it.
    if plaintext is None:
        raise DecryptionError(_DECRYPTION_FAILED)

    keys = _keys_from_plaintext(plaintext)
    if not (
        hmac.compare_digest(keys.signing_key.verify_key.encode(), header.ed25519)
        and hmac.compare_digest(keys.encryption_key.public_key.encode(), header.x25519)
    ):
        raise KeyFormatError("keystore public keys do not match its private keys")
    return keys


def _keys_from_plaintext(plaintext: bytes) -> NodeKeys:
    """NodeKeys from authenticated plaintext; KeyFormatError (never showing it) if malformed."""
    what = "keystore contents"
    fields = _fields(_json_object(plaintext, what), _SECRET_FIELDS, what)
    tls_key_pem = _b64_field(fields, "tls_key_pem", what)
    if len(tls_key_pem) > _MAX_TLS_PEM_BYTES:
        raise KeyFormatError("keystore TLS key is too large")
    tls_ok = True
    try:
        load_tls_key(tls_key_pem)
    except ValueError:
        tls_ok = False
    if not tls_ok:
        raise KeyFormatError("keystore TLS key is not an unencrypted ECDSA P-256 PEM key")
    return NodeKeys(
        signing_key=SigningKey(_b64_field(fields, "ed25519_seed", what, _RAW_KEY_SIZE)),
        encryption_key=PrivateKey(_b64_field(fields, "x25519_private", what, _RAW_KEY_SIZE)),
        tls_key_pem=tls_key_pem,
        data_key=_b64_field(fields, "data_key", what, DATA_KEY_SIZE),
    )


def public_info(data: bytes) -> dict[str, bytes]:
    """The raw public keys stored in clear in a keystore: ``{"ed25519": ..., "x25519": ...}``.

    For display only: they are not authenticated until the keystore is opened
    (which checks them against the private keys). Raises
    :class:`KeyFormatError` if ``data`` is not a well-formed keystore.
    """
    header, _ = _parse(data)
    return {"ed25519": header.ed25519, "x25519": header.x25519}
