"""`compact`: the command line for operators, analysts and litigators.

Every command finds its node through `--data-dir DIR` (or COMPACT_DATA_DIR;
default: the current folder). Read commands take `--json`. Heavy modules are
imported inside the commands so that each invocation starts quickly.

Exit codes: 0 success; 1 the operation failed or was refused (the message says
why); 2 wrong usage.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from node.cli_auth import Access, declare, requires
from node.roles import Permission

if TYPE_CHECKING:
    from rich.console import Console

    from node.config import Config
    from node.setup import Secret
    from node.users import Principal

F = TypeVar("F", bound=Callable[..., Any])


def data_dir_option(f: F) -> F:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="COMPACT_DATA_DIR",
        default=Path("."),
        show_default="current folder, or COMPACT_DATA_DIR",
        help="The node's data folder (made by `compact init`).",
    )(f)


def passphrase_option(f: F) -> F:
    return click.option(
        "--passphrase-file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        help="Read the keystore passphrase from this file "
        "(else COMPACT_PASSPHRASE, else a prompt).",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)  # messages are never broken across lines


def _fail(message: str) -> None:
    _stderr().print(f"[red]error:[/red] {message}", highlight=False)
    sys.exit(1)


def _load(data_dir: Path) -> Config:
    from node.config import load_config
    from node.errors import NodeError

    try:
        return load_config(data_dir)
    except NodeError as e:
        _fail(str(e))
        raise AssertionError from None  # unreachable


def _secret(config: Config, passphrase_file: Path | None) -> Secret:
    from node.errors import UnlockError
    from node.setup import Secret, read_secret

    try:
        return read_secret(config, passphrase_file=passphrase_file)
    except UnlockError:
        if config.keys.unlock == "passphrase" and sys.stdin.isatty():
            return Secret(passphrase=getpass.getpass("Keystore passphrase: ").encode("utf-8"))
        raise


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="compact-node")
def main() -> None:
    """Compact: a state node of the interstate accountability compact."""


@main.command()
@click.option("--state", required=True, help="Two-letter code of the state this node serves.")
@data_dir_option
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Protect the keys with this key file (created if missing) instead of a passphrase. "
    "It must be outside the data folder.",
)
@passphrase_option
@click.option("--database-url", default="", help="PostgreSQL URL (default: SQLite in the folder).")
@click.option(
    "--listen", default="127.0.0.1:7400", show_default=True, help="host:port to serve on."
)
@click.option(
    "--federation-listen",
    default="127.0.0.1:7401",
    show_default=True,
    help="host:port FederationService (other members, mutual TLS) listens on.",
)
@click.option(
    "--tls-host",
    "tls_hosts",
    multiple=True,
    metavar="NAME",
    help="A host name or address the TLS certificate names; repeat (default: localhost "
    "and 127.0.0.1). Give the names clients dial, e.g. a service name.",
)
@click.option(
    "--kdf-strength",
    type=click.Choice(["moderate", "interactive"]),
    default="moderate",
    hidden=True,  # "interactive" is for tests: a weaker Argon2id for a passphrase
)
@declare(Access.OPERATOR)
def init(
    state: str,
    data_dir: Path,
    key_file: Path | None,
    passphrase_file: Path | None,
    database_url: str,
    listen: str,
    federation_listen: str,
    tls_hosts: tuple[str, ...],
    kdf_strength: str,
) -> None:
    """Create a node: configuration, database, keys and an admin credential."""
    from node.errors import NodeError
    from node.setup import PASSPHRASE_ENV, Secret, ensure_key_file, init_node

    state = state.upper()
    if tls_hosts:
        from crypto.tls import generate_tls_key, self_signed_certificate

        # The node itself (its command line, `compact health`) dials loopback: those names
        # stay in the certificate beside the ones given.
        tls_hosts = tuple(dict.fromkeys((*tls_hosts, "localhost", "127.0.0.1")))
        try:
            self_signed_certificate(generate_tls_key(), common_name="check", hosts=tls_hosts)
        except ValueError as e:
            _fail(f"--tls-host: {e}")
    created_key_file = False
    if key_file is not None:
        key_file = key_file.resolve()
        if key_file.is_relative_to(data_dir.resolve()):
            _fail("keys.key_file: must not be inside the data folder")
        try:
            secret, created_key_file = ensure_key_file(key_file)
        except OSError as e:
            _fail(f"the key file cannot be created or read ({e.strerror})")
            return
    elif passphrase_file is not None:
        secret = Secret(passphrase=passphrase_file.read_bytes().rstrip(b"\r\n"))
    elif os.environ.get(PASSPHRASE_ENV):
        secret = Secret(passphrase=os.environ[PASSPHRASE_ENV].encode("utf-8"))
    elif sys.stdin.isatty():
        first = getpass.getpass("New keystore passphrase (12+ characters): ")
        if getpass.getpass("Repeat it: ") != first:
            _fail("the passphrases differ")
        secret = Secret(passphrase=first.encode("utf-8"))
    else:
        _fail(f"give --key-file, --passphrase-file or {PASSPHRASE_ENV} (no terminal to prompt on)")
        return
    if secret.passphrase is not None and len(secret.passphrase) < 12:
        _fail("the passphrase must be at least 12 characters")
    try:
        config = init_node(
            data_dir,
            state=state,
            secret=secret,
            key_file=key_file,
            database_url=database_url,
            listen=listen,
            federation_listen=federation_listen,
            kdf_strength=kdf_strength,
            tls_hosts=tls_hosts,
        )
    except (NodeError, ValueError) as e:
        if created_key_file and key_file is not None:
            key_file.unlink(missing_ok=True)
        _fail(str(e))
        return
    out = _stderr()
    if created_key_file:
        out.print(f"created key file {key_file} (keep it away from the data folder)")
    out.print(f"initialised the {state} node in {data_dir}")
    out.print(f"  configuration  {data_dir / 'compact.toml'}")
    out.print(f"  database       {config.database_url().split('@')[-1]}")
    out.print(f"  admin token    {config.path(config.client.credential_file)}")


@main.command()
@data_dir_option
@passphrase_option
@declare(Access.OPERATOR)
def serve(data_dir: Path, passphrase_file: Path | None) -> None:
    """Run the node's gRPC server until Ctrl-C or SIGTERM."""
    import asyncio

    from node.errors import NodeError
    from node.fedstore import current_roster
    from node.keyrotation import finish_rotation, open_retired
    from node.logs import configure_logging, get_logger
    from node.server import serve as run
    from node.setup import open_storage, unlock

    config = _load(data_dir)
    configure_logging(config.logging.level)
    log = get_logger("compact.cli")
    try:
        secret = _secret(config, passphrase_file)
        while True:
            keys = unlock(config, secret)
            storage = open_storage(config, keys)
            # A rotation the roster in force calls for, or one a crash left part-way.
            if finish_rotation(config, current_roster(storage.db)):
                storage.db.dispose()
                continue
            retired = open_retired(config, secret)
            rotated = asyncio.run(
                run(config, storage, tls_key_pem=keys.tls_key_pem, keys=keys, retired=retired)
            )
            if not rotated:
                break
            # The same process serves again with the rotated keys (no new prompt).
            log.info("serve.restarting_with_rotated_keys")
    except NodeError as e:
        log.error("serve.failed", error=str(e))
        _fail(str(e))


