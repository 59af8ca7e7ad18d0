"""`compact sync`, `compact peers`, `compact log status`, `compact alerts`.

Read commands open the database only (no keys); `sync` unlocks the keystore
because it signs entries, checkpoints and cosignatures and dials peers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from node.cli import _fail, _load, _secret, _stderr, data_dir_option, json_option, passphrase_option
from node.cli_auth import Access, declare, requires
from node.roles import Permission

T = TypeVar("T")


def register(main: click.Group) -> None:
    main.add_command(sync_cmd)
    main.add_command(peers_cmd)
    main.add_command(log_group)
    main.add_command(alerts_cmd)


def _db(data_dir: Path) -> Any:
    """(config, database) of the node; a database whose schema is not this version's
    ends the command with what to run."""
    from node.errors import StorageError
    from node.setup import open_database

    config = _load(data_dir)
    try:
        return config, open_database(config)
    except StorageError as e:
        _fail(str(e))
        raise AssertionError from None  # unreachable


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


_WITNESS = re.compile(r"^\u2014 compact-witness/([A-Z]{2}) ")


def witnesses_in(note: str | None) -> list[str]:
    """States whose cosignature lines a checkpoint note carries (names only; not verified)."""
    if not note:
        return []
    return sorted({m.group(1) for line in note.splitlines() if (m := _WITNESS.match(line))})


def with_federation_node(
    data_dir: Path, passphrase_file: Path | None, work: Callable[[Any], T]
) -> T:
    """Run `work(federation_node)` with the keystore unlocked and the database open; a
    NodeError, FederationError or refusal (node.errors.Refused) ends the command with its
    message."""
    from federation.errors import FederationError
    from node.errors import NodeError, Refused
    from node.fednode import FederationNode
    from node.logs import configure_logging
    from node.setup import open_storage, unlock

    config = _load(data_dir)
    configure_logging("error")
    try:
        keys = unlock(config, _secret(config, passphrase_file))
        storage = open_storage(config, keys)
    except NodeError as e:
        _fail(str(e))
        raise SystemExit(1) from None  # _fail exits; this tells the type checker
    try:
        return work(FederationNode(config, keys, storage))
    except Refused as e:
        _fail(e.message)
        raise SystemExit(1) from None
    except FederationError as e:
        _fail(str(e))
        raise SystemExit(1) from None
    finally:
        storage.db.dispose()


@click.command("sync")
@data_dir_option
@passphrase_option
@json_option
@declare(Access.OPERATOR)
def sync_cmd(data_dir: Path, passphrase_file: Path | None, as_json: bool) -> None:
    """Publish new records and sync with every member now (ignoring backoff)."""
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = _stderr()

    def work(fed: Any) -> Any:
        with Progress(
            TextColumn("{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            disable=as_json,
        ) as bars:
            tasks: dict[str, Any] = {}
            own = fed.state

            def progress(state: str, done: int, total: int) -> None:
                if state not in tasks:
                    label = "publishing" if state == own else f"entries from {state}"
                    tasks[state] = bars.add_task(label, total=total)
                bars.update(tasks[state], completed=done, total=total)

            return fed, asyncio.run(fed.sync(force=True, progress=progress))

    fed, reports = with_federation_node(data_dir, passphrase_file, work)
    config = fed.config
    rows = [
        {
            "state": r.state,
            "ok": r.ok,
            "new_entries": r.entries,
            "size": r.size,
            "error": r.error,
            "seconds": round(r.seconds, 3),
            "phases_seconds": {k: round(v, 3) for k, v in r.phases.items()},
        }
        for r in reports
    ]
    done = fed.last_publish
    published = {
        "ok": fed.last_publish_error is None,
        "published": done.published if done else 0,
        "withdrawn": done.withdrawn if done else 0,
        "checkpoint_size": done.checkpoint_size if done else None,
        "error": fed.last_publish_error,
    }
    if as_json:
        click.echo(json.dumps({"publish": published, "peers": rows}, indent=2))
    else:
        if published["ok"]:
            console.print(
                f"{config.node.state}: published {published['published']} entries,"
                f" withdrew {published['withdrawn']}"
            )
        else:
            console.print(
                f"{config.node.state}: [red]publishing failed[/red]: {published['error']}",
                highlight=False,
            )
        for r in rows:
            if r["ok"]:
                console.print(
                    f"{r['state']}: ok, {r['new_entries']} new entries, log size {r['size']}"
                    f" ({r['seconds']:.1f} s)"
                )
            else:
                console.print(f"{r['state']}: [red]failed[/red]: {r['error']}", highlight=False)
    if not rows:
        console.print("no other members in the roster")
    if not published["ok"] or any(not r["ok"] for r in rows):
        raise SystemExit(1)


@click.command("peers")
@data_dir_option
@json_option
@requires(Permission.READ)
def peers_cmd(data_dir: Path, as_json: bool) -> None:
    """Each member: reachable at the last attempt, last sync, entries behind, who witnessed it."""
    from node import models as m
    from node.fedstore import read_roster

    config, db = _db(data_dir)
    try:
        roster = read_roster(db)
        if roster is None:
            _fail("this node is not part of a compact yet: apply a roster (compact roster apply)")
            return
        rows: list[dict[str, Any]] = []
        with db.read() as s:
            for member in roster.members:
                if member.state == config.node.state:
                    continue
                status = s.get(m.PeerStatus, member.state)
                replica = s.get(m.ReplicaLog, member.state)
                rows.append(
                    {
                        "state": member.state,
                        "endpoint": member.endpoint,
                        "reachable": None
                        if status is None or status.last_attempt is None
                        else status.failures == 0,
                        "last_attempt": _iso(status.last_attempt) if status else None,
                        "last_sync": _iso(status.last_success) if status else None,
                        "last_error": status.last_error if status else None,
                        "failures": status.failures if status else 0,
                        # Backing off: the background loop tries again at this time.
                        "next_attempt": _iso(status.next_attempt) if status else None,
                        "checkpoint_size": replica.checkpoint_size if replica else None,
                        "replicated": replica.size if replica else 0,
                        "entries_behind": (replica.checkpoint_size - replica.size)
                        if replica
                        else None,
                        "witnessed_by": witnesses_in(replica.checkpoint_note if replica else None),
                    }
                )
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps({"roster_version": roster.version, "peers": rows}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"members (roster version {roster.version})")
    for col in ("state", "endpoint", "reachable", "last sync", "checkpoint", "behind", "witnesses"):
        table.add_column(col)
    for r in rows:
        reach = {None: "never tried", True: "yes", False: f"no ({r['failures']} failures)"}[
            r["reachable"]
        ]
        table.add_row(
            r["state"],
            r["endpoint"],
            reach,
            r["last_sync"] or "never",
            str(r["checkpoint_size"] if r["checkpoint_size"] is not None else "-"),
            str(r["entries_behind"] if r["entries_behind"] is not None else "-"),
            ", ".join(r["witnessed_by"]) or "-",
        )
    Console().print(table)


@click.group("log")
def log_group() -> None:
    """This node's transparency log."""


