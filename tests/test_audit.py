"""The audit trail: listing it, entering it in the transparency log, and catching every
edit or deletion afterwards (node.audit), on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import delete, select, update

from crypto.checkpoint import CosignatureVerifier, parse_checkpoint
from crypto.merkle import leaf_hash, root_hash
from crypto.note import Signer, parse_note
from crypto.signing import SigningKey
from federation.naming import log_origin, log_signer, witness_signer, witness_verifier
from node import models as m
from node.audit import AUDIT_KIND, NOT_LOGGED, audit_payload, list_events, log_audit, verify_trail
from node.cli import main
from node.db import Database
from node.queries import audit
from node.translog import TransparencyLog
from tests.helpers import make_storage, record, write_jsonl
from tests.nodeproc import (
    compact,
    db_rows,
    form_compact,
    init_test_node,
    start_node,
    user_env,
)
from tests.test_bundle_transfer import wait_for

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _events(db: Database) -> None:
    with db.write() as s:
        audit(s, actor="ana", action="read_personal", target="IL-1", now=T0)
        detail = {"redactions": ["people"], "n": 2, "é": "ü"}
        audit(s, actor="kim", action="bundle.decide", target="IL-2", outcome="approved",
              detail=detail, now=T0 + timedelta(hours=1))  # fmt: skip
        audit(s, actor="member:MN", action="federation.SubmitCosignature", target=None,
              detail={"size": 3}, now=T0 + timedelta(hours=2))  # fmt: skip
        audit(s, actor="ana", action="bundle.request", target="MN-3", now=T0 + timedelta(days=1))


def _logged(database_url: str, tmp_path: Path) -> tuple[Database, TransparencyLog, Signer]:
    storage = make_storage(database_url, tmp_path)
    db = storage.db
    log = TransparencyLog(db)
    signer = log_signer("IL", SigningKey.generate())
    _events(db)
    assert log_audit(db, log, "IL") == 3  # the cosignature event is not entered (NOT_LOGGED)
    log.sign_checkpoint(signer, origin=log_origin("IL"))
    return db, log, signer


def test_each_event_is_entered_once_in_order_as_its_canonical_payload(
    database_url: str, tmp_path: Path
) -> None:
    db, log, _ = _logged(database_url, tmp_path)
    assert log_audit(db, log, "IL") == 0  # nothing twice
    entries = log.entries(0, 10)
    assert [kind for _, kind, _ in entries] == [AUDIT_KIND] * 3
    events = list_events(db)
    logged = [e for e in events if e.action not in NOT_LOGGED]
    assert [e.log_index for e in logged] == [0, 1, 2]
    for (index, _, payload), event in zip(entries, logged, strict=True):
        assert index == event.log_index
        assert payload == audit_payload("IL", event)
        assert json.loads(payload)["actor"] == event.actor
    (cosig,) = [e for e in events if e.action in NOT_LOGGED]
    assert cosig.log_index is None
    report = verify_trail(db, "IL")
    assert report.problems == []
    assert (report.events, report.logged, report.not_logged, report.pending) == (4, 3, 1, 0)
    assert report.checkpoint_size == 3


def test_an_event_not_yet_logged_is_pending_not_a_problem(
    database_url: str, tmp_path: Path
) -> None:
    db, _, _ = _logged(database_url, tmp_path)
    with db.write() as s:
        audit(s, actor="ana", action="command", target="compact hits")
    report = verify_trail(db, "IL")
    assert report.problems == [] and report.pending == 1 and report.oldest_pending is not None


def test_an_edited_event_is_caught(database_url: str, tmp_path: Path) -> None:
    db, _, _ = _logged(database_url, tmp_path)
    with db.write() as s:
        s.execute(update(m.AuditEvent).where(m.AuditEvent.actor == "kim").values(actor="someone"))
    (problem,) = verify_trail(db, "IL").problems
    assert "differs from what was logged (edited)" in problem and "log entry 1" in problem


def test_an_edited_detail_or_time_is_caught(database_url: str, tmp_path: Path) -> None:
    db, _, _ = _logged(database_url, tmp_path)
    with db.write() as s:
        s.execute(
            update(m.AuditEvent)
            .where(m.AuditEvent.action == "read_personal")
            .values(at=T0 + timedelta(seconds=1))
        )
        s.execute(
            update(m.AuditEvent)
            .where(m.AuditEvent.action == "bundle.decide")
            .values(detail={"redactions": [], "n": 2, "é": "ü"})
        )
    assert len(verify_trail(db, "IL").problems) == 2


def test_a_deleted_event_is_caught(database_url: str, tmp_path: Path) -> None:
    db, _, _ = _logged(database_url, tmp_path)
    with db.write() as s:
        s.execute(delete(m.AuditEvent).where(m.AuditEvent.action == "bundle.request"))
    (problem,) = verify_trail(db, "IL").problems
    assert problem == "log entry 2: an audit entry whose event is gone (deleted)"


def test_an_event_pointed_at_another_entry_is_caught(database_url: str, tmp_path: Path) -> None:
    db, _, _ = _logged(database_url, tmp_path)
    with db.write() as s:  # swap two events' log indexes (each still names a real entry)
        s.execute(update(m.AuditEvent).where(m.AuditEvent.log_index == 0).values(log_index=99))
        s.execute(update(m.AuditEvent).where(m.AuditEvent.log_index == 1).values(log_index=0))
        s.execute(update(m.AuditEvent).where(m.AuditEvent.log_index == 99).values(log_index=1))
    assert len(verify_trail(db, "IL").problems) == 2


def _rewrite_kims_event(db: Database) -> None:
    """Change kim's logged event and rewrite its log entry's payload and leaf hash to match."""
    event = next(e for e in list_events(db) if e.actor == "kim")
    forged = audit_payload("IL", replace(event, actor="someone"))
    with db.write() as s:
        s.execute(update(m.AuditEvent).where(m.AuditEvent.id == event.id).values(actor="someone"))
        s.execute(
            update(m.LogEntry)
            .where(m.LogEntry.index == event.log_index)
            .values(payload=forged, leaf_hash=leaf_hash(forged))
        )


def test_a_rewritten_log_entry_is_caught_by_the_checkpoint(
    database_url: str, tmp_path: Path
) -> None:
    """Rewriting the event, its entry's payload and its leaf hash together still fails:
    the log no longer hashes to the root its (witnessed) checkpoint signed."""
    db, _, _ = _logged(database_url, tmp_path)
    _rewrite_kims_event(db)
    (problem,) = verify_trail(db, "IL").problems
    assert "do not hash to the root of its checkpoint of size 3" in problem


def test_list_filters_by_user_action_prefix_and_time(database_url: str, tmp_path: Path) -> None:
    storage = make_storage(database_url, tmp_path)
    _events(storage.db)
    db = storage.db
    assert [e.action for e in list_events(db, user="ana")] == ["read_personal", "bundle.request"]
    assert [e.actor for e in list_events(db, action="bundle.")] == ["kim", "ana"]
    assert [e.actor for e in list_events(db, action="bundle")] == []
    assert [e.action for e in list_events(db, action="bundle.decide")] == ["bundle.decide"]
    since = list_events(db, since=T0 + timedelta(minutes=30), until=T0 + timedelta(hours=3))
    assert [e.actor for e in since] == ["kim", "member:MN"]
    assert [e.action for e in list_events(db, limit=2)] == [
        "federation.SubmitCosignature",
        "bundle.request",
    ]  # the newest two, oldest first
    assert list_events(db, action="%") == []  # LIKE metacharacters are literal


def test_the_audit_command_filters_and_verify_exits_1_on_an_edit(tmp_path: Path) -> None:
    config = init_test_node(tmp_path)
    d = str(config.data_dir)
    db = Database.from_url(config.database_url())
    try:
        _events(db)
        runner = CliRunner()
        reviewer = user_env(config, "rev", "reviewer")
        out = runner.invoke(
            main,
            ["audit", "--user", "ana", "--since", "2026-03-02", "--json", "--data-dir", d],
            env=reviewer,
        )
        assert out.exit_code == 0, out.output
        assert [e["action"] for e in json.loads(out.stdout)["events"]] == ["bundle.request"]
        bad = runner.invoke(main, ["audit", "--since", "March", "--data-dir", d], env=reviewer)
        assert bad.exit_code == 2 and "--since" in bad.output
        log = TransparencyLog(db)
        log_audit(db, log, "IL")
        log.sign_checkpoint(
            Signer("il.example/log", SigningKey.generate()), origin="il.example/log"
        )
        ok = runner.invoke(main, ["audit", "verify", "--json", "--data-dir", d], env=reviewer)
        assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True
        assert json.loads(ok.stdout)["warnings"] == []
        with db.write() as s:  # an event that waited since March: warned of, not a failure
            audit(s, actor="ana", action="command", target="compact hits", now=T0)
        warned = runner.invoke(main, ["audit", "verify", "--data-dir", d], env=reviewer)
        assert warned.exit_code == 0 and "audit trail intact" in warned.output
        assert "warning: 1 audit events have waited since before" in warned.output
        with db.write() as s:
            s.execute(update(m.AuditEvent).where(m.AuditEvent.actor == "kim").values(outcome="x"))
        failed = runner.invoke(main, ["audit", "verify", "--data-dir", d], env=reviewer)
        assert failed.exit_code == 1 and "NOT intact" in failed.output
        assert "edited" in failed.output
    finally:
        db.dispose()


def test_a_relabelled_entry_of_a_deleted_event_is_caught(database_url: str, tmp_path: Path) -> None:
    """The leaf hash covers the payload, not `kind`: an entry is found by what it holds."""
    db, _, _ = _logged(database_url, tmp_path)
    with db.write() as s:
        s.execute(delete(m.AuditEvent).where(m.AuditEvent.log_index == 2))
        s.execute(update(m.LogEntry).where(m.LogEntry.index == 2).values(kind="custody"))
    (problem,) = verify_trail(db, "IL").problems
    assert problem == "log entry 2: holds an audit event but is marked 'custody'"


def test_the_checkpoint_is_checked_against_its_signed_note(
    database_url: str, tmp_path: Path
) -> None:
    """Rewriting an event, its entry and the checkpoint's root column is caught by the
    note's signature; deleting cosigned checkpoints is caught by their cosignatures."""
    db, _, signer = _logged(database_url, tmp_path)
    key = signer.verifier()
    assert verify_trail(db, "IL", key).problems == []
    _rewrite_kims_event(db)
    with db.write() as s:
        leaves = [
            bytes(h) for h in s.scalars(select(m.LogEntry.leaf_hash).order_by(m.LogEntry.index))
        ]
        s.execute(update(m.LogCheckpoint).values(root_hash=root_hash(leaves)))
    assert verify_trail(db, "IL").problems == []  # without the key, only the column is seen
    assert verify_trail(db, "IL", key).problems == [
        "the checkpoint of size 3 differs from its signed note"
    ]
    with db.write() as s:
        s.add(m.LogCosignature(size=3, witness="MN", signature_line="x", received_at=T0))
        s.execute(delete(m.LogCheckpoint))
    assert verify_trail(db, "IL").problems == [
        "checkpoints were cosigned but the log has none (deleted)"
    ]


