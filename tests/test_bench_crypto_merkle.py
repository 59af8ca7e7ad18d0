"""The Merkle tree benchmark at a tiny size: it builds and proves what it says it measures.

No timing is asserted (figures belong in the benchmark's report); these tests
check the counts, that both builds make the right tree, and that the proofs
the benchmark reports as verified really are checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import crypto_merkle as bench
from crypto.errors import VerificationError
from crypto.merkle import consistency_proof, inclusion_proof, leaf_hash, root_hash
from crypto.merkle_tree import MemoryNodeStore, MerkleTree


def test_leaf_data_is_deterministic_distinct_and_32_bytes() -> None:
    data = bench.make_leaf_data(500)
    assert data == bench.make_leaf_data(500)
    assert len(set(data)) == 500
    assert {len(d) for d in data} == {32}


def test_run_reports_the_right_counts_and_verified_proofs() -> None:
    leaves = 2000
    figures = bench.run(leaves=leaves, batch=64, rounds=2)
    hashes = [leaf_hash(d) for d in bench.make_leaf_data(leaves)]
    index, old_size = bench.proof_points(leaves)
    assert (figures["leaves"], figures["batch"], figures["rounds"]) == (leaves, 64, 2)
    assert (figures["inclusion_index"], figures["consistency_old_size"]) == (index, old_size)
    assert 0 <= index < leaves and 0 < old_size < leaves
    assert figures["proofs_verified"] == 8  # two proofs for each build: two sides, two rounds
    for name in ("append", "append_many"):
        assert figures[f"{name}_stored_nodes"] == 2 * leaves - leaves.bit_count()
        assert figures[f"{name}_inclusion_proof_hashes"] == len(inclusion_proof(hashes, index))
        assert figures[f"{name}_consistency_proof_hashes"] == len(
            consistency_proof(hashes, old_size)
        )
        rate = figures[f"{name}_leaves_per_s"]
        assert rate > 0
        assert figures[f"{name}_ratio"] == pytest.approx(rate / figures["raw_leaves_per_s"])
        assert figures[f"{name}_seconds"] == pytest.approx(leaves / rate)
    assert figures["raw_leaves_per_s"] == pytest.approx(leaves / figures["raw_seconds"])
    assert figures["goal_ratio"] == 0.3


@pytest.mark.parametrize("leaves", [1, 2, 3, 5])
def test_tiny_trees_are_built_and_proved(leaves: int) -> None:
    figures = bench.run(leaves=leaves, batch=2, rounds=1)
    assert figures["proofs_verified"] == 4
    assert figures["append_stored_nodes"] == figures["append_many_stored_nodes"]


def test_both_builds_make_the_tree_of_the_reference() -> None:
    data = bench.make_leaf_data(300)
    want = root_hash([leaf_hash(d) for d in data])
    for build in (bench.build_one_by_one, bench.batched(7)):
        _, tree, store, inclusion, consistency = bench.time_tree(data, build)
        assert (tree.size, tree.root(), len(store)) == (300, want, 2 * 300 - 4)
        assert bench.check(tree, data, inclusion, consistency, want) == 2


def test_check_fails_on_a_wrong_tree_or_proof() -> None:
    data = bench.make_leaf_data(50)
    _, tree, _, inclusion, consistency = bench.time_tree(data, bench.build_one_by_one)
    want = tree.root()
    with pytest.raises(AssertionError, match="root differs"):
        bench.check(tree, data, inclusion, consistency, leaf_hash(b"other"))
    with pytest.raises(AssertionError, match="49 were appended"):
        bench.check(tree, data[:49], inclusion, consistency, want)
    with pytest.raises(VerificationError):
        bench.check(tree, data, inclusion[:-1], consistency, want)
    with pytest.raises(VerificationError):
        bench.check(tree, data, inclusion, [consistency[1], *consistency[1:]], want)
    short = MerkleTree(MemoryNodeStore())
    short.append_many(leaf_hash(d) for d in data[:49])
    with pytest.raises(AssertionError, match="tree has 49 leaves"):
        bench.check(short, data, inclusion, consistency, want)


def test_run_rejects_sizes_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        bench.run(leaves=0)
    with pytest.raises(ValueError, match="at least 1"):
        bench.run(leaves=10, batch=0)
    with pytest.raises(ValueError, match="at least 1"):
        bench.run(leaves=10, rounds=0)


def test_main_prints_the_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "merkle.json"
    argv = ["--leaves", "300", "--batch", "16", "--rounds", "1", "--json", str(out)]
    assert bench.main(argv) == 0
    table = capsys.readouterr().out
    assert "300 leaves" in table and "append_many of 16" in table
    assert "fastest of 1 rounds" in table and "proofs verified (untimed): 4" in table
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["leaves"] == 300 and figures["proofs_verified"] == 4
    assert set(figures) >= {"raw_leaves_per_s", "append_ratio", "append_many_ratio"}
    with pytest.raises(SystemExit):
        bench.main(["--leaves", "0"])
