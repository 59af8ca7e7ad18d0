"""Backups: one encrypted, signed file holding a node's database, blobs and key material,
made while the node runs; restored on a fresh machine (docs/operations.md, "Backups").

The file (format `compact-backup-v1`)::

    b"CPBK" 0x01
    u32 n, header        canonical JSON, n bytes: state, how the keystore unlocks, and
                         the keystore itself (already sealed under the node's
                         passphrase or key file: restoring needs exactly what running
                         the node needs, nothing more)
    sealed stream        crypto.sealing, to the node's own X25519 key: a tar of
                         database/…  every table in a consistent snapshot, JSON lines
                         files/…     the data folder (configuration, keys, credentials,
                                     bundle spools), but the SQLite files and run/
                         blobs/…     every blob the snapshot's `blobs` table lists
    envelope             DSSE, signed with the node's Ed25519 key: the manifest
                         (state, schema revision, row counts, the header's SHA-256
                         and the sealed stream's sizes and digests)
    u32 len(envelope), b"CPBE"

A sealed stream can be made by anyone who knows the node's public key; the signed
manifest says this node made it, and binds the header and every byte of the stream.
Restoring checks the signature with the keystore's key *and* that the roster in the
restored database names that key for the state, before anything is kept.

Consistency: the database is read in one snapshot (SQLite: one read transaction in WAL
mode; PostgreSQL: REPEATABLE READ, READ ONLY). Blobs are content-addressed and never
change; a blob the snapshot lists that is gone by the time it is copied fails the
backup ("run it again") rather than making a backup that cannot be restored.

Audit: making a backup is an audit event (`backup.create`), entered in the log and
covered by a newly signed checkpoint before the snapshot is taken, so the backup holds
its own record and the restored log is the log the members witnessed (nothing appended
after the snapshot by the backup itself).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import itertools
import json
import os
import secrets
import shutil
import struct
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final

from sqlalchemy import Engine, MetaData, Table, func, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.types import JSON, Boolean, Date, DateTime, Float, LargeBinary, TypeDecorator

from crypto import x25519
from crypto.dsse import Envelope, VerificationPolicy, sign_envelope, verify_envelope
from crypto.errors import CryptoError
from crypto.keystore import NodeKeys, open_keystore
from crypto.sealing import SealedStreamInfo, SealedStreamReader, SealedStreamWriter
from crypto.signing import SigningKey
from federation.naming import log_origin, log_signer
from node import migrate
from node import models as m
from node.audit import log_audit
from node.blobstore import fsync_dir
from node.config import CONFIG_FILE, Config, set_setting
from node.db import Database, make_engine
from node.errors import NodeError
from node.setup import Secret
from node.translog import TransparencyLog

MAGIC: Final = b"CPBK\x01"
TRAILER: Final = b"CPBE"
FORMAT: Final = "compact-backup-v1"
PAYLOAD_TYPE: Final = "application/vnd.compact.backup.v1+json"
ROWS_PER_MEMBER: Final = 5000
#: `database_url` of a restore into SQLite in the new data folder.
SQLITE: Final = "sqlite"
MAX_HEADER: Final = 1 << 20
MAX_ENVELOPE: Final = 16 << 20
#: Data-folder paths never backed up as files: the SQLite database (dumped as rows),
#: what a running server writes about itself, and blobs (copied from the table).
_SKIP_TOP: Final = frozenset({"run", "blobs", "node.db", "node.db-wal", "node.db-shm"})


class BackupError(NodeError):
    """A backup cannot be made, read or restored; the message says why (no secrets)."""


Progress = Callable[[str, int, int], None]


def _no_progress(_what: str, _done: int, _total: int) -> None:
    return None


# --- values to JSON and back -------------------------------------------------------------


_KINDS: Final = (
    (LargeBinary, "bytes"),
    (DateTime, "datetime"),
    (Date, "date"),
    (JSON, "json"),
    (Boolean, "bool"),
    (Float, "float"),
)


def _kind(column_type: Any) -> str:
    """How a column's values are written in JSON (the restore reads them back by it)."""
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl
    return next((kind for cls, kind in _KINDS if isinstance(column_type, cls)), "plain")


