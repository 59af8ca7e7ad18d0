"""Re-wrapping the storage key (issue 8, "Rotate keys"): `compact keys rewrap` seals the
keystore under a new key file or passphrase; the keys and everything stored stay, the
old secret stops working, a refusal changes nothing, and a running node keeps serving
and starts again under the new secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from crypto.errors import DecryptionError
from crypto.keystore import generate_key_file_secret, open_keystore
from node import models as m
from node.config import Config, load_config
from node.db import Database
from node.errors import UnlockError
from node.rewrap import rewrap_keystore
from node.setup import Secret, unlock
from tests.helpers import record, write_jsonl
from tests.nodeproc import compact, db_rows, init_test_node, run_compact, start_node


def _keystore(config: Config) -> bytes:
    return config.path(config.keys.keystore).read_bytes()


def _key_file_secret(path: str | Path) -> Secret:
    return Secret(key_file_secret=Path(path).read_bytes())


@pytest.fixture
def node(tmp_path: Path) -> Config:
    return init_test_node(tmp_path / "n", "IL")


def test_a_new_key_file_opens_the_same_keys_and_the_old_one_no_longer(
    node: Config, tmp_path: Path
) -> None:
    old = _key_file_secret(node.keys.key_file)
    before = unlock(node, old)
    new_file = tmp_path / "new.key"
    new_file.write_bytes(generate_key_file_secret())
    db = Database.from_url(node.database_url())
    try:
        report = rewrap_keystore(
            node, db, old, _key_file_secret(new_file), new_key_file=new_file, actor="test"
        )
    finally:
        db.dispose()
    reloaded = load_config(node.data_dir)
    assert reloaded.keys.unlock == "key_file"
    assert reloaded.keys.key_file == str(new_file.resolve()) == report.key_file
    after = unlock(reloaded, _key_file_secret(new_file))
    assert after == before  # the same keys (constant-time equality of every secret)
    with pytest.raises(DecryptionError):
        open_keystore(_keystore(reloaded), key_file_secret=old.key_file_secret)
    assert ("keys.rewrap",) in db_rows(node, select(m.AuditEvent.action))


def test_to_a_passphrase_and_back(node: Config, tmp_path: Path) -> None:
    old = _key_file_secret(node.keys.key_file)
    phrase = Secret(passphrase=b"correct horse battery staple")
    db = Database.from_url(node.database_url())
    try:
        rewrap_keystore(
            node, db, old, phrase, new_key_file=None, actor="test", kdf_strength="interactive"
        )
        as_passphrase = load_config(node.data_dir)
        assert (as_passphrase.keys.unlock, as_passphrase.keys.key_file) == ("passphrase", "")
        unlock(as_passphrase, phrase)
        back = tmp_path / "back.key"
        back.write_bytes(generate_key_file_secret())
        rewrap_keystore(
            as_passphrase, db, phrase, _key_file_secret(back), new_key_file=back, actor="test"
        )
    finally:
        db.dispose()
    final = load_config(node.data_dir)
    assert final.keys.unlock == "key_file"
    unlock(final, _key_file_secret(back))


def test_refusals_change_nothing(node: Config, tmp_path: Path) -> None:
    old = _key_file_secret(node.keys.key_file)
    keystore, config_text = _keystore(node), (node.data_dir / "compact.toml").read_text()
    new_file = tmp_path / "new.key"
    new_file.write_bytes(generate_key_file_secret())
    inside = node.data_dir / "inside.key"
    inside.write_bytes(generate_key_file_secret())
    db = Database.from_url(node.database_url())
    try:
        cases = [
            (_key_file_secret(new_file), _key_file_secret(new_file), new_file, "current secret"),
            (old, _key_file_secret(inside), inside, "inside the data folder"),
            (old, old, Path(node.keys.key_file), "is the current one"),
        ]
        for current, new, path, message in cases:
            with pytest.raises(UnlockError, match=message):
                rewrap_keystore(node, db, current, new, new_key_file=path, actor="test")
    finally:
        db.dispose()
    assert _keystore(node) == keystore
    assert (node.data_dir / "compact.toml").read_text() == config_text
    assert not any(p.name.endswith(".rewrap") for p in (node.data_dir / "keys").iterdir())


def test_a_running_node_keeps_serving_and_restarts_under_the_new_key_file(
    node: Config, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "in", [record("IL-RW-1")])
    run_compact("ingest", str(path), "--data-dir", str(node.data_dir))
    proc = start_node(node)
    try:
        new_file = tmp_path / "fresh.key"  # made by the command
        done = run_compact(
            "keys", "rewrap", "--new-key-file", str(new_file), "--json",
            "--data-dir", str(node.data_dir),
        )  # fmt: skip
        assert json.loads(done.stdout)["key_file"] == str(new_file.resolve())
        assert new_file.stat().st_mode & 0o077 == 0
        listed = run_compact("incidents", "list", "--json", "--data-dir", str(node.data_dir))
        assert len(json.loads(listed.stdout)) == 1
    finally:
        assert proc.stop() == 0
    old_key = Path(node.keys.key_file)
    proc = start_node(load_config(node.data_dir))  # reads the new key file
    try:
        listed = run_compact("incidents", "list", "--json", "--data-dir", str(node.data_dir))
        assert len(json.loads(listed.stdout)) == 1
    finally:
        assert proc.stop() == 0
    # The old key file, put back in the configuration, no longer starts the node.
    from node.config import set_setting

    set_setting(node.data_dir / "compact.toml", "key_file", json.dumps(str(old_key)))
    refused = compact("serve", "--data-dir", str(node.data_dir), timeout=60)
    assert refused.returncode != 0
    assert "wrong passphrase or key file" in refused.stderr + refused.stdout


def test_the_command_line_needs_exactly_one_new_secret(node: Config, tmp_path: Path) -> None:
    neither = compact("keys", "rewrap", "--data-dir", str(node.data_dir))
    assert neither.returncode == 1 and "exactly one" in neither.stderr
    short = tmp_path / "short.txt"
    short.write_text("too short\n")
    refused = compact(
        "keys", "rewrap", "--new-passphrase-file", str(short), "--data-dir", str(node.data_dir)
    )
    assert refused.returncode == 1 and "12 characters" in refused.stderr
