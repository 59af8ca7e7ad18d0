"""`--request-bundles --purpose "…"` on `compact agents matches` and `compact patterns …`.

A report lists the global incident ids behind each of its rows; with
`--request-bundles` the command then asks each holder for the bundles of the listed
incidents of other states, in one step: it shows what it is about to ask of whom and
asks for confirmation (`--yes` answers it), creates one signed request per incident as
`compact bundle request` does (each audited, each naming the user; the user's role
must allow requesting bundles), and sends them at
once. A holder that cannot be reached gets them from `compact serve` or `compact bundle
refresh` later. Incidents of this node's own state, and incidents with an outgoing
request still open or approved, are not asked for again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from node.cli import _fail, _stderr, passphrase_option

F = TypeVar("F", bound=Callable[..., Any])
MAX_REQUESTS: Final = 100
_OPEN: Final = ("pending", "approved", "sealed", "transferring", "delivered")


def request_options(f: F) -> F:
    """The options of a report that can request the bundles behind its rows."""
    for option in reversed(
        [
            click.option(
                "--request-bundles", is_flag=True,
                help="Ask the holders for the bundles of the incidents listed (after a "
                "confirmation; needs --purpose).",
            ),
            click.option("--purpose", help="With --request-bundles: why (sent to each holder)."),
            click.option("--matter", help="With --request-bundles: the matter they are for."),
            click.option(
                "--max-requests", type=click.IntRange(min=1), default=MAX_REQUESTS,
                show_default=True, help="With --request-bundles: refuse to ask for more.",
            ),
            click.option("--yes", is_flag=True, help="With --request-bundles: do not ask."),
            passphrase_option,
        ]
    ):  # fmt: skip
        f = option(f)
    return f


def check_request_options(opts: dict[str, Any]) -> None:
    """Usage errors in the request options, found before any report is computed."""
    if not opts["request_bundles"]:
        for name in ("purpose", "matter"):
            if opts[name] is not None:
                raise click.UsageError(f"--{name}: only with --request-bundles")
        if opts["yes"]:
            raise click.UsageError("--yes: only with --request-bundles")
        return
    if opts.get("publish"):
        raise click.UsageError("--request-bundles: not with --publish (it leaves the ids out)")
    if not (opts["purpose"] or "").strip():
        raise click.UsageError('--request-bundles needs --purpose "why the bundles are needed"')


def request_bundles(
    data_dir: Path, opts: dict[str, Any], global_ids: Iterable[str], unlisted: int
) -> None:
    """Ask for the bundles of `global_ids` (see the module docstring); `unlisted` is how many
    more incidents are behind the rows than they list (--ids-limit), which are not asked
    for. Every message goes to stderr, so that --json output stays JSON."""
    from node.bundles import OUTGOING, list_requests
    from node.cli_auth import authorize, command_name
    from node.cli_fedops import _db, with_federation_node
    from node.roles import Permission

    err = _stderr()
    config, db = _db(data_dir)
    own = config.node.state
    try:
        asked = {r.global_id for r in list_requests(db, direction=OUTGOING) if r.state in _OPEN}
    finally:
        db.dispose()
    ids = sorted(set(global_ids))
    theirs = [g for g in ids if not g.startswith(f"{own}-")]
    wanted = [g for g in theirs if g not in asked]
    if unlisted:
        err.print(
            f"up to {unlisted} more incidents are behind these rows than they list "
            "(--ids-limit); those are not requested",
            highlight=False,
        )
    skipped = len(ids) - len(theirs), len(theirs) - len(wanted)
    if any(skipped):
        err.print(
            f"not requested: {skipped[0]} of this state's own incidents, {skipped[1]} with a "
            "request already open or approved (compact bundle list)",
            highlight=False,
        )
    if not wanted:
        err.print("no bundle to request", highlight=False)
        return
    if len(wanted) > opts["max_requests"]:
        _fail(
            f"{len(wanted)} bundles to request, more than --max-requests {opts['max_requests']}: "
            "narrow the report (filters, --ids-limit) or raise --max-requests"
        )
    holders = Counter(g.split("-", 1)[0] for g in wanted)
    err.print(
        f"request the bundles of {len(wanted)} incidents from "
        + ", ".join(f"{s} ({n})" for s, n in sorted(holders.items()))
        + f", for: {opts['purpose']!r}"
        + (f" (matter {opts['matter']})" if opts["matter"] else ""),
        highlight=False,
    )
    if not opts["yes"]:
        click.confirm("Send these requests?", abort=True, err=True)
    user = authorize(
        data_dir, Permission.REQUEST_BUNDLES, command=f"{command_name()} --request-bundles"
    ).name

    def work(node: Any) -> tuple[int, list[Any]]:
        import asyncio

        roster = node.store.require_roster()
        strangers = sorted(s for s in holders if roster.member(s) is None)
        if strangers:  # before any request is written
            _fail(f"not members of the compact: {', '.join(strangers)}")
        made = {
            node.bundles.new_request(
                holder=g.split("-", 1)[0],
                global_id=g,
                purpose=opts["purpose"],
                matter=opts["matter"],
                user=user,
                roster=roster,
            )[0].request_id
            for g in wanted
        }
        results = asyncio.run(node.exchange_bundles())
        return len(made), [r for r in results if r.request_id in made]

    made, results = with_federation_node(data_dir, opts["passphrase_file"], work)
    undelivered = Counter(r.holder for r in results if r.state is None)
    failed = [r for r in results if r.state == "failed"]
    err.print(f"{made} bundle requests made (compact bundle list)", highlight=False)
    if undelivered:
        err.print(
            "not delivered yet, sent when the holder can be reached: "
            + ", ".join(f"{s} ({n})" for s, n in sorted(undelivered.items())),
            highlight=False,
        )
    for r in failed:
        err.print(f"refused by {r.holder}: {r.error}", highlight=False)
    if failed:
        raise SystemExit(1)


def ids_of(rows: Iterable[dict[str, Any]]) -> tuple[list[str], int]:
    """The global ids a report's rows list, and how many more are behind them."""
    ids: list[str] = []
    more = 0
    for r in rows:
        ids += r.get("global_ids", [])
        more += int(r.get("more_ids", 0))
    return ids, more


__all__ = ["check_request_options", "ids_of", "request_bundles", "request_options"]
