"""Database engines and sessions for SQLite and PostgreSQL.

SQLite: WAL journal, a busy timeout, foreign keys on, and `BEGIN IMMEDIATE` for
every write transaction so that concurrent writers wait for the lock instead of
losing updates (Python's sqlite3 otherwise defers BEGIN until the first write,
after the reads a decision was based on). Read sessions begin deferred, so
readers do not queue behind writers.

Timestamps are stored in UTC (`UTCDateTime`): SQLite keeps no offsets.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

_READONLY = "compact_readonly"


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime, stored as UTC; naive values are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given for a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def make_engine(url: str, *, busy_timeout_ms: int = 10_000, echo: bool = False) -> Engine:
    """An engine for `url` with the settings this project relies on."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
        )
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, echo=echo, pool_pre_ping=True)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module; "begin" below issues it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_READONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """An engine plus session factories for writing and for reading."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = sessionmaker(engine, expire_on_commit=False)
        self._reader = sessionmaker(
            engine.execution_options(**{_READONLY: True}), expire_on_commit=False
        )

    @classmethod
    def from_url(cls, url: str, *, busy_timeout_ms: int = 10_000) -> Database:
        return cls(make_engine(url, busy_timeout_ms=busy_timeout_ms))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on any error."""
        with self._writer() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read transaction. It writes nothing; objects loaded stay usable after it ends."""
        with self._reader() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


_PLAIN_TYPES = (String, Integer, BigInteger, LargeBinary, Text)


def insert_rows(
    session: Session, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert many rows of plain values with the driver's own `executemany`.

    For hot paths that write thousands of rows (a replica's pseudonym index): SQLAlchemy's
    per-row parameter processing costs more than the insert itself. Only for columns that
    need no bind processing (strings, integers, bytes; not dates or booleans), which is
    checked; values go to the driver as parameters, never into the SQL text.
    """
    if not rows:
        return
    for name in columns:
        if not isinstance(table.c[name].type, _PLAIN_TYPES):
            raise TypeError(f"{table.name}.{name} needs bind processing: use a Core insert")
    conn = session.connection()
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
    if marker is None:
        raise NotImplementedError(f"paramstyle {dialect.paramstyle}")
    # Only names of our own metadata reach the text (table.c[name] above refuses others),
    # quoted by the dialect; every value is a parameter.
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "  # noqa: S608
        f"VALUES ({', '.join([marker] * len(columns))})"
    )
    conn.exec_driver_sql(sql, [tuple(r) for r in rows])
