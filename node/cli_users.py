"""`compact users` (who may use this node, in which role) and `compact audit` (what they
did). docs/roles.md has the role matrix; docs/audit.md the audit trail."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from node.cli import _fail, _load, _stderr, data_dir_option, json_option
from node.cli_auth import checked_within, requires
from node.roles import ROLES, Permission

if TYPE_CHECKING:
    from node.db import Database
    from node.users import Principal


def register(main: click.Group) -> None:
    main.add_command(users_group)
    # `compact user add NAME --role ROLE` reads naturally too: the same commands, under a
    # hidden alias (documented under `compact users`).
    main.add_command(
        click.Group("user", commands=dict(users_group.commands), hidden=True, help=users_group.help)
    )
    main.add_command(audit_group)


def _database(data_dir: Path) -> Database:
    from node.cli_fedops import _db

    db: Database = _db(data_dir)[1]
    return db


@click.group("users")
def users_group() -> None:
    """Users of this node and their roles (docs/roles.md)."""


@users_group.command("add")
@click.argument("name")
@click.option(
    "--role",
    required=True,
    type=click.Choice(sorted(ROLES)),
    help="analyst: read, analyse, request bundles; investigator: + personal data and "
    "evidence; clerk: read + ingest; reviewer: decide bundle requests, read the audit "
    "trail; litigator: investigator + matters and exhibits; admin: everything.",
)
@data_dir_option
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the token here (0600; the file must not exist) instead of printing it.",
)
@requires(Permission.MANAGE_USERS)
def users_add(
    name: str, role: str, data_dir: Path, token_file: Path | None, principal: Principal
) -> None:
    """Add a user; its bearer token is shown once (the node keeps only its hash)."""
    from node.errors import NodeError
    from node.users import add_user

    if token_file is not None and token_file.exists():
        _fail(f"{token_file} exists; the token file must be new")
    db = _database(data_dir)
    try:
        token = add_user(db, name, role, actor=principal.name)
    except NodeError as e:
        _fail(str(e))
        return
    finally:
        db.dispose()
    if token_file:
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        _stderr().print(f"user {name} ({role}) added; token written to {token_file}")
    else:
        click.echo(token)


@users_group.command("disable")
@click.argument("name")
@data_dir_option
@requires(Permission.MANAGE_USERS)
def users_disable(name: str, data_dir: Path, principal: Principal) -> None:
    """Disable a user: its token stops working at once (the user stays in the audit trail)."""
    from node.errors import NodeError
    from node.users import disable_user

    db = _database(data_dir)
    try:
        disable_user(db, name, actor=principal.name)
    except NodeError as e:
        _fail(str(e))
    finally:
        db.dispose()
    _stderr().print(f"user {name} disabled", highlight=False)


@users_group.command("list")
@data_dir_option
@json_option
@requires(Permission.MANAGE_USERS)
def users_list(data_dir: Path, as_json: bool) -> None:
    """Users and their roles."""
    from node.users import list_users

    db = _database(data_dir)
    try:
        rows = list_users(db)
    finally:
        db.dispose()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "users": [
                        {"name": n, "role": r, "disabled": d, "created_at": c.isoformat()}
                        for n, r, d, c in rows
                    ]
                },
                indent=2,
            )
        )
    else:
        for n, r, d, c in rows:
            click.echo(f"{n}\t{r}\t{'disabled' if d else 'active'}\t{c.isoformat()}")


def _moment(value: str | None, option: str) -> datetime | None:
    """YYYY-MM-DD (midnight UTC) or an ISO 8601 time (UTC unless it says otherwise)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            "expected YYYY-MM-DD or an ISO 8601 time", param_hint=option
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@click.group("audit", invoke_without_command=True)
@click.option("--user", default=None, help="Only this user's events.")
@click.option(
    "--action",
    default=None,
    help="Only this action (read_personal, bundle.decide, ...); ending in '.', every action "
    "it begins (bundle.).",
)
@click.option("--since", default=None, help="From this day or time (UTC unless given).")
@click.option("--until", default=None, help="Before this day or time.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@data_dir_option
@json_option
@checked_within(Permission.READ_AUDIT)
@click.pass_context
def audit_group(
    ctx: click.Context,
    user: str | None,
    action: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    data_dir: Path,
    as_json: bool,
) -> None:
    """The audit trail: who did what, when (the newest LIMIT events that match, oldest
    first). `compact audit verify` checks it against the transparency log."""
    if ctx.invoked_subcommand is not None:
        given = [
            p.opts[0]
            for p in ctx.command.params
            if isinstance(p, click.Option)
            and ctx.get_parameter_source(p.name or "") is click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(
                f"{', '.join(given)}: give these after `{ctx.invoked_subcommand}`, not before"
            )
        return
    ctx.invoke(
        audit_list,
        user=user,
        action=action,
        since=_moment(since, "--since"),
        until=_moment(until, "--until"),
        limit=limit,
        data_dir=data_dir,
        as_json=as_json,
    )


@requires(Permission.READ_AUDIT)
def audit_list(
    *,
    user: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    data_dir: Path,
    as_json: bool,
) -> None:
    from node.audit import list_events

    db = _database(data_dir)
    try:
        events = list_events(db, user=user, action=action, since=since, until=until, limit=limit)
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps({"events": [e.to_json() for e in events]}, indent=2))
        return
    from rich.table import Table

    from node.render import stdout_console

    table = Table(box=None, header_style="bold")
    for column in ("id", "at (UTC)", "user", "action", "target", "outcome", "logged"):
        table.add_column(column)
    for e in events:
        table.add_row(
            str(e.id),
            e.at.replace(microsecond=0).strftime("%Y-%m-%d %H:%M:%S"),
            e.actor,
            e.action,
            e.target or "",
            e.outcome,
            "-" if e.log_index is None else str(e.log_index),
        )
    stdout_console().print(table)
    if not events:
        _stderr().print("no audit event matches", highlight=False)


@audit_group.command("verify")
@data_dir_option
@json_option
@requires(Permission.READ_AUDIT)
def audit_verify(data_dir: Path, as_json: bool) -> None:
    """Check every logged audit event against its transparency-log entry, every audit
    entry against an event, the log against its newest checkpoint, and every witness
    cosignature against its checkpoint. Exits 1 on any difference; warns of events
    waiting more than an hour to be logged."""
    from node.audit import PENDING_LIMIT, verify_own_trail

    config = _load(data_dir)
    db = _database(data_dir)
    try:
        report = verify_own_trail(
            db, config.node.state, pending_before=datetime.now(UTC) - PENDING_LIMIT
        )
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        out = _stderr()
        out.print(
            f"{report.events} audit events: {report.logged} in the transparency log, "
            f"{report.pending} not yet (the next federation cycle logs them), "
            f"{report.not_logged} witness cosignature submissions (not logged by design)",
            highlight=False,
        )
        if report.checkpoint_size is not None:
            signed = (
                "its signature checked against the roster"
                if report.signature_checked
                else "its signature NOT checked (this node is in no compact)"
            )
            out.print(
                f"log of {report.log_size} entries; newest checkpoint covers "
                f"{report.checkpoint_size}, {signed}",
                highlight=False,
            )
        if report.witnessed_size is not None:
            out.print(
                f"{report.covered} events under the checkpoint of size {report.witnessed_size}"
                f" cosigned by {', '.join(report.witnesses)}",
                highlight=False,
            )
        else:
            out.print("no checkpoint of this log has been cosigned yet", highlight=False)
        if report.cosignatures:
            checked = (
                "each checked against its checkpoint and the witness's keys"
                if report.cosignatures_checked
                else "NOT checked (this node is in no compact)"
            )
            out.print(
                f"{report.cosignatures} witness cosignatures kept, {checked}", highlight=False
            )
        for w in report.warnings:
            out.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
        for p in report.problems:
            out.print(f"[red]problem:[/red] {p}", highlight=False)
        out.print("audit trail intact" if not report.problems else "audit trail NOT intact")
    if report.problems:
        raise SystemExit(1)
