"""Every signing key each member state had, across the roster versions: key rotation.

A roster version may name a new signing key for a state (federation.roster: the new key
proves possession by signing the new version). From then on the state signs with the new
key only, but what it signed before (index entries and custody records in its log,
manifests, checkpoints and cosignatures kept by others) still carries the old key.

``KeyHistory`` is built from the roster versions in order (``from_rosters``) and answers
which keys a state has ever had (``signing_keys``: the newest first) and in which versions
each was in force (``uses``). Verifications of what was signed in the past and is stored
or forwarded accept any of them; live protocol checks keep using the roster in force
only. The history is only as trusted as the rosters it was built from: build it from
versions that were verified as a chain (node.fedstore keeps only those).

Checkpoints are the one place where two keys of one state could count twice: a witness
that cosigned with its old key and again with its new one is one witness.
``verify_member_checkpoint`` counts witnesses by their note key name (one per state,
federation.naming), as the standalone package verifier does (federation.verify_package).

Everything here is pure: no I/O, no database, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from crypto import signing
from crypto.checkpoint import (
    Checkpoint,
    CosignatureVerifier,
    VerifiedCheckpoint,
    WitnessCosignature,
    parse_checkpoint,
    verify_checkpoint,
)
from crypto.errors import PolicyError, ThresholdError, VerificationError
from crypto.note import Verifier, open_note
from federation.naming import log_verifier, witness_verifier
from federation.roster import Member, Roster

__all__ = [
    "KeyHistory",
    "KeyUse",
    "history_witness_verifiers",
    "member_log_verifiers",
    "member_signing_keys",
    "open_member_checkpoint",
    "verify_member_checkpoint",
    "witness_verifiers",
]


@dataclass(frozen=True, slots=True)
class KeyUse:
    """One signing key of a state and the roster versions that named it for that state
    (from `first_version` to `last_version`; a key named again after a gap keeps one
    entry spanning both)."""

    key: signing.PublicKey
    first_version: int
    last_version: int


class KeyHistory:
    """The signing keys each state had in the roster versions it was built from (immutable).

    `version` is the newest version seen (0 for an empty history).
    """

    __slots__ = ("_uses", "_version")

    _uses: Mapping[str, tuple[KeyUse, ...]]
    _version: int

    def __init__(self, uses: Mapping[str, Sequence[KeyUse]], version: int) -> None:
        if type(version) is not int or version < 0:
            raise ValueError("version must be a non-negative integer")
        table: dict[str, tuple[KeyUse, ...]] = {}
        for state, state_uses in uses.items():
            # The most recently named first: the first is the key in force.
            found = tuple(sorted(state_uses, key=lambda u: (-u.last_version, -u.first_version)))
            if len({u.key.raw for u in found}) != len(found):
                raise ValueError(f"a key of {state} is listed twice")
            if any(not 1 <= u.first_version <= u.last_version <= version for u in found):
                raise ValueError(f"a key of {state} has versions outside the history")
            table[state] = found
        object.__setattr__(self, "_uses", MappingProxyType(table))
        object.__setattr__(self, "_version", version)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("KeyHistory is immutable")

    @property
    def version(self) -> int:
        """The newest roster version the history was built from (0: none)."""
        return self._version

    @classmethod
    def from_rosters(cls, rosters: Sequence[Roster]) -> KeyHistory:
        """The history of `rosters`, oldest version first (ValueError unless the versions
        strictly increase)."""
        spans: dict[str, dict[bytes, list[int]]] = {}
        keys: dict[bytes, signing.PublicKey] = {}
        version = 0
        for roster in rosters:
            if roster.version <= version:
                raise ValueError("roster versions must be given oldest first, each once")
            version = roster.version
            for member in roster.members:
                raw = member.signing_key.raw
                keys[raw] = member.signing_key
                span = spans.setdefault(member.state, {}).setdefault(raw, [version, version])
                span[1] = version
        uses = {
            state: [KeyUse(keys[raw], first, last) for raw, (first, last) in by_key.items()]
            for state, by_key in spans.items()
        }
        return cls(uses, version)

    def states(self) -> tuple[str, ...]:
        """Every state that was a member in some version, sorted."""
        return tuple(sorted(self._uses))

    def uses(self, state: str) -> tuple[KeyUse, ...]:
        """`state`'s keys with their versions, the most recently named first."""
        return self._uses.get(state, ())

    def signing_keys(self, state: str) -> tuple[signing.PublicKey, ...]:
        """Every signing key `state` had in any version, the current (most recent) first,
        each once; empty for a state that was never a member."""
        return tuple(u.key for u in self.uses(state))

    def last_version(self, state: str, key: signing.PublicKey) -> int | None:
        """The newest version that named `key` as `state`'s signing key (None: none did)."""
        return next((u.last_version for u in self.uses(state) if u.key.raw == key.raw), None)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyHistory):
            return NotImplemented
        return self.version == other.version and dict(self._uses) == dict(other._uses)

    def __hash__(self) -> int:
        return hash((self.version, tuple(sorted(self._uses.items()))))

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}: {len(u)}" for s, u in sorted(self._uses.items()))
        return f"KeyHistory(version={self.version}, keys={{{counts}}})"


