"""`compact backup create|verify|restore` (node.backup; docs/operations.md, "Backups")."""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from node.cli import _fail, _load, _secret, _stderr, data_dir_option, json_option
from node.cli_auth import Access, declare

if TYPE_CHECKING:
    from node.backup import BackupHeader
    from node.setup import Secret


def register(main: click.Group) -> None:
    main.add_command(backup_group)


@click.group("backup")
def backup_group() -> None:
    """Encrypted, signed backups of a node: database, blobs and key material."""


def _progress(as_json: bool) -> Callable[[str, int, int], None]:
    console = _stderr()
    shown: dict[str, float] = {}

    def progress(what: str, done: int, total: int) -> None:
        import time

        now = time.monotonic()
        if as_json or (now - shown.get(what, 0.0) < 1.0 and done != total):
            return
        shown[what] = now
        console.print(f"{what}: {done}" + (f"/{total}" if total else ""), highlight=False)

    return progress


@backup_group.command("create")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@data_dir_option
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Read the keystore passphrase from this file (else COMPACT_PASSPHRASE, else a prompt).",
)
@json_option
@declare(Access.OPERATOR)
def backup_create(out: Path, data_dir: Path, passphrase_file: Path | None, as_json: bool) -> None:
    """Write a consistent backup of the node to OUT while it runs (a new file, outside
    the data folder). Encrypted to the node's own key, signed by it; restoring needs
    the keystore passphrase or key file, as running the node does."""
    from node.backup import create_backup
    from node.errors import NodeError
    from node.logs import configure_logging
    from node.setup import open_database, unlock

    config = _load(data_dir)
    configure_logging("error")
    try:
        keys = unlock(config, _secret(config, passphrase_file))
        db = open_database(config)
    except NodeError as e:
        _fail(str(e))
        return
    try:
        report = create_backup(
            config,
            db,
            keys,
            out,
            actor=f"operator:{_os_user()}",
            progress=_progress(as_json),
        )
    except NodeError as e:
        _fail(str(e))
        return
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    rows = sum(report.tables.values())
    click.echo(
        f"backup of {report.state} written to {report.path}: {rows} rows, {report.blobs} "
        f"blobs, {report.files} files, {report.size} bytes, schema {report.schema_revision}, "
        f"log size {report.log_size} ({report.seconds:.1f} s)"
    )


def _os_user() -> str:
    """Who ran the command, as the operating system says (operator commands have no
    Compact user: they hold the keystore secret instead)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


def _restore_secret(
    header: BackupHeader, key_file: Path | None, passphrase_file: Path | None
) -> Secret:
    from node.setup import PASSPHRASE_ENV, Secret

    if header.unlock == "key_file":
        path = key_file or (Path(header.key_file) if header.key_file else None)
        if path is None:
            _fail("this backup's keystore opens with a key file: give --key-file")
            raise AssertionError from None
        try:
            return Secret(key_file_secret=path.read_bytes())
        except OSError:
            _fail(f"the key file {path} cannot be read (give --key-file)")
            raise AssertionError from None
    if passphrase_file is not None:
        return Secret(passphrase=passphrase_file.read_bytes().rstrip(b"\r\n"))
    if os.environ.get(PASSPHRASE_ENV):
        return Secret(passphrase=os.environ[PASSPHRASE_ENV].encode("utf-8"))
    if sys.stdin.isatty():
        return Secret(passphrase=getpass.getpass("Keystore passphrase: ").encode("utf-8"))
    _fail(
        f"a passphrase is needed: set {PASSPHRASE_ENV}, give --passphrase-file, "
        "or run interactively"
    )
    raise AssertionError from None


_key_file_option = click.option(
    "--key-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The node's key file, when its keystore opens with one (default: the path the "
    "backup recorded).",
)
_passphrase_option = click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Read the keystore passphrase from this file (else COMPACT_PASSPHRASE, else a prompt).",
)


@backup_group.command("verify")
@click.argument("backup", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_key_file_option
@_passphrase_option
@json_option
@declare(Access.OPERATOR)
def backup_verify(
    backup: Path, key_file: Path | None, passphrase_file: Path | None, as_json: bool
) -> None:
    """Open the whole backup as a restore would, writing nothing: the signature, every
    byte, and the contents against the signed manifest. Exits 1 on any problem."""
    from node.backup import read_header, verify_backup
    from node.errors import NodeError

    try:
        header = read_header(backup)
        result = verify_backup(
            backup,
            _restore_secret(header, key_file, passphrase_file),
            progress=_progress(as_json),
        )
    except NodeError as e:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(e)}, indent=2))
            raise SystemExit(1) from None
        _fail(str(e))
        return
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(
        f"ok: a backup of {result['state']} made {result['created_at']}, signed by "
        f"{result['signing_key']}: {result['rows']} rows, {result['blobs']} blobs, "
        f"{result['files']} files, schema {result['schema_revision']}"
    )


@backup_group.command("restore")
@click.argument("backup", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The new data folder (must not exist, or be empty).",
)
@click.option(
    "--database-url",
    default="",
    help="An empty database to restore into, written into compact.toml; `sqlite` for a "
    "SQLite file in the data folder. Default: COMPACT_DATABASE_URL, else the database the "
    "backup's configuration names (it must be empty), else SQLite.",
)
@_key_file_option
@_passphrase_option
@json_option
@declare(Access.OPERATOR)
def backup_restore(
    backup: Path,
    data_dir: Path,
    database_url: str,
    key_file: Path | None,
    passphrase_file: Path | None,
    as_json: bool,
) -> None:
    """Restore a backup into a new data folder and an empty database, checking its
    signature, every byte, and that the roster names its key; then print what the
    restored node holds and check its log and audit trail."""
    from node.backup import read_header, restore_backup
    from node.errors import NodeError

    url = database_url or os.environ.get("COMPACT_DATABASE_URL", "")
    try:
        header = read_header(backup)
        report = restore_backup(
            backup,
            data_dir,
            _restore_secret(header, key_file, passphrase_file),
            database_url=url,
            key_file=str(key_file.resolve()) if key_file else "",
            progress=_progress(as_json),
        )
    except NodeError as e:
        _fail(str(e))
        return
    checks = _after_restore(data_dir)
    report.checks = checks
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(
            f"restored {report.state} into {report.data_dir}: "
            f"{sum(report.tables.values())} rows, {report.blobs} blobs, {report.files} files; "
            f"schema {report.schema_revision} (now {report.restored_to}); backup made "
            f"{report.created_at}, signed by {report.signing_key}"
        )
        trail = checks["audit_trail"]
        click.echo(
            f"log: {trail['log_size']} entries, newest checkpoint {trail['checkpoint_size']}; "
            f"audit trail {'intact' if trail['ok'] else 'NOT intact'}"
        )
        click.echo("start it with `compact serve`; its members resume syncing with it")
    if not checks["audit_trail"]["ok"]:
        raise SystemExit(1)


def _after_restore(data_dir: Path) -> dict[str, Any]:
    """The restored node's audit trail and log, checked as `compact audit verify` does."""
    from node.audit import verify_own_trail
    from node.setup import open_database

    config = _load(data_dir)
    db = open_database(config)
    try:
        return {"audit_trail": verify_own_trail(db, config.node.state).to_json()}
    finally:
        db.dispose()
