"""`compact patterns repeat|units|unidentified|surges|conduct`: pattern reports.

Each report reads this node's replica of the federated index (docs/analysis.md) and
prints a table, `--json` or `--csv`; `--plot FILE.png|svg` also draws it
(node.plots). `--publish` prepares an aggregate report (surges, conduct) for use
outside the compact: small counts suppressed, global ids left out, and a note that
says so. `--request-bundles --purpose "…"` then asks the holders for the bundles of
the incidents listed (node.cli_requests).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from node.cli import _fail, _stderr, data_dir_option
from node.cli_agents import day_of, since_option, until_option
from node.cli_auth import requires
from node.cli_fedops import _db
from node.cli_requests import check_request_options, ids_of, request_bundles, request_options
from node.roles import Permission
from node.vocab import CONDUCT

F = TypeVar("F", bound=Callable[..., Any])
SHOWN_IDS = 3  # global ids shown per row in a table (--json and --csv give them all)


def register(main: click.Group) -> None:
    main.add_command(patterns_group)


@click.group("patterns")
def patterns_group() -> None:
    """Pattern reports over this node's replica of the federated index: repeat agents,
    teams, unidentified teams, surges, conduct. Each row lists the global incident ids
    behind it, to request bundles for."""


def report_options(f: F) -> F:
    """The options every report takes."""
    for option in reversed(
        [
            data_dir_option,
            since_option,
            until_option,
            click.option(
                "--ids-limit", type=click.IntRange(min=0), default=50, show_default=True,
                help="Global incident ids given per row (the rest are counted).",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print JSON."),
            click.option("--csv", "as_csv", is_flag=True, help="Print CSV."),
            click.option(
                "--publish", is_flag=True,
                help="For use outside the compact (aggregate reports only): counts below "
                "--min-count suppressed, global ids left out, and a note saying so.",
            ),
            click.option(
                "--min-count", type=click.IntRange(min=1), default=5, show_default=True,
                help="With --publish: the smallest count shown.",
            ),
            click.option(
                "--plot", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
                help="Also draw the report to FILE.png or FILE.svg (after --publish, if given).",
            ),
        ]
    ):  # fmt: skip
        f = option(f)
    return request_options(f)


alpha_option = click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.01,
    show_default=True,
    help="Significance level, before the Bonferroni correction.",
)


def _run(
    name: str,
    common: dict[str, Any],
    **options: Any,
) -> None:
    """Build report `name` with `options` and print it as the common options ask."""
    from federation.patterns import REPORTS, PatternFilter, suppress

    as_json, as_csv = common["as_json"], common["as_csv"]
    if as_json and as_csv:
        raise click.UsageError("give --json or --csv, not both")
    check_request_options(common)
    if common["plot"] is not None:
        from node.plots import PlotError, check_target

        try:
            check_target(common["plot"])
        except PlotError as e:
            raise click.UsageError(str(e)) from None
    try:
        f = PatternFilter(
            since=day_of(common["since"]),
            until=day_of(common["until"]),
            ids_limit=common["ids_limit"],
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    _, db = _db(common["data_dir"])
    try:
        report = REPORTS[name](db, f, **options)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    finally:
        db.dispose()
    if common["publish"]:
        try:
            report = suppress(report, common["min_count"])
        except ValueError as e:
            _fail(str(e))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    elif as_csv:
        click.echo(_csv(report), nl=False)
    else:
        _table(report)
    if common["plot"] is not None:
        from node.plots import write_plot

        try:
            write_plot(report, common["plot"])
        except OSError as e:
            _fail(f"--plot: cannot write {common['plot']}: {e.strerror or e}")
        _stderr().print(f"plot written to {common['plot']}", highlight=False)
    if common["request_bundles"]:
        request_bundles(common["data_dir"], common, *ids_of(report.rows))


def _csv(report: Any) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    with_ids = any("global_ids" in r for r in report.rows)
    extra = ["global_ids", "more_ids"] if with_ids else []
    writer.writerow([*report.columns, *extra])
    for r in report.rows:
        ids = [" ".join(r["global_ids"]), r["more_ids"]] if with_ids else []
        writer.writerow([_cell(r[c]) for c in report.columns] + ids)
    for note in report.notes:
        writer.writerow([f"# {note}"])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _table(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title=report.title)
    for c in report.columns:
        table.add_column(c.replace("_", " "), overflow="fold")
    with_ids = any("global_ids" in r for r in report.rows)
    if with_ids:
        table.add_column("global ids", overflow="fold")
    for r in report.rows:
        cells = [_cell(r[c]) for c in report.columns]
        if with_ids:
            ids, more = r["global_ids"], r["more_ids"] + max(0, len(r["global_ids"]) - SHOWN_IDS)
            cells.append("\n".join(ids[:SHOWN_IDS]) + (f"\n+{more} more" if more else ""))
        table.add_row(*cells)
    if report.rows:
        console.print(table)
    else:
        console.print(f"{report.title}: nothing found (with these filters)")
    for note in report.notes:
        console.print(f"note: {note}")
    if with_ids and report.rows:
        console.print("--json or --csv list every row's global ids (up to --ids-limit)")


@patterns_group.command("repeat")
@report_options
@click.option("--min-incidents", type=click.IntRange(min=2), default=3, show_default=True)
@requires(Permission.ANALYSE)
def repeat_cmd(min_incidents: int, **common: Any) -> None:
    """Agents with at least --min-incidents incidents, across states, with their conduct."""
    _run("repeat", common, min_incidents=min_incidents)


@patterns_group.command("units")
@report_options
@click.option(
    "--min-together", type=click.IntRange(min=2), default=2, show_default=True,
    help="Incidents two agents must share to be linked.",
)  # fmt: skip
@requires(Permission.ANALYSE)
def units_cmd(min_together: int, **common: Any) -> None:
    """Groups of agents repeatedly present together (a co-presence graph), the states they
    operated in, in order, and when: a team moving from state to state."""
    _run("units", common, min_together=min_together)


@patterns_group.command("unidentified")
@report_options
@click.option("--window-days", type=click.IntRange(min=1), default=14, show_default=True)
@click.option("--min-incidents", type=click.IntRange(min=2), default=2, show_default=True)
@click.option(
    "--basis", "bases", multiple=True, type=click.Choice(["unit", "vehicle", "county"]),
    help="Join only by these (repeat it; default all three). County and agency alone is "
    "the weakest: --basis unit --basis vehicle leaves it out.",
)  # fmt: skip
@requires(Permission.ANALYSE)
def unidentified_cmd(
    window_days: int, min_incidents: int, bases: tuple[str, ...], **common: Any
) -> None:
    """Incidents with masked or unidentified agents grouped by unit, vehicle, county and
    time window into provisional unidentified teams (no facial recognition)."""
    _run(
        "unidentified", common, window_days=window_days, min_incidents=min_incidents,
        bases=bases or ("unit", "vehicle", "county"),
    )  # fmt: skip


@patterns_group.command("surges")
@report_options
@click.option("--baseline-weeks", type=click.IntRange(min=2), default=12, show_default=True)
@alpha_option
@click.option(
    "--min-week-count", type=click.IntRange(min=1), default=5, show_default=True,
    help="The smallest weekly count flagged.",
)  # fmt: skip
@requires(Permission.ANALYSE)
def surges_cmd(baseline_weeks: int, alpha: float, min_week_count: int, **common: Any) -> None:
    """Weekly incident counts per state and county against each place's own baseline;
    significant surges flagged (the test is stated in the output)."""
    _run("surges", common, baseline_weeks=baseline_weeks, alpha=alpha, min_count=min_week_count)


@patterns_group.command("conduct")
@report_options
@click.option(
    "--by", type=click.Choice(["agency", "unit", "location_kind", "state"]), default="agency",
    show_default=True,
)  # fmt: skip
@click.option(
    "--conduct", "only", multiple=True, type=click.Choice(sorted(CONDUCT)),
    help="Only this conduct (repeat for several).",
)  # fmt: skip
@alpha_option
@requires(Permission.ANALYSE)
def conduct_cmd(by: str, only: tuple[str, ...], alpha: float, **common: Any) -> None:
    """Conduct by agency, unit, location kind or state, with each group's rate against all
    other groups': the basis of a pattern-or-practice claim."""
    _run("conduct", common, by=by, only=only, alpha=alpha)
