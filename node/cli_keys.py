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


@keys_group.command("next")
@data_dir_option
@passphrase_option
@click.option(
    "--rotate",
    "rotate_text",
    default="signing,encryption,tls",
    show_default=True,
    metavar="KINDS",
    help="Which keys to replace: any of signing, encryption, tls (comma-separated).",
)
@click.option("--replace", is_flag=True, help="Replace next keys that are waiting already.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Write the member card with the next keys here (give it to `compact roster propose "
    "--card`).",
)
@declare(Access.OPERATOR)
def keys_next(
    data_dir: Path,
    passphrase_file: Path | None,
    rotate_text: str,
    replace: bool,
    out: Path,
) -> None:
    """Make this node's next keys and their member card. They are used once a roster
    version naming them is in force here (compact roster propose --card, sign, apply);
    until then the node keeps its keys. See docs/operations.md, "Rotating keys"."""
    from crypto import signing, x25519
    from federation.errors import RosterError
    from federation.roster import Member, member_card_file, parse_member_card_file
    from node.cli_federation import _endpoint, _write_atomic
    from node.errors import NodeError
    from node.keyrotation import keys_public, prepare_next

    rotate = [k.strip() for k in rotate_text.split(",") if k.strip()]
    config = _load(data_dir)
    endpoint = _endpoint(config)
    if out.exists():
        _fail(f"{out} exists: choose a new name")
    try:
        keys, certificate = prepare_next(
            config, _secret(config, passphrase_file), rotate=rotate, replace=replace
        )
    except NodeError as e:
        _fail(str(e))
        return
    public = keys_public(keys, certificate)
    member = Member(
        state=config.node.state,
        endpoint=endpoint,
        tls_pin=public.tls_pin,
        signing_key=signing.SigningKey(keys.signing_key).public_key,
        encryption_key=x25519.PrivateKey(keys.encryption_key).public_key,
    )
    card = member_card_file(member, certificate)
    try:
        parse_member_card_file(card)
    except RosterError as e:  # pragma: no cover - made from our own keys
        _fail(f"the next keys' card would be refused: {e}")
    _write_atomic(out, card)
    click.echo(
        f"next keys made ({', '.join(sorted(set(rotate)))}): signing key "
        f"{public.to_json()['signing_key']}, TLS pin {public.tls_pin}\n"
        f"wrote their member card to {out}; next: compact roster propose --card {out} "
        "(then the members sign and apply it)"
    )


@keys_group.command("status")
@data_dir_option
@json_option
@declare(Access.OPERATOR)
def keys_status(data_dir: Path, as_json: bool) -> None:
    """This node's keys, next keys waiting for a roster, and retired keys (public parts
    only; nothing is unlocked)."""
    from node.errors import NodeError
    from node.fedstore import current_roster
    from node.keyrotation import KeyPaths, next_public, public_keys, retired_keystores
    from node.setup import open_database

    config = _load(data_dir)
    paths = KeyPaths.of(config)
    try:
        current = public_keys(paths.keystore, paths.certificate)
        upcoming = next_public(config)
        db = open_database(config)
        try:
            roster = current_roster(db)
        finally:
            db.dispose()
    except NodeError as e:
        _fail(str(e))
        return
    member = roster.member(config.node.state) if roster else None
    retired = [p.name for p in retired_keystores(config)]
    report = {
        "current": {**current.to_json(), "in_roster": current.named_by(member)},
        "next": (
            {**upcoming.to_json(), "in_roster": upcoming.named_by(member)} if upcoming else None
        ),
        "retired": retired,
        "roster_version": roster.version if roster else None,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"current  signing {current.to_json()['signing_key']}  TLS pin {current.tls_pin}")
    if roster is not None and not current.named_by(member):
        click.echo(f"         (roster version {roster.version} names other keys for this node)")
    if upcoming is None:
        click.echo("next     none waiting")
    else:
        click.echo(
            f"next     signing {upcoming.to_json()['signing_key']}  TLS pin {upcoming.tls_pin}"
        )
        click.echo("         waiting for a roster version that names them")
    click.echo(f"retired  {len(retired)} keystore(s) in keys/retired/")
