"""crypto.merkle and crypto.merkle_tree: RFC 9162 hashes, proofs and their verification.

Known answers: every case of tests/vectors/rfc6962_merkle_transparency-dev.json
(transparency-dev/merkle, the data set of the Certificate Transparency and
Trillian tests): the hasher vectors, the leaf and node hashes, the roots of
every size 0-8, the inclusion and consistency proofs, and all 196 probes of
``testdata/``, negative ones included. The incremental tree is held to the same
answers, and to the reference functions of crypto.merkle for every size up to 64
and random sizes up to 300 (Hypothesis). Then the attacks: any altered byte,
index, size, root or leaf hash, and any truncated or extended proof, is rejected
with VerificationError, and arbitrary input raises nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import merkle
from crypto.errors import VerificationError
from crypto.merkle import (
    HASH_SIZE,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from crypto.merkle_tree import MemoryNodeStore, MerkleTree, NodeStore

VECTORS = Path(__file__).parent / "vectors" / "rfc6962_merkle_transparency-dev.json"
V: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
UINT64 = 1 << 64


def unhex(text: str) -> bytes:
    return bytes.fromhex(text)


def unhex_all(texts: list[str] | None) -> list[bytes]:
    """A proof from the vectors; JSON ``null`` (Go's nil slice) is the empty proof."""
    return [unhex(t) for t in texts or []]


LEAF_DATA = [unhex(x) for x in V["leaf_inputs_hex"]]
LEAVES = [unhex(x) for x in V["leaf_hashes"]]
ROOTS = {int(size): unhex(root) for size, root in V["root_hashes_by_tree_size"].items()}
INCLUSION_PROBES: list[dict[str, Any]] = V["probes"]["inclusion"]
CONSISTENCY_PROBES: list[dict[str, Any]] = V["probes"]["consistency"]


def build(leaves: Sequence[bytes]) -> tuple[MerkleTree, MemoryNodeStore]:
    store = MemoryNodeStore()
    tree = MerkleTree(store)
    for h in leaves:
        tree.append(h)
    return tree, store


def probe_id(probe: dict[str, Any]) -> str:
    return str(probe["file"]).removeprefix("testdata/")


def complete_nodes(size: int) -> set[tuple[int, int]]:
    """Every (level, index) whose subtree is complete in a tree of ``size`` leaves."""
    return {(level, index) for level in range(size.bit_length()) for index in range(size >> level)}


# -- the vector file itself --------------------------------------------------


def test_the_vector_file_holds_every_case_counted_here() -> None:
    """The parametrized tests below run over these lists: none of them may shrink unseen."""
    assert len(V["hasher_vectors"]) == 4
    assert len(LEAF_DATA) == len(LEAVES) == 8
    assert [len(level) for level in V["node_hashes_by_level"]] == [8, 4, 2, 1]
    assert sorted(ROOTS) == list(range(9))
    assert len(V["inclusion_proofs"]) == len(V["consistency_proofs"]) == 5
    assert len(INCLUSION_PROBES) == len(CONSISTENCY_PROBES) == 98
    assert sum(not p["wantErr"] for p in INCLUSION_PROBES) == 6
    assert sum(not p["wantErr"] for p in CONSISTENCY_PROBES) == 6
    assert len({probe_id(p) for p in INCLUSION_PROBES + CONSISTENCY_PROBES}) == 196


def test_the_module_exposes_exactly_the_agreed_names() -> None:
    assert sorted(merkle.__all__) == [
        "HASH_SIZE",
        "consistency_proof",
        "inclusion_proof",
        "leaf_hash",
        "node_hash",
        "root_hash",
        "verify_consistency",
        "verify_inclusion",
    ]
    assert HASH_SIZE == 32


# -- known answers -----------------------------------------------------------


@pytest.mark.parametrize("case", V["hasher_vectors"], ids=lambda c: c["desc"])
def test_hasher_vector(case: dict[str, Any]) -> None:
    want = unhex(case["want"])
    if "left_hex" in case:
        assert node_hash(unhex(case["left_hex"]), unhex(case["right_hex"])) == want
    elif "leaf_input_hex" in case:
        assert leaf_hash(unhex(case["leaf_input_hex"])) == want
    else:
        assert root_hash([]) == want
        assert MerkleTree(MemoryNodeStore()).root() == want


@pytest.mark.parametrize("i", range(8))
def test_leaf_hash_vector(i: int) -> None:
    assert leaf_hash(LEAF_DATA[i]) == LEAVES[i]
    assert V["node_hashes_by_level"][0][i] == V["leaf_hashes"][i]


@pytest.mark.parametrize(
    ("level", "index"),
    [(level, index) for level in range(4) for index in range(8 >> level)],
)
def test_node_hash_vector(level: int, index: int) -> None:
    want = unhex(V["node_hashes_by_level"][level][index])
    assert root_hash(LEAVES[index << level : (index + 1) << level]) == want
    _, store = build(LEAVES)
    assert store.get(level, index) == want


@pytest.mark.parametrize("size", range(9))
def test_root_vector(size: int) -> None:
    want = ROOTS[size]
    assert root_hash(LEAVES[:size]) == want
    tree, _ = build(LEAVES[:size])
    assert tree.root() == tree.root_at(size) == want
    full, full_store = build(LEAVES)
    assert full.root_at(size) == want
    assert MerkleTree(full_store, size).root() == want


@pytest.mark.parametrize(
    "case", V["inclusion_proofs"], ids=lambda c: f"{c['leaf_index']}-of-{c['tree_size']}"
)
def test_inclusion_proof_vector(case: dict[str, Any]) -> None:
    index, size, want = case["leaf_index"], case["tree_size"], unhex_all(case["proof"])
    leaf, root = unhex(case["leaf_hash"]), unhex(case["root"])
    assert leaf_hash(unhex(case["leaf_input_hex"])) == leaf == LEAVES[index]
    assert root == ROOTS[size]
    assert inclusion_proof(LEAVES[:size], index) == want
    tree, _ = build(LEAVES)
    assert tree.inclusion_proof(index, size) == want
    verify_inclusion(leaf, index, size, want, root)


@pytest.mark.parametrize(
    "case", V["consistency_proofs"], ids=lambda c: f"{c['size1']}-to-{c['size2']}"
)
def test_consistency_proof_vector(case: dict[str, Any]) -> None:
    size1, size2, want = case["size1"], case["size2"], unhex_all(case["proof"])
    root1, root2 = unhex(case["root1"]), unhex(case["root2"])
    assert (root1, root2) == (ROOTS[size1], ROOTS[size2])
    assert consistency_proof(LEAVES[:size2], size1) == want
    tree, _ = build(LEAVES)
    assert tree.consistency_proof(size1, size2) == want
    verify_consistency(size1, size2, root1, root2, want)


@pytest.mark.parametrize("probe", INCLUSION_PROBES, ids=probe_id)
def test_inclusion_probe(probe: dict[str, Any]) -> None:
    args = (
        unhex(probe["leafHash"]),
        probe["leafIdx"],
        probe["treeSize"],
        unhex_all(probe["proof"]),
        unhex(probe["root"]),
    )
    if probe["wantErr"]:
        with pytest.raises(VerificationError) as info:
            verify_inclusion(*args)
        assert info.value.__cause__ is None and info.value.__context__ is None
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("probe", CONSISTENCY_PROBES, ids=probe_id)
def test_consistency_probe(probe: dict[str, Any]) -> None:
    args = (
        probe["size1"],
        probe["size2"],
        unhex(probe["root1"]),
        unhex(probe["root2"]),
        unhex_all(probe["proof"]),
    )
    if probe["wantErr"]:
        with pytest.raises(VerificationError) as info:
            verify_consistency(*args)
        assert info.value.__cause__ is None and info.value.__context__ is None
    else:
        verify_consistency(*args)


@pytest.mark.parametrize("probe", [p for p in INCLUSION_PROBES if not p["wantErr"]], ids=probe_id)
def test_tree_makes_the_proof_of_every_valid_inclusion_probe(probe: dict[str, Any]) -> None:
    leaf, index, size = unhex(probe["leafHash"]), probe["leafIdx"], probe["treeSize"]
    # The probes' trees are the 8 vector leaves, except "single-entry": one leaf of its own.
    leaves = LEAVES[:size] if size > 1 or leaf == LEAVES[0] else [leaf]
    assert leaves[index] == leaf
    tree, _ = build(leaves)
    assert tree.inclusion_proof(index, size) == unhex_all(probe["proof"])
    assert tree.root_at(size) == unhex(probe["root"])


@pytest.mark.parametrize("probe", [p for p in CONSISTENCY_PROBES if not p["wantErr"]], ids=probe_id)
def test_tree_makes_the_proof_of_every_valid_consistency_probe(probe: dict[str, Any]) -> None:
    size1, size2 = probe["size1"], probe["size2"]
    tree, _ = build(LEAVES)
    assert tree.consistency_proof(size1, size2) == unhex_all(probe["proof"])
    if unhex(probe["root1"]) in ROOTS.values():  # not the "don't care" placeholder roots
        assert tree.root_at(size1) == unhex(probe["root1"])
        assert tree.root_at(size2) == unhex(probe["root2"])


@pytest.mark.parametrize(
    "probe",
    [p for p in INCLUSION_PROBES if p["wantErr"] and 0 <= p["leafIdx"] < p["treeSize"] <= 8],
    ids=probe_id,
)
def test_rejected_inclusion_probe_lies_about_a_position_the_tree_can_prove(
    probe: dict[str, Any],
) -> None:
    """The verifier rejects the corruption, not the position: the genuine proof there verifies."""
    index, size = probe["leafIdx"], probe["treeSize"]
    tree, _ = build(LEAVES)
    genuine = (LEAVES[index], tree.inclusion_proof(index, size), tree.root_at(size))
    verify_inclusion(genuine[0], index, size, genuine[1], genuine[2])
    claimed = (unhex(probe["leafHash"]), unhex_all(probe["proof"]), unhex(probe["root"]))
    assert claimed != genuine


@pytest.mark.parametrize(
    "probe",
    [p for p in CONSISTENCY_PROBES if p["wantErr"] and 0 < p["size1"] <= p["size2"] <= 8],
    ids=probe_id,
)
def test_rejected_consistency_probe_lies_about_sizes_the_tree_can_prove(
    probe: dict[str, Any],
) -> None:
    size1, size2 = probe["size1"], probe["size2"]
    tree, _ = build(LEAVES)
    genuine = (ROOTS[size1], ROOTS[size2], tree.consistency_proof(size1, size2))
    verify_consistency(size1, size2, *genuine)
    claimed = (unhex(probe["root1"]), unhex(probe["root2"]), unhex_all(probe["proof"]))
    assert claimed != genuine


# -- the incremental tree against the reference, exhaustively to 64 -----------

SMALL = [leaf_hash(b"small %d" % i) for i in range(64)]


def test_every_proof_of_every_size_to_64_equals_the_reference_and_verifies() -> None:
    store = MemoryNodeStore()
    tree = MerkleTree(store)
    assert tree.root() == root_hash([])
    for i, h in enumerate(SMALL):
        assert tree.append(h) == i
        assert tree.root() == root_hash(SMALL[: i + 1])
    checked = 0
    for size in range(65):
        leaves = SMALL[:size]
        root = root_hash(leaves)
        assert tree.root_at(size) == root
        assert MerkleTree(store, size).root() == root
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert proof == inclusion_proof(leaves, index)
            verify_inclusion(leaves[index], index, size, proof, root)
            checked += 1
        for old in range(1, size + 1):
            proof = tree.consistency_proof(old, size)
            assert proof == consistency_proof(leaves, old)
            verify_consistency(old, size, root_hash(leaves[:old]), root, proof)
            checked += 1
    assert checked == 2 * sum(range(65))


@pytest.mark.parametrize("size", range(71))
def test_store_holds_exactly_the_complete_subtrees(size: int) -> None:
    leaves = [leaf_hash(b"%d" % i) for i in range(size)]
    _, store = build(leaves)
    assert store.keys() == complete_nodes(size)
    assert len(store) == 2 * size - size.bit_count()
    for level, index in sorted(store.keys()):
        assert store.get(level, index) == root_hash(leaves[index << level : (index + 1) << level])


# -- properties over random sizes (Hypothesis) --------------------------------

BIG = [leaf_hash(b"leaf %d" % i) for i in range(512)]
BIG_STORE = MemoryNodeStore()
BIG_TREE = MerkleTree(BIG_STORE)
BIG_TREE.append_many(BIG)
BIG_ROOTS = [root_hash(BIG[:n]) for n in range(513)]
MAX_N = 300  # sizes compared with the O(n) reference


@st.composite
def position(draw: st.DrawFn, max_size: int = MAX_N) -> tuple[int, int]:
    """(index, size) with 0 <= index < size <= max_size."""
    size = draw(st.integers(1, max_size))
    return draw(st.integers(0, size - 1)), size


@st.composite
def sizes(draw: st.DrawFn, max_size: int = MAX_N) -> tuple[int, int]:
    """(old_size, new_size) with 0 < old_size <= new_size <= max_size."""
    new = draw(st.integers(1, max_size))
    return draw(st.integers(1, new)), new


def flip(h: bytes, at: int, mask: int) -> bytes:
    at %= len(h)
    return h[:at] + bytes([h[at] ^ mask]) + h[at + 1 :]


@settings(max_examples=300, deadline=None)
@given(pos=position())
def test_inclusion_proofs_equal_the_reference_and_verify(pos: tuple[int, int]) -> None:
    index, size = pos
    proof = BIG_TREE.inclusion_proof(index, size)
    assert proof == inclusion_proof(BIG[:size], index)
    assert BIG_TREE.root_at(size) == BIG_ROOTS[size]
    verify_inclusion(BIG[index], index, size, proof, BIG_ROOTS[size])


@settings(max_examples=300, deadline=None)
@given(pair=sizes())
def test_consistency_proofs_equal_the_reference_and_verify(pair: tuple[int, int]) -> None:
    old, new = pair
    proof = BIG_TREE.consistency_proof(old, new)
    assert proof == consistency_proof(BIG[:new], old)
    verify_consistency(old, new, BIG_ROOTS[old], BIG_ROOTS[new], proof)


@settings(max_examples=100, deadline=None)
@given(
    chunks=st.lists(st.tuples(st.integers(0, 40), st.booleans()), max_size=20),
    reopen=st.booleans(),
)
def test_any_mix_of_append_and_append_many_builds_the_same_tree(
    chunks: list[tuple[int, bool]], reopen: bool
) -> None:
    store = MemoryNodeStore()
    tree = MerkleTree(store)
    size = 0
    for count, batched in chunks:
        count = min(count, len(BIG) - size)
        batch = BIG[size : size + count]
        if batched:
            assert tree.append_many(batch) == range(size, size + count)
        else:
            assert [tree.append(h) for h in batch] == list(range(size, size + count))
        size += count
        assert tree.size == size
        assert tree.root() == BIG_ROOTS[size]
        if reopen:
            tree = MerkleTree(store, size)
    assert store.keys() == complete_nodes(size)
    assert all(store.get(*key) == BIG_STORE.get(*key) for key in sorted(store.keys()))


@settings(max_examples=200, deadline=None)
@given(pos=position(), which=st.integers(0, 63), at=st.integers(0, 31), mask=st.integers(1, 255))
def test_altered_inclusion_proof_hash_is_rejected(
    pos: tuple[int, int], which: int, at: int, mask: int
) -> None:
    index, size = pos
    proof = BIG_TREE.inclusion_proof(index, size)
    if not proof:
        return  # a tree of one leaf: nothing to alter (the root and leaf are tested below)
    which %= len(proof)
    proof[which] = flip(proof[which], at, mask)
    with pytest.raises(VerificationError):
        verify_inclusion(BIG[index], index, size, proof, BIG_ROOTS[size])


@settings(max_examples=200, deadline=None)
@given(pos=position(), at=st.integers(0, 31), mask=st.integers(1, 255), leaf=st.booleans())
def test_altered_inclusion_root_or_leaf_is_rejected(
    pos: tuple[int, int], at: int, mask: int, leaf: bool
) -> None:
    index, size = pos
    proof = BIG_TREE.inclusion_proof(index, size)
    h, root = BIG[index], BIG_ROOTS[size]
    if leaf:
        h = flip(h, at, mask)
    else:
        root = flip(root, at, mask)
    with pytest.raises(VerificationError):
        verify_inclusion(h, index, size, proof, root)


@settings(max_examples=200, deadline=None)
@given(pos=position(), other=st.integers(0, UINT64 - 1))
def test_inclusion_proof_for_another_index_is_rejected(pos: tuple[int, int], other: int) -> None:
    index, size = pos
    if other == index:
        other = index + 1
    proof = BIG_TREE.inclusion_proof(index, size)
    with pytest.raises(VerificationError):
        verify_inclusion(BIG[index], other, size, proof, BIG_ROOTS[size])


@settings(max_examples=200, deadline=None)
@given(pos=position(), other=st.integers(1, len(BIG)))
def test_inclusion_proof_against_the_tree_at_another_size_is_rejected(
    pos: tuple[int, int], other: int
) -> None:
    index, size = pos
    if other == size:
        other = size + 1
    proof = BIG_TREE.inclusion_proof(index, size)
    with pytest.raises(VerificationError):
        verify_inclusion(BIG[index], index, other, proof, BIG_ROOTS[other])


def test_inclusion_proof_does_not_bind_the_tree_size_by_itself() -> None:
    """Why sizes must come with their root from one signed tree head (RFC 9162, CT clients).

    The path of leaf 0 is "hash with a right sibling" twice in trees of 3 and of
    4 leaves, so the proof of leaf 0 in the tree of 3 verifies as a proof in a
    "tree of 4" whose root is the root of the tree of 3. It does not verify
    against the real root of the tree of 4.
    """
    proof = BIG_TREE.inclusion_proof(0, 3)
    verify_inclusion(BIG[0], 0, 3, proof, BIG_ROOTS[3])
    verify_inclusion(BIG[0], 0, 4, proof, BIG_ROOTS[3])
    with pytest.raises(VerificationError):
        verify_inclusion(BIG[0], 0, 4, proof, BIG_ROOTS[4])


def _reshaped(proof: list[bytes], how: int, extra: bytes) -> list[bytes] | None:
    """The proof with a hash removed, added or repeated; None when ``how`` does not apply."""
    match how:
        case 0:
            return proof[:-1] if proof else None
        case 1:
            return proof[1:] if proof else None
        case 2:
            return [*proof, extra]
        case 3:
            return [extra, *proof]
        case 4:
            return [*proof, proof[-1]] if proof else None
        case _:
            return [*proof[: len(proof) // 2], extra, *proof[len(proof) // 2 :]]


@settings(max_examples=200, deadline=None)
@given(pos=position(), how=st.integers(0, 5), extra=st.binary(min_size=32, max_size=32))
def test_truncated_or_extended_inclusion_proof_is_rejected(
    pos: tuple[int, int], how: int, extra: bytes
) -> None:
    index, size = pos
    proof = _reshaped(BIG_TREE.inclusion_proof(index, size), how, extra)
    if proof is None:
        return
    with pytest.raises(VerificationError):
        verify_inclusion(BIG[index], index, size, proof, BIG_ROOTS[size])


@settings(max_examples=200, deadline=None)
@given(pair=sizes(), which=st.integers(0, 63), at=st.integers(0, 31), mask=st.integers(1, 255))
def test_altered_consistency_proof_hash_is_rejected(
    pair: tuple[int, int], which: int, at: int, mask: int
) -> None:
    old, new = pair
    proof = BIG_TREE.consistency_proof(old, new)
    if not proof:
        return  # equal sizes: the proof is empty (altered roots are tested below)
    which %= len(proof)
    proof[which] = flip(proof[which], at, mask)
    with pytest.raises(VerificationError):
        verify_consistency(old, new, BIG_ROOTS[old], BIG_ROOTS[new], proof)


@settings(max_examples=200, deadline=None)
@given(pair=sizes(), at=st.integers(0, 31), mask=st.integers(1, 255), first=st.booleans())
def test_altered_consistency_root_is_rejected(
    pair: tuple[int, int], at: int, mask: int, first: bool
) -> None:
    old, new = pair
    proof = BIG_TREE.consistency_proof(old, new)
    old_root, new_root = BIG_ROOTS[old], BIG_ROOTS[new]
    if first:
        old_root = flip(old_root, at, mask)
    else:
        new_root = flip(new_root, at, mask)
    with pytest.raises(VerificationError):
        verify_consistency(old, new, old_root, new_root, proof)


@settings(max_examples=200, deadline=None)
@given(pair=sizes(), other=st.integers(0, len(BIG)), change_old=st.booleans())
def test_consistency_proof_against_trees_of_other_sizes_is_rejected(
    pair: tuple[int, int], other: int, change_old: bool
) -> None:
    old, new = pair
    proof = BIG_TREE.consistency_proof(old, new)
    if change_old:
        old = other if other != old else old - 1
    else:
        new = other if other != new else new + 1
    with pytest.raises(VerificationError):
        verify_consistency(old, new, BIG_ROOTS[old], BIG_ROOTS[new], proof)


@settings(max_examples=200, deadline=None)
@given(pair=sizes(), how=st.integers(0, 5), extra=st.binary(min_size=32, max_size=32))
def test_truncated_or_extended_consistency_proof_is_rejected(
    pair: tuple[int, int], how: int, extra: bytes
) -> None:
    old, new = pair
    proof = _reshaped(BIG_TREE.consistency_proof(old, new), how, extra)
    if proof is None:
        return
    with pytest.raises(VerificationError):
        verify_consistency(old, new, BIG_ROOTS[old], BIG_ROOTS[new], proof)


# -- differential fuzzing against an independent verifier ------------------------
#
# The verifiers above follow the bit arithmetic of RFC 9162 2.1.3.2 and 2.1.4.2.
# These undo the recursive definitions of 2.1.3.1 (PATH) and 2.1.4.1 (SUBPROOF)
# instead, sharing nothing with crypto.merkle but node_hash. Inputs start as
# genuine proofs of the 512-leaf tree, and any of their fields is replaced by
# arbitrary values (sizes around 0 and 2**64, hashes of any length): the two
# verifiers must accept exactly the same inputs, and ours must raise nothing
# but VerificationError.


def _split(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def rfc_root_from_path(m: int, n: int, leaf: bytes, path: Sequence[bytes]) -> bytes | None:
    """The root that PATH(m, D[n]) leads to from ``leaf``; None if the path has the wrong length."""
    if n == 1:
        return None if path else leaf
    if not path:
        return None
    k = _split(n)
    if m < k:
        sub = rfc_root_from_path(m, k, leaf, path[:-1])
        return None if sub is None else node_hash(sub, path[-1])
    sub = rfc_root_from_path(m - k, n - k, leaf, path[:-1])
    return None if sub is None else node_hash(path[-1], sub)


def rfc_roots_from_subproof(
    m: int, n: int, whole: bool, path: Sequence[bytes], old_root: bytes
) -> tuple[bytes, bytes] | None:
    """(old, new) subtree hashes that SUBPROOF(m, D[n], whole) leads to; None if malformed."""
    if m == n:
        if whole:
            return None if path else (old_root, old_root)
        return (path[0], path[0]) if len(path) == 1 else None
    if not path:
        return None
    k = _split(n)
    if m <= k:
        sub = rfc_roots_from_subproof(m, k, whole, path[:-1], old_root)
        return None if sub is None else (sub[0], node_hash(sub[1], path[-1]))
    sub = rfc_roots_from_subproof(m - k, n - k, False, path[:-1], old_root)
    return None if sub is None else (node_hash(path[-1], sub[0]), node_hash(path[-1], sub[1]))


def rfc_accepts_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    if not (0 <= index < size < UINT64):
        return False
    if any(len(h) != HASH_SIZE for h in (leaf, root, *proof)):
        return False
    return rfc_root_from_path(index, size, leaf, proof) == root


def rfc_accepts_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    if not (0 < old <= new < UINT64):
        return False
    if old == new:
        return not proof and old_root == new_root
    if any(len(h) != HASH_SIZE for h in (old_root, new_root, *proof)):
        return False
    return rfc_roots_from_subproof(old, new, True, proof, old_root) == (old_root, new_root)


_any_size = st.one_of(st.integers(-3, 40), st.integers(UINT64 - 3, UINT64 + 3))
_any_hash = st.one_of(
    st.binary(min_size=32, max_size=32),
    st.binary(max_size=40),
    st.sampled_from(BIG[:40]),
    st.sampled_from(BIG_ROOTS[:40]),
)
_any_proof = st.lists(_any_hash, max_size=12)


@st.composite
def inclusion_inputs(draw: st.DrawFn) -> tuple[bytes, int, int, list[bytes], bytes]:
    index, size = draw(position(max_size=len(BIG)))
    leaf, proof, root = BIG[index], BIG_TREE.inclusion_proof(index, size), BIG_ROOTS[size]
    if draw(st.booleans()):
        leaf = draw(_any_hash)
    if draw(st.booleans()):
        index = draw(_any_size)
    if draw(st.booleans()):
        size = draw(_any_size)
    if draw(st.booleans()):
        proof = draw(_any_proof)
    if draw(st.booleans()):
        root = draw(_any_hash)
    return leaf, index, size, proof, root


@st.composite
def consistency_inputs(draw: st.DrawFn) -> tuple[int, int, bytes, bytes, list[bytes]]:
    old, new = draw(sizes(max_size=len(BIG)))
    old_root, new_root = BIG_ROOTS[old], BIG_ROOTS[new]
    proof = BIG_TREE.consistency_proof(old, new)
    if draw(st.booleans()):
        old = draw(_any_size)
    if draw(st.booleans()):
        new = draw(_any_size)
    if draw(st.booleans()):
        old_root = draw(_any_hash)
    if draw(st.booleans()):
        new_root = draw(_any_hash)
    if draw(st.booleans()):
        proof = draw(_any_proof)
    return old, new, old_root, new_root, proof


def accepts(verify: Callable[[], None]) -> bool:
    try:
        verify()
    except VerificationError:
        return False
    return True


@settings(max_examples=1000, deadline=None)
@given(case=inclusion_inputs())
def test_verify_inclusion_agrees_with_an_independent_verifier(
    case: tuple[bytes, int, int, list[bytes], bytes],
) -> None:
    assert accepts(lambda: verify_inclusion(*case)) == rfc_accepts_inclusion(*case)


@settings(max_examples=1000, deadline=None)
@given(case=consistency_inputs())
def test_verify_consistency_agrees_with_an_independent_verifier(
    case: tuple[int, int, bytes, bytes, list[bytes]],
) -> None:
    assert accepts(lambda: verify_consistency(*case)) == rfc_accepts_consistency(*case)


def test_the_independent_verifiers_accept_and_reject() -> None:
    """They can tell a genuine proof from an altered one (else the comparisons prove nothing)."""
    proof = BIG_TREE.inclusion_proof(5, 11)
    assert rfc_accepts_inclusion(BIG[5], 5, 11, proof, BIG_ROOTS[11])
    assert not rfc_accepts_inclusion(BIG[5], 6, 11, proof, BIG_ROOTS[11])
    proof = BIG_TREE.consistency_proof(5, 11)
    assert rfc_accepts_consistency(5, 11, BIG_ROOTS[5], BIG_ROOTS[11], proof)
    assert not rfc_accepts_consistency(5, 11, BIG_ROOTS[6], BIG_ROOTS[11], proof)
    proof = BIG_TREE.consistency_proof(4, 11)
    assert rfc_accepts_consistency(4, 11, BIG_ROOTS[4], BIG_ROOTS[11], proof)
    assert not rfc_accepts_consistency(4, 11, BIG_ROOTS[4], BIG_ROOTS[12], proof)


# -- the verifiers' boundaries --------------------------------------------------


def test_consistency_from_the_empty_tree_is_rejected_whatever_the_proof() -> None:
    empty = root_hash([])
    for new, proof in [
        (0, []),
        (1, []),
        (1, [BIG[0]]),
        (5, []),
        (5, BIG_TREE.consistency_proof(1, 5)),
    ]:
        with pytest.raises(VerificationError, match="empty tree"):
            verify_consistency(0, new, empty, BIG_ROOTS[new], proof)


def test_equal_sizes_need_an_empty_proof_and_the_same_root() -> None:
    verify_consistency(7, 7, BIG_ROOTS[7], BIG_ROOTS[7], [])
    with pytest.raises(VerificationError, match="empty consistency proof"):
        verify_consistency(7, 7, BIG_ROOTS[7], BIG_ROOTS[7], [BIG[0]])
    with pytest.raises(VerificationError, match="different roots"):
        verify_consistency(7, 7, BIG_ROOTS[7], BIG_ROOTS[8], [])


def test_old_size_larger_than_new_size_is_rejected() -> None:
    proof = BIG_TREE.consistency_proof(3, 7)
    with pytest.raises(VerificationError, match="larger"):
        verify_consistency(7, 3, BIG_ROOTS[7], BIG_ROOTS[3], proof)


@pytest.mark.parametrize("bad", [-1, UINT64, UINT64 + 5])
def test_sizes_and_indexes_outside_uint64_are_rejected(bad: int) -> None:
    proof = BIG_TREE.inclusion_proof(3, 10)
    with pytest.raises(VerificationError, match="64-bit"):
        verify_inclusion(BIG[3], bad, 10, proof, BIG_ROOTS[10])
    with pytest.raises(VerificationError, match="64-bit"):
        verify_inclusion(BIG[3], 3, bad, proof, BIG_ROOTS[10])
    proof = BIG_TREE.consistency_proof(3, 10)
    with pytest.raises(VerificationError, match="64-bit"):
        verify_consistency(bad, 10, BIG_ROOTS[3], BIG_ROOTS[10], proof)
    with pytest.raises(VerificationError, match="64-bit"):
        verify_consistency(3, bad, BIG_ROOTS[3], BIG_ROOTS[10], proof)


def test_largest_uint64_tree_is_accepted_as_a_size() -> None:
    """2**64 - 1 leaves: the proof of the last leaf is the 63 complete subtrees left of it."""
    proof = [leaf_hash(b"subtree %d" % level) for level in range(1, 64)]
    root = BIG[0]
    for left in proof:
        root = node_hash(left, root)
    verify_inclusion(BIG[0], UINT64 - 2, UINT64 - 1, proof, root)
    with pytest.raises(VerificationError):
        verify_inclusion(BIG[0], UINT64 - 3, UINT64 - 1, proof, root)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_hashes_of_the_wrong_length_are_rejected(length: int) -> None:
    bad = bytes(length)
    proof = BIG_TREE.inclusion_proof(5, 11)
    root = BIG_ROOTS[11]
    cases: list[Callable[[], None]] = [
        lambda: verify_inclusion(bad, 5, 11, proof, root),
        lambda: verify_inclusion(BIG[5], 5, 11, proof, bad),
        lambda: verify_inclusion(BIG[5], 5, 11, [*proof[:-1], bad], root),
        lambda: verify_consistency(5, 11, bad, root, BIG_TREE.consistency_proof(5, 11)),
        lambda: verify_consistency(5, 11, BIG_ROOTS[5], bad, BIG_TREE.consistency_proof(5, 11)),
        lambda: verify_consistency(
            5, 11, BIG_ROOTS[5], root, [bad, *BIG_TREE.consistency_proof(5, 11)[1:]]
        ),
    ]
    for case in cases:
        with pytest.raises(VerificationError, match=f"is {length} bytes"):
            case()


def test_wrong_proof_length_is_rejected_before_hashing() -> None:
    proof = BIG_TREE.inclusion_proof(5, 11)
    with pytest.raises(VerificationError, match="proof has 5 hashes, this tree needs 4"):
        verify_inclusion(BIG[5], 5, 11, [*proof, proof[0]], BIG_ROOTS[11])
    proof = BIG_TREE.consistency_proof(5, 11)
    with pytest.raises(VerificationError, match="proof has 4 hashes, this tree needs 5"):
        verify_consistency(5, 11, BIG_ROOTS[5], BIG_ROOTS[11], proof[:-1])


# -- caller mistakes: ValueError ------------------------------------------------


def test_generation_rejects_caller_mistakes() -> None:
    leaves = BIG[:10]
    for index in (-1, 10, 11):
        with pytest.raises(ValueError, match="not in a tree of size 10"):
            inclusion_proof(leaves, index)
    with pytest.raises(ValueError, match="not in a tree of size 0"):
        inclusion_proof([], 0)
    for old in (-1, 0, 11):
        with pytest.raises(ValueError, match="old size"):
            consistency_proof(leaves, old)
    assert consistency_proof(leaves, 10) == []
    calls: list[Callable[[list[bytes]], object]] = [
        root_hash,
        lambda hs: inclusion_proof(hs, 0),
        lambda hs: consistency_proof(hs, 1),
    ]
    for bad in (b"", bytes(31), bytes(33)):
        for call in calls:
            with pytest.raises(ValueError, match="leaf hash 1 is"):
                call([BIG[0], bad, BIG[2]])


def test_tree_rejects_caller_mistakes() -> None:
    tree = MerkleTree(MemoryNodeStore())
    tree.append_many(BIG[:10])
    with pytest.raises(ValueError, match="negative"):
        MerkleTree(MemoryNodeStore(), -1)
    for bad_size in (-1, 11):
        with pytest.raises(ValueError, match="sizes this tree has had"):
            tree.root_at(bad_size)
        with pytest.raises(ValueError, match="sizes this tree has had"):
            tree.inclusion_proof(0, bad_size)
        with pytest.raises(ValueError, match="sizes this tree has had"):
            tree.consistency_proof(1, bad_size)
    for index, size in ((-1, 5), (5, 5), (0, 0)):
        with pytest.raises(ValueError, match="not in a tree of size"):
            tree.inclusion_proof(index, size)
    for old, new in ((0, 5), (-1, 5), (6, 5)):
        with pytest.raises(ValueError, match="old size"):
            tree.consistency_proof(old, new)
    assert tree.consistency_proof(5, 5) == []


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33)])
def test_leaf_hash_of_wrong_length_changes_nothing(bad: bytes) -> None:
    store = MemoryNodeStore()
    tree = MerkleTree(store)
    tree.append_many(BIG[:5])
    with pytest.raises(ValueError, match="leaf hash is"):
        tree.append(bad)
    with pytest.raises(ValueError, match="leaf hash 2 of the batch"):
        tree.append_many([BIG[5], BIG[6], bad, BIG[7]])
    assert (tree.size, tree.root(), len(store)) == (5, BIG_ROOTS[5], 2 * 5 - 2)


def test_appended_buffers_are_copied() -> None:
    """A bytearray the caller changes after appending must not change the log."""
    buffers = [bytearray(BIG[0]), bytearray(BIG[1])]
    store = MemoryNodeStore()
    tree = MerkleTree(store)
    # An untyped caller: the signature says bytes, the tree must not trust it.
    tree.append(buffers[0])  # type: ignore[arg-type]
    tree.append_many([buffers[1]])  # type: ignore[list-item]
    for b in buffers:
        b[0] ^= 1
    assert store.get(0, 0) == BIG[0] and store.get(0, 1) == BIG[1]
    assert type(store.get(0, 0)) is bytes and type(store.get(0, 1)) is bytes
    assert tree.root() == BIG_ROOTS[2]


# -- the store: contract, costs, failures ---------------------------------------


class CountingStore:
    """A NodeStore that counts calls, fails the write numbered ``fail_at``, and can lie."""

    def __init__(self, inner: NodeStore, fail_at: int | None = None) -> None:
        self.inner = inner
        self.gets = self.puts = self.put_manys = self.writes = 0
        self.fail_at = fail_at
        self.corrupt: bytes | None = None

    def get(self, level: int, index: int) -> bytes:
        self.gets += 1
        return self.corrupt if self.corrupt is not None else self.inner.get(level, index)

    def _write(self) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            raise OSError("disk on fire")

    def put(self, level: int, index: int, node_hash: bytes) -> None:
        self.puts += 1
        self._write()
        self.inner.put(level, index, node_hash)

    def put_many(self, level: int, first_index: int, node_hashes: Sequence[bytes]) -> None:
        self.put_manys += 1
        self._write()
        self.inner.put_many(level, first_index, node_hashes)


def test_memory_store_is_write_once_and_gap_free() -> None:
    store = MemoryNodeStore()
    store.put_many(0, 0, BIG[:3])
    store.put(0, 3, BIG[3])
    store.put(0, 3, bytes(BIG[3]))  # the same hash again: a retried write
    with pytest.raises(ValueError, match=r"node \(0, 3\) is already stored"):
        store.put(0, 3, BIG[4])
    store.put_many(0, 2, BIG[2:6])  # (0, 2) and (0, 3) again, the same; (0, 4) and (0, 5) new
    with pytest.raises(ValueError, match=r"node \(0, 4\) is already stored"):
        store.put_many(0, 3, [BIG[3], BIG[9], BIG[5], BIG[6]])
    gaps: list[Callable[[], None]] = [
        lambda: store.put(0, 7, BIG[7]),
        lambda: store.put_many(0, 7, [BIG[7]]),
        lambda: store.put(0, -1, BIG[7]),
        lambda: store.put_many(0, -1, [BIG[7]]),
        lambda: store.put(3, 1, BIG[7]),
    ]
    for call in gaps:
        with pytest.raises(ValueError, match="gap"):
            call()
    with pytest.raises(ValueError, match="negative"):
        store.put(-1, 0, BIG[0])
    assert [store.get(0, i) for i in range(6)] == BIG[:6]
    for level, index in ((0, 6), (0, -1), (1, 0), (-1, 0), (9, 0)):
        with pytest.raises(KeyError):
            store.get(level, index)
    assert store.keys() == {(0, i) for i in range(6)} and len(store) == 6


def test_append_writes_the_completed_subtrees_and_reads_nothing() -> None:
    store = CountingStore(MemoryNodeStore())
    tree = MerkleTree(store)
    for i in range(300):
        before = store.puts
        tree.append(BIG[i])
        trailing_ones = (i ^ (i + 1)).bit_length() - 1
        assert store.puts - before == 1 + trailing_ones
        assert store.gets == 0
    tree.root()
    assert store.gets == 0


def test_append_many_writes_each_level_once() -> None:
    store = CountingStore(MemoryNodeStore())
    tree = MerkleTree(store)
    tree.append_many(BIG[:5])
    for start, count in ((5, 1), (6, 100), (106, 150), (256, 1), (257, 255)):
        before = store.put_manys
        tree.append_many(BIG[start : start + count])
        # One call per level holding new complete nodes.
        levels = {level for level, index in complete_nodes(start + count) - complete_nodes(start)}
        assert store.put_manys - before == len(levels)
    assert store.gets == store.puts == 0
    assert tree.root() == BIG_ROOTS[512]


def test_roots_and_proofs_read_logarithmically_many_nodes() -> None:
    store = CountingStore(BIG_STORE)
    tree = MerkleTree(store, 512)
    assert store.gets == 1  # one complete subtree: 512 = 2**9
    sizes_seen = 0
    for size in (1, 2, 3, 100, 255, 256, 257, 300, 511, 512):
        store.gets = 0
        assert tree.root_at(size) == BIG_ROOTS[size]
        assert store.gets <= (size != 512) * size.bit_count()
        for index in range(size):
            store.gets = 0
            proof = tree.inclusion_proof(index, size)
            assert store.gets <= 2 * size.bit_length()
            assert len(proof) <= store.gets
        for old in range(1, size + 1):
            store.gets = 0
            tree.consistency_proof(old, size)
            assert store.gets <= 2 * size.bit_length() + 1
        sizes_seen += 1
    assert sizes_seen == 10


def test_opening_a_tree_the_store_does_not_hold_raises_key_error() -> None:
    _, store = build(BIG[:10])
    with pytest.raises(KeyError):
        MerkleTree(store, 11)
    tree = MerkleTree(store, 10)
    assert tree.root() == BIG_ROOTS[10]


def test_corrupt_stored_hash_is_detected() -> None:
    store = CountingStore(BIG_STORE)
    tree = MerkleTree(store, 512)
    store.corrupt = bytes(31)
    with pytest.raises(ValueError, match="31-byte hash"):
        tree.inclusion_proof(3, 100)
    with pytest.raises(ValueError, match="31-byte hash"):
        MerkleTree(store, 100)


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])
def test_failed_store_write_leaves_the_tree_as_it_was(fail_at: int) -> None:
    inner = MemoryNodeStore()
    tree = MerkleTree(inner)
    tree.append_many(BIG[:7])
    store = CountingStore(inner, fail_at=fail_at)
    tree = MerkleTree(store, 7)
    with pytest.raises(OSError, match="disk on fire"):
        tree.append(BIG[7])  # leaf 7 completes (1, 3), (2, 1) and (3, 0): four writes
    assert (tree.size, tree.root()) == (7, BIG_ROOTS[7])
    tree.append(BIG[7])  # the retry rewrites the same hashes
    assert (tree.size, tree.root()) == (8, BIG_ROOTS[8])
    store.writes, store.fail_at = 0, fail_at
    with pytest.raises(OSError, match="disk on fire"):
        tree.append_many(BIG[8:24])  # levels 0 to 4: five writes
    assert (tree.size, tree.root()) == (8, BIG_ROOTS[8])
    assert tree.append_many(BIG[8:24]) == range(8, 24)
    assert tree.root() == BIG_ROOTS[24]
    assert inner.keys() == complete_nodes(24)