# --- keys of a member ------------------------------------------------------------------


def member_signing_keys(
    member: Member, history: KeyHistory | None
) -> tuple[signing.PublicKey, ...]:
    """`member`'s key in its roster first, then (with `history`) every other key its state
    had, each once. Without a history: the roster key alone."""
    return _unique([member.signing_key, *(history.signing_keys(member.state) if history else ())])


def member_log_verifiers(member: Member, history: KeyHistory | None) -> tuple[Verifier, ...]:
    """The note keys `member`'s log may have signed a checkpoint with (`member_signing_keys`)."""
    return tuple(log_verifier(member.state, k) for k in member_signing_keys(member, history))


def witness_verifiers(
    members: Iterable[Member], history: KeyHistory | None, *, exclude: str
) -> tuple[CosignatureVerifier, ...]:
    """The cosignature keys of `members` but the state `exclude` (the log's own state), each
    with its historical keys too when `history` is given."""
    return tuple(
        witness_verifier(m.state, k)
        for m in members
        if m.state != exclude
        for k in member_signing_keys(m, history)
    )


def history_witness_verifiers(
    history: KeyHistory, *, exclude: str
) -> tuple[CosignatureVerifier, ...]:
    """The cosignature key of every state but `exclude` in every version of `history`: a
    witness may have cosigned before a key rotation, or before it left the compact (so,
    unlike `witness_verifiers`, not only the members in force)."""
    return tuple(
        witness_verifier(st, key)
        for st in history.states()
        if st != exclude
        for key in history.signing_keys(st)
    )


def _unique(keys: Iterable[signing.PublicKey]) -> tuple[signing.PublicKey, ...]:
    seen: set[bytes] = set()
    out: list[signing.PublicKey] = []
    for key in keys:
        if key.raw not in seen:
            seen.add(key.raw)
            out.append(key)
    return tuple(out)


# --- checkpoints -----------------------------------------------------------------------


def open_member_checkpoint(
    note: str | bytes, *, logs: Sequence[Verifier], origin: str | None = None
) -> tuple[Checkpoint, Verifier]:
    """Verify a checkpoint signed with any one of `logs` (the keys one log had), and its
    origin when given; returns it with the key that signed it (the first of `logs` among
    those that did). Every line of any of `logs` must verify (crypto.note.open_note);
    lines of other keys are ignored. CryptoError otherwise, as crypto.checkpoint's
    ``open_checkpoint``."""
    if not logs:
        raise PolicyError("no log key to verify the checkpoint with")
    opened = open_note(note, logs)  # only the log's keys are known: one of them signed
    log = next(v for v in logs if opened.verified_by(v))
    checkpoint = parse_checkpoint(opened.text)
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError("checkpoint is for another origin")
    return checkpoint, log


def verify_member_checkpoint(
    note: str | bytes,
    *,
    logs: Sequence[Verifier],
    witnesses: Sequence[CosignatureVerifier],
    threshold: int,
    origin: str | None = None,
) -> VerifiedCheckpoint:
    """crypto.checkpoint's ``verify_checkpoint`` where the log and each witness may have
    several keys (a member's keys across roster versions).

    The log's signature must verify under one of `logs`. Witnesses are counted by name,
    not by key: `threshold` distinct names (with federation.naming, distinct states) must
    have cosigned, so a witness that cosigned with an old and a new key counts once. The
    result lists one cosignature per witness name (its latest). A witness key that is
    one of the log's keys or listed twice is dropped (not counted). ``PolicyError`` unless
    ``1 <= threshold <=`` the number of witness names; otherwise the errors of
    ``verify_checkpoint`` (``ThresholdError`` for too few witnesses).
    """
    if type(threshold) is not int:
        raise TypeError("threshold must be int")
    log_keys = {v.key.raw for v in logs}
    listed: list[CosignatureVerifier] = []
    seen: set[bytes] = set()
    for w in witnesses:
        if not isinstance(w, CosignatureVerifier):
            raise TypeError("witnesses must be CosignatureVerifier objects")
        if w.key.raw in log_keys or w.key.raw in seen:
            continue
        seen.add(w.key.raw)
        listed.append(w)
    names = {w.name for w in listed}
    if not 1 <= threshold <= len(names):
        raise PolicyError("threshold must be at least 1 and at most the number of witnesses")
    _, log = open_member_checkpoint(note, logs=logs, origin=origin)
    verified = verify_checkpoint(
        note, log=log, witnesses=listed, threshold=threshold, origin=origin
    )
    latest: dict[str, WitnessCosignature] = {}
    for c in verified.cosignatures:
        held = latest.get(c.name)
        if held is None or c.timestamp > held.timestamp:
            latest[c.name] = c
    if len(latest) < threshold:
        raise ThresholdError(
            f"{len(latest)} distinct witnesses cosigned (some with more than one key), "
            f"{threshold} required"
        )
    order: dict[str, int] = {}
    for c in verified.cosignatures:
        order.setdefault(c.name, len(order))
    cosignatures = tuple(sorted(latest.values(), key=lambda c: order[c.name]))
    return VerifiedCheckpoint(verified.checkpoint, cosignatures)