def _cosigned(
    database_url: str, tmp_path: Path
) -> tuple[Database, TransparencyLog, Signer, dict[str, SigningKey]]:
    """IL's trail cosigned by MN and CA at size 3, then one more event at size 4 cosigned
    by MN: three cosignature rows."""
    db, log, signer = _logged(database_url, tmp_path)
    keys = {"MN": SigningKey.generate(), "CA": SigningKey.generate()}

    def cosign(size: int, *states: str) -> None:
        with db.read() as s:
            note = s.get(m.LogCheckpoint, size)
            assert note is not None
            checkpoint = parse_checkpoint(parse_note(note.note).text)
        with db.write() as s:
            for st in states:
                line = witness_signer(st, keys[st]).cosign(checkpoint, timestamp=1_800_000_000)
                s.add(m.LogCosignature(size=size, witness=st, signature_line=line, received_at=T0))

    cosign(3, "MN", "CA")
    with db.write() as s:
        audit(s, actor="ana", action="read_personal", target="IL-4", now=T0)
    assert log_audit(db, log, "IL") == 1
    log.sign_checkpoint(signer, origin=log_origin("IL"))
    cosign(4, "MN")
    return db, log, signer, keys


def _witnesses(keys: dict[str, SigningKey]) -> list[CosignatureVerifier]:
    return [witness_verifier(st, k.public_key) for st, k in keys.items()]


