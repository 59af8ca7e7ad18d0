"""Field-level encryption of personal data at rest (names, contacts, narratives).

Key: ``HKDF-SHA256(ikm=data_key, salt=None, info=b"compact field v1")``, 32
bytes, derived once per :class:`FieldCipher`.

Token format, version 1::

    0x01 || nonce (24 random bytes) || XChaCha20-Poly1305-IETF ciphertext (+16-byte tag)

The plaintext is the UTF-8 encoding of the string. The associated data is
``0x01 || context``, where the caller's ``context`` names the column and the
row, e.g. ``b"incidents.narrative|IL-1234"``. A token copied to another row
or column, altered, truncated, or opened with another data key fails with
:class:`~crypto.errors.DecryptionError` and no further detail. Contexts must
be unambiguous: the caller must build them so that no two (column, row) pairs
give the same bytes.

The empty string is sealed like any other (its token is 41 bytes); whether a
missing value is stored as NULL or as a sealed ``""`` is the caller's choice.
Token length reveals plaintext length.
"""

from __future__ import annotations

from typing import Final

import nacl.bindings
import nacl.exceptions
import nacl.utils
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto.errors import DecryptionError

__all__ = ["FIELD_KDF_INFO", "TOKEN_OVERHEAD", "VERSION", "FieldCipher"]

VERSION: Final = b"\x01"
FIELD_KDF_INFO: Final = b"compact field v1"

_KEY_SIZE: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
_NONCE_SIZE: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
_TAG_SIZE: Final = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_ABYTES
#: Token length minus the length of the UTF-8 plaintext (1 + 24 + 16 = 41).
TOKEN_OVERHEAD: Final = len(VERSION) + _NONCE_SIZE + _TAG_SIZE

_FAILED: Final = "field could not be decrypted"


def _check_context(context: bytes) -> None:
    if not isinstance(context, bytes):
        raise TypeError("context must be bytes")
    if not context:
        raise ValueError("context must not be empty: it binds the value to its row and column")


class FieldCipher:
    """Seals and opens single text fields under a key derived from the node's data key."""

    __slots__ = ("_key",)

    def __init__(self, data_key: bytes) -> None:
        if not isinstance(data_key, bytes):
            raise TypeError("data_key must be bytes")
        if len(data_key) != _KEY_SIZE:
            raise ValueError(f"data_key must be {_KEY_SIZE} bytes")
        self._key = HKDF(
            algorithm=hashes.SHA256(), length=_KEY_SIZE, salt=None, info=FIELD_KDF_INFO
        ).derive(data_key)

    def __repr__(self) -> str:
        return "FieldCipher(<key redacted>)"

    def seal(self, plaintext: str, *, context: bytes) -> bytes:
        """Encrypt ``plaintext`` bound to ``context``; a fresh random nonce every call."""
        if not isinstance(plaintext, str):
            raise TypeError("plaintext must be str")
        _check_context(context)
        encoded: bytes | None = None
        try:
            encoded = plaintext.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates; the error object holds the text
            encoded = None
        if encoded is None:
            raise ValueError("plaintext cannot be encoded as UTF-8")
        nonce = nacl.utils.random(_NONCE_SIZE)
        ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
            encoded, VERSION + context, nonce, self._key
        )
        return VERSION + nonce + ciphertext

    def open(self, token: bytes, *, context: bytes) -> str:
        """Decrypt a token made by :meth:`seal` with the same ``context``.

        Raises :class:`DecryptionError` for any failure: wrong key or context,
        alteration, truncation, unknown version.
        """
        if not isinstance(token, bytes):
            raise TypeError("token must be bytes")
        _check_context(context)
        text: str | None = None
        if len(token) >= TOKEN_OVERHEAD and token[:1] == VERSION:
            nonce = token[1 : 1 + _NONCE_SIZE]
            try:
                text = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
                    token[1 + _NONCE_SIZE :], VERSION + context, nonce, self._key
                ).decode("utf-8")
            except (nacl.exceptions.CryptoError, UnicodeDecodeError):
                text = None
        # Raised outside the except block: nothing (least of all plaintext) is chained.
        if text is None:
            raise DecryptionError(_FAILED)
        return text
