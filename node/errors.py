"""Errors of the node package: one root, named subclasses, translated at the boundary.

Messages never contain personal data, secrets or record contents: they name the
field, the line or the setting, and say what is wrong.
"""

from __future__ import annotations

import enum


class NodeError(Exception):
    """Root of every error the node raises on purpose."""


class ConfigError(NodeError):
    """The configuration file or an environment override is invalid."""


class NotInitializedError(NodeError):
    """The data folder has not been initialised with `compact init`."""


class UnlockError(NodeError):
    """The key material could not be unlocked (no secret given, or the wrong one)."""


class StorageError(NodeError):
    """The database or the blob store failed."""


class NotFoundError(NodeError):
    """A record that was asked for does not exist (or the caller may not know of it)."""


class PermissionDeniedError(NodeError):
    """The caller's role does not allow this."""


class AuthenticationError(NodeError):
    """The caller did not present a valid credential."""


class InvalidArgumentError(NodeError):
    """A request argument is invalid; `field` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Refusal(enum.Enum):
    """Why a request of a peer or a user is refused; the federation service maps each to a
    gRPC status code."""

    INVALID = "invalid"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    PERMISSION_DENIED = "permission_denied"
    FAILED_PRECONDITION = "failed_precondition"
    OUT_OF_RANGE = "out_of_range"


class Refused(Exception):
    """A request this node refuses; `message` is safe to send to the peer or to show."""

    def __init__(self, kind: Refusal, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message