def test_every_cosignature_is_checked_against_its_checkpoint_and_witness_keys(
    database_url: str, tmp_path: Path
) -> None:
    db, _, signer, keys = _cosigned(database_url, tmp_path)
    witnesses = _witnesses(keys)
    report = verify_trail(db, "IL", signer.verifier(), witnesses=witnesses)
    assert report.problems == [] and report.cosignatures == 3 and report.cosignatures_checked
    assert (report.witnessed_size, report.witnesses) == (4, ["MN"])
    unchecked = verify_trail(db, "IL", signer.verifier())
    assert unchecked.problems == [] and not unchecked.cosignatures_checked
    # A witness whose key is not given (none of its keys in any roster version): refused.
    assert verify_trail(db, "IL", witnesses=witnesses[:1]).problems == [
        "the cosignature of CA of the checkpoint of size 3: not signed with a key CA had (edited)"
    ]


def test_an_edited_or_moved_cosignature_is_caught(database_url: str, tmp_path: Path) -> None:
    db, _, _, keys = _cosigned(database_url, tmp_path)
    witnesses = _witnesses(keys)
    with db.write() as s:
        rows = {(r.size, r.witness): r for r in s.scalars(select(m.LogCosignature))}
        # MN's line of size 4 claimed for size 3 by CA's row; MN's size-4 line tampered.
        rows[(3, "CA")].signature_line = rows[(3, "MN")].signature_line
        line = rows[(4, "MN")].signature_line
        body = line.rstrip("\n")
        head, b64 = body.rsplit(" ", 1)
        raw = bytearray(base64.b64decode(b64))
        raw[-1] ^= 1
        tampered = f"{head} {base64.b64encode(bytes(raw)).decode()}{line[len(body) :]}"
        rows[(4, "MN")].signature_line = tampered
    assert verify_trail(db, "IL", witnesses=witnesses).problems == [
        "the cosignature of CA of the checkpoint of size 3: not signed with a key CA had (edited)",
        "the cosignature of MN of the checkpoint of size 4: does not verify (edited)",
    ]
    with db.write() as s:
        rows = {(r.size, r.witness): r for r in s.scalars(select(m.LogCosignature))}
        rows[(3, "CA")].signature_line = "not a line"
    assert verify_trail(db, "IL", witnesses=witnesses).problems[0] == (
        "the cosignature of CA of the checkpoint of size 3: not a cosignature line (edited)"
    )


