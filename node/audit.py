"""The audit trail: listing it, chaining it into the transparency log, verifying it.

Every audit event (who did what, when: node.queries.audit and the federation service)
but those of NOT_LOGGED is entered in this node's transparency log as an entry of kind
`audit` whose payload is the event in canonical JSON (`audit_payload`), in the order
the events were committed, by the federation loop (node.publish.Publisher.log_audit)
within one cycle after it happens. Other members
receive only the leaf hashes of these entries (node.fedservice.PUBLIC_ENTRY_KINDS),
never the events, but they cosign the checkpoints that cover them. So an event that is
edited or deleted after it was logged no longer matches its log entry, and a log entry
that is edited or deleted changes the log's root, which the members that witnessed
the checkpoint hold. `verify_trail` checks the first; the members' replicas and
witnesses catch the second (docs/audit.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Row, bindparam, func, select, update
from sqlalchemy.orm import Session

from crypto.checkpoint import CosignatureVerifier, cosignature_timestamp
from crypto.errors import CryptoError
from crypto.merkle import leaf_hash, root_hash
from crypto.note import Verifier, parse_note, parse_signature_line
from federation.keyhistory import (
    history_witness_verifiers,
    member_log_verifiers,
    open_member_checkpoint,
)
from federation.naming import log_origin, witness_name
from node import models as m
from node.db import Database
from node.translog import TransparencyLog, lock_appends

AUDIT_KIND: Final = "audit"
#: Audit events that are not entered in the log. A witness's cosignature of this log's
#: checkpoint is itself kept (log_cosignatures) and is evidence on its own; entering its
#: audit event would add an entry, so a new checkpoint, so a new cosignature, without end.
NOT_LOGGED: Final = frozenset({"federation.SubmitCosignature"})
PAYLOAD_TYPE: Final = "compact.audit/v1"
BATCH: Final = 1000
_EVENTS: Final = m.Base.metadata.tables["audit_events"]
_ENTRIES: Final = m.Base.metadata.tables["log_entries"]


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    outcome: str
    detail: dict[str, Any]
    log_index: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "detail": self.detail,
            "log_index": self.log_index,
        }


def _row(r: Row[Any]) -> AuditRow:
    return AuditRow(
        id=int(r.id),
        at=r.at,
        actor=r.actor,
        action=r.action,
        target=r.target,
        outcome=r.outcome,
        detail=dict(r.detail or {}),
        log_index=None if r.log_index is None else int(r.log_index),
    )


def audit_payload(state: str, event: AuditRow) -> bytes:
    """The log entry payload of one audit event: canonical JSON (sorted keys, no
    whitespace, UTF-8), the same bytes whenever it is computed from the stored row."""
    obj = {
        "type": PAYLOAD_TYPE,
        "state": state,
        "id": event.id,
        "at": event.at.isoformat(),
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "outcome": event.outcome,
        "detail": event.detail,
    }
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def log_audit(db: Database, log: TransparencyLog, state: str) -> int:
    """Enter every audit event not yet logged in the transparency log, in id order and
    in batches, each batch in one transaction with the events' `log_index`."""
    done = 0
    while True:
        with db.write() as s:
            lock_appends(s)  # before the select: two loggers never log one event twice
            rows = [
                _row(r)
                for r in s.execute(
                    select(_EVENTS)
                    .where(_EVENTS.c.log_index.is_(None), _EVENTS.c.action.not_in(NOT_LOGGED))
                    .order_by(_EVENTS.c.id)
                    .limit(BATCH)
                )
            ]
            if not rows:
                return done
            indexes = log.append_in(s, AUDIT_KIND, [audit_payload(state, r) for r in rows])
            s.execute(
                update(_EVENTS)
                .where(_EVENTS.c.id == bindparam("event_id"))
                .values(log_index=bindparam("index")),
                [{"event_id": r.id, "index": i} for r, i in zip(rows, indexes, strict=True)],
            )
            done += len(rows)


