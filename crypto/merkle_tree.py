"""An append-only RFC 9162 Merkle tree kept as stored node hashes, for logs of millions of leaves.

Key scheme
----------
A node is named by ``(level, index)``, two non-negative integers: node
``(level, index)`` is the root of the *complete* subtree over the leaves
``[index * 2**level, (index + 1) * 2**level)``. Level 0 holds the leaf hashes
themselves (``(0, i)`` is the hash of leaf ``i``, as given to :meth:`MerkleTree.append`);
node ``(level + 1, index)`` is ``node_hash((level, 2 * index), (level, 2 * index + 1))``.
The value stored under a key is the node's 32-byte SHA-256 hash.

Only complete subtrees are stored: a tree of ``n`` leaves holds exactly the
nodes with ``(index + 1) * 2**level <= n``, that is ``2 * n - popcount(n)`` of
them. A stored node never changes once written, so the store is append-only
and a tree of any earlier size ``m <= n`` is contained in it. The roots of the
incomplete ("ephemeral") subtrees on the right edge are never stored; they are
recomputed from the complete subtrees under them, ``O(log n)`` of them.

A database backend keeps one row per node with the primary key
``(level, index)``; nothing else about the store is assumed.

Costs
-----
:meth:`MerkleTree.append` of leaf ``i`` stores the leaf and every subtree that
leaf completes: ``1 + t`` writes and ``t`` hashes, ``t`` the number of trailing
one bits of ``i`` (1 on average, at most 63). :meth:`MerkleTree.append_many`
makes the same writes with one ``put_many`` call per level. The hashes of the
complete subtrees that make up the current tree (one per one bit of the size,
the "frontier") are kept in memory, so appending and :meth:`MerkleTree.root`
read nothing from the store. Opening a tree of size ``n`` reads ``popcount(n)``
nodes; :meth:`MerkleTree.root_at`, :meth:`MerkleTree.inclusion_proof` and
:meth:`MerkleTree.consistency_proof` read ``O(log n)`` nodes and hash
``O(log n)`` times, for any size up to the current one.

The proofs are those of RFC 9162 2.1.3.1 and 2.1.4.1, equal hash for hash to
``crypto.merkle.inclusion_proof`` and ``crypto.merkle.consistency_proof``; the
tests check every size up to 64 and random sizes beyond.

Failures
--------
Caller mistakes (a leaf hash that is not 32 bytes, a size or index outside the
tree held) raise ``ValueError``. A store that lacks a node the tree needs raises
the store's ``KeyError`` (wrong size given to :class:`MerkleTree`, or a damaged
store); a stored value that is not 32 bytes raises ``ValueError``.

A :class:`MerkleTree` assumes it is the only writer of its store, and is not
safe for concurrent use. It writes a leaf's nodes before it counts the leaf: if
a store write fails, the tree keeps its previous size. Retrying with the same
leaves rewrites the nodes already written with the same hashes; other leaves
in their place fail with the store's ``ValueError`` (nodes are write-once), so
a half-written append is never silently replaced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Final, Protocol

from crypto.merkle import HASH_SIZE, node_hash, root_hash

__all__ = ["MemoryNodeStore", "MerkleTree", "NodeStore"]

_EMPTY_ROOT: Final = root_hash(())
# SHA-256 after the node prefix 0x01, only ever copied (see crypto.merkle).
_NODE_STATE: Final = hashlib.sha256(b"\x01")


class NodeStore(Protocol):
    """Where a :class:`MerkleTree` keeps the hashes of its complete subtrees.

    See the module documentation for the ``(level, index)`` key scheme. Nodes
    are write-once: storing the hash a node already has is allowed (a retried
    write), storing a different one must fail with ``ValueError``. A
    :class:`MerkleTree` writes the nodes of each level in increasing index
    order without gaps (it is append-only), so a store may reject a gap.
    """

    def get(self, level: int, index: int) -> bytes:
        """The hash of node ``(level, index)``; raises ``KeyError`` if it is not stored."""
        ...

    def put(self, level: int, index: int, node_hash: bytes) -> None:
        """Stores the hash of node ``(level, index)``."""
        ...

    def put_many(self, level: int, first_index: int, node_hashes: Sequence[bytes]) -> None:
        """Stores consecutive nodes of one level, ``(level, first_index + k)`` for each k.

        :meth:`MerkleTree.append_many` makes one call per level, so a database
        backend can write a batch of leaves in ``O(log n)`` statements.
        """
        ...


class MemoryNodeStore:
    """A :class:`NodeStore` in memory: per level, a list of hashes indexed by node index.

    The tree is append-only and writes every level in index order, so a list is
    the whole map from index to hash, without a dict's per-entry keys. Writing
    past the end of a level (a gap) or a different hash for a stored node raises
    ``ValueError``: either is a bug or tampering, never a tree operation.
    """

    __slots__ = ("_levels",)

    def __init__(self) -> None:
        self._levels: list[list[bytes]] = []

    def get(self, level: int, index: int) -> bytes:
        levels = self._levels
        if 0 <= level < len(levels):
            nodes = levels[level]
            if 0 <= index < len(nodes):
                return nodes[index]
        raise KeyError((level, index))

    def _level(self, level: int) -> list[bytes]:
        levels = self._levels
        if level < 0:
            raise ValueError(f"level {level} is negative")
        while len(levels) <= level:
            levels.append([])
        return levels[level]

    def put(self, level: int, index: int, node_hash: bytes) -> None:
        levels = self._levels
        if 0 <= level < len(levels):
            nodes = levels[level]
            if index == len(nodes):  # the tree's case: the next node of an existing level
                nodes.append(node_hash)
                return
        nodes = self._level(level)
        stored = len(nodes)
        if index == stored:
            nodes.append(node_hash)
        elif 0 <= index < stored:
            if nodes[index] != node_hash:
                raise ValueError(f"node ({level}, {index}) is already stored with another hash")
        else:
            raise ValueError(f"node ({level}, {index}) would leave a gap after index {stored - 1}")

    def put_many(self, level: int, first_index: int, node_hashes: Sequence[bytes]) -> None:
        nodes = self._level(level)
        stored = len(nodes)
        if not 0 <= first_index <= stored:
            raise ValueError(
                f"nodes ({level}, {first_index}...) would leave a gap after index {stored - 1}"
            )
        # Nodes already stored (a retried write) must be stored with the same hashes.
        again = min(stored - first_index, len(node_hashes))
        if again:
            for k in range(again):
                if nodes[first_index + k] != node_hashes[k]:
                    raise ValueError(
                        f"node ({level}, {first_index + k}) is already stored with another hash"
                    )
            node_hashes = node_hashes[again:]
        nodes.extend(node_hashes)

    def keys(self) -> set[tuple[int, int]]:
        """The ``(level, index)`` of every stored node."""
        return {
            (level, index)
            for level, nodes in enumerate(self._levels)
            for index in range(len(nodes))
        }

    def __len__(self) -> int:
        return sum(map(len, self._levels))


class MerkleTree:
    """An append-only Merkle tree over a :class:`NodeStore`.

    ``MerkleTree(store)`` starts an empty tree; ``MerkleTree(store, size)`` opens
    the tree of the first ``size`` leaves already in ``store`` (the caller keeps
    the size, e.g. beside its latest signed tree head).
    """

    __slots__ = ("_frontier", "_size", "_store")

    def __init__(self, store: NodeStore, size: int = 0) -> None:
        if size < 0:
            raise ValueError(f"tree size {size} is negative")
        self._store = store
        self._size = size
        # The hashes of the complete subtrees that make up the whole tree, one
        # per set bit of size, largest (leftmost) first.
        self._frontier: list[bytes] = [
            self._node(level, index) for level, index in _range_nodes(0, size)
        ]

    @property
    def size(self) -> int:
        """The number of leaves."""
        return self._size

    def append(self, leaf_hash: bytes) -> int:
        """Appends the leaf with hash ``leaf_hash`` (see ``crypto.merkle.leaf_hash``).

        Returns the new leaf's index. Raises ``ValueError`` if the hash is not 32 bytes.
        """
        if leaf_hash.__class__ is not bytes:
            leaf_hash = bytes(leaf_hash)  # never store a buffer the caller can still change
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash is {len(leaf_hash)} bytes, not {HASH_SIZE}")
        index = self._size
        put = self._store.put
        put(0, index, leaf_hash)
        frontier = self._frontier
        if index & 1:
            # Leaf index completes one subtree per trailing one bit: each one's
            # left half is the last frontier entry not yet used.
            new_state = _NODE_STATE.copy
            h = leaf_hash
            top = len(frontier)
            i = index
            level = 0
            while i & 1:
                top -= 1
                state = new_state()
                state.update(frontier[top] + h)
                h = state.digest()
                i >>= 1
                level += 1
                put(level, i, h)
            # Only now that every write succeeded: the leaf is part of the tree.
            del frontier[top:]
            frontier.append(h)
        else:
            frontier.append(leaf_hash)
        self._size = index + 1
        return index

    def append_many(self, leaf_hashes: Iterable[bytes]) -> range:
        """Appends the leaves with these hashes, in order; returns the range of their indexes.

        Hashes the batch level by level and writes each level's new nodes with
        one ``put_many``. Every hash is checked first: if one is not 32 bytes,
        ``ValueError`` is raised and nothing is written. If a store write
        fails, the tree keeps its previous size.
        """
        batch = list(leaf_hashes)
        if set(map(type, batch)) - {bytes}:
            batch = [bytes(h) for h in batch]
        if set(map(len, batch)) - {HASH_SIZE}:
            i = next(i for i, h in enumerate(batch) if len(h) != HASH_SIZE)
            raise ValueError(
                f"leaf hash {i} of the batch is {len(batch[i])} bytes, not {HASH_SIZE}"
            )
        size = self._size
        if not batch:
            return range(size, size)
        new_state = _NODE_STATE.copy
        # Frontier hashes by level; those the batch completes are taken out.
        old = dict(zip(_set_bits(size), self._frontier, strict=True))
        new: dict[int, bytes] = {}
        writes: list[tuple[int, int, list[bytes]]] = []
        run, first, level = batch, size, 0
        # run: the new complete nodes of this level, from index first on.
        while run:
            writes.append((level, first, run))
            if first & 1:
                run = [old.pop(level), *run]
                first -= 1
            if len(run) & 1:
                new[level] = run[-1]
            # Pairs of siblings; an odd last node waits in the frontier.
            parents: list[bytes] = []
            add = parents.append
            for left, right in zip(run[::2], run[1::2], strict=False):
                state = new_state()
                state.update(left + right)
                add(state.digest())
            run = parents
            first >>= 1
            level += 1
        for level, first, nodes in writes:
            self._store.put_many(level, first, nodes)
        new.update(old)
        self._frontier = [new[level] for level in sorted(new, reverse=True)]
        self._size = size + len(batch)
        return range(size, self._size)

    def root(self) -> bytes:
        """The root hash of the tree at its current size (no store reads)."""
        return _fold(self._frontier)

    def root_at(self, size: int) -> bytes:
        """The root hash of the tree of the first ``size`` leaves, ``0 <= size <= self.size``."""
        self._check_size("size", size)
        if size == self._size:
            return self.root()
        return self._range_hash(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The inclusion proof of leaf ``index`` in the tree of the first ``size`` leaves.

        Requires ``0 <= index < size <= self.size`` (``ValueError`` otherwise).
        Equal to ``crypto.merkle.inclusion_proof(leaf_hashes[:size], index)``.
        """
        self._check_size("size", size)
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is not in a tree of size {size}")
        return self._path(0, index, size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The consistency proof from the tree of ``old_size`` leaves to that of ``new_size``.

        Requires ``0 < old_size <= new_size <= self.size`` (``ValueError``
        otherwise); empty when the sizes are equal. Equal to
        ``crypto.merkle.consistency_proof(leaf_hashes[:new_size], old_size)``.
        """
        self._check_size("new size", new_size)
        if not 0 < old_size <= new_size:
            raise ValueError(
                f"old size {old_size} is not in 1..{new_size}"
                " (a consistency proof needs 0 < old size <= new size)"
            )
        if old_size == new_size:
            return []
        # The last complete subtree of the old tree, and its path in the new tree.
        level = (old_size & -old_size).bit_length() - 1
        index = (old_size - 1) >> level
        path = self._path(level, index, new_size)
        if index == 0:
            # That subtree is the whole old tree: the verifier has it as the old root.
            return path
        return [self._node(level, index), *path]

    # -- reading the store -------------------------------------------------

    def _check_size(self, name: str, size: int) -> None:
        if not 0 <= size <= self._size:
            raise ValueError(
                f"{name} {size} is not in 0..{self._size}, the sizes this tree has had"
            )

    def _node(self, level: int, index: int) -> bytes:
        h = self._store.get(level, index)
        if len(h) != HASH_SIZE:
            raise ValueError(f"node store holds a {len(h)}-byte hash for node ({level}, {index})")
        return h

    def _range_hash(self, begin: int, end: int) -> bytes:
        """MTH of leaves [begin, end), where ``begin`` is a multiple of bit_ceil(end - begin)."""
        return _fold([self._node(level, index) for level, index in _range_nodes(begin, end)])

    def _path(self, level: int, index: int, size: int) -> list[bytes]:
        """The inclusion proof of the complete node (level, index) in the tree of ``size`` leaves.

        Bottom to top: the siblings up to the "fork", the highest ancestor whose
        subtree is complete; then the root of the incomplete subtree to the
        fork's right, if there are leaves there; then the complete subtrees to
        the left of the fork, nearest first.
        """
        node = self._node
        inner = (index ^ (size >> level)).bit_length() - 1
        proof = [node(level + i, (index >> i) ^ 1) for i in range(inner)]
        fork_level = level + inner
        begin = (index >> inner) << fork_level
        end = begin + (1 << fork_level)
        if end < size:
            proof.append(self._range_hash(end, size))
        rest = begin
        while rest:
            low = rest & -rest
            rest ^= low
            left_level = low.bit_length() - 1
            proof.append(node(left_level, rest >> left_level))
        return proof


def _set_bits(n: int) -> list[int]:
    """The positions of the one bits of ``n``, highest first."""
    return [level for level in range(n.bit_length() - 1, -1, -1) if n >> level & 1]


def _range_nodes(begin: int, end: int) -> list[tuple[int, int]]:
    """The complete subtrees covering leaves [begin, end), left to right.

    ``begin`` must be a multiple of the smallest power of two >= end - begin
    (true of 0 and of every range the proofs need): the subtrees are then one
    per set bit of ``end - begin``, largest first.
    """
    nodes = []
    offset = begin
    count = end - begin
    for level in range(count.bit_length() - 1, -1, -1):
        if count >> level & 1:
            nodes.append((level, offset >> level))
            offset += 1 << level
    return nodes


def _fold(hashes: list[bytes]) -> bytes:
    """The root over complete subtrees given left to right, largest first."""
    if not hashes:
        return _EMPTY_ROOT
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h