def test_a_deleted_cosigned_checkpoint_is_caught(database_url: str, tmp_path: Path) -> None:
    db, _, _, keys = _cosigned(database_url, tmp_path)
    with db.write() as s:
        s.execute(delete(m.LogCheckpoint).where(m.LogCheckpoint.size == 3))
    assert verify_trail(db, "IL", witnesses=_witnesses(keys)).problems == [
        f"the cosignature of {st} of the checkpoint of size 3: this log has no such "
        "checkpoint (deleted)"
        for st in ("CA", "MN")
    ]


def test_events_pending_for_long_are_a_warning(database_url: str, tmp_path: Path) -> None:
    db, _, _ = _logged(database_url, tmp_path)
    with db.write() as s:
        audit(s, actor="ana", action="command", target="compact hits", now=T0)
        audit(s, actor="ana", action="command", target="compact hits", now=T0 + timedelta(hours=2))
    report = verify_trail(db, "IL", pending_before=T0 + timedelta(hours=1))
    assert (report.pending, report.stale_pending, report.problems) == (2, 1, [])
    assert report.warnings == [
        "1 audit events have waited since before 2026-03-01 13:00 UTC to be entered in the "
        "log: is compact serve running, and its federation loop not failing (its log)?"
    ]
    assert verify_trail(db, "IL").warnings == []  # no limit given: nothing to warn of