def list_events(
    db: Database,
    *,
    user: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[AuditRow]:
    """The newest `limit` events that match, oldest first. `action` matches the action
    or, ending in `.`, every action it prefixes (`bundle.`)."""
    query = select(_EVENTS)
    if user is not None:
        query = query.where(_EVENTS.c.actor == user)
    if action is not None:
        if action.endswith("."):
            query = query.where(_EVENTS.c.action.startswith(action, autoescape=True))
        else:
            query = query.where(_EVENTS.c.action == action)
    if since is not None:
        query = query.where(_EVENTS.c.at >= since)
    if until is not None:
        query = query.where(_EVENTS.c.at < until)
    with db.read() as s:
        rows = [_row(r) for r in s.execute(query.order_by(_EVENTS.c.id.desc()).limit(limit))]
    rows.reverse()
    return rows


@dataclass
class TrailReport:
    """What `verify_trail` found; `problems` is empty when the trail is intact."""

    events: int = 0
    logged: int = 0
    not_logged: int = 0  # NOT_LOGGED actions, by design
    pending: int = 0
    oldest_pending: datetime | None = None
    stale_pending: int = 0  # pending since before `pending_before` (a warning, not a problem)
    log_size: int = 0
    checkpoint_size: int | None = None
    witnessed_size: int | None = None
    covered: int = 0
    witnesses: list[str] = field(default_factory=list)
    signature_checked: bool = True
    cosignatures: int = 0  # witness cosignatures kept
    cosignatures_checked: bool = True  # each against its checkpoint and the witness's keys
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": not self.problems,
            "events": self.events,
            "logged": self.logged,
            "not_logged_by_design": self.not_logged,
            "pending": self.pending,
            "oldest_pending": self.oldest_pending.isoformat() if self.oldest_pending else None,
            "stale_pending": self.stale_pending,
            "log_size": self.log_size,
            "checkpoint_size": self.checkpoint_size,
            "witnessed_size": self.witnessed_size,
            "witnessed_events": self.covered,
            "witnesses": self.witnesses,
            "checkpoint_signature_checked": self.signature_checked,
            "cosignatures": self.cosignatures,
            "cosignatures_checked": self.cosignatures_checked,
            "problems": self.problems,
            "warnings": self.warnings,
        }


MAX_PROBLEMS: Final = 100
#: `compact audit verify` warns of events pending longer than this: the federation loop
#: of a running `compact serve` enters them within seconds.
PENDING_LIMIT: Final = timedelta(hours=1)


def verify_own_trail(
    db: Database, state: str, *, pending_before: datetime | None = None
) -> TrailReport:
    """`verify_trail` with this node's log keys: its key in the roster in force, then every
    key it had in an earlier roster version (the newest checkpoint may have been signed
    before a key rotation), and with the witness keys of every state in every roster
    version. Before the node is in a compact, neither the checkpoint's signature nor the
    cosignatures are checked."""
    from node.fedstore import current_roster, key_history

    roster = current_roster(db)
    member = roster.member(state) if roster else None
    if member is None:
        return verify_trail(db, state, None, pending_before=pending_before)
    history = key_history(db)
    return verify_trail(
        db,
        state,
        member_log_verifiers(member, history),
        witnesses=history_witness_verifiers(history, exclude=state),
        pending_before=pending_before,
    )


def verify_trail(
    db: Database,
    state: str,
    log_key: Verifier | Sequence[Verifier] | None = None,
    *,
    witnesses: Sequence[CosignatureVerifier] | None = None,
    pending_before: datetime | None = None,
) -> TrailReport:
    """Check every logged audit event against its log entry, every entry that holds an
    audit event (whatever its `kind` says) against an event, and the log against its
    newest checkpoint, whose signature is checked with `log_key` (this node's log key
    from the roster) when given: one key, or several (the keys this node had across
    roster versions), any one of which may have signed it.

    With `witnesses`, every cosignature kept is checked too: against the checkpoint of
    its size and a key of the state that sent it. With `pending_before`, events still
    pending that happened before it are counted (`stale_pending`) and warned of."""
    if log_key is not None and not isinstance(log_key, Verifier) and not log_key:
        raise ValueError("log_key: no key given (None: the signature is not checked)")
    report = TrailReport()
    with db.read() as s:
        logged = _check_events(s, state, report, pending_before)
        _check_orphans(s, logged, report)
        _check_checkpoint(s, state, log_key, report)
        _check_cosignatures(s, witnesses, report)
    if report.stale_pending:
        report.warnings.append(
            f"{report.stale_pending} audit events have waited since before "
            f"{pending_before:%Y-%m-%d %H:%M} UTC to be entered in the log: is compact "
            "serve running, and its federation loop not failing (its log)?"
        )
    return report


