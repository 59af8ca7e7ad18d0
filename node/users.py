"""Users, roles and bearer tokens.

A user presents `authorization: Bearer <token>`; the node keeps only the
SHA-256 of each token (tokens are 256-bit random, so a plain hash suffices).

Roles (docs/roles.md has the matrix, and tests/test_roles.py checks every cell):

- `analyst`: search and read records without personal data, analyse the federated
  index (matches, lookups, hits, patterns) and request bundles;
- `investigator`: as analyst, and personal data (people, narrative, address) and
  evidence files;
- `clerk`: search and read records, and ingest;
- `reviewer`: decide other members' bundle requests (reading the incidents in full to
  do so) and read the audit trail;
- `litigator`: as investigator, and matters, legal holds and exhibit packages;
- `admin`: everything, including managing users.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from node import models as m
from node.db import Database
from node.errors import InvalidArgumentError, NotFoundError
from node.queries import audit
from node.roles import ROLES, Permission

TOKEN_PREFIX: Final = "cpt_"  # noqa: S105 - a prefix, not a secret
_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request."""

    name: str
    role: str

    def may(self, permission: Permission) -> bool:
        return permission in ROLES.get(self.role, frozenset())


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def add_user(
    db: Database, name: str, role: str, *, actor: str = "init", now: datetime | None = None
) -> str:
    """Create a user and return its token (shown once; only its hash is kept). The
    addition is an audit event of `actor`."""
    if not _NAME.match(name):
        raise InvalidArgumentError("name", "use 1-64 of a-z, 0-9, '.', '_', '-'")
    if role not in ROLES:
        raise InvalidArgumentError("role", f"one of {', '.join(sorted(ROLES))}")
    token = new_token()
    at = now or datetime.now(UTC)
    try:
        with db.write() as s:
            s.add(
                m.User(
                    name=name,
                    role=role,
                    token_hash=token_hash(token),
                    created_at=at,
                    disabled=False,
                )
            )
            s.flush()
            audit(s, actor=actor, action="user.add", target=name, detail={"role": role}, now=at)
    except IntegrityError:
        raise InvalidArgumentError("name", "a user of that name exists") from None
    return token


def authenticate(db: Database, token: str) -> Principal | None:
    """The user holding `token`, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    digest = token_hash(token)
    with db.read() as s:
        user = s.scalars(select(m.User).where(m.User.token_hash == digest)).first()
    if user is None or user.disabled or not hmac.compare_digest(user.token_hash, digest):
        return None
    return Principal(user.name, user.role)


def disable_user(db: Database, name: str, *, actor: str) -> None:
    """Disable a user: its token stops working at once; the user stays in the audit
    trail. The change is an audit event of `actor`."""
    with db.write() as s:
        user = s.scalars(select(m.User).where(m.User.name == name)).first()
        if user is None:
            raise NotFoundError("no user of that name")
        if user.name == actor:
            raise InvalidArgumentError("name", "a user cannot disable itself")
        user.disabled = True
        audit(s, actor=actor, action="user.disable", target=name)


def list_users(db: Database) -> list[tuple[str, str, bool, datetime]]:
    with db.read() as s:
        rows = s.execute(
            select(m.User.name, m.User.role, m.User.disabled, m.User.created_at).order_by(
                m.User.name
            )
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]


__all__ = [
    "Principal",
    "add_user",
    "authenticate",
    "disable_user",
    "list_users",
    "new_token",
    "token_hash",
]
