"""The `compact` command line, run as a user would: child processes, real server."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from node import migrate
from node.config import load_config
from node.setup import read_secret, unlock
from tests.helpers import record, write_jsonl
from tests.nodeproc import REPO, NodeProcess, compact, start_node

SAMPLE = str(REPO / "examples" / "incidents.jsonl")
PASS = {"COMPACT_PASSPHRASE": "correct horse battery staple"}


def init(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
    result = compact(
        "init",
        "--state",
        "IL",
        "--data-dir",
        str(data_dir),
        "--listen",
        "127.0.0.1:0",
        "--federation-listen",
        "127.0.0.1:0",
        "--kdf-strength",
        "interactive",
        *extra,
        env=env,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    root = tmp_path_factory.mktemp("cli")
    init(root / "il", "--key-file", str(root / "il.key"))
    result = compact("ingest", SAMPLE, "--data-dir", str(root / "il"))
    assert result.returncode == 0, result.stderr
    proc = start_node(load_config(root / "il"))
    yield proc
    proc.stop()


def run_json(*args: str, env: dict[str, str] | None = None) -> object:
    result = compact(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- init ---------------------------------------------------------------------------------


def test_init_with_a_key_file_creates_everything(tmp_path: Path) -> None:
    init(tmp_path / "il", "--key-file", str(tmp_path / "il.key"))
    d = tmp_path / "il"
    for name in (
        "compact.toml",
        "node.db",
        "keys/keystore.json",
        "keys/tls.crt",
        "credentials/admin.token",
    ):
        assert (d / name).is_file(), name
    for private in ("keys/keystore.json", "credentials/admin.token"):
        assert stat.S_IMODE((d / private).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "il.key").stat().st_mode) == 0o600
    config = load_config(d)
    assert config.keys.unlock == "key_file"
    keys = unlock(config, read_secret(config))
    sealed = (d / "keys" / "keystore.json").read_bytes()
    for secret in (keys.data_key, bytes(keys.signing_key), bytes(keys.encryption_key)):
        assert secret not in sealed
        assert secret.hex().encode() not in sealed
    assert b"PRIVATE KEY" not in sealed
    # SQLite runs in WAL mode.
    import sqlite3

    with sqlite3.connect(d / "node.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_init_with_a_passphrase(tmp_path: Path) -> None:
    init(tmp_path / "il", env=PASS)
    config = load_config(tmp_path / "il")
    assert config.keys.unlock == "passphrase"
    wrong = compact(
        "ingest",
        SAMPLE,
        "--data-dir",
        str(tmp_path / "il"),
        env={"COMPACT_PASSPHRASE": "wrong passphrase!!"},
    )
    assert wrong.returncode == 1
    assert "wrong passphrase or key file" in wrong.stderr
    none = compact(
        "ingest", SAMPLE, "--data-dir", str(tmp_path / "il"), env={"COMPACT_PASSPHRASE": ""}
    )
    assert none.returncode == 1
    assert "a passphrase is needed" in none.stderr
    ok = compact("ingest", SAMPLE, "--data-dir", str(tmp_path / "il"), env=PASS)
    assert ok.returncode == 0, ok.stderr


def test_init_refuses_a_short_passphrase(tmp_path: Path) -> None:
    result = compact(
        "init",
        "--state",
        "IL",
        "--data-dir",
        str(tmp_path / "il"),
        env={"COMPACT_PASSPHRASE": "short"},
    )
    assert result.returncode == 1
    assert "at least 12 characters" in result.stderr
    assert not (tmp_path / "il").exists()


def test_init_refuses_a_key_file_inside_the_data_folder(tmp_path: Path) -> None:
    result = compact(
        "init",
        "--state",
        "IL",
        "--data-dir",
        str(tmp_path / "il"),
        "--key-file",
        str(tmp_path / "il" / "k"),
    )
    assert result.returncode == 1
    assert "must not be inside the data folder" in result.stderr


def test_init_refuses_an_existing_node_and_an_unknown_state(tmp_path: Path) -> None:
    init(tmp_path / "il", env=PASS)
    before = (tmp_path / "il" / "keys" / "keystore.json").read_bytes()
    again = compact("init", "--state", "IL", "--data-dir", str(tmp_path / "il"), env=PASS)
    assert again.returncode == 1
    assert "already holds a node" in again.stderr
    assert (tmp_path / "il" / "keys" / "keystore.json").read_bytes() == before
    bad = compact("init", "--state", "ZZ", "--data-dir", str(tmp_path / "zz"), env=PASS)
    assert bad.returncode == 1
    assert "node.state" in bad.stderr
    assert not (tmp_path / "zz").exists()


def test_commands_on_an_uninitialised_folder_say_so(tmp_path: Path) -> None:
    result = compact("incidents", "list", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "compact init" in result.stderr


# --- ingest -------------------------------------------------------------------------------


def test_ingest_reports_every_bad_line_and_imports_nothing(tmp_path: Path) -> None:
    init(tmp_path / "il", "--key-file", str(tmp_path / "k"))
    path = write_jsonl(tmp_path / "in", [record("A"), record("B", status="nope"), "{oops"])
    result = compact("ingest", str(path), "--data-dir", str(tmp_path / "il"))
    assert result.returncode == 1
    assert "line 2: status: not one of the allowed values" in result.stderr
    assert "line 3: not valid JSON" in result.stderr
    assert "nothing was imported" in result.stderr
    report = run_json("ingest", str(path), "--data-dir", str(tmp_path / "il"), "--skip-invalid")
    assert isinstance(report, dict)
    assert (report["imported"], report["rejected"]) == (1, 2)
    assert report["errors"][0] == {
        "line_number": 2,
        "field": "status",
        "reason": "not one of the allowed values",
    }


def test_ingest_of_an_empty_file(tmp_path: Path) -> None:
    init(tmp_path / "il", "--key-file", str(tmp_path / "k"))
    (tmp_path / "empty.jsonl").write_bytes(b"")
    result = compact("ingest", str(tmp_path / "empty.jsonl"), "--data-dir", str(tmp_path / "il"))
    assert result.returncode == 1
    assert "holds no records; nothing was imported" in result.stderr


# --- querying a running node --------------------------------------------------------------


def test_incidents_list_search_show(served: NodeProcess) -> None:
    d = str(served.config.data_dir)
    listed = run_json("incidents", "list", "--data-dir", d)
    assert isinstance(listed, list) and len(listed) == 6
    found = run_json(
        "incidents",
        "search",
        "--data-dir",
        d,
        "--key",
        "badge:ICE-ERO:04471",
        "--from",
        "2025-10-05",
    )
    assert isinstance(found, list)
    assert [f["external_id"] for f in found] == ["IL-HL-2025-000151", "IL-HL-2025-000124"]
    shown = run_json("incidents", "show", found[0]["global_id"], "--data-dir", d)
    assert isinstance(shown, dict)
    assert shown["people"][0]["name"] == "Mark Johnson"
    assert shown["occurred_at"] == "2025-10-18T08:00:00-05:00"
    table = compact("incidents", "list", "--data-dir", d)
    assert table.returncode == 0 and found[0]["global_id"] in table.stdout


def test_a_bad_filter_names_it(served: NodeProcess) -> None:
    result = compact(
        "incidents", "search", "--data-dir", str(served.config.data_dir), "--kind", "mall"
    )
    assert result.returncode == 1
    assert "location_kind: not one of the allowed values (INVALID_ARGUMENT)" in result.stderr


def test_evidence_get_writes_the_verified_file(served: NodeProcess, tmp_path: Path) -> None:
    d = str(served.config.data_dir)
    found = run_json("incidents", "search", "--data-dir", d, "--kind", "school")
    assert isinstance(found, list)
    shown = run_json("incidents", "show", found[0]["global_id"], "--data-dir", d)
    assert isinstance(shown, dict)
    item = shown["evidence"][0]
    out = tmp_path / "clip.mp4"
    result = compact(
        "evidence", "get", found[0]["global_id"], item["sha256"], "-o", str(out), "--data-dir", d
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == (REPO / "examples" / "media" / "clip1.mp4").read_bytes()


def test_another_user_via_token_file(served: NodeProcess, tmp_path: Path) -> None:
    d = str(served.config.data_dir)
    token_file = tmp_path / "ana.token"
    added = compact(
        "users", "add", "ana", "--role", "analyst", "--token-file", str(token_file), "--data-dir", d
    )
    assert added.returncode == 0, added.stderr
    # The spelling, `compact user add`, is an alias of `compact users add`.
    again = compact(
        "user",
        "add",
        "bo",
        "--role",
        "clerk",
        "--token-file",
        str(tmp_path / "bo"),
        "--data-dir",
        d,
    )
    assert again.returncode == 0, again.stderr
    listed = run_json("users", "list", "--data-dir", d)
    assert isinstance(listed, dict)
    users = listed["users"]
    assert {(u["name"], u["role"]) for u in users} >= {
        ("admin", "admin"),
        ("ana", "analyst"),
        ("bo", "clerk"),
    }
    env = {"COMPACT_TOKEN_FILE": str(token_file)}
    found = run_json("incidents", "search", "--data-dir", d, "--kind", "school", env=env)
    assert isinstance(found, list)
    shown = run_json("incidents", "show", found[0]["global_id"], "--data-dir", d, env=env)
    assert isinstance(shown, dict)
    assert shown["people"] == [] and shown["narrative"] is None and shown["restricted_withheld"]
    denied = compact(
        "evidence",
        "get",
        found[0]["global_id"],
        "0" * 64,
        "-o",
        str(tmp_path / "x"),
        "--data-dir",
        d,
        env=env,
    )
    assert denied.returncode == 1
    assert "PERMISSION_DENIED" in denied.stderr
    assert not (tmp_path / "x").exists()


def test_a_stopped_node_is_reported_plainly(tmp_path: Path) -> None:
    init(tmp_path / "il", "--key-file", str(tmp_path / "k"))
    result = compact("incidents", "list", "--data-dir", str(tmp_path / "il"))
    assert result.returncode == 1
    assert "is not reachable (is `compact serve` running?)" in result.stderr


# --- PostgreSQL ---------------------------------------------------------------------------


@pytest.mark.postgres
def test_a_node_on_postgresql_end_to_end(postgres_url: str, tmp_path: Path) -> None:
    init(tmp_path / "il", "--key-file", str(tmp_path / "k"), "--database-url", postgres_url)
    assert not (tmp_path / "il" / "node.db").exists()
    assert compact("ingest", SAMPLE, "--data-dir", str(tmp_path / "il")).returncode == 0
    proc = start_node(load_config(tmp_path / "il"))
    try:
        found = run_json(
            "incidents", "search", "--data-dir", str(tmp_path / "il"), "--conduct", "masked_agent"
        )
        assert isinstance(found, list) and len(found) == 2
    finally:
        assert proc.stop() == 0


@pytest.mark.postgres
def test_the_database_url_environment_variable_switches_to_postgresql(
    postgres_url: str, tmp_path: Path
) -> None:
    env = {"COMPACT_DATABASE_URL": postgres_url}
    init(tmp_path / "il", "--key-file", str(tmp_path / "k"), env=env)
    assert not (tmp_path / "il" / "node.db").exists()
    report = run_json("ingest", SAMPLE, "--data-dir", str(tmp_path / "il"), env=env)
    assert isinstance(report, dict) and report["imported"] == 6
    # Without the variable the node looks for its SQLite file, which has no schema.
    result = compact(
        "ingest", SAMPLE, "--data-dir", str(tmp_path / "il"), env={"COMPACT_DATABASE_URL": ""}
    )
    assert result.returncode == 1
    assert "compact db upgrade" in result.stderr
    # ... which `compact db upgrade` creates; users live in the database, so the admin
    # token of the PostgreSQL database is no credential there.
    env = {"COMPACT_DATABASE_URL": ""}
    upgraded = compact("db", "upgrade", "--data-dir", str(tmp_path / "il"), env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"schema at {migrate.head_revision()}" in upgraded.stdout
    refused = compact("ingest", SAMPLE, "--data-dir", str(tmp_path / "il"), env=env)
    assert refused.returncode == 77 and "not a valid token of this node" in refused.stderr


def test_cli_honours_data_dir_from_the_environment(tmp_path: Path) -> None:
    init(tmp_path / "il", "--key-file", str(tmp_path / "k"))
    result = compact("users", "list", "--json", env={"COMPACT_DATA_DIR": str(tmp_path / "il")})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["users"][0]["name"] == "admin"
    assert os.environ.get("COMPACT_DATA_DIR") is None


def test_init_names_the_given_tls_hosts_beside_loopback(tmp_path: Path) -> None:
    from cryptography import x509

    init(tmp_path / "il", "--key-file", str(tmp_path / "k"), "--tls-host", "compact-il.example")
    cert = x509.load_pem_x509_certificate((tmp_path / "il" / "keys" / "tls.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["compact-il.example", "localhost"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    bad = compact(
        "init", "--state", "IL", "--data-dir", str(tmp_path / "mn"), "--key-file",
        str(tmp_path / "k2"), "--tls-host", "not a host", "--kdf-strength", "interactive",
    )  # fmt: skip
    assert bad.returncode == 1 and "--tls-host" in bad.stderr
    assert not (tmp_path / "mn").exists() and not (tmp_path / "k2").exists()