def _encode(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    if kind == "datetime":
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    if kind == "date":
        return value.isoformat()
    return value


def _decode(kind: str, value: Any, dialect: str) -> Any:
    if value is None:
        return None
    if kind == "bytes":
        return base64.b64decode(value, validate=True)
    if kind == "datetime":
        at = datetime.fromisoformat(value).astimezone(UTC)
        return at.replace(tzinfo=None) if dialect == "sqlite" else at
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "bool":
        return bool(value)
    return value


# --- the file's frame --------------------------------------------------------------------


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class BackupHeader:
    state: str
    unlock: str
    key_file: str
    keystore: bytes
    raw: bytes  # the header's bytes as stored (the manifest binds their SHA-256)


@dataclass(frozen=True)
class _Frame:
    header: BackupHeader
    stream_offset: int
    stream_size: int
    envelope: Envelope


def _read_frame(path: Path) -> _Frame:
    try:
        size = path.stat().st_size
        f = path.open("rb")
    except OSError:
        raise BackupError(f"{path.name} cannot be read") from None
    with f:
        if f.read(len(MAGIC)) != MAGIC:
            raise BackupError(f"{path.name} is not a Compact backup (or of another version)")
        (n,) = struct.unpack(">I", f.read(4) or b"\0\0\0\0")
        if not 0 < n <= MAX_HEADER:
            raise BackupError(f"{path.name}: the header is damaged")
        raw = f.read(n)
        stream_offset = len(MAGIC) + 4 + n
        if size < stream_offset + 8:
            raise BackupError(f"{path.name} is truncated")
        f.seek(size - 8)
        tail = f.read(8)
        (env_size,) = struct.unpack(">I", tail[:4])
        if tail[4:] != TRAILER or not 0 < env_size <= MAX_ENVELOPE:
            raise BackupError(
                f"{path.name} is truncated or damaged (no signed manifest at its end)"
            )
        stream_size = size - 8 - env_size - stream_offset
        if stream_size <= 0:
            raise BackupError(f"{path.name} is truncated")
        f.seek(stream_offset + stream_size)
        env_bytes = f.read(env_size)
    try:
        obj = json.loads(raw)
        header = BackupHeader(
            state=str(obj["state"]),
            unlock=str(obj["unlock"]),
            key_file=str(obj.get("key_file", "")),
            keystore=base64.b64decode(obj["keystore"], validate=True),
            raw=raw,
        )
        if obj.get("format") != FORMAT:
            raise ValueError("format")
        envelope = Envelope.from_json(env_bytes, max_size=MAX_ENVELOPE)
    except (ValueError, KeyError, TypeError, CryptoError):
        raise BackupError(f"{path.name}: the header or the signed manifest is damaged") from None
    return _Frame(header, stream_offset, stream_size, envelope)


# --- writing -------------------------------------------------------------------------------


class _SealingFile(io.RawIOBase):
    """A write-only file: what tarfile writes is sealed and appended to `out`."""

    def __init__(self, out: BinaryIO, writer: SealedStreamWriter) -> None:
        self._out, self._writer = out, writer

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        piece = bytes(data)
        sealed = self._writer.update(piece)
        if sealed:
            self._out.write(sealed)
        return len(piece)


@dataclass
class BackupReport:
    path: Path
    state: str
    schema_revision: str
    created_at: datetime
    tables: dict[str, int]
    files: int
    blobs: int
    size: int
    log_size: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "state": self.state,
            "schema_revision": self.schema_revision,
            "created_at": self.created_at.isoformat(),
            "rows": sum(self.tables.values()),
            "tables": self.tables,
            "files": self.files,
            "blobs": self.blobs,
            "bytes": self.size,
            "log_size": self.log_size,
            "seconds": round(self.seconds, 3),
        }


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(mtime), 0o600
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> bool:
    """Add a regular file as it is now; False if it is gone (the caller decides)."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return False
    with f:
        st = os.fstat(f.fileno())
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), 0o600
        tar.addfile(info, f)  # reads exactly st_size bytes (a growing spool: that prefix)
    return True


@contextlib.contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """One consistent read-only view of the whole database."""
    if engine.dialect.name == "postgresql":
        conn = engine.connect().execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
    else:
        conn = engine.connect().execution_options(compact_readonly=True)
    with conn, conn.begin():
        yield conn


def _data_files(data_dir: Path) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for path in sorted(data_dir.rglob("*")):
        rel = path.relative_to(data_dir)
        top = rel.parts[0]
        if top in _SKIP_TOP or (len(rel.parts) == 1 and top.endswith(".log")):
            continue
        if path.is_symlink() or not path.is_file() or path.name.endswith(".tmp"):
            continue
        out.append((rel.as_posix(), path))
    return out


def create_backup(
    config: Config,
    db: Database,
    keys: NodeKeys,
    out: Path,
    *,
    actor: str,
    progress: Progress = _no_progress,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BackupReport:
    """Write a backup of the node to `out` (which must not exist): `out.partial` first,
    fsynced, then renamed, so `out` exists only once complete."""
    from node.queries import audit

    started = time.monotonic()
    if out.exists():
        raise BackupError(f"{out} exists: choose a new name (a backup never overwrites)")
    if not out.parent.is_dir():
        raise BackupError(f"the folder {out.parent} does not exist")
    with contextlib.suppress(ValueError):
        out.resolve().relative_to(config.data_dir.resolve())
        raise BackupError("write the backup outside the data folder")
    created = now()
    with db.write() as s:
        audit(s, actor=actor, action="backup.create", target=out.name, now=created)
    # See the module docstring: the event is in the log, under a signed checkpoint, before
    # the snapshot, so the restored log is the one the members go on to witness.
    translog = TransparencyLog(db)
    if log_audit(db, translog, config.node.state):
        translog.sign_checkpoint(
            log_signer(config.node.state, SigningKey(keys.signing_key)),
            origin=log_origin(config.node.state),
        )
    keystore = config.path(config.keys.keystore).read_bytes()
    header = _canonical(
        {
            "format": FORMAT,
            "state": config.node.state,
            "unlock": config.keys.unlock,
            "key_file": config.keys.key_file,
            "keystore": base64.b64encode(keystore).decode("ascii"),
        }
    )
    recipient = x25519.PublicKey(keys.encryption_key.public_key.encode())
    writer = SealedStreamWriter([recipient])
    partial = out.with_name(out.name + ".partial")
    tables: dict[str, int] = {}
    revision = ""
    blobs = files = log_size = 0
    mtime = created.timestamp()
    try:
        with partial.open("xb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(MAGIC + struct.pack(">I", len(header)) + header)
            f.write(writer.header())
            sink = _SealingFile(f, writer)
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                with _snapshot(db.engine) as conn:
                    revision = str(
                        conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
                    )
                    ordered = list(m.Base.metadata.sorted_tables)
                    layout = {
                        "revision": revision,
                        "tables": [t.name for t in ordered],
                        "created_at": created.isoformat(),
                        # Where the node's configuration puts its database (a restore's
                        # default target); inside the encrypted stream, as it may hold a
                        # password.
                        "database_url": config.database.url,
                    }
                    _add(tar, "database/schema.json", _canonical(layout), mtime)
                    for i, table in enumerate(ordered):
                        tables[table.name] = _dump_table(tar, conn, table, mtime)
                        progress("tables", i + 1, len(ordered))
                    log_size = tables.get("log_entries", 0)
                    blob_names = [
                        str(r)
                        for r in conn.execute(
                            select(m.Blob.sha256).order_by(m.Blob.sha256)
                        ).scalars()
                    ]
                for i, name in enumerate(blob_names):
                    rel = f"{name[:2]}/{name[2:4]}/{name}"
                    if not _add_file(tar, f"blobs/{rel}", config.blob_dir / rel):
                        raise BackupError(
                            "an evidence blob was removed while the backup ran: run it again"
                        )
                    blobs += 1
                    if i % 100 == 99 or i + 1 == len(blob_names):
                        progress("blobs", i + 1, len(blob_names))
                for rel_name, path in _data_files(config.data_dir):
                    if _add_file(tar, f"files/{rel_name}", path):
                        files += 1
            f.write(writer.finalize())
            manifest = {
                "format": FORMAT,
                "state": config.node.state,
                "created_at": created.isoformat(),
                "schema_revision": revision,
                "tables": tables,
                "files": files,
                "blobs": blobs,
                "header_sha256": hashlib.sha256(header).hexdigest(),
                "sealed_stream": writer.info.to_manifest_dict(),
            }
            envelope = sign_envelope(
                PAYLOAD_TYPE, _canonical(manifest), [SigningKey(keys.signing_key)]
            ).to_json()
            f.write(envelope + struct.pack(">I", len(envelope)) + TRAILER)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, out)
        fsync_dir(out.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupReport(
        path=out,
        state=config.node.state,
        schema_revision=revision,
        created_at=created,
        tables=tables,
        files=files,
        blobs=blobs,
        size=out.stat().st_size,
        log_size=log_size,
        seconds=time.monotonic() - started,
    )


def _dump_table(tar: tarfile.TarFile, conn: Connection, table: Table, mtime: float) -> int:
    columns = list(table.c)
    kinds = [_kind(c.type) for c in columns]
    head = _canonical({"columns": [[c.name, k] for c, k in zip(columns, kinds, strict=True)]})
    rows = 0
    buffer = io.BytesIO()
    pk = list(table.primary_key.columns) or columns
    result = conn.execution_options(yield_per=ROWS_PER_MEMBER).execute(select(table).order_by(*pk))
    # Every table has a first member, an empty table a member with the column line only.
    for part, partition in enumerate(itertools.chain(result.partitions(), [[]]), start=1):
        if part > 1 and not partition:
            break
        buffer.seek(0)
        buffer.truncate()
        buffer.write(head + b"\n")
        for row in partition:
            encoded = [_encode(k, v) for k, v in zip(kinds, row, strict=True)]
            buffer.write(_canonical(encoded) + b"\n")
            rows += 1
        _add(tar, f"database/{table.name}/{part:06d}.jsonl", buffer.getvalue(), mtime)
    return rows


# --- reading -------------------------------------------------------------------------------


class _OpeningFile(io.RawIOBase):
    """A read-only file: the verified plaintext of the sealed stream in `src`."""

    def __init__(self, src: BinaryIO, size: int, reader: SealedStreamReader) -> None:
        self._src, self._left, self._reader = src, size, reader
        self._buffer = bytearray()
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        view = memoryview(target).cast("B")
        while not self._buffer and not self._eof:
            piece = self._src.read(min(self._left, 1 << 20))
            self._left -= len(piece)
            if not piece:
                self._buffer += self._reader.feed(b"", eof=True)
                self._eof = True
            else:
                self._buffer += self._reader.feed(piece)
        n = min(len(view), len(self._buffer))
        view[:n] = self._buffer[:n]
        del self._buffer[:n]
        return n


def unlock_backup(header: BackupHeader, secret: Secret) -> NodeKeys:
    try:
        return open_keystore(
            header.keystore, passphrase=secret.passphrase, key_file_secret=secret.key_file_secret
        )
    except (CryptoError, ValueError):
        raise BackupError(
            "the backup's keystore does not open with this secret (wrong passphrase or key file?)"
        ) from None


def read_header(path: Path) -> BackupHeader:
    return _read_frame(path).header


@dataclass
class RestoreReport:
    state: str
    data_dir: Path
    schema_revision: str
    restored_to: str
    created_at: str
    tables: dict[str, int]
    files: int
    blobs: int
    signing_key: str
    checks: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "data_dir": str(self.data_dir),
            "backup_created_at": self.created_at,
            "schema_revision": self.schema_revision,
            "schema_now": self.restored_to,
            "rows": sum(self.tables.values()),
            "tables": self.tables,
            "files": self.files,
            "blobs": self.blobs,
            "signing_key": self.signing_key,
            "checks": self.checks,
        }


def _verified_manifest(frame: _Frame, keys: NodeKeys) -> dict[str, Any]:
    key = SigningKey(keys.signing_key).public_key
    try:
        verified = verify_envelope(
            frame.envelope, VerificationPolicy([key], 1), payload_type=PAYLOAD_TYPE
        )
        manifest = json.loads(verified.payload)
    except (CryptoError, ValueError):
        raise BackupError(
            "the backup's manifest is not signed by the key in its keystore: not this "
            "node's backup, or altered"
        ) from None
    if manifest.get("format") != FORMAT or manifest.get("state") != frame.header.state:
        raise BackupError("the backup's manifest does not match its header")
    if manifest.get("header_sha256") != hashlib.sha256(frame.header.raw).hexdigest():
        raise BackupError("the backup's header was altered")
    return dict(manifest)


def restore_backup(
    path: Path,
    data_dir: Path,
    secret: Secret,
    *,
    database_url: str = "",
    key_file: str = "",
    progress: Progress = _no_progress,
) -> RestoreReport:
    """Restore the backup at `path` into the new data folder `data_dir` (which must not
    exist, or be empty) and an empty database: `database_url`, else the one the backup's
    configuration names, else SQLite in the data folder (`database_url="sqlite"` asks
    for that whatever the configuration said). Nothing is kept unless everything
    verified: the folder is built beside `data_dir` and renamed into place at the end;
    a database the restore filled is emptied again on failure."""
    frame, keys, manifest, expected = _open_backup(path, secret)
    revision = str(manifest["schema_revision"])
    if revision not in migrate.known_revisions():
        raise BackupError(
            f"the backup's schema {revision} is newer than this version knows: install the "
            "version that made it, or a newer one"
        )
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise BackupError(f"{data_dir} exists and is not empty: restore into a new folder")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = data_dir.with_name(f".{data_dir.name}.restore-{secrets.token_hex(4)}")
    staging.mkdir(mode=0o700)
    engine: Engine | None = None
    filled = False
    try:
        reader = SealedStreamReader(x25519.PrivateKey(keys.encryption_key), expected=expected)
        with _damaged(), path.open("rb") as f:
            f.seek(frame.stream_offset)
            plain = io.BufferedReader(_OpeningFile(f, frame.stream_size, reader), 1 << 20)
            with tarfile.open(fileobj=plain, mode="r|") as tar:
                first = tar.next()
                if first is None or first.name != "database/schema.json":
                    raise BackupError("the backup's contents are not in the expected order")
                layout = json.loads(_member_bytes(tar, first))
                if layout.get("revision") != revision:
                    raise BackupError("the backup's contents do not match its manifest")
                configured = str(layout.get("database_url") or "")
                url = database_url or configured
                engine = make_engine(_sqlite_url(staging) if url in ("", SQLITE) else url)
                _require_empty(engine)
                filled = True
                migrate.upgrade(engine, revision)
                meta = MetaData()
                meta.reflect(engine)
                with engine.connect() as conn, conn.begin():
                    counts, files, blobs = _load(tar, conn, meta, staging, progress)
                    _reset_sequences(conn, meta)
                    # Every digest checked: the stream is the one the manifest signed.
                    reader.close()
                    if (counts, files, blobs) != (
                        manifest["tables"],
                        manifest["files"],
                        manifest["blobs"],
                    ):
                        raise BackupError("the backup's contents do not match its manifest")
        migrate.upgrade(engine, "head")
        now_revision = migrate.current_revision(engine) or ""
        _check_roster_key(engine, frame.header.state, keys)
        config_path = staging / CONFIG_FILE
        if database_url:
            set_setting(config_path, "url", json.dumps("" if url == SQLITE else url))
        if key_file:
            set_setting(config_path, "key_file", json.dumps(key_file))
        engine.dispose()
        engine = None
        for folder in ("run", "blobs"):  # as `compact init` makes them
            (staging / folder).mkdir(mode=0o700, exist_ok=True)
        if data_dir.exists():
            _move_into(staging, data_dir)
        else:
            staging.rename(data_dir)
    except BaseException:
        if engine is not None:
            if filled:
                _empty(engine)
            engine.dispose()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RestoreReport(
        state=frame.header.state,
        data_dir=data_dir,
        schema_revision=revision,
        restored_to=now_revision,
        created_at=str(manifest["created_at"]),
        tables=counts,
        files=files,
        blobs=blobs,
        signing_key=SigningKey(keys.signing_key).key_id,
    )


@contextlib.contextmanager
def _damaged() -> Iterator[None]:
    """What reading the sealed contents can raise, as one BackupError (no details: a
    message must not carry what a damaged file held)."""
    try:
        yield
    except CryptoError:
        raise BackupError(
            "the backup failed authentication: it was altered or damaged after it was made"
        ) from None
    except (tarfile.TarError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise BackupError("the backup's contents are damaged") from None


def _sqlite_url(folder: Path) -> str:
    return f"sqlite:///{(folder / 'node.db').resolve()}"


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    if f is None:
        raise BackupError("the backup's contents are damaged")
    return f.read()


def _require_empty(engine: Engine) -> None:
    try:
        names = inspect(engine).get_table_names()
    except Exception as e:  # noqa: BLE001 - any driver error means "cannot connect"
        raise BackupError(f"the database cannot be reached ({type(e).__name__})") from None
    if names:
        raise BackupError("the database is not empty: a restore needs an empty database")


def _empty(engine: Engine) -> None:
    with contextlib.suppress(Exception):
        meta = MetaData()
        meta.reflect(engine)
        meta.drop_all(engine)


def _load(
    tar: tarfile.TarFile, conn: Connection, meta: MetaData, staging: Path, progress: Progress
) -> tuple[dict[str, int], int, int]:
    """Insert every table's rows within `conn`'s transaction (committed by the caller once
    the stream verified) and write files and blobs into `staging`."""
    counts: dict[str, int] = {}
    files = blobs = 0
    dialect = conn.dialect.name
    for member in tar:  # (in stream mode this starts again at the first member)
        name = member.name
        if name == "database/schema.json":
            continue
        if not member.isfile() or ".." in Path(name).parts or name.startswith("/"):
            raise BackupError("the backup's contents are damaged (an unexpected entry)")
        if name.startswith("database/"):
            table_name = name.split("/")[1]
            if table_name not in meta.tables:
                raise BackupError("the backup's contents do not match its schema")
            lines = _member_bytes(tar, member).splitlines()
            columns = json.loads(lines[0])["columns"]
            rows = [
                {
                    column: _decode(kind, value, dialect)
                    for (column, kind), value in zip(columns, json.loads(line), strict=True)
                }
                for line in lines[1:]
            ]
            if rows:
                conn.execute(meta.tables[table_name].insert(), rows)
            counts[table_name] = counts.get(table_name, 0) + len(rows)
            progress("rows", sum(counts.values()), 0)
        elif name.startswith(("files/", "blobs/")):
            target = staging / (name.removeprefix("files/") if name.startswith("files/") else name)
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            src = tar.extractfile(member)
            if src is None:
                raise BackupError("the backup's contents are damaged")
            with target.open("xb") as dst:
                os.fchmod(dst.fileno(), 0o600)
                shutil.copyfileobj(src, dst, 1 << 20)
            if name.startswith("files/"):
                files += 1
            else:
                blobs += 1
                if blobs % 100 == 0:
                    progress("blobs", blobs, 0)
        else:
            raise BackupError("the backup's contents are damaged (an unexpected entry)")
    return counts, files, blobs


def _reset_sequences(conn: Connection, meta: MetaData) -> None:
    """PostgreSQL: make each serial column's sequence continue after the restored ids."""
    if conn.dialect.name != "postgresql":
        return
    for table in meta.sorted_tables:
        for column in table.primary_key.columns:
            seq = conn.execute(
                select(func.pg_get_serial_sequence(table.name, column.name))
            ).scalar()
            if seq:
                highest = select(func.max(column)).scalar_subquery()
                any_rows = select(func.count()).select_from(table).scalar_subquery() > 0
                conn.execute(select(func.setval(seq, func.coalesce(highest, 1), any_rows)))