def _problem(report: TrailReport, text: str) -> None:
    if len(report.problems) < MAX_PROBLEMS:
        report.problems.append(text)
    elif len(report.problems) == MAX_PROBLEMS:
        report.problems.append("(more problems not listed)")


def _check_events(
    s: Session, state: str, report: TrailReport, pending_before: datetime | None
) -> set[int]:
    """The log indexes of the logged events, each checked against its entry."""
    logged: set[int] = set()
    after = 0
    while True:
        batch = s.execute(
            select(_EVENTS, _ENTRIES.c.kind, _ENTRIES.c.payload, _ENTRIES.c.leaf_hash)
            .outerjoin(_ENTRIES, _ENTRIES.c["index"] == _EVENTS.c.log_index)
            .where(_EVENTS.c.id > after)
            .order_by(_EVENTS.c.id)
            .limit(BATCH)
        ).all()
        if not batch:
            return logged
        for r in batch:
            event = _row(r)
            after = event.id
            report.events += 1
            if event.log_index is None and event.action in NOT_LOGGED:
                report.not_logged += 1
                continue
            if event.log_index is None:
                report.pending += 1
                if report.oldest_pending is None or event.at < report.oldest_pending:
                    report.oldest_pending = event.at
                if pending_before is not None and event.at < pending_before:
                    report.stale_pending += 1
                continue
            report.logged += 1
            logged.add(event.log_index)
            where = f"audit event {event.id} (log entry {event.log_index})"
            if r.kind is None:
                _problem(report, f"{where}: the log has no such entry")
            elif r.kind != AUDIT_KIND:
                _problem(report, f"{where}: the entry is of kind {r.kind!r}, not an audit entry")
            elif bytes(r.payload) != audit_payload(state, event):
                _problem(report, f"{where}: the event differs from what was logged (edited)")
            elif bytes(r.leaf_hash) != leaf_hash(bytes(r.payload)):
                _problem(report, f"{where}: the entry's leaf hash does not match its payload")


def _is_audit_payload(payload: bytes) -> bool:
    if not payload.startswith(b'{"action":'):  # canonical: sorted keys, "action" first
        return False
    try:
        obj = json.loads(payload)
    except ValueError:
        return False
    return isinstance(obj, dict) and obj.get("type") == PAYLOAD_TYPE


def _check_orphans(s: Session, logged: set[int], report: TrailReport) -> None:
    """Every entry that holds an audit event must be an audit entry of a logged event:
    the leaf hash covers the payload, not `kind`, so a relabelled entry is found by what
    it holds. Reads the whole log, in batches."""
    index = _ENTRIES.c["index"]
    after = -1
    while True:
        batch = s.execute(
            select(index, _ENTRIES.c.kind, _ENTRIES.c.payload)
            .where(index > after)
            .order_by(index)
            .limit(BATCH)
        ).all()
        if not batch:
            return
        for i, kind, payload in batch:
            after = int(i)
            if kind != AUDIT_KIND and not _is_audit_payload(bytes(payload)):
                continue
            if kind != AUDIT_KIND:
                _problem(report, f"log entry {after}: holds an audit event but is marked {kind!r}")
            elif after not in logged:
                _problem(report, f"log entry {after}: an audit entry whose event is gone (deleted)")


