"""`compact agents matches|lookup`: agents, units and vehicles across states.

Both read this node's replica of the federated index (docs/analysis.md).
`matches` opens the database only; `lookup` also unlocks the keystore, because it
pseudonymises the key through the compact's threshold OPRF (it dials the share
holders).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from node.cli import _load, data_dir_option, json_option, passphrase_option
from node.cli_auth import requires
from node.cli_fedops import _db, with_federation_node
from node.cli_requests import check_request_options, request_bundles, request_options
from node.normalize import STRENGTHS
from node.roles import Permission

if TYPE_CHECKING:
    from node.users import Principal
from node.vocab import AGENCY, CONDUCT

_STATE = re.compile(r"^[A-Z]{2}$")
STRENGTH_CHOICES = tuple(reversed(STRENGTHS))  # strongest first
SHORT_ID = 12  # hex digits of a pseudonym shown in tables (--json gives them whole)

min_strength_option = click.option(
    "--min-strength",
    type=click.Choice(STRENGTH_CHOICES),
    default="vehicle",
    show_default=True,
    help="strong: badge or name and agency; medium: also name or unit; vehicle: everything.",
)


def register(main: click.Group) -> None:
    main.add_command(agents_group)
    main.add_command(hits_cmd)


@click.group("agents")
def agents_group() -> None:
    """Agents, units and vehicles seen in several member states (this node's replica of
    the federated index: pseudonyms only, nothing that identifies anyone)."""


def _states(values: tuple[str, ...], hint: str = "--state") -> frozenset[str]:
    out = set()
    for v in values:
        code = v.strip().upper()
        if not _STATE.match(code):
            raise click.BadParameter(f"{v!r} is not a two-letter state code", param_hint=hint)
        out.add(code)
    return frozenset(out)


since_option = click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Use only incidents on or after this day (YYYY-MM-DD).",
)
until_option = click.option(
    "--until",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Use only incidents on or before this day (YYYY-MM-DD).",
)


def day_of(value: datetime | None) -> Any:
    return value.date() if value else None


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _print_matches(matches: list[Any]) -> None:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    if not matches:
        console.print("no cross-state matches (with these filters)")
        return
    for n, x in enumerate(matches, 1):
        states = " · ".join(f"{s} {len(x.incidents[s])}" for s in x.states)
        console.print(
            f"[bold]{n}. {x.entity} {x.ident[:SHORT_ID]}[/bold]  {x.strength}  {states}  "
            f"{x.first_day} … {x.last_day}  {_counts(x.agencies)}"
        )
        console.print(f"   conduct: {_counts(x.conduct) or '-'}")
        for link in x.links if x.entity == "agent" else ():  # else: the incidents below
            where = ", ".join(g for _, g in link.incidents)
            console.print(f"   linked by {link.kind} {link.pseudonym[:SHORT_ID]}: {where}")
        for p in x.ambiguous:
            console.print(
                f"   not joined: name_agency {p[:SHORT_ID]} was seen beside several badges"
            )
        for s in x.states:
            console.print(f"   {s}: {', '.join(x.incidents[s])}")
    console.print(
        f"{len(matches)} matches; ids are pseudonyms (first {SHORT_ID} hex digits; "
        "--json gives them whole)"
    )


@agents_group.command("matches")
@data_dir_option
@click.option(
    "--state",
    "states",
    multiple=True,
    help="Only matches that involve this state (repeat it: matches involving every one).",
)
@click.option("--agency", type=click.Choice(sorted(AGENCY)), help="Only matches with this agency.")
@click.option(
    "--conduct",
    type=click.Choice(sorted(CONDUCT)),
    help="Only matches with at least one incident of this conduct.",
)
@since_option
@until_option
@click.option(
    "--min-states", type=click.IntRange(min=2), default=2, show_default=True,
    help="Only matches seen in at least this many states.",
)  # fmt: skip
@min_strength_option
@json_option
@request_options
@requires(Permission.ANALYSE)
def matches_cmd(
    data_dir: Path,
    states: tuple[str, ...],
    agency: str | None,
    conduct: str | None,
    since: datetime | None,
    until: datetime | None,
    min_states: int,
    min_strength: str,
    as_json: bool,
    **requests: Any,
) -> None:
    """Agents (joined by badge or name and agency, transitively), names, units and vehicles
    that appear in two or more states: the states, incidents per state, date range, conduct,
    agencies, the evidence of each link, and the global incident ids to request."""
    from federation.matches import MatchFilter, find_matches

    try:
        f = MatchFilter(
            states=_states(states),
            agency=agency,
            conduct=conduct,
            since=day_of(since),
            until=day_of(until),
            min_states=min_states,
            min_strength=min_strength,
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    check_request_options(requests)
    _, db = _db(data_dir)
    try:
        found = find_matches(db, f)
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps({"matches": [x.to_json() for x in found]}, indent=2))
    else:
        _print_matches(found)
    if requests["request_bundles"]:
        ids = [g for x in found for gs in x.incidents.values() for g in gs]
        request_bundles(data_dir, requests, ids, 0)


def _query_key(
    badge: str | None, name: str | None, agency: str | None, plate: str | None, unit: str | None
) -> str:
    """The search query KIND:RAW (node.normalize.parse_query_key) the options ask for."""
    given = [o for o, v in (("--badge", badge), ("--name", name), ("--plate", plate),
                            ("--unit", unit)) if v is not None]  # fmt: skip
    if len(given) != 1:
        raise click.UsageError("give exactly one of --badge, --name, --plate, --unit")
    if agency is not None and (plate is not None):
        raise click.UsageError("--agency goes with --badge, --name or --unit, not --plate")
    scope = f"{agency}:" if agency else ""
    if badge is not None:
        return f"badge:{scope}{badge}"
    if name is not None:
        return f"name_agency:{scope}{name}" if agency else f"name:{name}"
    if unit is not None:
        return f"unit:{scope}{unit}"
    return f"plate:{plate}"


def _print_lookup(kind: str, pseudonym: str, entries: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    states = sorted({e.state for e in entries})
    console.print(
        f"{kind} {pseudonym[:SHORT_ID]}: {len(entries)} entries in "
        f"{len(states)} states{' (' + ', '.join(states) + ')' if states else ''}"
    )
    if not entries:
        return
    table = Table()
    for col in ("state", "day", "county", "where", "conduct", "agency", "role", "global id"):
        table.add_column(col, overflow="fold")
    for e in entries:
        table.add_row(
            e.state, e.day, e.county, e.location_kind, ", ".join(e.conduct),
            e.agency or "-", e.role, e.global_id,
        )  # fmt: skip
    console.print(table)


@agents_group.command("lookup")
@data_dir_option
@passphrase_option
@click.option("--badge", help="AGENCY:BADGE, or BADGE with --agency (ICE-ERO:4471).")
@click.option("--name", help="An agent's name; with --agency, the name within that agency.")
@click.option("--agency", type=click.Choice(sorted(AGENCY - {"UNKNOWN"})), help="The agency.")
@click.option("--plate", help="A plate, with its issuing state first (IL ABC 1234).")
@click.option("--unit", help="AGENCY:UNIT, or UNIT with --agency.")
@json_option
@requires(Permission.ANALYSE)
def lookup_cmd(
    data_dir: Path,
    passphrase_file: Path | None,
    badge: str | None,
    name: str | None,
    agency: str | None,
    plate: str | None,
    unit: str | None,
    principal: Principal,
    as_json: bool,
) -> None:
    """Every state's index entries for one identifier key. The key is pseudonymised through
    the compact's threshold OPRF: it counts against this node's daily OPRF allowance and
    is audited (the kind and the pseudonym, never the key)."""
    import asyncio

    from node.normalize import KeyQueryError, parse_query_key

    text = _query_key(badge, name, agency, plate, unit)
    config = _load(data_dir)
    try:
        key = parse_query_key(text, default_state=config.node.state)
    except KeyQueryError as e:
        raise click.UsageError(str(e)) from None

    def work(node: Any) -> tuple[str, list[Any]]:
        from federation.lookup import entries_with
        from node.queries import audit

        actor = principal.name
        roster = node.store.require_roster()
        try:
            found = asyncio.run(node.pseudonymiser(roster).pseudonyms([str(key)]))
        except Exception:
            with node.storage.db.write() as s:
                audit(s, actor=actor, action="agents_lookup", target=key.kind,
                      outcome="failed", detail={"kind": key.kind})  # fmt: skip
            raise
        p = found[str(key)]
        entries = entries_with(node.storage.db, p)
        with node.storage.db.write() as s:
            audit(s, actor=actor, action="agents_lookup", target=key.kind,
                  detail={"kind": key.kind, "pseudonym": p, "entries": len(entries)})  # fmt: skip
        return p, entries

    pseudonym, entries = with_federation_node(data_dir, passphrase_file, work)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "kind": key.kind,
                    "pseudonym": pseudonym,
                    "states": sorted({e.state for e in entries}),
                    "entries": [e.to_json() for e in entries],
                },
                indent=2,
            )
        )
        return
    _print_lookup(key.kind, pseudonym, entries)


@click.command("hits")
@data_dir_option
@click.option("--peer", help="Only hits with this member state.")
@click.option(
    "--since", type=click.DateTime(["%Y-%m-%d"]), help="Only hits found on or after this day (UTC)."
)
@min_strength_option
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
@json_option
@requires(Permission.ANALYSE)
def hits_cmd(
    data_dir: Path,
    peer: str | None,
    since: datetime | None,
    min_strength: str,
    limit: int,
    as_json: bool,
) -> None:
    """New cross-state links involving this state's incidents, newest first: which
    pseudonym, which of this state's incidents, which peer and which of its incidents. Each
    is a prompt for a bundle request."""
    from node.hits import list_hits
    from node.normalize import KEY_STRENGTH

    keep = STRENGTH_CHOICES[: STRENGTH_CHOICES.index(min_strength) + 1]
    kinds = [k for k, strength in KEY_STRENGTH.items() if strength in keep]
    peer_state = next(iter(_states((peer,), "--peer"))) if peer else None
    _, db = _db(data_dir)
    try:
        found = list_hits(db, peer=peer_state, since=day_of(since), kinds=kinds, limit=limit)
    finally:
        db.dispose()
    if as_json:
        click.echo(json.dumps({"hits": [h.to_json() for h in found]}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not found:
        console.print("no hits (with these filters)")
        return
    table = Table()
    for col in ("found (UTC)", "strength", "kind", "pseudonym", "our incident", "peer", "theirs"):
        table.add_column(col, overflow="fold")  # a global id is never cut short
    for h in found:
        table.add_row(
            h.found_at.strftime("%Y-%m-%d %H:%M"), h.strength, h.kind, h.pseudonym[:SHORT_ID],
            h.own_global_id, h.peer_state, h.peer_global_id,
        )  # fmt: skip
    console.print(table)
    console.print(
        "request a bundle: compact bundle request --state PEER --incident THEIRS --purpose …"
    )
