"""Backups (issue 8): `compact backup create|verify|restore` (node.backup).

One node: a backup restored into another database (SQLite to PostgreSQL and back) holds
every row of every table, every blob and file; tampering anywhere, the wrong secret, a
manifest signed by another key, a non-empty target and a truncated file are refused
with nothing left behind. Three nodes: a backup made while IL runs, restored into a
fresh folder, serves the same incidents and evidence, its log matches the checkpoints
CA and MN witnessed, and syncing resumes with a new record.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crypto.dsse import sign_envelope
from crypto.merkle import root_hash
from crypto.signing import SigningKey
from node import models as m
from node.backup import (
    MAGIC,
    PAYLOAD_TYPE,
    TRAILER,
    BackupError,
    create_backup,
    restore_backup,
    verify_backup,
)
from node.config import Config, load_config
from node.db import Database
from node.setup import Secret, unlock
from tests.helpers import record, write_jsonl
from tests.nodeproc import (
    NodeProcess,
    compact,
    db_rows,
    init_test_node,
    run_compact,
    running_compact,
    start_node,
)
from tests.test_bundle_transfer import wait_for


def _ingest(config: Config, root: Path, prefix: str, *, evidence: bool = True) -> dict[str, bytes]:
    """Two incidents of the node's state, the first with two evidence files."""
    state = config.node.state
    media = root / f"media-{prefix}"
    media.mkdir(parents=True)
    files = {"clip.mp4": os.urandom(300_000), "note.txt": f"statement {prefix}\n".encode()}
    for name, data in files.items():
        (media / name).write_bytes(data)
    attached = [
        {"path": f"{media.name}/{name}", "media_type": kind, "captured_by": "bystander"}
        for name, kind in (("clip.mp4", "video/mp4"), ("note.txt", "text/plain"))
    ]
    location = {"county": "Cook", "state": state, "kind": "street"}
    records = [
        record(f"{state}-{prefix}-1", location=location, evidence=attached if evidence else []),
        record(f"{state}-{prefix}-2", location=location),
    ]
    path = write_jsonl(root, records, name=f"in-{prefix}.jsonl")
    run_compact("ingest", str(path), "--data-dir", str(config.data_dir))
    return files


def _secret(config: Config) -> Secret:
    return Secret(key_file_secret=Path(config.keys.key_file).read_bytes())


def _tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    db = Database.from_url(url)
    try:
        with db.read() as s:
            return {
                t.name: [
                    tuple(r) for r in s.execute(select(t).order_by(*t.primary_key.columns)).all()
                ]
                for t in m.Base.metadata.sorted_tables
            }
    finally:
        db.dispose()


def _backup(config: Config, out: Path) -> None:
    keys = unlock(config, _secret(config))
    db = Database.from_url(config.database_url())
    try:
        create_backup(config, db, keys, out, actor="test")
    finally:
        db.dispose()


def _files(folder: Path) -> dict[str, bytes]:
    """Every file of a data folder but the database, run/ and the blob store's lock."""
    return {
        rel: p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and not (rel := p.relative_to(folder).as_posix()).startswith(("run/", "blobs/."))
        and "node.db" not in p.name
    }


@pytest.fixture
def node(tmp_path: Path) -> Config:
    config = init_test_node(tmp_path / "src", "IL")
    _ingest(config, tmp_path, "A")
    return config


def _restore_and_compare(node: Config, tmp_path: Path, target_url: str) -> None:
    out = tmp_path / "il.backup"
    _backup(node, out)
    before = _tables(node.database_url())
    assert before["blobs"] and before["log_entries"] and before["incidents"]
    assert ("backup.create",) in db_rows(node, select(m.AuditEvent.action))
    target = tmp_path / "restored"
    report = restore_backup(out, target, _secret(node), database_url=target_url)
    assert report.state == "IL"
    assert sum(report.tables.values()) == sum(len(v) for v in before.values())
    restored = load_config(target)
    assert restored.database_url() != node.database_url()
    assert _tables(restored.database_url()) == before
    # Every file of the data folder (configuration, keys, credentials, blobs) came back,
    # byte for byte, but the database URL the restore was told to use.
    source_files, restored_files = _files(node.data_dir), _files(target)
    source_files.pop("compact.toml"), restored_files.pop("compact.toml")
    assert restored_files == source_files
    assert restored.database.url == ("" if target_url == "sqlite" else target_url)


def test_sqlite_to_postgresql_holds_every_row_and_file(
    node: Config, tmp_path: Path, postgres_url: str
) -> None:
    _restore_and_compare(node, tmp_path, postgres_url)


def test_postgresql_to_sqlite_holds_every_row_and_file(tmp_path: Path, postgres_url: str) -> None:
    config = init_test_node(tmp_path / "src", "IL", database_url=postgres_url)
    _ingest(config, tmp_path, "A")
    _restore_and_compare(config, tmp_path, "sqlite")


