"""The node's transparency log on SQLite and PostgreSQL: roots, proofs, checkpoints, concurrency."""

from __future__ import annotations

import multiprocessing

import pytest

from crypto import merkle
from crypto.checkpoint import open_checkpoint
from crypto.note import Signer
from crypto.signing import SigningKey
from node import migrate
from node.db import Database
from node.translog import SqlNodeStore, TransparencyLog

ORIGIN = "compact.test/IL"


@pytest.fixture
def log(database_url: str) -> TransparencyLog:
    db = Database.from_url(database_url)
    migrate.upgrade(db.engine)
    return TransparencyLog(db)


def payloads(n: int, start: int = 0) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(start, start + n)]


def test_roots_and_proofs_equal_the_reference(log: TransparencyLog) -> None:
    data = payloads(37)
    assert log.append("test", data[:1]) == [0]
    assert log.append("test", data[1:20]) == list(range(1, 20))
    assert log.append("test", data[20:]) == list(range(20, 37))
    leaves = [merkle.leaf_hash(p) for p in data]
    assert log.size() == 37
    assert log.root() == merkle.root_hash(leaves)
    for size in (1, 2, 7, 16, 20, 37):
        root = log.root(size)
        assert root == merkle.root_hash(leaves[:size])
        for index in range(0, size, 3):
            merkle.verify_inclusion(
                leaves[index], index, size, log.inclusion_proof(index, size), root
            )
        for old in range(1, size, 5):
            merkle.verify_consistency(
                old, size, log.root(old), root, log.consistency_proof(old, size)
            )
    assert log.entries(35, 10) == [(35, "test", b"entry 35"), (36, "test", b"entry 36")]


def test_empty_log(log: TransparencyLog) -> None:
    assert log.size() == 0
    assert log.root() == merkle.root_hash([])
    assert log.append("test", []) == []
    assert log.latest_checkpoint() is None


def test_checkpoints_are_signed_stored_and_verify(log: TransparencyLog) -> None:
    signer = Signer(ORIGIN, SigningKey.generate())
    log.append("test", payloads(5))
    first = log.sign_checkpoint(signer, origin=ORIGIN)
    assert log.sign_checkpoint(signer, origin=ORIGIN) == first  # one per size
    verified = open_checkpoint(first, log=signer.verifier(), origin=ORIGIN)
    assert verified.size == 5
    assert verified.root_hash == log.root(5)
    log.append("test", payloads(3, 5))
    second = log.sign_checkpoint(signer, origin=ORIGIN)
    assert log.latest_checkpoint() == second
    new = open_checkpoint(second, log=signer.verifier(), origin=ORIGIN)
    merkle.verify_consistency(
        5, new.size, log.root(5), new.root_hash, log.consistency_proof(5, new.size)
    )


def test_the_log_survives_reopening(log: TransparencyLog, database_url: str) -> None:
    log.append("test", payloads(11))
    root = log.root()
    log.db.dispose()
    again = TransparencyLog(Database.from_url(database_url))
    assert (again.size(), again.root()) == (11, root)
    again.append("test", payloads(1, 11))
    assert again.root() == merkle.root_hash([merkle.leaf_hash(p) for p in payloads(12)])
    again.db.dispose()


def test_stored_nodes_are_write_once(log: TransparencyLog) -> None:
    log.append("test", payloads(2))
    with log.db.write() as s, pytest.raises(ValueError, match="cannot change"):
        SqlNodeStore(s).put(1, 0, b"\x00" * 32)


def test_an_oversized_entry_is_refused(log: TransparencyLog) -> None:
    with pytest.raises(ValueError, match="larger"):
        log.append("test", [b"x" * (1024 * 1024 + 1)])
    assert log.size() == 0


def _appender(url: str, worker: int) -> None:
    log = TransparencyLog(Database.from_url(url))
    for batch in range(5):
        log.append("test", [f"w{worker} b{batch} e{i}".encode() for i in range(4)])
    log.db.dispose()


def test_concurrent_appenders_lose_and_duplicate_nothing(
    log: TransparencyLog, database_url: str
) -> None:
    log.db.dispose()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        pool.starmap(_appender, [(database_url, w) for w in range(4)])
    fresh = TransparencyLog(Database.from_url(database_url))
    entries = fresh.entries(0, 1000)
    assert [e[0] for e in entries] == list(range(80))
    assert len({e[2] for e in entries}) == 80
    assert fresh.root() == merkle.root_hash([merkle.leaf_hash(e[2]) for e in entries])
    fresh.db.dispose()
