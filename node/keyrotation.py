"""Rotating a node's signing, encryption and TLS keys through a roster update
(docs/operations.md, "Rotating keys").

A member's public keys are whatever the roster in force names, so a rotation is a
roster change like any other, with one extra rule: the new keys exist before the roster
that names them, and the node switches to them only once that roster is in force here.

1. `prepare_next` makes the next keys (any of signing, encryption, TLS; the data key
   never changes: it is re-wrapped instead, node.rewrap) and seals them beside the
   current ones, under the same secret, as ``keys/keystore.next.json`` with the next
   TLS certificate ``keys/tls.next.crt``. Its member card goes into a roster proposal.
2. `compact roster propose|sign` sign with the next signing key as well as the current
   one when the proposal names the next keys (federation.roster wants the new version
   signed by its own members' keys: the new key proves possession).
3. When a roster naming the next keys is in force (applied by hand, or fetched from a
   member by the sync), `finish_rotation` makes them current: the current keystore and
   certificate are copied to ``keys/retired/``, then the next ones are renamed into
   place. Every step can be repeated, so a crash part-way is finished by the next call
   (`compact serve` calls it when it starts and after each roster update).
4. A running node sees that its keystore no longer holds the keys it runs with and
   restarts its servers in the same process with the new ones (node.server).

Retired keystores stay sealed under the node's secret: their X25519 keys open bundles
that members sealed to the old key before they applied the new roster. Signatures made
with retired signing keys keep verifying through the key history of every roster version
(federation.keyhistory); the retired signing keys themselves are never used again.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from nacl.public import PrivateKey
from nacl.pwhash import argon2id
from nacl.signing import SigningKey as NaclSigningKey

from crypto import keystore as ks
from crypto import signing, x25519
from crypto.errors import CryptoError
from crypto.tls import certificate_fingerprint, generate_tls_key, self_signed_certificate
from federation.roster import Member, Roster
from node.blobstore import fsync_dir
from node.config import Config
from node.errors import NodeError, UnlockError
from node.logs import get_logger
from node.setup import Secret

log = get_logger("compact.keys")

KINDS: Final = ("signing", "encryption", "tls")
NEXT_KEYSTORE: Final = "keystore.next.json"
NEXT_CERTIFICATE: Final = "tls.next.crt"
RETIRED_DIR: Final = "retired"


class RotationError(NodeError):
    """A key rotation step cannot be done (the message says why and what to do)."""


@dataclass(frozen=True)
class KeyPaths:
    keystore: Path
    certificate: Path
    next_keystore: Path
    next_certificate: Path
    retired: Path

    @classmethod
    def of(cls, config: Config) -> KeyPaths:
        keystore = config.path(config.keys.keystore)
        certificate = config.path(config.keys.tls_certificate)
        return cls(
            keystore=keystore,
            certificate=certificate,
            next_keystore=keystore.with_name(NEXT_KEYSTORE),
            next_certificate=certificate.with_name(NEXT_CERTIFICATE),
            retired=keystore.parent / RETIRED_DIR,
        )


@dataclass(frozen=True)
class PublicKeys:
    """The public half of a keystore and its certificate, as a roster names them."""

    signing_key: signing.PublicKey
    encryption_key: x25519.PublicKey
    tls_pin: str

    def named_by(self, member: Member | None) -> bool:
        return (
            member is not None
            and member.signing_key.raw == self.signing_key.raw
            and member.encryption_key.raw == self.encryption_key.raw
            and member.tls_pin == self.tls_pin
        )

    def to_json(self) -> dict[str, str]:
        return {
            "signing_key": self.signing_key.key_id,
            "encryption_key": ks.key_id(self.encryption_key.raw),
            "tls_pin": self.tls_pin,
        }


def public_keys(keystore: Path, certificate: Path) -> PublicKeys:
    """What a keystore file and a certificate file hold, without unlocking anything
    (RotationError if either cannot be read)."""
    try:
        info = ks.public_info(keystore.read_bytes())
        pin = certificate_fingerprint(certificate.read_bytes())
        return PublicKeys(
            signing.PublicKey.from_bytes(info["ed25519"]),
            x25519.PublicKey.from_bytes(info["x25519"]),
            pin,
        )
    except (OSError, ValueError, CryptoError):
        raise RotationError(f"{keystore.name} or {certificate.name} cannot be read") from None


def keys_public(keys: ks.NodeKeys, certificate_pem: bytes) -> PublicKeys:
    return PublicKeys(
        signing.SigningKey(keys.signing_key).public_key,
        x25519.PrivateKey(keys.encryption_key).public_key,
        certificate_fingerprint(certificate_pem),
    )


def _strength(keystore: bytes) -> str:
    """The Argon2id strength the current keystore was sealed with (the next one matches)."""
    kdf = json.loads(keystore)["kdf"]
    return "interactive" if kdf.get("opslimit") == argon2id.OPSLIMIT_INTERACTIVE else "moderate"


def write_durably(path: Path, data: bytes, mode: int = 0o600, *, suffix: str = ".tmp") -> None:
    """Write `path` whole or not at all: a temporary file beside it, fsynced, renamed over
    it, the folder fsynced."""
    tmp = path.with_name(path.name + suffix)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def prepare_next(
    config: Config, secret: Secret, *, rotate: Collection[str] = KINDS, replace: bool = False
) -> tuple[ks.NodeKeys, bytes]:
    """Make and seal the next keys (those of `rotate` new, the others the current ones)
    and their certificate; returns them. Refused if next keys are waiting already, unless
    `replace` (a proposal naming the ones replaced then no longer applies here)."""
    unknown = sorted(set(rotate) - set(KINDS))
    if unknown or not rotate:
        raise RotationError(f"keys to rotate: choose among {', '.join(KINDS)}")
    paths = KeyPaths.of(config)
    if paths.next_keystore.exists() and not replace:
        raise RotationError(
            "next keys are waiting already (compact keys status): put them in a roster "
            "update, or make new ones with --replace"
        )
    try:
        sealed_now = paths.keystore.read_bytes()
        current = ks.open_keystore(
            sealed_now, passphrase=secret.passphrase, key_file_secret=secret.key_file_secret
        )
    except OSError:
        raise UnlockError("the keystore cannot be read") from None
    except (CryptoError, ValueError) as e:
        raise UnlockError(str(e)) from None
    new = ks.NodeKeys(
        signing_key=NaclSigningKey.generate() if "signing" in rotate else current.signing_key,
        encryption_key=PrivateKey.generate() if "encryption" in rotate else current.encryption_key,
        tls_key_pem=generate_tls_key() if "tls" in rotate else current.tls_key_pem,
        data_key=current.data_key,
    )
    if "tls" in rotate:
        certificate = self_signed_certificate(
            new.tls_key_pem,
            common_name=f"compact node {config.node.state}",
            hosts=config.server.tls_hosts,
        )
    else:
        certificate = paths.certificate.read_bytes()
    sealed = ks.seal_keystore(
        new,
        passphrase=secret.passphrase,
        key_file_secret=secret.key_file_secret,
        strength=_strength(sealed_now),  # type: ignore[arg-type]
    )
    # The certificate first: next keys are recognised by their keystore, which must
    # never wait without its certificate.
    write_durably(paths.next_certificate, certificate, 0o644)
    write_durably(paths.next_keystore, sealed)
    log.info("keys.next_prepared", rotate=sorted(rotate), **keys_public(new, certificate).to_json())
    return new, certificate


def discard_next(config: Config) -> bool:
    """Drop next keys that no roster will name (True if there were any)."""
    paths = KeyPaths.of(config)
    had = paths.next_keystore.exists()
    paths.next_keystore.unlink(missing_ok=True)
    paths.next_certificate.unlink(missing_ok=True)
    fsync_dir(paths.keystore.parent)
    return had


def open_next(config: Config, secret: Secret) -> ks.NodeKeys | None:
    """The next keys, unlocked, if any are waiting."""
    paths = KeyPaths.of(config)
    try:
        data = paths.next_keystore.read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        raise UnlockError(f"{paths.next_keystore.name} cannot be read") from None
    try:
        return ks.open_keystore(
            data, passphrase=secret.passphrase, key_file_secret=secret.key_file_secret
        )
    except (CryptoError, ValueError) as e:
        raise UnlockError(f"{paths.next_keystore.name}: {e}") from None


def next_public(config: Config) -> PublicKeys | None:
    paths = KeyPaths.of(config)
    if not paths.next_keystore.exists():
        return None
    return public_keys(paths.next_keystore, paths.next_certificate)


def finish_rotation(config: Config, roster: Roster | None) -> bool:
    """Make the next keys current if `roster` (the one in force) names them; True if the
    keystore changed. Safe to call at any time and again after a crash part-way."""
    if roster is None:
        return False
    paths = KeyPaths.of(config)
    member = roster.member(config.node.state)
    changed = False
    if paths.next_keystore.exists() and paths.next_certificate.exists():
        upcoming = public_keys(paths.next_keystore, paths.next_certificate)
        if upcoming.named_by(member):
            _retire(paths)
            os.replace(paths.next_certificate, paths.certificate)
            os.replace(paths.next_keystore, paths.keystore)
            fsync_dir(paths.keystore.parent)
            changed = True
            log.info("keys.rotated", roster_version=roster.version, **upcoming.to_json())
    elif paths.next_certificate.exists() and not paths.next_keystore.exists():
        # A crash between the two renames: the keystore is in place, the certificate not.
        current = public_keys(paths.keystore, paths.next_certificate)
        if current.named_by(member):
            os.replace(paths.next_certificate, paths.certificate)
            fsync_dir(paths.keystore.parent)
            changed = True
    return changed


def _retire(paths: KeyPaths) -> None:
    """Copy the current keystore and certificate to keys/retired/ (once per key)."""
    current = public_keys(paths.keystore, paths.certificate)
    paths.retired.mkdir(mode=0o700, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{current.signing_key.key_id}-{ks.key_id(current.encryption_key.raw)}"
    if any(p.name.endswith(f"{name}.json") for p in paths.retired.iterdir()):
        return
    keystore = paths.retired / f"keystore-{stamp}-{name}.json"
    certificate = paths.retired / f"tls-{stamp}-{name}.crt"
    for src, dst, mode in (
        (paths.certificate, certificate, 0o644),
        (paths.keystore, keystore, 0o600),
    ):
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copyfile(src, tmp)
        os.chmod(tmp, mode)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    fsync_dir(paths.retired)


def retired_keystores(config: Config) -> list[Path]:
    """The retired keystores, newest first."""
    retired = KeyPaths.of(config).retired
    if not retired.is_dir():
        return []
    return sorted(retired.glob("keystore-*.json"), reverse=True)


def open_retired(config: Config, secret: Secret) -> list[ks.NodeKeys]:
    """Every retired keystore, unlocked (UnlockError naming the file that does not open)."""
    out = []
    for path in retired_keystores(config):
        try:
            out.append(
                ks.open_keystore(
                    path.read_bytes(),
                    passphrase=secret.passphrase,
                    key_file_secret=secret.key_file_secret,
                )
            )
        except OSError:
            raise UnlockError(f"the retired keystore {path.name} cannot be read") from None
        except (CryptoError, ValueError) as e:
            raise UnlockError(f"the retired keystore {path.name}: {e}") from None
    return out


def running_keys_stale(config: Config, running: PublicKeys) -> bool:
    """True once the keystore on disk holds other keys than the ones a process runs with
    (a rotation finished since it started)."""
    paths = KeyPaths.of(config)
    try:
        on_disk = public_keys(paths.keystore, paths.certificate)
    except RotationError:
        return False  # part-way through a rename: look again next time
    return on_disk != running