def test_sqlite_to_sqlite_and_verify(node: Config, tmp_path: Path) -> None:
    _restore_and_compare(node, tmp_path, "")
    result = verify_backup(tmp_path / "il.backup", _secret(node))
    assert result["ok"] and result["state"] == "IL" and result["blobs"] == 2


def _frame(path: Path) -> tuple[bytes, int, int]:
    """(the file, where the sealed stream starts, where the envelope starts)."""
    data = path.read_bytes()
    (n,) = struct.unpack(">I", data[len(MAGIC) : len(MAGIC) + 4])
    (env,) = struct.unpack(">I", data[-8:-4])
    return data, len(MAGIC) + 4 + n, len(data) - 8 - env


def _refused(node: Config, backup: Path, target: Path, message: str, **kw: Any) -> None:
    with pytest.raises(BackupError, match=message):
        restore_backup(backup, target, kw.pop("secret", None) or _secret(node), **kw)
    assert not target.exists()
    assert not any(p.name.startswith(f".{target.name}.restore") for p in target.parent.iterdir())


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("stream", "not be opened|altered|failed|integrity|authentic|does not match"),
        ("header", "header|keystore"),
        ("envelope", "damaged|not signed"),
    ],
)
def test_a_flipped_byte_is_refused_and_nothing_is_kept(
    node: Config, tmp_path: Path, where: str, message: str
) -> None:
    out = tmp_path / "il.backup"
    _backup(node, out)
    data, stream, envelope = _frame(out)
    at = {"stream": (stream + envelope) // 2, "header": stream - 40, "envelope": envelope + 30}[
        where
    ]
    bad = bytearray(data)
    bad[at] ^= 0x01
    tampered = tmp_path / "tampered.backup"
    tampered.write_bytes(bytes(bad))
    _refused(node, tampered, tmp_path / "restored", message)
    result = compact("backup", "verify", str(tampered), "--key-file", node.keys.key_file, "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["ok"] is False


def test_truncated_wrong_secret_and_foreign_signature_are_refused(
    node: Config, tmp_path: Path
) -> None:
    out = tmp_path / "il.backup"
    _backup(node, out)
    data, stream, envelope = _frame(out)
    short = tmp_path / "short.backup"
    short.write_bytes(data[: (stream + envelope) // 2])
    _refused(node, short, tmp_path / "r1", "truncated|damaged")
    _refused(
        node,
        out,
        tmp_path / "r2",
        "does not open",
        secret=Secret(key_file_secret=os.urandom(32)),
    )
    # The same manifest, signed by a key that is not the keystore's.
    from crypto.dsse import Envelope

    original = Envelope.from_json(data[envelope:-8])
    forged = sign_envelope(PAYLOAD_TYPE, original.payload, [SigningKey.generate()]).to_json()
    other = tmp_path / "forged.backup"
    other.write_bytes(data[:envelope] + forged + struct.pack(">I", len(forged)) + TRAILER)
    _refused(node, other, tmp_path / "r3", "not signed by the key in its keystore")


def test_a_database_that_is_not_empty_is_refused_and_left_alone(
    node: Config, tmp_path: Path, postgres_url: str
) -> None:
    out = tmp_path / "il.backup"
    _backup(node, out)
    restore_backup(out, tmp_path / "first", _secret(node), database_url=postgres_url)
    before = _tables(postgres_url)
    _refused(node, out, tmp_path / "second", "not empty", database_url=postgres_url)
    assert _tables(postgres_url) == before


def test_an_existing_folder_or_backup_is_never_overwritten(node: Config, tmp_path: Path) -> None:
    out = tmp_path / "il.backup"
    _backup(node, out)
    with pytest.raises(BackupError, match="exists"):
        _backup(node, out)
    with pytest.raises(BackupError, match="outside the data folder"):
        _backup(node, node.data_dir / "inside.backup")
    assert not (node.data_dir / "inside.backup").exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(BackupError, match="not empty"):
        restore_backup(out, full, _secret(node))
    assert [p.name for p in full.iterdir()] == ["keep.txt"]


def test_the_command_line(node: Config, tmp_path: Path) -> None:
    out = tmp_path / "cli.backup"
    made = run_compact("backup", "create", str(out), "--json", "--data-dir", str(node.data_dir))
    report = json.loads(made.stdout)
    assert report["state"] == "IL" and report["blobs"] == 2 and out.stat().st_mode & 0o077 == 0
    checked = run_compact("backup", "verify", str(out), "--json")  # the key file it recorded
    assert json.loads(checked.stdout)["rows"] == report["rows"]
    target = tmp_path / "restored"
    done = run_compact("backup", "restore", str(out), "--data-dir", str(target), "--json")
    restored = json.loads(done.stdout)
    assert restored["rows"] == report["rows"]
    assert restored["checks"]["audit_trail"]["ok"] is True
    again = compact("backup", "restore", str(out), "--data-dir", str(target))
    assert again.returncode == 1 and "not empty" in again.stderr
    audit = run_compact("audit", "--action", "backup.", "--json", "--data-dir", str(target))
    assert [e["action"] for e in json.loads(audit.stdout)["events"]] == ["backup.create"]


# --- three nodes -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compact3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with running_compact(tmp_path_factory.mktemp("backup3")) as running:
        yield running


def _witnessed_il(configs: dict[str, Config]) -> dict[str, tuple[int, bytes]]:
    """The newest checkpoint of IL's log that CA and MN each accepted: (size, root)."""
    out = {}
    for state in ("CA", "MN"):
        rows = db_rows(
            configs[state],
            select(m.ReplicaLog.checkpoint_size, m.ReplicaLog.checkpoint_root).where(
                m.ReplicaLog.state == "IL"
            ),
        )
        if rows:
            out[state] = (int(rows[0][0]), bytes(rows[0][1]))
    return out


def _il_log_published(configs: dict[str, Config]) -> bool:
    """CA and MN accepted a checkpoint of IL's whole log."""
    size = db_rows(configs["IL"], select(m.LogEntry.index).order_by(m.LogEntry.index.desc()))
    seen = _witnessed_il(configs)
    return bool(size) and all(seen.get(s, (0, b""))[0] == int(size[0][0]) + 1 for s in ("CA", "MN"))


def test_restore_serves_the_same_data_matches_the_witnessed_log_and_sync_resumes(
    compact3: dict[str, Any],
) -> None:
    root: Path = compact3["root"]
    configs: dict[str, Config] = compact3["configs"]
    nodes: dict[str, NodeProcess] = compact3["nodes"]
    il = configs["IL"]
    files = _ingest(il, root, "E2E")
    gid = str(
        db_rows(il, select(m.Incident.global_id).where(m.Incident.external_id == "IL-E2E-1"))[0][0]
    )
    wait_for(
        "IL to publish its incidents and CA and MN to hold its whole log",
        lambda: (
            len(db_rows(il, select(m.PublishedEntry.log_index))) == 2 and _il_log_published(configs)
        ),
        120,
    )
    shown = run_compact("incidents", "show", gid, "--json", "--data-dir", str(il.data_dir)).stdout

    backup = root / "il.backup"
    run_compact("backup", "create", str(backup), "--data-dir", str(il.data_dir))  # IL runs
    # The backup's own audit event was logged before the snapshot: once IL's members
    # hold the whole log again, the backup holds all of it.
    wait_for("CA and MN to hold IL's whole log", lambda: _il_log_published(configs), 120)
    assert nodes["IL"].stop() == 0
    witnessed = _witnessed_il(configs)

    lost = root / "il-lost-machine"
    il.data_dir.rename(lost)  # the machine is gone; the same endpoint comes back
    restored = run_compact(
        "backup", "restore", str(backup), "--data-dir", str(il.data_dir), "--json"
    )
    assert json.loads(restored.stdout)["checks"]["audit_trail"]["ok"] is True

    # Its log holds exactly the entries CA and MN witnessed: the same root at their sizes.
    leaves = [
        bytes(h) for (h,) in db_rows(il, select(m.LogEntry.leaf_hash).order_by(m.LogEntry.index))
    ]
    for state, (size, root_seen) in witnessed.items():
        assert len(leaves) >= size, state
        assert root_hash(leaves[:size]) == root_seen, f"IL's restored log differs from {state}'s"

    nodes["IL"] = start_node(il)
    # The same data: the incident and its evidence, byte for byte.
    again = run_compact("incidents", "show", gid, "--json", "--data-dir", str(il.data_dir)).stdout
    assert json.loads(again) == json.loads(shown)
    for item in json.loads(again)["evidence"]:
        out = root / f"got-{item['sha256']}"
        run_compact(
            "evidence", "get", gid, item["sha256"], "-o", str(out), "--data-dir", str(il.data_dir)
        )
        assert out.read_bytes() in files.values()

    # Sync resumes: a record ingested now reaches CA and MN, and nobody raises an alert.
    _ingest(il, root, "AFTER", evidence=False)
    wait_for(
        "CA and MN to hold IL's log with the new records",
        lambda: (
            # The ingest's audit event can be logged before the publisher has run: wait
            # for both new index entries, then for the members to hold that log.
            len(db_rows(il, select(m.PublishedEntry.log_index))) == 4
            and _il_log_published(configs)
            and all(_witnessed_il(configs)[s][0] > witnessed[s][0] for s in ("CA", "MN"))
        ),
        120,
    )
    for state in ("CA", "MN"):
        alerts = run_compact("alerts", "--json", "--data-dir", str(configs[state].data_dir))
        assert json.loads(alerts.stdout) == {"alerts": []}, state
