"""`compact matter create|add-exhibit|hold|share|list|show`: matters and their exhibits.

`list` and `show` open the database only. `create`, `add-exhibit` and `hold` unlock the
keystore: each signs a new revision of the matter, enters it in this node's log, audits
it and offers it to the other member states at once; `share` offers the revisions
members still lack. User guide: docs/matters.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from node.cli import (
    _fail,
    _load,
    _stderr,
    data_dir_option,
    json_option,
    passphrase_option,
)
from node.cli_auth import requires
from node.cli_fedops import with_federation_node
from node.roles import Permission

if TYPE_CHECKING:
    from node.users import Principal


def register(main: click.Group) -> None:
    main.add_command(matter_group)


@click.group("matter")
def matter_group() -> None:
    """Matters: joint cases among member states, with numbered exhibits and legal holds."""


def _states(value: str) -> list[str]:
    codes = [c.strip().upper() for c in value.split(",") if c.strip()]
    if not codes:
        raise click.BadParameter("expected state codes separated by commas, such as IL,MN,CA")
    return codes


def _print_matter(info: Any, as_json: bool, *, exhibits: bool = True) -> None:
    if as_json:
        click.echo(json.dumps(info.to_json(exhibits=exhibits), indent=2))
        return
    console = _stderr()
    hold = "  [bold red]LEGAL HOLD[/bold red]" if info.legal_hold else ""
    console.print(f"[bold]{info.matter_id}[/bold]  {info.title}{hold}", highlight=False)
    console.print(
        f"  owner {info.owner}, states {','.join(info.states)}, revision {info.revision},"
        f" Bates prefix {info.bates_prefix}, {len(info.exhibits)} exhibit(s)",
        highlight=False,
    )
    if info.legal_hold:
        console.print(
            f"  the hold keeps {info.held_incidents} incident(s) and {info.held_files}"
            " evidence file(s) on this node from deletion and re-encryption",
            highlight=False,
        )
    if not exhibits:
        return
    waiting = [
        mb.state
        for mb in info.members
        if mb.state != info.owner and (mb.shared_revision or 0) < info.revision
    ]
    if waiting:
        console.print(
            f"  not yet shared with: {', '.join(waiting)} (this revision)", highlight=False
        )
    if not info.exhibits:
        return
    from rich.table import Table

    table = Table()
    table.add_column("exhibit", no_wrap=True)
    table.add_column("incident", no_wrap=True)
    for heading in ("evidence", "held here", "added", "description"):
        table.add_column(heading)
    for e in info.exhibits:
        table.add_row(
            e.number,
            e.global_id,
            "whole incident"
            if e.evidence_position is None
            else f"#{e.evidence_position} {e.evidence_sha256[:12]}…",
            "yes" if e.held else "no",
            e.added_at.strftime("%Y-%m-%d"),
            e.description,
        )
    console.print(table)


def _change_and_share(data_dir: Path, passphrase_file: Path | None, change: Any) -> Any:
    """Make a change (signed, logged, audited), then offer the new revision to the other
    member states now; one that cannot be reached gets it from `compact serve` later. The
    matter as it is afterwards."""
    import asyncio

    from node.matters import get_matter

    def work(n: Any) -> tuple[Any, list[Any]]:
        info = change(n)
        shares = asyncio.run(n.share_matters())
        return get_matter(n.storage.db, info.matter_id, n.state), shares

    info, shares = with_federation_node(data_dir, passphrase_file, work)
    console = _stderr()
    for share in shares:
        if share.matter_id == info.matter_id and share.held is None:
            console.print(
                f"not yet shared with {share.state}: {share.error}; `compact serve` will retry",
                highlight=False,
            )
    return info


@matter_group.command("create")
@data_dir_option
@passphrase_option
@click.argument("title")
@click.option(
    "--states",
    required=True,
    help="The member states of the matter, such as IL,MN,CA (this state is always one).",
)
@click.option(
    "--id",
    "slug",
    default=None,
    help="The matter's id after this state's code (default: made from the title).",
)
@click.option(
    "--bates-prefix",
    default=None,
    help="Exhibit numbers begin with this, such as IL-MN (default: this state's code).",
)
@click.option("--legal-hold", is_flag=True, help="Place the matter under legal hold now.")
@json_option
@requires(Permission.MATTERS)
def create_cmd(
    data_dir: Path,
    passphrase_file: Path | None,
    title: str,
    states: str,
    slug: str | None,
    bates_prefix: str | None,
    legal_hold: bool,
    principal: Principal,
    as_json: bool,
) -> None:
    """Open a matter owned by this state, named TITLE, with the member states given.

    The matter is signed by this node, entered in its log and audited; `compact serve`
    shares it with the other member states.
    """
    codes = _states(states)
    info = _change_and_share(
        data_dir,
        passphrase_file,
        lambda n: n.matters.create(
            title=title,
            states=codes,
            user=principal.name,
            roster=n.store.require_roster(),
            slug=slug.upper() if slug is not None else None,
            bates_prefix=bates_prefix,
            legal_hold=legal_hold,
        ),
    )
    _print_matter(info, as_json)


@matter_group.command("add-exhibit")
@data_dir_option
@passphrase_option
@click.argument("matter")
@click.option("--incident", "global_id", required=True, help="The incident's global id.")
@click.option(
    "--evidence",
    "sha256",
    default=None,
    help="One file of the incident, by SHA-256 (default: the whole incident). The"
    " incident must be held here: this state's own, or received in a bundle.",
)
@click.option("--description", required=True, help="What the exhibit is, for the index.")
@json_option
@requires(Permission.MATTERS)
def add_exhibit_cmd(
    data_dir: Path,
    passphrase_file: Path | None,
    matter: str,
    global_id: str,
    sha256: str | None,
    description: str,
    principal: Principal,
    as_json: bool,
) -> None:
    """Add an incident, or one of its files, to MATTER as its next exhibit.

    MATTER is STATE:ID, or ID for this state's own. Only the matter's owner adds
    exhibits; another state's incident may be added once the compact's index lists it,
    before its bundle is received.
    """
    added: list[Any] = []

    def add(n: Any) -> Any:
        info, exhibit = n.matters.add_exhibit(
            matter,
            global_id=global_id,
            evidence_sha256=sha256,
            description=description,
            user=principal.name,
        )
        added.append(exhibit)
        return info

    _change_and_share(data_dir, passphrase_file, add)
    (exhibit,) = added
    if as_json:
        click.echo(json.dumps(exhibit.to_json(), indent=2))
        return
    what = (
        "the whole incident"
        if exhibit.evidence_position is None
        else f"file #{exhibit.evidence_position}"
    )
    held = "" if exhibit.held else f" (not held here yet: request {exhibit.global_id[:2]}'s bundle)"
    _stderr().print(f"{exhibit.number}: {exhibit.global_id}, {what}{held}", highlight=False)


@matter_group.command("hold")
@data_dir_option
@passphrase_option
@click.argument("matter")
@click.option("--on/--release", "on", required=True, help="Place or release the legal hold.")
@json_option
@requires(Permission.MATTERS)
def hold_cmd(
    data_dir: Path,
    passphrase_file: Path | None,
    matter: str,
    on: bool,
    principal: Principal,
    as_json: bool,
) -> None:
    """Place (--on) or release (--release) the legal hold on MATTER (owner only)."""
    info = _change_and_share(
        data_dir,
        passphrase_file,
        lambda n: n.matters.set_hold(matter, on=on, user=principal.name),
    )
    _print_matter(info, as_json, exhibits=False)


@matter_group.command("share")
@data_dir_option
@passphrase_option
@json_option
@requires(Permission.MATTERS)
def share_cmd(data_dir: Path, passphrase_file: Path | None, as_json: bool) -> None:
    """Give each member of this state's matters the newest revision it lacks, now.

    `compact serve` does this on its own every `bundles.poll_seconds`; a member that
    cannot be reached is tried again then. Exit 1 if any member did not get its revision.
    """
    import asyncio

    shares = with_federation_node(
        data_dir, passphrase_file, lambda n: asyncio.run(n.share_matters())
    )
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "matter": sh.matter_id,
                        "state": sh.state,
                        "revision": sh.revision,
                        "held": sh.held,
                        "error": sh.error,
                    }
                    for sh in shares
                ],
                indent=2,
            )
        )
    else:
        console = _stderr()
        for sh in shares:
            if sh.held is None:
                console.print(
                    f"{sh.matter_id} → {sh.state}: not shared: {sh.error}", highlight=False
                )
            else:
                console.print(
                    f"{sh.matter_id} → {sh.state}: holds revision {sh.held}", highlight=False
                )
        if not shares:
            console.print("every member holds the newest revision of each matter")
    if any(sh.held is None for sh in shares):
        raise SystemExit(1)


def _read(data_dir: Path, read: Any) -> Any:
    from node.db import Database
    from node.errors import Refused

    config = _load(data_dir)
    db = Database.from_url(config.database_url(), busy_timeout_ms=config.database.busy_timeout_ms)
    try:
        return read(db, config.node.state)
    except Refused as e:
        _fail(e.message)
    finally:
        db.dispose()


@matter_group.command("list")
@data_dir_option
@json_option
@requires(Permission.READ)
def list_cmd(data_dir: Path, as_json: bool) -> None:
    """The matters this state owns or is a member of."""
    from node.matters import list_matters

    rows = _read(data_dir, lambda db, _state: list_matters(db))
    if as_json:
        click.echo(json.dumps([r.to_json(exhibits=False) for r in rows], indent=2))
        return
    console = _stderr()
    if not rows:
        console.print("no matters")
        return
    from rich.table import Table

    table = Table("matter", "title", "owner", "states", "revision", "exhibits", "hold")
    for r in rows:
        table.add_row(
            r.matter_id,
            r.title,
            r.owner,
            ",".join(r.states),
            str(r.revision),
            str(len(r.exhibits)),
            "LEGAL HOLD" if r.legal_hold else "",
        )
    console.print(table)


@matter_group.command("show")
@data_dir_option
@click.argument("matter")
@json_option
@requires(Permission.READ)
def show_cmd(data_dir: Path, matter: str, as_json: bool) -> None:
    """One matter: its states, legal hold, exhibits and whether each is held here."""
    from node.matters import get_matter

    info = _read(data_dir, lambda db, state: get_matter(db, matter, state))
    _print_matter(info, as_json)