def _check_roster_key(engine: Engine, state: str, keys: NodeKeys) -> None:
    """The restored roster must name the backup's signing key for its state."""
    from node.fedstore import current_roster

    db = Database(engine)
    roster = current_roster(db)
    if roster is None:
        return  # a node not yet in a compact: there is no roster to check against
    member = roster.member(state)
    if member is None:
        return
    if member.signing_key.raw != SigningKey(keys.signing_key).public_key.raw:
        raise BackupError(
            f"the roster names another signing key for {state} than this backup's keystore "
            "holds: not this node's backup"
        )


def _move_into(staging: Path, data_dir: Path) -> None:
    """`data_dir` exists and is empty: move the staged contents into it."""
    for child in staging.iterdir():
        child.rename(data_dir / child.name)
    staging.rmdir()


def _open_backup(
    path: Path, secret: Secret
) -> tuple[_Frame, NodeKeys, dict[str, Any], SealedStreamInfo]:
    """The backup's frame, its keys, its verified manifest and the sealed stream the
    manifest describes (BackupError if the stream is not that long)."""
    frame = _read_frame(path)
    keys = unlock_backup(frame.header, secret)
    manifest = _verified_manifest(frame, keys)
    expected = SealedStreamInfo.from_manifest_dict(manifest["sealed_stream"])
    if expected.ciphertext_size != frame.stream_size:
        raise BackupError(f"{path.name} is truncated or has bytes added")
    return frame, keys, manifest, expected


