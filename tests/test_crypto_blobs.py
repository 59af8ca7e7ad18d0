"""crypto.blobs: streaming round trips, and every kind of tampering, truncation and swap fails."""

from __future__ import annotations

import hashlib
import io
import random

import nacl.bindings
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.blobs import (
    ABYTES,
    CHUNK_SIZE,
    HEADER_SIZE,
    MAGIC,
    BlobEncryptor,
    blob_key,
    decrypt_stream,
    encrypt_file,
    encrypted_size,
)
from crypto.errors import DecryptionError

DATA_KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CS = CHUNK_SIZE
RECORD = CHUNK_SIZE + ABYTES
SIZES = [0, 1, CS - 1, CS, CS + 1, 3 * CS + 5]

TAG_MESSAGE = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
TAG_FINAL = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL
TAG_PUSH = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_PUSH
TAG_REKEY = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_REKEY


def make(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def seal(data: bytes, digest: bytes | None = None, key: bytes = DATA_KEY) -> bytes:
    out = io.BytesIO()
    written = encrypt_file(
        io.BytesIO(data), out, data_key=key, sha256_digest=sha(data) if digest is None else digest
    )
    assert written == len(out.getvalue())
    return out.getvalue()


def open_all(
    blob: bytes, expected: bytes | None, *, key: bytes = DATA_KEY, chunk_size: int = CS
) -> bytes:
    return b"".join(
        decrypt_stream(
            io.BytesIO(blob), data_key=key, expected_sha256=expected, chunk_size=chunk_size
        )
    )


def records(blob: bytes) -> list[bytes]:
    body = blob[HEADER_SIZE:]
    return [body[i : i + RECORD] for i in range(0, len(body), RECORD)]


def independent_key(digest: bytes, key: bytes = DATA_KEY) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"compact blob v1" + digest
    ).derive(key)


def craft(pieces: list[tuple[bytes, int]], digest: bytes) -> bytes:
    """A blob built from the documented format with arbitrary chunking and tags."""
    state = nacl.bindings.crypto_secretstream_xchacha20poly1305_state()
    header = nacl.bindings.crypto_secretstream_xchacha20poly1305_init_push(
        state, independent_key(digest)
    )
    out = [MAGIC, digest, header]
    for piece, tag in pieces:
        out.append(
            nacl.bindings.crypto_secretstream_xchacha20poly1305_push(
                state, piece, MAGIC + digest, tag
            )
        )
    return b"".join(out)


