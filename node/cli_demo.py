"""`compact demo`: a three-state compact on this machine, every feature, a few minutes.

The steps are in node/demo.py; the README's first command runs it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from node.cli import _stderr
from node.cli_auth import Access, declare


def register(main: click.Group) -> None:
    main.add_command(demo_cmd)


@click.command("demo")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Put the three nodes here (a new or empty folder; default: a new temporary folder).",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Leave the three nodes running at the end and print how to query them.",
)
@declare(Access.OFFLINE)
def demo_cmd(folder: Path | None, keep: bool) -> None:
    """Form a three-state compact (CA, IL, MN) on 127.0.0.1 and use every feature.

    Nodes, roster and OPRF ceremony, synthetic incidents with planted cross-state
    patterns, sync and witnessing, matches and pattern reports, a hit, a bundle requested,
    approved, transferred and verified, a matter with an exhibit package exported and
    verified. Each step shows the `compact` command it runs. Exits 1 if any step fails.
    The folder is left for you to explore.
    """
    from node.demo import run_demo

    root = folder if folder is not None else Path(tempfile.mkdtemp(prefix="compact-demo-"))
    raise SystemExit(run_demo(root, keep=keep, console=_stderr()))
