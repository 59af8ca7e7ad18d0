"""`compact bundle request|list|show|approve|deny|refresh`: evidence bundle requests.

`list` and `show` open the database only. `request`, `approve`, `deny` and `refresh`
unlock the keystore: they sign (a request, a decision) and dial the holder.
Design and policy: docs/bundles.md.
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
    main.add_command(bundle_group)


@click.group("bundle")
def bundle_group() -> None:
    """Evidence bundles: ask a member for an incident's full record and files, and review
    the requests other members send to this node."""


def _megabytes(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _transfer(info: Any) -> str:
    """How far a request's sealed bundle has gone ("" before it is sealed)."""
    if info.sealed_bytes is None:
        return ""
    size = _megabytes(info.sealed_bytes)
    if info.received_bytes is not None:  # outgoing: what is verified and on disk
        if info.received_bytes >= info.sealed_bytes:
            return f"{size} received"
        done = 100 * info.received_bytes // max(info.sealed_bytes, 1)
        return f"{_megabytes(info.received_bytes)} of {size} ({done}%)"
    return f"{size} sent" if info.sent_in_full else f"{size} sealed"


def _print_info(info: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(info.to_json(), indent=2))
        return
    console = _stderr()
    other = info.holder if info.direction == "outgoing" else info.requester
    arrow = "to" if info.direction == "outgoing" else "from"
    console.print(
        f"{info.request_id}  {info.direction} {arrow} {other}  {info.global_id}  "
        f"[bold]{info.state}[/bold]",
        highlight=False,
    )
    if info.decided_by:
        console.print(f"  decided by {info.decided_by}", highlight=False)
    if info.redactions:
        console.print(f"  redacted: {', '.join(info.redactions)}", highlight=False)
    if info.reason:
        console.print(f"  reason: {info.reason}", highlight=False)
    if info.sealed_bytes is not None:
        console.print(f"  bundle: {_transfer(info)}", highlight=False)


@bundle_group.command("request")
@data_dir_option
@passphrase_option
@click.option("--state", "holder", required=True, help="The member that holds the incident.")
@click.option("--incident", "global_id", required=True, help="The incident's global id.")
@click.option("--purpose", required=True, help="Why the bundle is needed (sent to the holder).")
@click.option("--matter", default=None, help="The matter the bundle is for.")
@json_option
@requires(Permission.REQUEST_BUNDLES)
def request_cmd(
    data_dir: Path,
    passphrase_file: Path | None,
    holder: str,
    global_id: str,
    purpose: str,
    matter: str | None,
    principal: Principal,
    as_json: bool,
) -> None:
    """Ask HOLDER for the bundle of one of its incidents; send it now if it can be reached.

    The request is signed by this node and names the user. If the holder cannot be
    reached, the request is kept and `compact serve` (or `compact bundle refresh`)
    sends it later.
    """
    import asyncio

    def work(node: Any) -> tuple[Any, Any]:
        roster = node.store.require_roster()
        info, _ = node.bundles.new_request(
            holder=holder.upper(),
            global_id=global_id,
            purpose=purpose,
            matter=matter,
            user=principal.name,
            roster=roster,
        )
        results = asyncio.run(node.exchange_bundles())
        mine = [r for r in results if r.request_id == info.request_id]
        from node.bundles import get_request

        return get_request(node.storage.db, info.request_id), mine[0] if mine else None

    info, exchange = with_federation_node(data_dir, passphrase_file, work)
    _print_info(info, as_json)
    if not as_json and exchange is not None and exchange.state is None:
        _stderr().print(
            f"  not delivered yet: {exchange.error}; it will be sent when "
            f"{info.holder} can be reached",
            highlight=False,
        )
    if info.state == "failed":
        raise SystemExit(1)


@bundle_group.command("refresh")
@data_dir_option
@passphrase_option
@json_option
@requires(Permission.REQUEST_BUNDLES)
def refresh_cmd(data_dir: Path, passphrase_file: Path | None, as_json: bool) -> None:
    """Send unsent requests, ask holders about undecided ones, and receive approved
    bundles (each from where it stopped), now. Progress (bytes and rate) goes to stderr."""
    import asyncio

    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=_stderr(),
        transient=as_json,
    )
    tasks: dict[str, Any] = {}

    def progress(request_id: str, done: int, total: int) -> None:
        if request_id not in tasks:
            tasks[request_id] = bars.add_task(f"bundle {request_id[:8]}", total=total)
        bars.update(tasks[request_id], completed=done)

    async def work(node: Any) -> list[Any]:
        exchanged = await node.exchange_bundles()
        with bars:
            received = await node.receive_bundles(progress=progress)
        latest = {r.request_id: r for r in exchanged}
        latest.update({r.request_id: r for r in received})
        return list(latest.values())

    results = with_federation_node(data_dir, passphrase_file, lambda n: asyncio.run(work(n)))
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "request_id": r.request_id,
                        "holder": r.holder,
                        "state": r.state,
                        "error": r.error,
                    }
                    for r in results
                ],
                indent=2,
            )
        )
        return
    console = _stderr()
    for r in results:
        if r.state is None:
            console.print(f"{r.request_id} ({r.holder}): not done: {r.error}", highlight=False)
        elif r.error:
            console.print(f"{r.request_id} ({r.holder}): {r.state}: {r.error}", highlight=False)
        else:
            console.print(f"{r.request_id} ({r.holder}): {r.state}", highlight=False)
    if not results:
        console.print("no outgoing request is waiting for its holder")