def _check_checkpoint(
    s: Session, state: str, log_key: Verifier | Sequence[Verifier] | None, report: TrailReport
) -> None:
    report.log_size = int(s.scalar(select(func.count()).select_from(_ENTRIES)) or 0)
    cp = s.execute(
        select(m.LogCheckpoint.size, m.LogCheckpoint.root_hash, m.LogCheckpoint.note)
        .order_by(m.LogCheckpoint.size.desc())
        .limit(1)
    ).first()
    witnessed = s.scalar(select(func.max(m.LogCosignature.size)))
    if cp is None:
        if witnessed is not None:
            _problem(report, "checkpoints were cosigned but the log has none (deleted)")
        return
    size, root = int(cp[0]), bytes(cp[1])
    report.checkpoint_size = size
    if log_key is not None:
        try:
            logs = [log_key] if isinstance(log_key, Verifier) else list(log_key)
            signed, _ = open_member_checkpoint(cp[2], logs=logs, origin=log_origin(state))
        except (CryptoError, ValueError):
            _problem(report, f"the checkpoint of size {size} is not signed by this node's log key")
        else:
            if (signed.size, signed.root_hash) != (size, root):
                _problem(report, f"the checkpoint of size {size} differs from its signed note")
    else:
        report.signature_checked = False
    index = _ENTRIES.c["index"]
    leaves: Sequence[bytes] = [
        bytes(h)
        for h in s.scalars(select(_ENTRIES.c.leaf_hash).where(index < size).order_by(index))
    ]
    if len(leaves) != size:
        _problem(report, f"the newest checkpoint covers {size} entries; the log has {len(leaves)}")
    elif root_hash(leaves) != root:
        _problem(
            report, f"the log's entries do not hash to the root of its checkpoint of size {size}"
        )
    if witnessed is None:
        return
    report.witnessed_size = int(witnessed)
    report.covered = int(
        s.scalar(
            select(func.count())
            .select_from(_EVENTS)
            .where(_EVENTS.c.log_index < report.witnessed_size)
        )
        or 0
    )
    report.witnesses = list(
        s.scalars(
            select(m.LogCosignature.witness)
            .where(m.LogCosignature.size == report.witnessed_size)
            .order_by(m.LogCosignature.witness)
        )
    )


def _check_cosignatures(
    s: Session, witnesses: Sequence[CosignatureVerifier] | None, report: TrailReport
) -> None:
    """Each kept cosignature line against the text of the checkpoint of its size (this
    node's, as stored) and the keys of the witness that sent it. A line of a key that
    state never had, one that does not verify, or one whose checkpoint is gone is a
    problem: the rows were edited or the checkpoint deleted."""
    report.cosignatures_checked = witnesses is not None
    if report.checkpoint_size is None:
        return  # none at all: _check_checkpoint said so if some were cosigned
    known: dict[tuple[str, int], CosignatureVerifier] = {
        (w.name, w.key_hash): w for w in witnesses or ()
    }
    after: tuple[int, str] = (-1, "")
    texts: dict[int, str | None] = {}
    while True:
        cos = m.LogCosignature
        batch = s.execute(
            select(cos.size, cos.witness, cos.signature_line)
            .where((cos.size > after[0]) | ((cos.size == after[0]) & (cos.witness > after[1])))
            .order_by(cos.size, cos.witness)
            .limit(BATCH)
        ).all()
        if not batch:
            break
        sizes = {int(size) for size, _, _ in batch} - texts.keys()
        for size, note in s.execute(
            select(m.LogCheckpoint.size, m.LogCheckpoint.note).where(
                m.LogCheckpoint.size.in_(sizes)
            )
        ):
            try:
                texts[int(size)] = parse_note(note).text
            except CryptoError:
                texts[int(size)] = None  # the checkpoint's own check reports the newest
        for raw_size, witness, line in batch:
            size = int(raw_size)
            after = (size, str(witness))
            report.cosignatures += 1
            where = f"the cosignature of {witness} of the checkpoint of size {size}"
            if size not in texts:
                _problem(report, f"{where}: this log has no such checkpoint (deleted)")
                continue
            text = texts[size]
            if text is None:
                _problem(report, f"{where}: its checkpoint is not a signed note (edited)")
                continue
            if witnesses is None:
                continue
            try:
                signature = parse_signature_line(line)
                cosignature_timestamp(signature)
            except CryptoError:
                _problem(report, f"{where}: not a cosignature line (edited)")
                continue
            verifier = known.get((signature.name, signature.key_hash))
            if verifier is None or signature.name != witness_name(witness):
                _problem(report, f"{where}: not signed with a key {witness} had (edited)")
                continue
            try:
                verifier.verify(text.encode("utf-8"), signature.signature)
            except CryptoError:
                _problem(report, f"{where}: does not verify (edited)")
        if len(texts) > 4 * BATCH:
            texts.clear()