class Trickle(io.BytesIO):
    """A file whose reads return at most 7 bytes, and which records the sizes asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.largest_request = 0

    def read(self, size: int | None = -1, /) -> bytes:
        if size is not None and size > 0:
            self.largest_request = max(self.largest_request, size)
            return super().read(min(size, 7))
        return super().read(7)


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_round_trip(size: int) -> None:
    data = make(size, size)
    blob = seal(data)
    assert len(blob) == encrypted_size(size)
    assert open_all(blob, sha(data)) == data
    assert open_all(blob, None) == data


@pytest.mark.parametrize("size", SIZES)
def test_layout_is_as_documented(size: int) -> None:
    data = make(size, size)
    digest = sha(data)
    blob = seal(data)
    assert blob[:4] == b"CPB1"
    assert blob[4:36] == digest
    state = nacl.bindings.crypto_secretstream_xchacha20poly1305_state()
    nacl.bindings.crypto_secretstream_xchacha20poly1305_init_pull(
        state, blob[36:60], independent_key(digest)
    )
    recs = records(blob)
    assert len(recs) == max(1, -(-size // CS))
    plain = []
    for i, rec in enumerate(recs):
        piece, tag = nacl.bindings.crypto_secretstream_xchacha20poly1305_pull(
            state, rec, b"CPB1" + digest
        )
        last = i == len(recs) - 1
        assert tag == (TAG_FINAL if last else TAG_MESSAGE)
        if not last:
            assert len(piece) == CS
        plain.append(piece)
    assert b"".join(plain) == data
    assert len(recs[-1]) - ABYTES == (size - CS * (len(recs) - 1))


def test_encrypted_size() -> None:
    assert encrypted_size(0) == 60 + 17
    assert encrypted_size(1) == 60 + 1 + 17
    assert encrypted_size(CS) == 60 + CS + 17
    assert encrypted_size(CS + 1) == 60 + CS + 1 + 2 * 17
    with pytest.raises(ValueError, match="negative"):
        encrypted_size(-1)


@pytest.mark.parametrize("chunk_size", [1000, CS - 1, CS, 10 * CS])
def test_output_chunk_size(chunk_size: int) -> None:
    data = make(3 * CS + 5)
    blob = seal(data)
    pieces = list(
        decrypt_stream(
            io.BytesIO(blob), data_key=DATA_KEY, expected_sha256=sha(data), chunk_size=chunk_size
        )
    )
    assert b"".join(pieces) == data
    assert all(0 < len(p) <= chunk_size for p in pieces)
    assert max(len(p) for p in pieces) == min(chunk_size, CS)


def test_same_content_same_key_different_ciphertext() -> None:
    data = make(1000)
    a, b = seal(data), seal(data)
    assert a[:36] == b[:36]
    assert a[36:60] != b[36:60]  # fresh secretstream header
    assert a != b
    assert blob_key(DATA_KEY, sha(data)) == blob_key(DATA_KEY, sha(data))
    assert open_all(a, sha(data)) == open_all(b, sha(data)) == data


def test_blob_key_is_the_documented_derivation() -> None:
    digest = sha(b"evidence")
    assert blob_key(DATA_KEY, digest) == independent_key(digest)
    assert blob_key(DATA_KEY, digest) != blob_key(DATA_KEY, sha(b"other"))
    assert blob_key(DATA_KEY, digest) != blob_key(OTHER_KEY, digest)
    assert blob_key(DATA_KEY, digest) != DATA_KEY


def test_short_reads_are_handled_and_reads_are_bounded() -> None:
    data = make(3 * CS + 5)
    src = Trickle(data)
    out = io.BytesIO()
    encrypt_file(src, out, data_key=DATA_KEY, sha256_digest=sha(data))
    blob = out.getvalue()
    assert len(blob) == encrypted_size(len(data))  # canonical chunking despite short reads
    reader = Trickle(blob)
    assert b"".join(decrypt_stream(reader, data_key=DATA_KEY, expected_sha256=sha(data))) == data
    assert reader.largest_request <= RECORD


def test_decryption_streams_one_chunk_at_a_time() -> None:
    data = make(3 * CS + 5)
    src = io.BytesIO(seal(data))
    stream = decrypt_stream(src, data_key=DATA_KEY, expected_sha256=sha(data))
    assert src.tell() == HEADER_SIZE  # header read eagerly, nothing more
    first = next(stream)
    assert first == data[:CS]
    assert src.tell() == HEADER_SIZE + RECORD


@settings(max_examples=30, deadline=None)
@given(
    size=st.one_of(st.integers(0, 4 * CS + 3), st.sampled_from([*SIZES, 2 * CS, 4 * CS])),
    seed=st.integers(0, 2**32 - 1),
    cuts=st.lists(st.integers(0, 4 * CS + 3), max_size=8),
)
def test_round_trip_any_split_points(size: int, seed: int, cuts: list[int]) -> None:
    data = make(size, seed)
    encryptor = BlobEncryptor(DATA_KEY, sha(data))
    out = [encryptor.header()]
    previous = 0
    for point in [*sorted({min(c, size) for c in cuts}), size]:
        emitted = encryptor.update(data[previous:point])
        assert len(emitted) % RECORD == 0  # only whole, full chunks before the final one
        out.append(emitted)
        previous = point
    out.append(encryptor.finalize())
    blob = b"".join(out)
    assert len(blob) == encrypted_size(size)
    assert open_all(blob, sha(data)) == data


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=5000), cuts=st.lists(st.integers(0, 5000), max_size=10))
def test_round_trip_any_small_bytes(data: bytes, cuts: list[int]) -> None:
    encryptor = BlobEncryptor(DATA_KEY, sha(data))
    out = [encryptor.header()]
    previous = 0
    for point in [*sorted({min(c, len(data)) for c in cuts}), len(data)]:
        assert encryptor.update(data[previous:point]) == b""  # below one chunk: all buffered
        previous = point
    out.append(encryptor.finalize())
    assert open_all(b"".join(out), sha(data)) == data


# --- tampering -----------------------------------------------------------------------------------

DATA = make(3 * CS + 5, 42)  # four chunks: three full, one of 5 bytes
DIGEST = sha(DATA)
BLOB = seal(DATA)
BOUNDARIES = [HEADER_SIZE + i * RECORD for i in range(4)]  # where each chunk starts


def assert_fails(blob: bytes, expected: bytes | None = DIGEST, match: str | None = None) -> None:
    with pytest.raises(DecryptionError, match=match) as info:
        open_all(blob, expected)
    assert info.value.__context__ is None


def test_tamper_control() -> None:
    assert len(records(BLOB)) == 4
    assert open_all(BLOB, DIGEST) == DATA


@pytest.mark.parametrize("cut", [0, 1, 4, 35, 36, 59])
def test_truncated_header(cut: int) -> None:
    assert_fails(BLOB[:cut], match="header is truncated")
    assert_fails(BLOB[:cut], None)


@pytest.mark.parametrize("index", range(4))
def test_truncated_at_a_chunk_boundary(index: int) -> None:
    assert_fails(BLOB[: BOUNDARIES[index]], match="final chunk is missing")
    assert_fails(BLOB[: BOUNDARIES[index]], None, match="final chunk is missing")


@pytest.mark.parametrize("offset", [1, ABYTES - 1, ABYTES, RECORD // 2, RECORD - 1])
@pytest.mark.parametrize("index", range(4))
def test_truncated_inside_a_chunk(index: int, offset: int) -> None:
    cut = BOUNDARIES[index] + offset
    if cut >= len(BLOB):
        cut = len(BLOB) - 1
    assert_fails(BLOB[:cut], match="failed authentication")


def test_truncated_by_one_byte() -> None:
    assert_fails(BLOB[:-1], match="failed authentication")


def test_dropped_final_chunk() -> None:
    recs = records(BLOB)
    assert_fails(BLOB[:HEADER_SIZE] + b"".join(recs[:-1]), match="final chunk is missing")


@pytest.mark.parametrize("index", range(3))
def test_dropped_chunk(index: int) -> None:
    recs = records(BLOB)
    del recs[index]
    assert_fails(BLOB[:HEADER_SIZE] + b"".join(recs), match="failed authentication")


@pytest.mark.parametrize(("a", "b"), [(0, 1), (1, 2), (0, 2)])
def test_reordered_chunks(a: int, b: int) -> None:
    recs = records(BLOB)
    recs[a], recs[b] = recs[b], recs[a]
    assert_fails(BLOB[:HEADER_SIZE] + b"".join(recs), match="failed authentication")


def test_duplicated_chunk() -> None:
    recs = records(BLOB)
    recs.insert(1, recs[0])
    assert_fails(BLOB[:HEADER_SIZE] + b"".join(recs), match="failed authentication")


@pytest.mark.parametrize(
    "garbage", [b"\x00", b"garbage", bytes(RECORD), pytest.param(None, id="final chunk again")]
)
def test_appended_data(garbage: bytes | None) -> None:
    # The final chunk is short: what follows is read as part of it and fails to authenticate.
    suffix = records(BLOB)[-1] if garbage is None else garbage
    assert_fails(BLOB + suffix, match="failed authentication")
    assert_fails(BLOB + suffix, None, match="failed authentication")


@pytest.mark.parametrize("garbage", [b"\x00", bytes(RECORD), b"CPB1"])
def test_appended_data_after_a_full_final_chunk(garbage: bytes) -> None:
    data = make(2 * CS, 3)
    blob = seal(data)
    assert len(records(blob)[-1]) == RECORD
    assert open_all(blob, sha(data)) == data
    assert_fails(blob + garbage, sha(data), match="after its final chunk")


@pytest.mark.parametrize("garbage", [b"\x00", bytes(ABYTES)])
def test_appended_data_after_empty_blob(garbage: bytes) -> None:
    empty = seal(b"")
    assert open_all(empty, sha(b"")) == b""
    assert_fails(empty + garbage, sha(b""), match="failed authentication")


@pytest.mark.parametrize(
    "position",
    [
        *range(0, 4),  # magic
        4,
        20,
        35,  # digest
        36,
        47,
        59,  # secretstream header
        *(b + 0 for b in BOUNDARIES),  # each chunk's encrypted tag byte
        *(b + 101 for b in BOUNDARIES[:3]),  # each full chunk's body
        BOUNDARIES[3] + 3,  # the final chunk's body
        *(b + RECORD - 1 for b in BOUNDARIES[:3]),  # each full chunk's MAC
        -1,  # the final chunk's MAC
    ],
)
def test_flipped_byte_anywhere(position: int) -> None:
    altered = bytearray(BLOB)
    altered[position] ^= 0x01
    assert_fails(bytes(altered))
    assert_fails(bytes(altered), None)


def test_wrong_magic_is_refused_when_called() -> None:
    with pytest.raises(DecryptionError, match="not an encrypted evidence blob"):
        decrypt_stream(io.BytesIO(b"CPB2" + BLOB[4:]), data_key=DATA_KEY)


def test_swapped_digest() -> None:
    other = sha(b"other evidence")
    swapped = BLOB[:4] + other + BLOB[36:]
    # Asked for the real blob: the header names another.
    with pytest.raises(DecryptionError, match="not the one asked for"):
        decrypt_stream(io.BytesIO(swapped), data_key=DATA_KEY, expected_sha256=DIGEST)
    # Asked for the digest now in the header: the key derived from it opens nothing.
    assert_fails(swapped, other, match="failed authentication")
    assert_fails(swapped, None, match="failed authentication")


def test_blob_file_swapped_for_another_content_hash() -> None:
    other_data = make(CS + 7, 7)
    other_blob = seal(other_data)
    assert_fails(other_blob, DIGEST, match="not the one asked for")
    assert open_all(other_blob, None) == other_data  # without expected_sha256: some valid blob


def test_blob_encrypted_under_another_digest() -> None:
    """Content A sealed under B's digest: every chunk authenticates, the final check fails."""
    claimed = sha(b"what the caller thought it copied")
    blob = seal(DATA, claimed)
    got: list[bytes] = []
    with pytest.raises(DecryptionError, match="does not match its digest"):
        got.extend(decrypt_stream(io.BytesIO(blob), data_key=DATA_KEY, expected_sha256=claimed))
    # The chunks before the final one were yielded; the final one was withheld.
    assert b"".join(got) == DATA[: 3 * CS]