@bundle_group.command("list")
@data_dir_option
@click.option("--incoming", "direction", flag_value="incoming", help="Requests to this node.")
@click.option("--outgoing", "direction", flag_value="outgoing", help="Requests this node made.")
@click.option("--state", "state", default=None, help="Only requests in this state.")
@json_option
@requires(Permission.READ)
def list_cmd(data_dir: Path, direction: str | None, state: str | None, as_json: bool) -> None:
    """Bundle requests with their state (pending, approved, denied, ...), oldest first."""
    from node.bundles import STATES, list_requests
    from node.db import Database

    if state is not None and state not in STATES:
        _fail(f"--state: must be one of {', '.join(STATES)}")
        return
    config = _load(data_dir)
    db = Database.from_url(config.database_url(), busy_timeout_ms=config.database.busy_timeout_ms)
    try:
        rows = list_requests(db, direction=direction, state=state)
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows], indent=2))
        return
    from rich.table import Table

    table = Table(
        "request id", "direction", "peer", "incident", "state", "bundle", "requested by", "when"
    )
    for r in rows:
        peer = r.holder if r.direction == "outgoing" else r.requester
        table.add_row(
            r.request_id,
            r.direction,
            peer,
            r.global_id,
            r.state,
            _transfer(r),
            r.requested_by,
            r.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console = _stderr()
    if rows:
        console.print(table)
    else:
        console.print("no bundle requests")


@bundle_group.command("show")
@data_dir_option
@click.argument("request_id")
@json_option
@requires(Permission.READ)
def show_cmd(data_dir: Path, request_id: str, as_json: bool) -> None:
    """One request: who asked whom for what, why, and what was decided."""
    from node.bundles import BundleRefused, get_request
    from node.db import Database

    config = _load(data_dir)
    db = Database.from_url(config.database_url(), busy_timeout_ms=config.database.busy_timeout_ms)
    try:
        info = get_request(db, request_id)
    except BundleRefused as e:
        _fail(e.message)
        return
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps(info.to_json(), indent=2))
        return
    _print_info(info, False)
    console = _stderr()
    console.print(f"  requested by {info.requested_by} at {info.created_at.isoformat()}")
    console.print(f"  purpose: {info.purpose}", highlight=False)
    if info.matter:
        console.print(f"  matter: {info.matter}", highlight=False)
    if info.bundle_id:
        console.print(f"  bundle: {info.bundle_id}")


@bundle_group.command("approve")
@data_dir_option
@passphrase_option
@click.argument("request_id")
@click.option(
    "--redact",
    type=click.Choice(["people", "narrative"]),
    multiple=True,
    help="Leave this out of the bundle (repeat for both).",
)
@json_option
@requires(Permission.REVIEW_BUNDLES)
def approve_cmd(
    data_dir: Path,
    passphrase_file: Path | None,
    request_id: str,
    redact: tuple[str, ...],
    principal: Principal,
    as_json: bool,
) -> None:
    """Approve a pending request from another member (signed, logged and audited)."""
    info = with_federation_node(
        data_dir,
        passphrase_file,
        lambda n: n.bundles.decide(
            request_id, approve=True, actor=principal.name, redactions=redact
        ),
    )
    _print_info(info, as_json)


@bundle_group.command("deny")
@data_dir_option
@passphrase_option
@click.argument("request_id")
@click.option("--reason", required=True, help="Why (sent back to the requester).")
@json_option
@requires(Permission.REVIEW_BUNDLES)
def deny_cmd(
    data_dir: Path,
    passphrase_file: Path | None,
    request_id: str,
    reason: str,
    principal: Principal,
    as_json: bool,
) -> None:
    """Deny a pending request from another member; the reason goes back to the requester."""
    info = with_federation_node(
        data_dir,
        passphrase_file,
        lambda n: n.bundles.decide(request_id, approve=False, actor=principal.name, reason=reason),
    )
    _print_info(info, as_json)
