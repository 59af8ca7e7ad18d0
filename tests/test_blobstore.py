"""The encrypted, content-addressed blob store: round trips, failures leave nothing behind."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from crypto.errors import DecryptionError
from node.blobstore import BlobMissingError, BlobStore, EvidenceChangedError, sha256_file
from tests.helpers import DATA_KEY


def files_under(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".lock"
    )


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", DATA_KEY)


def test_round_trip_of_a_multi_chunk_file(store: BlobStore, tmp_path: Path) -> None:
    data = bytes(range(256)) * (5 * 4096 + 3)  # a little over 5 MiB: several read chunks
    src = tmp_path / "v.bin"
    src.write_bytes(data)
    digest, size = sha256_file(src)
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert store.put_file(src, digest) is True
    assert store.put_file(src, digest) is False  # already held
    assert b"".join(store.read(digest, chunk_size=100_000)) == data
    stored = store.path_for(digest).read_bytes()
    assert data[:4096] not in stored
    assert files_under(store.root) == [str(store.path_for(digest).relative_to(store.root))]


def test_empty_file(store: BlobStore, tmp_path: Path) -> None:
    (tmp_path / "e").write_bytes(b"")
    digest = hashlib.sha256(b"").hexdigest()
    store.put_file(tmp_path / "e", digest)
    assert b"".join(store.read(digest, chunk_size=10)) == b""


def test_a_file_that_changed_after_hashing_is_not_stored(store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "v.bin"
    src.write_bytes(b"original" * 100_000)
    digest = hashlib.sha256(b"original" * 100_000).hexdigest()
    src.write_bytes(b"tampered" * 100_000)
    with pytest.raises(EvidenceChangedError):
        store.put_file(src, digest)
    assert files_under(store.root) == []


def test_an_unreadable_source_leaves_nothing(store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.put_file(tmp_path / "missing", "a" * 64)
    assert files_under(store.root) == []


def test_a_tampered_blob_fails_to_read(store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "v.bin"
    src.write_bytes(b"evidence" * 50_000)
    digest, _ = sha256_file(src)
    store.put_file(src, digest)
    path = store.path_for(digest)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(DecryptionError):
        b"".join(store.read(digest, chunk_size=65536))


def test_a_blob_under_another_name_fails_to_read(store: BlobStore, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"first")
    b.write_bytes(b"second")
    da, db = sha256_file(a)[0], sha256_file(b)[0]
    store.put_file(a, da)
    store.put_file(b, db)
    store.path_for(db).write_bytes(store.path_for(da).read_bytes())
    with pytest.raises(DecryptionError):
        b"".join(store.read(db, chunk_size=1024))


def test_missing_blob_and_bad_names(store: BlobStore) -> None:
    with pytest.raises(BlobMissingError):
        b"".join(store.read("b" * 64, chunk_size=10))
    for bad in ("../../etc/passwd", "A" * 64, "a" * 63):
        with pytest.raises(ValueError, match="SHA-256"):
            store.path_for(bad)
