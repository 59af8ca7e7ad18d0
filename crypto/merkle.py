"""Merkle tree hashing, proofs and proof verification of RFC 9162 section 2.1.

Hashing (SHA-256, the hash of RFC 6962 and of RFC 9162's SHA-256 logs)::

    leaf_hash(d)    = SHA-256(0x00 || d)
    node_hash(l, r) = SHA-256(0x01 || l || r)
    MTH({})         = SHA-256("")
    MTH({d0})       = leaf_hash(d0)
    MTH(D[n])       = node_hash(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n

The functions that take ``leaf_hashes`` work on leaf hashes, not on leaf data:
``root_hash([leaf_hash(d) for d in data])`` is MTH(data). Leaf indexes are
0-based.

Generation (:func:`root_hash`, :func:`inclusion_proof`, :func:`consistency_proof`)
is the recursive definition of RFC 9162 2.1.1, 2.1.3.1 (PATH) and 2.1.4.1
(SUBPROOF), written as directly as the RFC gives it: this module is the
reference that ``crypto.merkle_tree`` is tested against. It hashes O(n) nodes
per call; logs of real size use ``crypto.merkle_tree``. Caller mistakes (an
index outside the tree, a leaf hash that is not 32 bytes) raise ``ValueError``.

Verification (:func:`verify_inclusion`, :func:`verify_consistency`) is the
algorithm of RFC 9162 2.1.3.2 and 2.1.4.2 step by step, after checks that
reject malformed input before any hashing. Every input is untrusted: every way
it can fail, including a size or index out of range and a hash of the wrong
length, raises :class:`~crypto.errors.VerificationError`, and nothing else.
The accepted and rejected cases are those of the probes published with
transparency-dev/merkle (``testdata/``), which ``tests/test_crypto_merkle.py``
runs in full. Two consequences to know:

* A consistency proof from the empty tree (``old_size == 0``) is rejected,
  whatever the proof: it would prove nothing, and the probes require the
  rejection (the Go ``proof.VerifyConsistency`` accepts it with an empty proof).
* When ``old_size == new_size`` the proof must be empty and the two roots
  byte-identical; no hashing happens, so the roots' lengths are not checked in
  that one case (a probe that must verify has two equal 12-byte "roots"). A
  caller that needs a root's length checked checks it where it parses the
  signed tree head.

A proof binds a leaf (or an old root) to a root; it does not bind the tree
size by itself. Some proofs verify for more than one size with the same root
(the inclusion proof of leaf 0 in a tree of 3 also verifies as one in a tree
of 4, against the root of the tree of 3). Sizes and roots must therefore come
together from one signed tree head, as in RFC 9162 and in every CT client.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Final

from crypto.errors import VerificationError

__all__ = [
    "HASH_SIZE",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

#: Length in bytes of every leaf hash, node hash and root (SHA-256).
HASH_SIZE: Final = 32

_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"
_EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
# SHA-256 states that have absorbed the prefix and are only ever copied, never
# updated: copying one is cheaper than a new hashlib.sha256() call, and leaf_hash
# runs once per leaf of the log. (Copying is safe from any thread.)
_LEAF_STATE: Final = hashlib.sha256(_LEAF_PREFIX)
_NODE_STATE: Final = hashlib.sha256(_NODE_PREFIX)
# Tree sizes and leaf indexes are uint64 on the wire (RFC 9162 section 4).
_SIZE_LIMIT: Final = 1 << 64


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf: ``SHA-256(0x00 || data)``."""
    h = _LEAF_STATE.copy()
    h.update(data)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: ``SHA-256(0x01 || left || right)``.

    The bare RFC primitive: the lengths of ``left`` and ``right`` are not checked
    here (the published hasher vector hashes two 4-byte strings); every function
    of this module that builds or checks a tree checks them.
    """
    h = _NODE_STATE.copy()
    h.update(left + right)
    return h.digest()


# -- generation: the recursive definitions of RFC 9162 2.1.1, 2.1.3.1, 2.1.4.1 --


def _check_leaf_hashes(leaf_hashes: Sequence[bytes]) -> None:
    for i, h in enumerate(leaf_hashes):
        if len(h) != HASH_SIZE:
            raise ValueError(f"leaf hash {i} is {len(h)} bytes, not {HASH_SIZE}")


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) for ``lo < hi``."""
    n = hi - lo
    if n == 1:
        return leaves[lo]
    k = _split(n)
    return node_hash(_mth(leaves, lo, lo + k), _mth(leaves, lo + k, hi))


def _path(m: int, leaves: Sequence[bytes], lo: int, hi: int) -> list[bytes]:
    """PATH(m, D[lo:hi]) for ``0 <= m < hi - lo``."""
    n = hi - lo
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(m, leaves, lo, lo + k), _mth(leaves, lo + k, hi)]
    return [*_path(m - k, leaves, lo + k, hi), _mth(leaves, lo, lo + k)]


