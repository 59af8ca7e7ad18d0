"""Shared fixtures: storage backends (SQLite and PostgreSQL), temporary folders."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

POSTGRES_ADMIN_URL = os.environ.get(
    "COMPACT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
_pg_status: str | None = None


def _postgres_unavailable() -> str | None:
    """None when PostgreSQL answers, else why not (checked once per run)."""
    global _pg_status
    if _pg_status is None:
        try:
            with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
                _pg_status = ""
        except psycopg.Error as e:
            _pg_status = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL} ({type(e).__name__})"
    return _pg_status or None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    reason = _postgres_unavailable()
    if reason:
        pytest.skip(f"{reason}: PostgreSQL storage tests skipped")
    name = f"compact_test_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'node.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With COMPACT_FUZZ_REPORT set (by `python -m bench.fuzz`), write what the fuzz tests
    of this process tried: one file per pytest process (each xdist worker has its own)."""
    from tests import fuzzing

    folder = os.environ.get(fuzzing.REPORT_ENV, "")
    if folder:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        fuzzing.write_report(Path(folder), worker)
