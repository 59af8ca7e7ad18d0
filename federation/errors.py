"""Errors of the federation package: one root, named subclasses.

Messages name what failed (a version, a state, a count) and never contain key
material or record contents.
"""

from __future__ import annotations


class FederationError(Exception):
    """Root of every error the federation package raises on purpose."""


class RosterError(FederationError):
    """A roster that must not be accepted: malformed, badly signed, out of order."""


class RosterRollbackError(RosterError):
    """A roster whose version is not exactly one more than the trusted one."""


class RosterExpiredError(FederationError):
    """The roster in force has expired: federation traffic stops until a new one is applied."""


class CeremonyError(FederationError):
    """A sealed share or OPRF public record that must not be used."""
