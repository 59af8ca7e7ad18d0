"""Upgrades: a node refuses a schema older or newer than its code, names the command
that mends it, and `compact db upgrade` brings a database from the first schema to the
newest with its data intact (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select, text

from node import migrate
from node import models as m
from node.config import Config
from node.db import Database
from tests.nodeproc import compact, db_rows, init_test_node, run_compact, start_node

REPO = Path(__file__).resolve().parent.parent
FIRST = migrate.known_revisions()[0]
HEAD = migrate.head_revision()


def _set_revision(config: Config, revision: str) -> None:
    db = Database.from_url(config.database_url())
    try:
        if revision in migrate.known_revisions():
            migrate.downgrade(db.engine, revision)
        else:
            with db.engine.begin() as c:
                c.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    finally:
        db.dispose()


def test_known_revisions_run_from_the_first_to_the_head() -> None:
    revisions = migrate.known_revisions()
    assert revisions[0] == FIRST == "0001" and revisions[-1] == HEAD
    assert len(set(revisions)) == len(revisions)


@pytest.mark.parametrize("command", [("serve",), ("hits",), ("audit",), ("log", "status")])
def test_an_old_schema_is_refused_naming_the_upgrade(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    config = init_test_node(tmp_path)
    _set_revision(config, "0011")
    result = compact(*command, "--data-dir", str(config.data_dir), timeout=60)
    assert result.returncode == 1, result.stderr
    assert f"schema is at 0011, this version needs {HEAD}: run `compact db upgrade`" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    config = init_test_node(tmp_path)
    _set_revision(config, "9999")
    served = compact("serve", "--data-dir", str(config.data_dir), timeout=60)
    assert served.returncode == 1
    assert "schema is at 9999, which this version does not know" in served.stderr
    assert "a newer version of compact upgraded it" in served.stderr
    upgraded = compact("db", "upgrade", "--data-dir", str(config.data_dir), timeout=60)
    assert upgraded.returncode == 1 and "does not know" in upgraded.stderr
    assert db_rows(config, text("SELECT version_num FROM alembic_version")) == [("9999",)]


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_from_the_first_schema_to_the_head_with_data(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Data written by this version is taken down to the first schema (what the tables of
    0001 hold survives a downgrade), refused there, upgraded, and served again."""
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else ""
    config = init_test_node(tmp_path, database_url=url)
    d = str(config.data_dir)
    run_compact("ingest", str(REPO / "examples" / "incidents.jsonl"), "--data-dir", d)
    before = db_rows(config, select(m.Incident.global_id, m.Incident.content_hash))
    assert before
    _set_revision(config, FIRST)

    refused = compact("serve", "--data-dir", d, timeout=60)
    assert refused.returncode == 1
    assert f"schema is at {FIRST}, this version needs {HEAD}" in refused.stderr

    upgraded = run_compact("db", "upgrade", "--data-dir", d)
    assert f"schema at {HEAD} (was {FIRST})" in upgraded.stdout
    again = run_compact("db", "upgrade", "--data-dir", d)
    assert "already current" in again.stdout
    assert db_rows(config, select(m.Incident.global_id, m.Incident.content_hash)) == before

    node = start_node(config)
    try:
        gid = str(before[0][0])
        shown = json.loads(run_compact("incidents", "show", gid, "--json", "--data-dir", d).stdout)
        assert shown["global_id"] == gid
        listed = json.loads(
            run_compact("incidents", "list", "--limit", "1000", "--json", "--data-dir", d).stdout
        )
        assert sorted(i["global_id"] for i in listed) == sorted(str(g) for g, _ in before)
    finally:
        assert node.stop() == 0
