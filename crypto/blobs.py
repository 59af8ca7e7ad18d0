"""Streaming encryption of evidence files at rest, in memory independent of their size.

Key: each blob has its own key, derived from the node's data key and the
SHA-256 digest of the blob's plaintext::

    blob_key = HKDF-SHA256(ikm=data_key, salt=None, info=b"compact blob v1" || digest)

It is deterministic (the same content always maps to the same key), and a
blob file put in place of another content hash's file does not decrypt under
the key derived for that hash.

File format ("CPB1")::

    magic        4 bytes   b"CPB1"
    digest      32 bytes   SHA-256 of the whole plaintext
    header      24 bytes   libsodium secretstream XChaCha20-Poly1305 header
    chunk*                 secretstream messages

Each chunk is ``crypto_secretstream_xchacha20poly1305_push`` of a piece of
plaintext with associated data ``magic || digest``, so it is that piece plus
17 bytes (``ABYTES``). Every chunk but the last holds exactly
:data:`CHUNK_SIZE` (64 KiB) of plaintext and is tagged ``TAG_MESSAGE``; the
last holds 1 to ``CHUNK_SIZE`` bytes (0 only when the whole blob is empty) and
is tagged ``TAG_FINAL``. Nothing follows it. A blob of ``n > 0`` bytes is
therefore ``60 + n + 17 * ceil(n / CHUNK_SIZE)`` bytes long (77 when empty),
see :func:`encrypted_size`.

Reading (:func:`decrypt_stream`) rejects with
:class:`~crypto.errors.DecryptionError`: a wrong magic, a digest other than
the one asked for, any altered, reordered, dropped or truncated chunk, a
missing final chunk, bytes after the final chunk, a non-canonical chunking,
and plaintext whose SHA-256 is not the digest in the header.

Writing: the caller knows the digest before encrypting (it hashed the source
in a first pass), then encrypts in a second pass with :class:`BlobEncryptor`
or :func:`encrypt_file`. Neither re-checks the digest: the caller hashes
what it copies and discards the result if the source changed meanwhile (and
:func:`decrypt_stream` would refuse such a blob anyway).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import BinaryIO, Final

import nacl.bindings
import nacl.exceptions
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto.errors import DecryptionError

__all__ = [
    "ABYTES",
    "BLOB_KDF_INFO",
    "CHUNK_SIZE",
    "HEADER_SIZE",
    "MAGIC",
    "BlobEncryptor",
    "blob_key",
    "decrypt_stream",
    "encrypt_file",
    "encrypted_size",
]

MAGIC: Final = b"CPB1"
BLOB_KDF_INFO: Final = b"compact blob v1"
#: Plaintext bytes per chunk (every chunk but the last holds exactly this many).
CHUNK_SIZE: Final = 64 * 1024
#: Bytes a chunk adds to its plaintext (secretstream tag byte + Poly1305 tag).
ABYTES: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_ABYTES
_STREAM_HEADER_SIZE: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_HEADERBYTES
_DIGEST_SIZE: Final = 32
_KEY_SIZE: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_KEYBYTES
#: Bytes before the first chunk: magic, digest and secretstream header.
HEADER_SIZE: Final = len(MAGIC) + _DIGEST_SIZE + _STREAM_HEADER_SIZE

_TAG_MESSAGE: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_TAG_FINAL: Final = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_RECORD_SIZE: Final = CHUNK_SIZE + ABYTES


def _check_data_key(data_key: bytes) -> None:
    if not isinstance(data_key, bytes):
        raise TypeError("data_key must be bytes")
    if len(data_key) != _KEY_SIZE:
        raise ValueError(f"data_key must be {_KEY_SIZE} bytes")


def _check_digest(digest: bytes, digest_name: str) -> None:
    if not isinstance(digest, bytes):
        raise TypeError(f"{digest_name} must be bytes")
    if len(digest) != _DIGEST_SIZE:
        raise ValueError(f"{digest_name} must be a raw 32-byte SHA-256 digest")


def blob_key(data_key: bytes, sha256_digest: bytes) -> bytes:
    """The 32-byte key of the blob whose plaintext has SHA-256 ``sha256_digest`` (raw bytes)."""
    _check_data_key(data_key)
    _check_digest(sha256_digest, "sha256_digest")
    return HKDF(
        algorithm=hashes.SHA256(), length=_KEY_SIZE, salt=None, info=BLOB_KDF_INFO + sha256_digest
    ).derive(data_key)


def encrypted_size(plaintext_size: int) -> int:
    """The size of the encrypted blob file for a plaintext of ``plaintext_size`` bytes."""
    if plaintext_size < 0:
        raise ValueError("plaintext_size must not be negative")
    chunks = max(1, -(-plaintext_size // CHUNK_SIZE))
    return HEADER_SIZE + plaintext_size + chunks * ABYTES


class BlobEncryptor:
    """Incremental encryption of one blob.

    Call :meth:`header` once, then :meth:`update` any number of times, then
    :meth:`finalize` once, and write their outputs in that order. ``update``
    buffers at most ``CHUNK_SIZE`` bytes, so that every chunk holds exactly
    ``CHUNK_SIZE`` bytes of plaintext except the final one, whatever the sizes
    of the pieces given to it.
    """

    __slots__ = ("_aad", "_buffer", "_header", "_stage", "_state")

    def __init__(self, data_key: bytes, sha256_digest: bytes) -> None:
        key = blob_key(data_key, sha256_digest)
        self._aad = MAGIC + sha256_digest
        self._state = nacl.bindings.crypto_secretstream_xchacha20poly1305_state()
        stream_header = nacl.bindings.crypto_secretstream_xchacha20poly1305_init_push(
            self._state, key
        )
        self._header = self._aad + stream_header
        self._buffer = bytearray()
        self._stage = 0  # 0: header not yet taken, 1: updating, 2: finalized

    def __repr__(self) -> str:
        return "BlobEncryptor(<key redacted>)"

    def _push(self, piece: bytes, tag: int) -> bytes:
        return nacl.bindings.crypto_secretstream_xchacha20poly1305_push(
            self._state, piece, self._aad, tag
        )

    def header(self) -> bytes:
        """The first 60 bytes of the file: magic, digest, secretstream header. Once only."""
        if self._stage != 0:
            raise RuntimeError("BlobEncryptor.header() was already called")
        self._stage = 1
        return self._header

    def update(self, plaintext: bytes) -> bytes:
        """Encrypt the next piece of plaintext; returns zero or more whole chunks."""
        if self._stage != 1:
            raise RuntimeError(
                "BlobEncryptor.update() needs header() first and cannot follow finalize()"
            )
        if not isinstance(plaintext, bytes):
            raise TypeError("plaintext must be bytes")
        buffer = self._buffer
        if len(buffer) + len(plaintext) <= CHUNK_SIZE:
            # Held back even when it fills a chunk: only a later byte proves it is not the last.
            buffer += plaintext
            return b""
        out: list[bytes] = []
        view = memoryview(plaintext)
        pos = 0
        if buffer:
            pos = CHUNK_SIZE - len(buffer)
            buffer += view[:pos]
            out.append(self._push(bytes(buffer), _TAG_MESSAGE))
            buffer.clear()
        while len(plaintext) - pos > CHUNK_SIZE:
            out.append(self._push(bytes(view[pos : pos + CHUNK_SIZE]), _TAG_MESSAGE))
            pos += CHUNK_SIZE
        buffer += view[pos:]
        return b"".join(out)

    def finalize(self) -> bytes:
        """The final chunk (tagged TAG_FINAL). The encryptor cannot be used afterwards."""
        if self._stage != 1:
            raise RuntimeError(
                "BlobEncryptor.finalize() needs header() first and can only be called once"
            )
        self._stage = 2
        last = self._push(bytes(self._buffer), _TAG_FINAL)
        self._buffer.clear()
        return last


def encrypt_file(src: BinaryIO, dst: BinaryIO, *, data_key: bytes, sha256_digest: bytes) -> int:
    """Encrypt everything ``src`` yields into ``dst``; returns the number of bytes written.

    ``sha256_digest`` is the raw SHA-256 of the plaintext, computed by the
    caller beforehand. It is not re-checked here (see the module docstring):
    the caller hashes what ``src`` yields and discards ``dst`` on a mismatch.
    """
    encryptor = BlobEncryptor(data_key, sha256_digest)
    written = 0

    def write(data: bytes) -> None:
        nonlocal written
        if data:
            dst.write(data)
            written += len(data)

    write(encryptor.header())
    while True:
        piece = src.read(CHUNK_SIZE)
        if not piece:
            break
        write(encryptor.update(piece))
    write(encryptor.finalize())
    return written


def _read_exactly(src: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes; fewer only at end of file (short reads are retried)."""
    first = src.read(size)
    if len(first) == size or not first:
        return first
    parts = [first]
    remaining = size - len(first)
    while remaining:
        more = src.read(remaining)
        if not more:
            break
        parts.append(more)
        remaining -= len(more)
    return b"".join(parts)


