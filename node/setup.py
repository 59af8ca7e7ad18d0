"""Creating a node's data folder, and opening it: unlock keys, connect storage.

Data folder layout (`compact init`):

    compact.toml            configuration (documented, see node.config)
    node.db                 SQLite database (unless a PostgreSQL URL is configured)
    keys/keystore.json      Ed25519, X25519, TLS and data keys, encrypted (crypto.keystore)
    keys/tls.crt            the node's self-signed TLS certificate (public)
    blobs/                  encrypted, content-addressed evidence (node.blobstore)
    credentials/admin.token the command line's bearer token (mode 0600)
    run/server.json         written by `compact serve`: the address it listens on
    run/federation.json     written by `compact serve`: FederationService's address

The keystore is sealed under a passphrase (Argon2id) or a key file that must
live outside the data folder: a copy of the folder alone opens nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from crypto import keystore as ks
from crypto.errors import CryptoError
from crypto.fields import FieldCipher
from crypto.tls import self_signed_certificate
from node import migrate
from node.blobstore import BlobStore
from node.config import (
    CONFIG_FILE,
    Config,
    DatabaseSettings,
    FederationSettings,
    KeySettings,
    NodeSettings,
    ServerSettings,
    render_config,
    validate_config,
)
from node.db import Database
from node.errors import ConfigError, StorageError, UnlockError
from node.ingest import NodeStorage
from node.users import add_user

PASSPHRASE_ENV = "COMPACT_PASSPHRASE"  # noqa: S105 - a variable name


@dataclass(frozen=True)
class Secret:
    """What unlocks the keystore: exactly one of the two."""

    passphrase: bytes | None = None
    key_file_secret: bytes | None = None


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


_DEFAULT_TLS_HOSTS: Final = ServerSettings().tls_hosts


def init_node(
    data_dir: Path,
    *,
    state: str,
    secret: Secret,
    key_file: Path | None = None,
    database_url: str = "",
    listen: str = "127.0.0.1:7400",
    federation_listen: str = "127.0.0.1:7401",
    name: str = "",
    kdf_strength: str = "moderate",
    tls_hosts: tuple[str, ...] = (),
) -> Config:
    """Create a node's data folder, keys, database and first user.

    Refuses a folder that already holds a configuration. On any failure the
    files it created are removed again (a database at a PostgreSQL URL is left
    for the operator to inspect).
    """
    if (data_dir / CONFIG_FILE).exists():
        raise ConfigError(f"{data_dir} already holds a node ({CONFIG_FILE} exists)")
    keys = KeySettings(
        unlock="key_file" if secret.key_file_secret is not None else "passphrase",
        key_file=str(key_file.resolve()) if key_file else "",
    )
    config = Config(
        data_dir=data_dir,
        node=NodeSettings(state=state, name=name or f"{state} node"),
        database=DatabaseSettings(url=database_url),
        keys=keys,
        server=ServerSettings(listen=listen, tls_hosts=tuple(tls_hosts) or _DEFAULT_TLS_HOSTS),
        federation=FederationSettings(listen=federation_listen),
    )
    validate_config(config)
    created_dir = not data_dir.exists()
    data_dir.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    try:
        node_keys = ks.generate_node_keys()
        sealed = ks.seal_keystore(
            node_keys,
            passphrase=secret.passphrase,
            key_file_secret=secret.key_file_secret,
            strength=kdf_strength,  # type: ignore[arg-type]
        )
        for sub in ("keys", "blobs", "credentials", "run"):
            (data_dir / sub).mkdir(mode=0o700, exist_ok=True)
            made.append(data_dir / sub)
        _write_private(config.path(keys.keystore), sealed)
        cert = self_signed_certificate(
            node_keys.tls_key_pem,
            common_name=f"compact node {state}",
            hosts=config.server.tls_hosts,
        )
        config.path(keys.tls_certificate).write_bytes(cert)
        db = Database.from_url(
            config.database_url(), busy_timeout_ms=config.database.busy_timeout_ms
        )
        try:
            migrate.upgrade(db.engine)
            token = add_user(db, "admin", "admin")
        finally:
            db.dispose()
        _write_private(config.path(config.client.credential_file), token.encode() + b"\n")
        (data_dir / CONFIG_FILE).write_text(render_config(config), encoding="utf-8")
    except BaseException:
        if created_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            for p in [
                *made,
                data_dir / "node.db",
                data_dir / "node.db-wal",
                data_dir / "node.db-shm",
            ]:
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
        raise
    return config


def ensure_key_file(path: Path) -> tuple[Secret, bool]:
    """The key file secret at `path`, made first (32 random bytes, mode 0600, never over an
    existing file) if there is none; and whether it was made. OSError if it cannot be."""
    created = False
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(ks.generate_key_file_secret())
        created = True
    return Secret(key_file_secret=path.read_bytes()), created


def read_secret(config: Config, *, passphrase_file: Path | None = None) -> Secret:
    """The unlock secret the configuration calls for, without prompting."""
    if config.keys.unlock == "key_file":
        try:
            data = Path(config.keys.key_file).read_bytes()
        except OSError:
            raise UnlockError("keys.key_file cannot be read") from None
        return Secret(key_file_secret=data)
    if passphrase_file is not None:
        try:
            return Secret(passphrase=passphrase_file.read_bytes().rstrip(b"\r\n"))
        except OSError:
            raise UnlockError("the passphrase file cannot be read") from None
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return Secret(passphrase=env.encode("utf-8"))
    raise UnlockError(
        f"a passphrase is needed: set {PASSPHRASE_ENV}, give --passphrase-file, "
        "or run interactively"
    )


def unlock(config: Config, secret: Secret) -> ks.NodeKeys:
    try:
        data = config.path(config.keys.keystore).read_bytes()
    except OSError:
        raise UnlockError("the keystore cannot be read") from None
    try:
        return ks.open_keystore(
            data, passphrase=secret.passphrase, key_file_secret=secret.key_file_secret
        )
    except (CryptoError, ValueError) as e:
        raise UnlockError(str(e)) from None


def open_database(config: Config) -> Database:
    """Connect the node's database, checking that its schema is this version's newest
    (StorageError naming the command that mends it, if not)."""
    db = Database.from_url(config.database_url(), busy_timeout_ms=config.database.busy_timeout_ms)
    try:
        problem = migrate.schema_problem(db.engine)
    except Exception as e:  # noqa: BLE001 - any driver error means "cannot connect"
        db.dispose()
        raise StorageError(f"the database cannot be reached ({type(e).__name__})") from None
    if problem is not None:
        db.dispose()
        raise StorageError(problem)
    return db


def open_storage(config: Config, keys: ks.NodeKeys) -> NodeStorage:
    """Connect the database (checking its schema is current) and the blob store."""
    db = open_database(config)
    return NodeStorage(
        db=db,
        blobs=BlobStore(config.blob_dir, keys.data_key),
        fields=FieldCipher(keys.data_key),
        state=config.node.state,
        limits=config.limits,
    )


def write_server_info(config: Config, host: str, port: int, *, name: str = "server.json") -> Path:
    config.run_dir.mkdir(mode=0o700, exist_ok=True)
    path = config.run_dir / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"host": host, "port": port, "pid": os.getpid()}), encoding="utf-8")
    os.replace(tmp, path)
    return path


def clear_server_info(config: Config, *, name: str = "server.json") -> None:
    with contextlib.suppress(OSError):
        (config.run_dir / name).unlink()