class _RichProgress:
    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._p = Progress(
            TextColumn("{task.description:<18}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task: Any = None

    def __enter__(self) -> _RichProgress:
        self._p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._p.stop()

    def phase(self, name: str, total: int | None) -> None:
        if self._task is not None:
            self._p.update(
                self._task, completed=self._p.tasks[-1].total or self._p.tasks[-1].completed
            )
        self._task = self._p.add_task(name, total=total)

    def advance(self, amount: int = 1) -> None:
        self._p.advance(self._task, amount)


@main.command("ingest")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@data_dir_option
@passphrase_option
@click.option("--skip-invalid", is_flag=True, help="Import the valid lines and report the rest.")
@json_option
@requires(Permission.INGEST)
def ingest_cmd(
    file: Path,
    data_dir: Path,
    passphrase_file: Path | None,
    skip_invalid: bool,
    as_json: bool,
    principal: Principal,
) -> None:
    """Import incidents from a JSON Lines (or .csv) file, with its evidence files."""
    from node.errors import NodeError
    from node.importfile import ImportFileError
    from node.ingest import ingest_file
    from node.render import dumps, print_report
    from node.setup import open_storage, unlock

    config = _load(data_dir)
    err = _stderr()
    try:
        keys = unlock(config, _secret(config, passphrase_file))
        storage = open_storage(config, keys)
        try:
            with _RichProgress(err) as progress:
                report = ingest_file(
                    storage,
                    file,
                    actor=principal.name,
                    skip_invalid=skip_invalid,
                    progress=progress,
                )
        finally:
            storage.db.dispose()
    except ImportFileError as e:
        _fail(f"{file}: {e}; nothing was imported")
        return
    except (NodeError, OSError) as e:
        _fail(str(e) if isinstance(e, NodeError) else f"{file}: cannot be read")
        return
    if as_json:
        click.echo(dumps(report))
    else:
        print_report(err, report, skipped=skip_invalid)
    if report.errors and not skip_invalid:
        sys.exit(1)


@main.group()
def incidents() -> None:
    """List, show and search this node's incidents (through the running server)."""


def _client(data_dir: Path) -> Any:
    """A client with the configured credential, or the one in COMPACT_TOKEN_FILE."""
    from node.client import ClientError, NodeClient

    token = None
    if token_file := os.environ.get("COMPACT_TOKEN_FILE"):
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError:
            raise ClientError("FAILED_PRECONDITION", "COMPACT_TOKEN_FILE cannot be read") from None
    return NodeClient.from_config(_load(data_dir), token=token)


def _run_client(action: Callable[[], None]) -> None:
    from node.client import ClientError

    try:
        action()
    except ClientError as e:
        _fail(f"{e} ({e.code})")


def _search(data_dir: Path, query: Any, limit: int, as_json: bool) -> None:
    from node.render import dumps, stdout_console, summaries_table

    def run() -> None:
        with _client(data_dir) as client:
            rows = [s for page in client.search_all(query, limit=limit) for s in page.incidents]
        if as_json:
            click.echo(dumps(rows))
        else:
            stdout_console().print(summaries_table(rows))
            _stderr().print(f"{len(rows)} incident(s)")

    _run_client(run)


@incidents.command("list")
@data_dir_option
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@json_option
@declare(Access.SERVER)
def incidents_list(data_dir: Path, limit: int, as_json: bool) -> None:
    """The newest incidents."""
    from node.records import SearchQuery

    _search(data_dir, SearchQuery(), limit, as_json)


@incidents.command("search")
@data_dir_option
@click.option("--from", "occurred_from", default="", help="Occurred on or after (YYYY-MM-DD).")
@click.option("--to", "occurred_to", default="", help="Occurred on or before (YYYY-MM-DD).")
@click.option("--county", default="")
@click.option("--kind", "location_kind", default="", help="Location kind, e.g. school.")
@click.option("--conduct", multiple=True, help="Conduct value; repeat for any of several.")
@click.option("--agency", default="", help="Agency of an agent, e.g. ICE-ERO.")
@click.option("--status", default="")
@click.option(
    "--key", "identifier_key", default="", help='Identifier key, e.g. "badge:ICE-ERO:04471".'
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@json_option
@declare(Access.SERVER)
def incidents_search(
    data_dir: Path,
    occurred_from: str,
    occurred_to: str,
    county: str,
    location_kind: str,
    conduct: tuple[str, ...],
    agency: str,
    status: str,
    identifier_key: str,
    limit: int,
    as_json: bool,
) -> None:
    """Incidents matching every filter given."""
    from node.records import SearchQuery

    query = SearchQuery(
        occurred_from=occurred_from,
        occurred_to=occurred_to,
        county=county,
        location_kind=location_kind,
        conduct=conduct,
        agency=agency,
        status=status,
        identifier_key=identifier_key,
    )
    _search(data_dir, query, limit, as_json)


@incidents.command("show")
@click.argument("global_id")
@data_dir_option
@json_option
@declare(Access.SERVER)
def incidents_show(global_id: str, data_dir: Path, as_json: bool) -> None:
    """One incident in full (personal data only for roles that may see it)."""
    from node.render import dumps, print_incident, stdout_console

    def run() -> None:
        with _client(data_dir) as client:
            view = client.get_incident(global_id)
        if as_json:
            click.echo(dumps(view))
        else:
            print_incident(stdout_console(), view)

    _run_client(run)


@main.group()
def evidence() -> None:
    """Evidence files (through the running server)."""


@evidence.command("get")
@click.argument("global_id")
@click.argument("sha256")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@data_dir_option
@declare(Access.SERVER)
def evidence_get(global_id: str, sha256: str, output: Path, data_dir: Path) -> None:
    """Fetch one evidence file, verify its SHA-256, write it to OUTPUT."""

    def run() -> None:
        tmp = output.with_name(output.name + ".part")
        try:
            with _client(data_dir) as client, tmp.open("wb") as f:
                item = client.get_evidence(global_id, sha256, f, timeout=3600)
            tmp.replace(output)
        finally:
            tmp.unlink(missing_ok=True)
        _stderr().print(f"wrote {output} ({item.size} bytes, SHA-256 verified)")

    _run_client(run)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@data_dir_option
@declare(Access.OPERATOR)
def db_upgrade(data_dir: Path) -> None:
    """Apply pending schema migrations (stop the node and back up the database first).

    A schema newer than this version's is refused and left as it is."""
    from node import migrate
    from node.db import Database

    config = _load(data_dir)
    database = Database.from_url(config.database_url())
    try:
        before = migrate.current_revision(database.engine)
        if before is not None and before not in migrate.known_revisions():
            _fail(migrate.schema_problem(database.engine) or "unknown schema")
        migrate.upgrade(database.engine)
        after = migrate.current_revision(database.engine)
        if before == after:
            click.echo(f"schema at {after} (already current)")
        else:
            click.echo(f"schema at {after} (was {before or 'empty'})")
    finally:
        database.dispose()


from node.cli_federation import register as _register_federation  # noqa: E402

_register_federation(main)

from node.cli_fedops import register as _register_fedops  # noqa: E402

_register_fedops(main)

from node.cli_bundles import register as _register_bundles  # noqa: E402

_register_bundles(main)

from node.cli_agents import register as _register_agents  # noqa: E402

_register_agents(main)

from node.cli_patterns import register as _register_patterns  # noqa: E402

_register_patterns(main)

from node.cli_matters import register as _register_matters  # noqa: E402

_register_matters(main)

from node.cli_exhibits import register as _register_exhibits  # noqa: E402

_register_exhibits(main)

from node.cli_demo import register as _register_demo  # noqa: E402

_register_demo(main)

from node.cli_users import register as _register_users  # noqa: E402

_register_users(main)

from node.cli_monitor import register as _register_monitor  # noqa: E402

_register_monitor(main)

from node.cli_backup import register as _register_backup  # noqa: E402

_register_backup(main)

from node.cli_keys import register as _register_keys  # noqa: E402

_register_keys(main)

if __name__ == "__main__":  # pragma: no cover
    main()
