"""Who may run which command: the command line's side of the role matrix (docs/roles.md).

Every command is one of four kinds, and `access_of(command)` says which:

- a `Permission`: the command acts for a user. It reads the user's token from the file
  named by `COMPACT_TOKEN_FILE` (else the node's credential file, the admin's, made
  by `compact init`), authenticates it against the node's database and checks the
  role before anything else happens; the user's name is what the audit trail and
  signed records carry. Each run is an audit event (`command`), except of commands
  that need only `read` (status, lists: auditing them would grow the log with every
  look at it), and so is each refusal (`denied`, `unauthenticated`).
- `SERVER`: the command calls the running node over NodeService, which checks the
  same token and role itself (node.server).
- `OPERATOR`: the command runs the node or changes its keys, roster or schema; what
  it needs is the keystore's passphrase (or key file) and the data folder.
- `OFFLINE`: the command touches no node (`compact verify`, `compact demo`).

A refusal exits with status 77 (EX_NOPERM) and says which permission was missing.
"""

from __future__ import annotations

import enum
import functools
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click

from node.roles import PERMISSION_TEXT, Permission

if TYPE_CHECKING:
    from node.users import Principal

EXIT_NOPERM: Final = 77
T = TypeVar("T")


class Access(enum.Enum):
    SERVER = "server"
    OPERATOR = "operator"
    OFFLINE = "offline"


_ACCESS: dict[Callable[..., Any], Permission | Access] = {}


def access_of(command: click.Command) -> Permission | Access | None:
    """The access a command was declared with (None: undeclared, which a test refuses)."""
    return _ACCESS.get(command.callback) if command.callback else None


def declare(access: Access) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Mark a command as SERVER, OPERATOR or OFFLINE (see the module docstring)."""

    def decorate(f: Callable[..., T]) -> Callable[..., T]:
        _ACCESS[f] = access
        return f

    return decorate


def checked_within(permission: Permission) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Mark a group that runs as a command (`compact audit`) whose body hands over to a
    function under `requires(permission)`: the same check, declared for the matrix test."""

    def decorate(f: Callable[..., T]) -> Callable[..., T]:
        _ACCESS[f] = permission
        return f

    return decorate


def requires(permission: Permission) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Authenticate the command's user and check `permission` before the command runs.

    The command must take `data_dir`; if it also takes `principal`, it receives the
    authenticated `Principal`.
    """

    def decorate(f: Callable[..., T]) -> Callable[..., T]:
        wants_principal = "principal" in inspect.signature(f).parameters

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            principal = authorize(kwargs["data_dir"], permission, command=command_name())
            if wants_principal:
                kwargs["principal"] = principal
            return f(*args, **kwargs)

        _ACCESS[wrapper] = permission
        return wrapper

    return decorate


def command_name() -> str:
    """`compact bundle approve`, however the program was started (`python -m node.cli`)."""
    names: list[str] = []
    ctx: click.Context | None = click.get_current_context()
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["compact", *reversed(names)])


def _token_file(config: Any) -> tuple[Path, str]:
    if named := os.environ.get("COMPACT_TOKEN_FILE"):
        return Path(named), "COMPACT_TOKEN_FILE"
    return config.path(config.client.credential_file), "the node's credential file"


def _refuse(message: str) -> None:
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {message}", highlight=False)
    sys.exit(EXIT_NOPERM)


def authorize(data_dir: Path, permission: Permission, *, command: str) -> Principal:
    """The user whose token this command presents, if its role has `permission`;
    otherwise the command ends with status 77. A refusal is audited, and so is a run
    of a command that needs more than `read`."""
    from node.cli import _fail, _load
    from node.errors import StorageError
    from node.queries import audit
    from node.setup import open_database
    from node.users import authenticate

    config = _load(data_dir)
    path, named = _token_file(config)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        _refuse(
            f"{named} ({path}) cannot be read: set COMPACT_TOKEN_FILE to the token "
            "file `compact users add` wrote for you"
        )
        raise AssertionError from None  # unreachable
    try:
        db = open_database(config)
    except StorageError as e:
        _fail(str(e))
        raise AssertionError from None  # unreachable
    try:
        principal = authenticate(db, token)
        with db.write() as s:
            if principal is None:
                audit(s, actor="-", action="unauthenticated", target=command, outcome="refused")
            elif not principal.may(permission):
                audit(
                    s,
                    actor=principal.name,
                    action="denied",
                    target=command,
                    outcome="refused",
                    detail={"role": principal.role, "permission": permission.value},
                )
            elif permission is not Permission.READ:
                audit(s, actor=principal.name, action="command", target=command)
    finally:
        db.dispose()
    if principal is None:
        _refuse(f"the token in {named} ({path}) is not a valid token of this node")
        raise AssertionError  # unreachable
    if not principal.may(permission):
        _refuse(
            f"permission denied: the role {principal.role!r} of user {principal.name!r} "
            f"may not {PERMISSION_TEXT[permission]} (permission {permission.value!r}; "
            "docs/roles.md)"
        )
    return principal