def decrypt_stream(
    src: BinaryIO,
    *,
    data_key: bytes,
    expected_sha256: bytes | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[bytes]:
    """Decrypt a blob file, yielding its plaintext in pieces of at most ``chunk_size`` bytes.

    The header is read and checked at once (wrong magic, short header, or a
    digest other than ``expected_sha256`` raise :class:`DecryptionError`
    here); the chunks are read, authenticated and yielded as the iterator is
    consumed, one chunk in memory at a time.

    Each yielded piece has been authenticated, but the blob *as a whole* (no
    truncation, nothing appended, plaintext matching its digest) is only
    confirmed when the iterator finishes without raising; the final piece is
    withheld until all of that is checked. Treat the output as incomplete, and
    commit nothing, until then.

    Always pass ``expected_sha256`` (raw bytes) when the blob was asked for by
    its digest: without it the digest in the file's own header is trusted,
    which only proves the file is *some* blob sealed under ``data_key``.
    """
    _check_data_key(data_key)
    if expected_sha256 is not None:
        _check_digest(expected_sha256, "expected_sha256")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError("chunk_size must be a positive integer")

    head = _read_exactly(src, HEADER_SIZE)
    if len(head) != HEADER_SIZE or head[: len(MAGIC)] != MAGIC:
        raise DecryptionError("not an encrypted evidence blob, or its header is truncated")
    aad = head[: len(MAGIC) + _DIGEST_SIZE]
    digest = aad[len(MAGIC) :]
    if expected_sha256 is not None and not hmac.compare_digest(digest, expected_sha256):
        raise DecryptionError("the blob is not the one asked for: its digest differs")
    key = blob_key(data_key, digest)
    state = nacl.bindings.crypto_secretstream_xchacha20poly1305_state()
    nacl.bindings.crypto_secretstream_xchacha20poly1305_init_pull(state, head[len(aad) :], key)
    return _chunks(src, state, aad, digest, chunk_size)


def _chunks(
    src: BinaryIO,
    state: nacl.bindings.crypto_secretstream_xchacha20poly1305_state,
    aad: bytes,
    digest: bytes,
    chunk_size: int,
) -> Iterator[bytes]:
    hasher = hashlib.sha256()
    first = True
    while True:
        record = _read_exactly(src, _RECORD_SIZE)
        if not record:
            raise DecryptionError("the blob is truncated: its final chunk is missing")
        pulled: tuple[bytes, int] | None = None
        if len(record) >= ABYTES:
            try:
                pulled = nacl.bindings.crypto_secretstream_xchacha20poly1305_pull(
                    state, record, aad
                )
            except nacl.exceptions.CryptoError:
                pulled = None
        # Raised outside the except block so that nothing is chained to it.
        if pulled is None:
            raise DecryptionError("a blob chunk failed authentication (altered or truncated)")
        plaintext, tag = pulled
        if tag == _TAG_MESSAGE:
            if len(plaintext) != CHUNK_SIZE:
                raise DecryptionError("a blob chunk is not a full chunk")
        elif tag == _TAG_FINAL:
            if not plaintext and not first:
                raise DecryptionError("the blob's final chunk is empty")
            if src.read(1):
                raise DecryptionError("the blob has data after its final chunk")
        else:
            raise DecryptionError("a blob chunk has an unexpected tag")
        hasher.update(plaintext)
        if tag == _TAG_FINAL and not hmac.compare_digest(hasher.digest(), digest):
            raise DecryptionError("the blob's plaintext does not match its digest")
        for start in range(0, len(plaintext), chunk_size):
            yield plaintext[start : start + chunk_size]
        if tag == _TAG_FINAL:
            return
        first = False