def test_single_chunk_blob_under_another_digest_yields_nothing() -> None:
    claimed = sha(b"x")
    blob = seal(b"y", claimed)
    got: list[bytes] = []
    with pytest.raises(DecryptionError, match="does not match its digest"):
        got.extend(decrypt_stream(io.BytesIO(blob), data_key=DATA_KEY, expected_sha256=claimed))
    assert got == []


def test_other_data_key() -> None:
    with pytest.raises(DecryptionError, match="failed authentication"):
        open_all(BLOB, DIGEST, key=OTHER_KEY)


# --- non-canonical streams made with the right key ----------------------------------------------


def test_crafted_canonical_stream_control() -> None:
    data = make(CS + 3)
    blob = craft([(data[:CS], TAG_MESSAGE), (data[CS:], TAG_FINAL)], sha(data))
    assert open_all(blob, sha(data)) == data


def test_empty_final_chunk_after_data_is_refused() -> None:
    data = make(CS)
    blob = craft([(data, TAG_MESSAGE), (b"", TAG_FINAL)], sha(data))
    assert_fails(blob, sha(data), match="final chunk is empty")


def test_short_message_chunk_is_refused() -> None:
    data = make(100)
    # Alone at the end of the file: read whole, authentic, but not a full chunk.
    assert_fails(craft([(data, TAG_MESSAGE)], sha(data)), sha(data), match="not a full chunk")
    # Followed by more: the reader takes the next bytes as part of it, and it fails to verify.
    blob = craft([(data[:50], TAG_MESSAGE), (data[50:], TAG_FINAL)], sha(data))
    assert_fails(blob, sha(data), match="failed authentication")


