"""Content-addressed evidence store: files named by SHA-256, encrypted at rest.

Layout: `<root>/<aa>/<bb>/<sha256>` holds the `crypto.blobs` encryption of the
file whose SHA-256 is `<sha256>`; `<root>/.staging/` holds files being written.
A blob appears under its name only complete and fsynced (write, fsync, rename),
so a crash leaves at most an orphan in `.staging`, never a torn blob.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import queue
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from crypto.blobs import BlobEncryptor, decrypt_stream
from node.errors import StorageError

_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")
_READ: Final = 1 << 20


class EvidenceChangedError(StorageError):
    """A file's bytes differed between hashing and storing it."""


class BlobMissingError(StorageError):
    """A blob the database references is not in the store."""


def sha256_file(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in bounded chunks."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_READ):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


class _ChunkReader:
    """Reads and hashes a file on its own thread; iterate to get its chunks in order."""

    _DEPTH = 4  # chunks in flight: bounds memory at _DEPTH * _READ

    def __init__(self, path: Path) -> None:
        self._path = path
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(self._DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="blob-reader", daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            with self._path.open("rb") as f:
                while chunk := f.read(_READ):
                    self._hash.update(chunk)
                    if not self._put(chunk):
                        return
            self._put(None)
        except BaseException as e:  # noqa: BLE001 - handed to the consuming thread
            self._put(e)

    def __iter__(self) -> Iterator[bytes]:
        while (item := self._queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def hexdigest(self) -> str:
        self._thread.join()
        return self._hash.hexdigest()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class BlobStore:
    def __init__(self, root: Path, data_key: bytes) -> None:
        self.root = root
        self._key = data_key
        self._staging = root / ".staging"

    def path_for(self, sha256: str) -> Path:
        if not _HEX64.match(sha256):
            raise ValueError("not a lowercase hex SHA-256")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def has(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def writer(self, sha256: str, *, staging: Path | None = None) -> BlobWriter:
        """A blob written from pieces (a received bundle): see BlobWriter. `staging`: a
        folder of its own under `.staging` (which its owner may clear after a crash)."""
        return BlobWriter(self, sha256, staging=staging)

    def staging_dir(self, name: str) -> Path:
        """A folder of `.staging` for one writer of pieces (not created)."""
        return self._staging / name

    def put_file(self, src: Path, sha256: str) -> bool:
        """Store `src` under `sha256`; False if that blob was already held.

        The file is hashed again while it is encrypted: if it changed since
        `sha256` was computed, nothing is stored and EvidenceChangedError is raised.
        Reading and hashing run on a second thread, overlapping encryption and
        writing (both release the GIL); at most a few chunks are in memory.
        """
        final = self.path_for(sha256)
        if final.is_file():
            return False
        self._staging.mkdir(parents=True, exist_ok=True)
        tmp = self._staging / f"{sha256}.{secrets.token_hex(8)}"
        reader = _ChunkReader(src)
        try:
            encryptor = BlobEncryptor(self._key, bytes.fromhex(sha256))
            with tmp.open("xb") as dst:
                fcntl.flock(dst.fileno(), fcntl.LOCK_EX)  # ours while we live (sweep_staging)
                dst.write(encryptor.header())
                for chunk in reader:
                    dst.write(encryptor.update(chunk))
                dst.write(encryptor.finalize())
                dst.flush()
                os.fsync(dst.fileno())
            if reader.hexdigest() != sha256:
                raise EvidenceChangedError("an evidence file changed while it was being imported")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            fsync_dir(final.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            reader.close()
        return True

    @contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on the store, across processes on this machine.

        Held while deciding that a blob nobody references may be deleted, and
        while checking after a commit that every referenced blob is present.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def sweep_staging(self, *, older_than_seconds: float = 60.0) -> int:
        """Remove the files that writers killed mid-write left in `.staging`; returns how
        many. A writer holds a lock on its file while it lives (the system drops it when
        the process dies), so a locked file is left alone; so is one changed in the last
        `older_than_seconds` (the moment between creating a file and locking it). The
        folders under `.staging` belong to bundle receivers, which clear their own."""
        if not self._staging.is_dir():
            return 0
        removed = 0
        now = time.time()
        for entry in os.scandir(self._staging):
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if now - entry.stat(follow_symlinks=False).st_mtime < older_than_seconds:
                    continue
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer's
                os.unlink(entry.path)
                removed += 1
            finally:
                os.close(fd)
        return removed

    def remove(self, sha256: str) -> None:
        """Delete a blob (used to undo blobs stored by an import that then failed)."""
        self.path_for(sha256).unlink(missing_ok=True)

    def read(self, sha256: str, *, chunk_size: int) -> Iterator[bytes]:
        """The decrypted bytes, in chunks; raises crypto DecryptionError on any tampering."""
        path = self.path_for(sha256)
        if not path.is_file():
            raise BlobMissingError("an evidence blob is missing from the blob store")
        with path.open("rb") as f:
            yield from decrypt_stream(
                f, data_key=self._key, expected_sha256=bytes.fromhex(sha256), chunk_size=chunk_size
            )


class BlobWriter:
    """One blob written from pieces as they arrive: each piece is encrypted and written to
    `.staging` at once, and hashed.
    `finish()` checks the SHA-256 and size and fsyncs it; `place()` moves it into the store.
    `abort()` (or a failed step) leaves nothing behind. At most one piece is in memory."""

    def __init__(self, store: BlobStore, sha256: str, *, staging: Path | None = None) -> None:
        self.sha256 = sha256
        self._final = store.path_for(sha256)
        folder = staging or store._staging
        folder.mkdir(parents=True, exist_ok=True)
        self._tmp = folder / f"{sha256}.{secrets.token_hex(8)}"
        self._hash = hashlib.sha256()
        self.size = 0
        self._encryptor = BlobEncryptor(store._key, bytes.fromhex(sha256))
        self._finished = False
        self._file = self._tmp.open("xb")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)  # ours while we live (sweep_staging)
            self._file.write(self._encryptor.header())
        except BaseException:
            self.abort()
            raise

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)
        try:
            self._file.write(self._encryptor.update(data))
        except BaseException:
            self.abort()
            raise

    def finish(self, size: int) -> None:
        """The last piece was written: check the SHA-256 and size and fsync the staged blob.
        Raises EvidenceChangedError (and keeps nothing) if the bytes written are not `size`
        bytes with the SHA-256 the blob was opened for."""
        try:
            if self.size != size or self._hash.hexdigest() != self.sha256:
                raise EvidenceChangedError("the file's bytes do not match its SHA-256 and size")
            self._file.write(self._encryptor.finalize())
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        except BaseException:
            self.abort()
            raise
        self._finished = True

    def place(self) -> bool:
        """Move the finished blob into the store; False if the store held it already."""
        if not self._finished:
            raise RuntimeError("BlobWriter.place() before finish()")
        try:
            if self._final.is_file():
                return False
            self._final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp, self._final)
            fsync_dir(self._final.parent)
        finally:
            self._tmp.unlink(missing_ok=True)
        return True

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
