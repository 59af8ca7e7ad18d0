"""Presenting records on the command line: JSON (`--json`) and Rich tables."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from node.normalize import IdentifierKey
from node.records import IncidentSummary, IncidentView, IngestReport, Timestamp


def to_jsonable(value: Any) -> Any:
    """Domain values as JSON-ready data: timestamps keep their offsets."""
    if isinstance(value, Timestamp):
        return value.isoformat()
    if isinstance(value, IdentifierKey):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)


def summaries_table(rows: list[IncidentSummary]) -> Table:
    table = Table(show_lines=False)
    table.add_column("global id", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("occurred (local)", no_wrap=True)
    for name in ("county", "kind", "conduct", "status", "agencies", "ev"):
        table.add_column(name, overflow="fold")
    for r in rows:
        table.add_row(
            r.global_id,
            r.state,
            r.occurred_at.local.strftime("%Y-%m-%d %H:%M"),
            r.county,
            r.location_kind,
            ", ".join(r.conduct),
            r.status,
            ", ".join(r.agencies),
            str(r.evidence_count),
        )
    return table


def stdout_console() -> Console:
    """Rich on stdout; wide enough for tables when stdout is not a terminal."""
    import sys

    return Console(width=None if sys.stdout.isatty() else 200)


def print_incident(console: Console, v: IncidentView) -> None:
    loc = v.location
    console.print(f"[bold]{v.global_id}[/bold]  ({v.external_id}, {v.state})")
    console.print(f"occurred  {v.occurred_at.isoformat()}")
    if v.reported_at:
        console.print(f"reported  {v.reported_at.isoformat()}")
    place = ", ".join(p for p in (loc.address, loc.city, loc.county, loc.state) if p)
    console.print(f"where     {place} ({loc.kind})", markup=False)
    console.print(f"conduct   {', '.join(v.conduct)}")
    console.print(f"status    {v.status}   source {v.source}   sharing {v.sharing}")
    if v.narrative:
        console.print(f"narrative {v.narrative}")
    for i, a in enumerate(v.agents):
        ids = ", ".join(str(k) for k in a.keys) or "no identifier"
        flags = [n for n in ("masked", "identified_self", "body_camera") if getattr(a, n)]
        console.print(f"agent {i}   {a.agency or '?'} {a.role}  {ids}  {' '.join(flags)}")
    for p in v.people:
        console.print(f"person    {p.role}: {p.name or ''} {p.contact or ''}")
    for e in v.evidence:
        console.print(f"evidence  {e.sha256}  {e.size} B  {e.media_type}  {e.file_name}")
        for c in e.custody:
            console.print(f"            {c.kind} {c.at.isoformat()} by {c.actor}")
    if v.restricted_withheld:
        console.print("[yellow]personal data withheld: your role may not see it[/yellow]")


def print_report(console: Console, report: IngestReport, *, skipped: bool) -> None:
    console.print(
        f"imported {report.imported}, unchanged {report.unchanged}, rejected {report.rejected}; "
        f"evidence stored {report.evidence_stored}, already held {report.evidence_already_held}"
    )
    for e in report.errors:
        console.print(f"  {e}", markup=False, highlight=False)
    if report.errors and not skipped:
        console.print("nothing was imported (use --skip-invalid to import the valid lines)")
