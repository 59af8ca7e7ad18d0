"""Roles and permissions (docs/roles.md has the matrix; tests/test_roles.py checks every cell).

Kept free of the database layer so that the command line can declare each command's
permission without importing it (node.cli_auth).
"""

from __future__ import annotations

import enum
from typing import Final


class Permission(enum.Enum):
    READ = "read"
    READ_PERSONAL = "read_personal"
    READ_EVIDENCE = "read_evidence"
    INGEST = "ingest"
    ANALYSE = "analyse"
    REQUEST_BUNDLES = "request_bundles"
    REVIEW_BUNDLES = "review_bundles"
    MATTERS = "matters"
    READ_AUDIT = "read_audit"
    MANAGE_USERS = "manage_users"


_ANALYST: Final = frozenset({Permission.READ, Permission.ANALYSE, Permission.REQUEST_BUNDLES})
_INVESTIGATOR: Final = _ANALYST | {Permission.READ_PERSONAL, Permission.READ_EVIDENCE}

ROLES: Final[dict[str, frozenset[Permission]]] = {
    "analyst": _ANALYST,
    "investigator": _INVESTIGATOR,
    "clerk": frozenset({Permission.READ, Permission.INGEST}),
    "reviewer": frozenset(
        {
            Permission.READ,
            Permission.READ_PERSONAL,
            Permission.REVIEW_BUNDLES,
            Permission.READ_AUDIT,
        }
    ),
    "litigator": _INVESTIGATOR | {Permission.MATTERS},
    "admin": frozenset(Permission),
}

#: What each permission allows, in the words the role matrix and refusals use.
PERMISSION_TEXT: Final[dict[Permission, str]] = {
    Permission.READ: "search and read records (without personal data)",
    Permission.READ_PERSONAL: "read personal data: people, narrative, street address",
    Permission.READ_EVIDENCE: "download evidence files",
    Permission.INGEST: "import incidents",
    Permission.ANALYSE: "cross-state matches, lookups, hits and pattern reports",
    Permission.REQUEST_BUNDLES: "request evidence bundles from other members",
    Permission.REVIEW_BUNDLES: "approve or deny other members' bundle requests",
    Permission.MATTERS: "matters, legal holds and exhibit packages",
    Permission.READ_AUDIT: "read and verify the audit trail",
    Permission.MANAGE_USERS: "add, list and disable users",
}