def verify_backup(
    path: Path, secret: Secret, *, progress: Progress = _no_progress
) -> dict[str, Any]:
    """Open the whole backup as a restore would, keeping nothing: signature, every byte
    of the stream, and the contents against the manifest."""
    frame, keys, manifest, expected = _open_backup(path, secret)
    counts: dict[str, int] = {}
    files = blobs = 0
    reader = SealedStreamReader(x25519.PrivateKey(keys.encryption_key), expected=expected)
    with _damaged(), path.open("rb") as f:
        f.seek(frame.stream_offset)
        plain = io.BufferedReader(_OpeningFile(f, frame.stream_size, reader), 1 << 20)
        with tarfile.open(fileobj=plain, mode="r|") as tar:
            for member in tar:
                if member.name.startswith("database/") and member.name.count("/") == 2:
                    table = member.name.split("/")[1]
                    lines = _member_bytes(tar, member).count(b"\n") - 1
                    counts[table] = counts.get(table, 0) + lines
                elif member.name.startswith("files/"):
                    files += 1
                elif member.name.startswith("blobs/"):
                    blobs += 1
                    if blobs % 100 == 0:
                        progress("blobs", blobs, int(manifest["blobs"]))
        reader.close()
    if counts != manifest["tables"] or files != manifest["files"] or blobs != manifest["blobs"]:
        raise BackupError("the backup's contents do not match its manifest")
    return {
        "ok": True,
        "state": frame.header.state,
        "created_at": manifest["created_at"],
        "schema_revision": manifest["schema_revision"],
        "rows": sum(counts.values()),
        "files": files,
        "blobs": blobs,
        "signing_key": SigningKey(keys.signing_key).key_id,
    }
