"""Rotating the storage key's wrapping: re-seal the keystore under a new key file or
passphrase (docs/operations.md, "Rotating keys").

The keystore holds the node's keys, the data key (the root of at-rest encryption of
blobs and personal fields) among them, sealed under a key derived from the key file or
passphrase. Re-wrapping seals the same keys under a new secret: nothing stored needs
re-encrypting, and the old secret stops opening the keystore the moment the new one is
in place. A running node keeps serving (its keys are in memory and do not change).

Order, so that no crash leaves the node without a way in: the new keystore is written
beside the old one and checked to open with the new secret; then it replaces the old one
(one rename); then the configuration is updated if the unlock mode or key file path
changed. A crash between the last two leaves a keystore that opens with the new secret
and a configuration naming the old one: the operator runs the same command again with
`--current` pointing at the new secret (the error says so).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from crypto import keystore as ks
from crypto.errors import CryptoError
from node.config import CONFIG_FILE, Config, set_setting
from node.db import Database
from node.errors import UnlockError
from node.keyrotation import KeyPaths, retired_keystores, write_durably
from node.queries import audit
from node.setup import Secret


@dataclass(frozen=True)
class RewrapReport:
    unlock: str
    key_file: str
    key_id: str  # the node's signing key id: the keys did not change

    def to_json(self) -> dict[str, str]:
        return {"unlock": self.unlock, "key_file": self.key_file, "signing_key": self.key_id}


def rewrap_keystore(
    config: Config,
    db: Database,
    current: Secret,
    new: Secret,
    *,
    new_key_file: Path | None,
    actor: str,
    kdf_strength: str = "moderate",
) -> RewrapReport:
    """Seal the node's keystore under `new` (a key file secret, whose file is
    `new_key_file`, or a passphrase) instead of `current`."""
    path = config.path(config.keys.keystore)
    try:
        keys = ks.open_keystore(
            path.read_bytes(),
            passphrase=current.passphrase,
            key_file_secret=current.key_file_secret,
        )
    except OSError:
        raise UnlockError("the keystore cannot be read") from None
    except (CryptoError, ValueError):
        raise UnlockError(
            "the keystore does not open with the current secret (if a re-wrap was "
            "interrupted, it may already open with the new one)"
        ) from None
    if new.key_file_secret is not None:
        if new_key_file is None:
            raise ValueError("a new key file secret needs its file")
        if new_key_file.resolve().is_relative_to(config.data_dir.resolve()):
            raise UnlockError("keys.key_file: must not be inside the data folder")
    if current == new:
        raise UnlockError("the new secret is the current one")
    # The next keys and the retired ones (node.keyrotation) are sealed under the same
    # secret: they are re-wrapped first, the keystore last, so that the command can be run
    # again after a crash (a file already under the new secret is left as it is).
    for other in _other_keystores(config):
        try:
            data = other.read_bytes()
        except OSError:
            raise UnlockError(f"{other.name} cannot be read") from None
        try:
            opened = ks.open_keystore(
                data, passphrase=current.passphrase, key_file_secret=current.key_file_secret
            )
        except (CryptoError, ValueError):
            try:
                ks.open_keystore(
                    data, passphrase=new.passphrase, key_file_secret=new.key_file_secret
                )
                continue  # re-wrapped by an interrupted run
            except (CryptoError, ValueError):
                raise UnlockError(
                    f"{other.name} opens with neither the current nor the new secret"
                ) from None
        _replace_sealed(other, opened, new, kdf_strength)
    _replace_sealed(path, keys, new, kdf_strength)
    unlock = "key_file" if new.key_file_secret is not None else "passphrase"
    key_file = str(new_key_file.resolve()) if new_key_file is not None else ""
    toml = config.data_dir / CONFIG_FILE
    if unlock != config.keys.unlock:
        set_setting(toml, "unlock", json.dumps(unlock))
    if key_file != config.keys.key_file:
        set_setting(toml, "key_file", json.dumps(key_file))
    with db.write() as s:
        audit(
            s,
            actor=actor,
            action="keys.rewrap",
            target="keystore",
            detail={"unlock": unlock},
            now=datetime.now(UTC),
        )
    return RewrapReport(unlock, key_file, ks.key_id(keys.signing_key.verify_key.encode()))


def _other_keystores(config: Config) -> list[Path]:

    upcoming = KeyPaths.of(config).next_keystore
    return [*([upcoming] if upcoming.exists() else []), *retired_keystores(config)]


def _replace_sealed(path: Path, keys: ks.NodeKeys, new: Secret, kdf_strength: str) -> None:
    """Seal `keys` under `new` and put the result in place of `path` (checked to open first)."""
    sealed = ks.seal_keystore(
        keys,
        passphrase=new.passphrase,
        key_file_secret=new.key_file_secret,
        strength=kdf_strength,  # type: ignore[arg-type]
    )
    # Checked before it replaces anything: the new keystore opens with the new secret.
    ks.open_keystore(sealed, passphrase=new.passphrase, key_file_secret=new.key_file_secret)
    write_durably(path, sealed, suffix=".rewrap")