def test_an_oversized_detail_is_replaced_by_its_digest_and_chaining_goes_on(
    database_url: str, tmp_path: Path
) -> None:
    """A detail too large for a log entry would stop every later event from being
    chained; it is stored as its size and SHA-256 instead."""
    import hashlib

    storage = make_storage(database_url, tmp_path)
    db, log = storage.db, TransparencyLog(storage.db)
    huge = {"reason": "x" * (2 * 1024 * 1024)}
    encoded = json.dumps(huge, sort_keys=True, separators=(",", ":")).encode()
    with db.write() as s:
        audit(s, actor="ana", action="bundle.deny", target="IL-1", detail=huge, now=T0)
        audit(s, actor="ana", action="read_personal", target="IL-2", detail={"n": 1}, now=T0)
    assert log_audit(db, log, "IL") == 2
    first, second = list_events(db)
    assert first.detail == {
        "truncated": True,
        "bytes": len(encoded),
        "sha256": hashlib.sha256(encoded).hexdigest(),
    }
    assert second.detail == {"n": 1}
    assert verify_trail(db, "IL").problems == []


def test_a_node_in_no_compact_enters_its_trail_in_its_log(tmp_path: Path) -> None:
    """The federation loop of compact serve logs the audit trail without a roster (no
    publishing yet): init's user.add is entered, and a checkpoint signed, within seconds."""
    config = init_test_node(tmp_path)
    reviewer = user_env(config, "rev", "reviewer")
    before = compact("audit", "verify", "--json", "--data-dir", str(config.data_dir), env=reviewer)
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["pending"] >= 1
    node = start_node(config)
    try:
        wait_for(
            "the trail entered in the log",
            lambda: (
                db_rows(config, select(m.AuditEvent.id).where(m.AuditEvent.log_index.is_(None)))
                == []
            ),
            timeout=30,
        )
    finally:
        assert node.stop() == 0
    after = compact("audit", "verify", "--json", "--data-dir", str(config.data_dir), env=reviewer)
    report = json.loads(after.stdout)
    assert after.returncode == 0 and report["ok"] is True, after.stdout
    assert report["logged"] >= 2 and report["checkpoint_size"] >= report["logged"]
    assert not report["checkpoint_signature_checked"]  # no roster: no key to check it with
    assert any(e["event"] == "trail_logged" for e in node.logs())


def test_the_trail_is_logged_when_publishing_cannot_run(tmp_path: Path) -> None:
    """IL's OPRF threshold needs MN, which is down: publishing fails, and the audit events
    (the ingest's among them) are entered in the log all the same."""
    il = form_compact(tmp_path, ("IL", "MN"))["IL"]
    d = str(il.data_dir)
    path = write_jsonl(tmp_path / "in", [record("IL-1", sharing="index")])
    ingested = compact("ingest", str(path), "--data-dir", d)
    assert ingested.returncode == 0, ingested.stderr
    pending = select(m.AuditEvent.action).where(
        m.AuditEvent.log_index.is_(None), m.AuditEvent.action.not_in(NOT_LOGGED)
    )
    waiting = db_rows(il, pending)
    assert waiting != []
    synced = compact("sync", "--data-dir", d, "--json")
    assert synced.returncode == 1  # MN is down
    assert json.loads(synced.stdout)["publish"]["ok"] is False
    assert db_rows(il, select(m.PublishedEntry.global_id)) == []  # nothing published
    assert db_rows(il, pending) == []  # sync's own event too: it is audited as it starts
    report = json.loads(
        compact(
            "audit", "verify", "--json", "--data-dir", d, env=user_env(il, "rev", "reviewer")
        ).stdout
    )
    assert report["ok"] is True and report["logged"] >= 2
