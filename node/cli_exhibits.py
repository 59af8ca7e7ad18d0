"""`compact exhibit export` and `compact verify`: court-ready exhibit packages.

`exhibit export` unlocks the keystore (it records and signs custody events and signs the
package); `verify` needs no node, no database and no keys: it is the standalone verifier
that ships inside every package (federation/verify_package.py). Format:
docs/exhibit-package.md; user guide: docs/exhibits.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from node.cli import (
    _fail,
    _stderr,
    data_dir_option,
    json_option,
    passphrase_option,
)
from node.cli_auth import Access, declare, requires
from node.cli_fedops import with_federation_node
from node.roles import Permission

if TYPE_CHECKING:
    from node.users import Principal

#: `exhibit export` could not gather enough witness cosignatures yet (EX_TEMPFAIL).
EXIT_WITNESSES_SHORT = 75


#: Other states that must have cosigned the checkpoint every log entry is proved under.
min_witnesses_option = click.option(
    "--min-witnesses",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    help="Other states that must have cosigned the checkpoint each log entry is proved under.",
)


def register(main: click.Group) -> None:
    main.add_command(exhibit_group)
    main.add_command(verify_cmd)


@click.group("exhibit")
def exhibit_group() -> None:
    """Exhibit packages: a matter's exhibits with everything a court needs to check them."""


@exhibit_group.command("export")
@data_dir_option
@passphrase_option
@click.argument("matter")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--zip", "make_zip", is_flag=True, help="Also write OUT.zip (canonical form).")
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(0, 3600),
    default=0.0,
    show_default=True,
    help="Seconds to wait for witness cosignatures before giving up (exit 75).",
)
@min_witnesses_option
@json_option
@requires(Permission.MATTERS)
def export_cmd(
    data_dir: Path,
    passphrase_file: Path | None,
    matter: str,
    out: Path,
    make_zip: bool,
    wait_seconds: float,
    min_witnesses: int,
    principal: Principal,
    as_json: bool,
) -> None:
    """Export MATTER's exhibits as a self-verifying package in the new folder OUT.

    The export is a custody event of every file it holds. Running it again with the same
    OUT resumes it (same package id)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from node.exhibit_export import ExhibitExporter, ExportReport, WitnessesShort

    def work(n: object) -> ExportReport:
        from node.fednode import FederationNode

        assert isinstance(n, FederationNode)
        exporter = ExhibitExporter(
            n.storage,
            n.log,
            n.replicas,
            n.publisher,
            n.signing_key,
            n.store.require_roster,
            n.store.roster_envelopes,
            clock=n.clock,
        )
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=_stderr(),
            transient=True,
        ) as bar:
            task = bar.add_task("writing files", total=None)

            def progress(_step: str, done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            try:
                return exporter.export(
                    matter,
                    out,
                    user=principal.name,
                    make_zip=make_zip,
                    wait_seconds=wait_seconds,
                    min_witnesses=min_witnesses,
                    progress=progress,
                )
            except WitnessesShort as e:
                _stderr().print(f"[yellow]waiting:[/yellow] {e.message}", highlight=False)
                sys.exit(EXIT_WITNESSES_SHORT)

    report = with_federation_node(data_dir, passphrase_file, work)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "package_id": report.package_id,
                    "out": str(report.out),
                    "zip": str(report.zip_path) if report.zip_path else None,
                    "exhibits": report.exhibits,
                    "files": report.files,
                    "bytes": report.bytes,
                    "resumed": report.resumed,
                },
                indent=2,
            )
        )
        return
    console = _stderr()
    console.print(
        f"exported {report.exhibits} exhibit(s), {report.files} file(s), {report.bytes:,} bytes"
        f" to {report.out} (package {report.package_id[:16]}…)",
        highlight=False,
    )
    if report.zip_path is not None:
        console.print(f"zip: {report.zip_path}", highlight=False)
    console.print(f"check it with: compact verify {report.out}", highlight=False)


@click.command("verify")
@click.argument("package", type=click.Path(path_type=Path))
@click.option(
    "--roster-pin",
    default=None,
    help="SHA-256 of roster version 1's payload, obtained out of band (the founders' pin).",
)
@min_witnesses_option
@json_option
@declare(Access.OFFLINE)
def verify_cmd(package: Path, roster_pin: str | None, min_witnesses: int, as_json: bool) -> None:
    """Verify an exhibit package (folder or zip) offline: no node, no database.

    Exit 0: every exhibit verified and the roster anchored to --roster-pin; 1: an exhibit
    failed; 2: the package itself failed; 3: verified but not anchored (no pin)."""
    from federation import verify_package

    if roster_pin is not None and not verify_package.is_hex64(roster_pin.lower()):
        _fail("--roster-pin: expected 64 hexadecimal digits")
    code = verify_package.run(
        str(package),
        roster_pin=roster_pin.lower() if roster_pin else None,
        min_witnesses=min_witnesses,
        as_json=as_json,
        out=sys.stdout,
    )
    sys.exit(code)
