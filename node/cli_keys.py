"""`compact keys rewrap`: seal the keystore under a new key file or passphrase
(node.rewrap; docs/operations.md, "Rotating keys")."""

from __future__ import annotations

import json
from pathlib import Path

import click

from node.cli import _fail, _load, _secret, data_dir_option, json_option, passphrase_option
from node.cli_auth import Access, declare


def register(main: click.Group) -> None:
    main.add_command(keys_group)


@click.group("keys")
def keys_group() -> None:
    """The node's keystore."""


@keys_group.command("rewrap")
@data_dir_option
@passphrase_option
@click.option(
    "--new-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Seal the keystore under this key file (made with 32 fresh random bytes, 0600, "
    "if it does not exist; it must be outside the data folder).",
)
@click.option(
    "--new-passphrase-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Seal the keystore under the passphrase in this file (12+ characters).",
)
@json_option
@declare(Access.OPERATOR)
def keys_rewrap(
    data_dir: Path,
    passphrase_file: Path | None,
    new_key_file: Path | None,
    new_passphrase_file: Path | None,
    as_json: bool,
) -> None:
    """Re-seal the keystore under a new key file or passphrase (the current one, from the
    configuration or --passphrase-file, opens it first). The keys themselves, and so
    everything stored, stay as they are; the old secret stops working. Backups made
    before still open with the old secret only."""
    from node.cli_backup import _os_user
    from node.errors import NodeError
    from node.rewrap import rewrap_keystore
    from node.setup import Secret, ensure_key_file, open_database

    if (new_key_file is None) == (new_passphrase_file is None):
        _fail("give exactly one of --new-key-file and --new-passphrase-file")
    config = _load(data_dir)
    if new_key_file is not None:
        new_key_file = new_key_file.resolve()
        if new_key_file.is_relative_to(config.data_dir.resolve()):
            _fail("keys.key_file: must not be inside the data folder")
        try:
            new, _ = ensure_key_file(new_key_file)
        except OSError as e:
            _fail(f"the new key file cannot be created or read ({e.strerror})")
            return
    else:
        assert new_passphrase_file is not None
        new = Secret(passphrase=new_passphrase_file.read_bytes().rstrip(b"\r\n"))
        if len(new.passphrase or b"") < 12:
            _fail("the passphrase must be at least 12 characters")
    try:
        current = _secret(config, passphrase_file)
        db = open_database(config)
    except NodeError as e:
        _fail(str(e))
        return
    try:
        report = rewrap_keystore(
            config, db, current, new, new_key_file=new_key_file, actor=f"operator:{_os_user()}"
        )
    except NodeError as e:
        _fail(str(e))
        return
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    where = f"the key file {report.key_file}" if report.key_file else "the new passphrase"
    click.echo(
        f"the keystore is now sealed under {where}; the keys are unchanged "
        f"(signing key {report.key_id}). The old secret no longer opens it: destroy it, "
        "or keep it only with the backups made before now."
    )