@pytest.mark.parametrize("tag", [TAG_PUSH, TAG_REKEY])
def test_other_tags_are_refused(tag: int) -> None:
    data = make(CS + 1)
    blob = craft([(data[:CS], tag), (data[CS:], TAG_FINAL)], sha(data))
    assert_fails(blob, sha(data), match="unexpected tag")


def test_stream_with_only_message_chunks_is_truncated() -> None:
    data = make(CS)
    blob = craft([(data, TAG_MESSAGE)], sha(data))
    assert_fails(blob, sha(data), match="final chunk is missing")


def test_stream_without_chunks_is_truncated() -> None:
    assert_fails(craft([], sha(b"")), sha(b""), match="final chunk is missing")


# --- caller mistakes ----------------------------------------------------------------------


def test_encryptor_must_be_used_in_order() -> None:
    encryptor = BlobEncryptor(DATA_KEY, sha(b""))
    with pytest.raises(RuntimeError):
        encryptor.update(b"x")
    with pytest.raises(RuntimeError):
        encryptor.finalize()
    encryptor.header()
    with pytest.raises(RuntimeError):
        encryptor.header()
    encryptor.finalize()
    with pytest.raises(RuntimeError):
        encryptor.finalize()
    with pytest.raises(RuntimeError):
        encryptor.update(b"x")


def test_argument_checks() -> None:
    with pytest.raises(ValueError, match="data_key"):
        BlobEncryptor(bytes(31), DIGEST)
    with pytest.raises(ValueError, match="sha256_digest"):
        BlobEncryptor(DATA_KEY, DIGEST.hex().encode())
    with pytest.raises(TypeError):
        BlobEncryptor(DATA_KEY, DIGEST.hex())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected_sha256"):
        decrypt_stream(io.BytesIO(BLOB), data_key=DATA_KEY, expected_sha256=DIGEST[:16])
    with pytest.raises(ValueError, match="data_key"):
        decrypt_stream(io.BytesIO(BLOB), data_key=bytes(16))
    for bad in (0, -1):
        with pytest.raises(ValueError, match="chunk_size"):
            decrypt_stream(io.BytesIO(BLOB), data_key=DATA_KEY, chunk_size=bad)
    encryptor = BlobEncryptor(DATA_KEY, DIGEST)
    encryptor.header()
    with pytest.raises(TypeError):
        encryptor.update("text")  # type: ignore[arg-type]


def test_repr_shows_no_key() -> None:
    encryptor = BlobEncryptor(DATA_KEY, DIGEST)
    assert blob_key(DATA_KEY, DIGEST).hex() not in repr(encryptor)
    assert DATA_KEY.hex() not in repr(encryptor)