@log_group.command("status")
@data_dir_option
@json_option
@requires(Permission.READ)
def log_status(data_dir: Path, as_json: bool) -> None:
    """The log's size, newest checkpoint, and which members have witnessed it."""
    from sqlalchemy import func, select

    from node import models as m

    _config, db = _db(data_dir)
    try:
        with db.read() as s:
            size = s.scalar(select(func.count()).select_from(m.LogEntry)) or 0
            cp = s.scalars(
                select(m.LogCheckpoint).order_by(m.LogCheckpoint.size.desc()).limit(1)
            ).first()
            witnesses: dict[str, dict[str, Any]] = {}
            for w, wsize in s.execute(
                select(m.LogCosignature.witness, func.max(m.LogCosignature.size)).group_by(
                    m.LogCosignature.witness
                )
            ):
                witnesses[str(w)] = {"latest_size_cosigned": int(wsize)}
            kinds = dict(
                (str(k), int(n))
                for k, n in s.execute(
                    select(m.LogEntry.kind, func.count()).group_by(m.LogEntry.kind)
                )
            )
            out: dict[str, Any] = {
                "size": int(size),
                "entries_by_kind": kinds,
                "checkpoint": None
                if cp is None
                else {
                    "size": cp.size,
                    "root_hash": bytes(cp.root_hash).hex(),
                    "signed_at": _iso(cp.created_at),
                    "witnessed_by": sorted(
                        w for w, v in witnesses.items() if v["latest_size_cosigned"] >= cp.size
                    ),
                },
                "witnesses": witnesses,
            }
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"log size        {out['size']}  {out['entries_by_kind']}")
    if cp is None:
        click.echo("checkpoint      none yet")
    else:
        c = out["checkpoint"]
        click.echo(
            f"checkpoint      size {c['size']}, root {c['root_hash']}, signed {c['signed_at']}"
        )
        click.echo(f"witnessed by    {', '.join(c['witnessed_by']) or 'nobody yet'}")
    for w, v in sorted(witnesses.items()):
        click.echo(f"  {w} cosigned up to size {v['latest_size_cosigned']}")


@click.command("alerts")
@data_dir_option
@json_option
@requires(Permission.READ)
def alerts_cmd(data_dir: Path, as_json: bool) -> None:
    """Federation alerts: forked or rolled-back peer logs, forged entries, bad OPRF answers."""
    from sqlalchemy import select

    from node import models as m

    _config, db = _db(data_dir)
    try:
        with db.read() as s:
            rows = [
                {
                    "id": a.id,
                    "at": _iso(a.at),
                    "kind": a.kind,
                    "state": a.state,
                    "message": a.message,
                    "evidence": a.evidence,
                }
                for a in s.scalars(select(m.Alert).order_by(m.Alert.id))
            ]
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps({"alerts": rows}, indent=2))
        return
    if not rows:
        click.echo("no alerts")
    for r in rows:
        click.echo(f"#{r['id']} {r['at']} {r['kind']} {r['state']}: {r['message']}")
        if r["evidence"]:
            click.echo(f"    evidence kept: {', '.join(sorted(r['evidence']))} (see --json)")