def _subproof(m: int, leaves: Sequence[bytes], lo: int, hi: int, whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[lo:hi], whole) for ``0 < m <= hi - lo``."""
    n = hi - lo
    if m == n:
        return [] if whole else [_mth(leaves, lo, hi)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves, lo, lo + k, whole), _mth(leaves, lo + k, hi)]
    return [*_subproof(m - k, leaves, lo + k, hi, False), _mth(leaves, lo, lo + k)]


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the tree whose leaves have these hashes; ``SHA-256("")`` when there are none."""
    _check_leaf_hashes(leaf_hashes)
    if not leaf_hashes:
        return _EMPTY_ROOT
    return _mth(leaf_hashes, 0, len(leaf_hashes))


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]): the inclusion proof of leaf ``index`` in the tree of these leaves.

    Hashes are ordered from the leaf's sibling up to the child of the root.
    Raises ``ValueError`` unless ``0 <= index < len(leaf_hashes)``.
    """
    _check_leaf_hashes(leaf_hashes)
    if not 0 <= index < len(leaf_hashes):
        raise ValueError(f"leaf index {index} is not in a tree of size {len(leaf_hashes)}")
    return _path(index, leaf_hashes, 0, len(leaf_hashes))


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(old_size, D[n]): proves the tree of the first ``old_size`` leaves is a prefix.

    Empty when ``old_size == len(leaf_hashes)``. Raises ``ValueError`` unless
    ``0 < old_size <= len(leaf_hashes)``: a proof from the empty tree proves
    nothing and :func:`verify_consistency` rejects it.
    """
    _check_leaf_hashes(leaf_hashes)
    if not 0 < old_size <= len(leaf_hashes):
        raise ValueError(
            f"old size {old_size} is not in 1..{len(leaf_hashes)}"
            " (a consistency proof needs 0 < old size <= tree size)"
        )
    return _subproof(old_size, leaf_hashes, 0, len(leaf_hashes), True)


# -- verification: RFC 9162 2.1.3.2 and 2.1.4.2 ------------------------------


def _proof_size(level: int, index: int, size: int) -> int:
    """The number of hashes in the inclusion proof of node (level, index) in a tree of ``size``.

    Node (level, index) covers leaves [index * 2**level, (index + 1) * 2**level)
    and must be complete in the tree. The path from it goes up ``inner`` levels
    to the "fork", the last node whose subtree is still complete; then one
    hash for the incomplete subtree to the fork's right, if the tree has
    leaves there; then one hash per complete subtree to the fork's left.
    """
    inner = (index ^ (size >> level)).bit_length() - 1
    begin = (index >> inner) << (level + inner)
    end = begin + (1 << (level + inner))
    return inner + (1 if end < size else 0) + begin.bit_count()


def _check_size(name: str, value: int) -> None:
    if not 0 <= value < _SIZE_LIMIT:
        raise VerificationError(f"{name} {value} is not a 64-bit unsigned integer")


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise VerificationError(f"{name} is {len(value)} bytes, not {HASH_SIZE}")


def _check_proof(proof: Sequence[bytes], want: int) -> None:
    if len(proof) != want:
        raise VerificationError(f"proof has {len(proof)} hashes, this tree needs {want}")
    for i, h in enumerate(proof):
        _check_hash(f"proof hash {i}", h)


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Checks that ``proof`` proves leaf ``index`` has ``leaf_hash`` in the tree with ``root``.

    Returns ``None`` on success and raises :class:`VerificationError` otherwise:
    ``index >= tree_size``, a size or index outside uint64, a leaf hash, root or
    proof hash not 32 bytes, a proof of the wrong length, or a root mismatch.
    """
    _check_size("tree size", tree_size)
    _check_size("leaf index", index)
    if index >= tree_size:
        raise VerificationError(f"leaf index {index} is not in a tree of size {tree_size}")
    _check_hash("leaf hash", leaf_hash)
    _check_hash("root", root)
    _check_proof(proof, _proof_size(0, index, tree_size))

    # RFC 9162 2.1.3.2, steps 2 to 5. With the length checked above, the two
    # "sn" checks cannot fail; they stay because the RFC's algorithm has them.
    fn, sn = index, tree_size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof is shorter than the path to the root")
    if not hmac.compare_digest(r, root):
        raise VerificationError("inclusion proof does not lead to the given root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Checks that ``proof`` proves tree (old_size, old_root) is a prefix of (new_size, new_root).

    Returns ``None`` on success and raises :class:`VerificationError` otherwise:
    a size outside uint64, ``old_size > new_size``, ``old_size == 0``, equal
    sizes with a non-empty proof or different roots, a root or proof hash not
    32 bytes, a proof of the wrong length, or a mismatch of either root.
    """
    _check_size("old size", old_size)
    _check_size("new size", new_size)
    if old_size > new_size:
        raise VerificationError(f"old size {old_size} is larger than new size {new_size}")
    if old_size == 0:
        raise VerificationError("a consistency proof from the empty tree proves nothing")
    if old_size == new_size:
        if proof:
            raise VerificationError("equal sizes need an empty consistency proof")
        if not hmac.compare_digest(old_root, new_root):
            raise VerificationError("equal sizes but different roots")
        return
    # RFC 9162 2.1.4.2, step 1 (the length check below would also reject it).
    if not proof:
        raise VerificationError("empty consistency proof for different sizes")
    _check_hash("old root", old_root)
    _check_hash("new root", new_root)
    # The proof is the hash of the last complete subtree of the old tree (left
    # out when that subtree is the whole old tree: the verifier has it as
    # old_root) followed by that subtree's inclusion proof in the new tree.
    level = (old_size & -old_size).bit_length() - 1
    index = (old_size - 1) >> level
    _check_proof(proof, (1 if index else 0) + _proof_size(level, index, new_size))

    # RFC 9162 2.1.4.2, steps 2 to 7; as above, the "sn" checks cannot fail.
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency proof is shorter than the path to the root")
    if not hmac.compare_digest(fr, old_root):
        raise VerificationError("consistency proof does not lead to the old root")
    if not hmac.compare_digest(sr, new_root):
        raise VerificationError("consistency proof does not lead to the new root")
