"""RFC 9162 Merkle tree hashes, inclusion and consistency proofs, over the ledger's record hashes.

Pure: standard library only. A leaf is the 32 bytes of a record's `hash`; leaf hash
`SHA-256(0x00 || leaf)`, node hash `SHA-256(0x01 || left || right)` (RFC 9162, 2.1.1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(hashed: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH over leaf hashes [lo, hi), hi > lo."""
    if hi - lo & (hi - lo - 1) == 0:  # a perfect subtree: hash it level by level
        return _perfect_root(list(hashed[lo:hi]))
    k = _split(hi - lo)
    return node_hash(_mth(hashed, lo, lo + k), _mth(hashed, lo + k, hi))


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of the leaves (record hashes as bytes)."""
    if not leaves:
        return EMPTY_ROOT
    return _mth([leaf_hash(leaf) for leaf in leaves], 0, len(leaves))


def inclusion_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]) (RFC 9162, 2.1.3.1), nearest sibling first."""
    return inclusion_proof(index, leaves)[1]


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> tuple[bytes, list[bytes]]:
    """(root, PATH(index, D[n])), hashing the tree once: the root is folded from the path."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} is not in a tree of {len(leaves)}")
    hashed = [leaf_hash(leaf) for leaf in leaves]
    path = _path(index, hashed)
    return _fold(index, len(leaves), hashed[index], path), path


def _fold(index: int, size: int, node: bytes, path: list[bytes]) -> bytes:
    """The root a path leads to (RFC 9162, 2.1.3.2, without the checks)."""
    fn, sn = index, size - 1
    for sibling in path:
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            node = node_hash(node, sibling)
        fn, sn = fn >> 1, sn >> 1
    return node


def _path(index: int, hashed: list[bytes]) -> list[bytes]:
    path: list[bytes] = []
    lo, hi = 0, len(hashed)
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(_mth(hashed, lo + k, hi))
            hi = lo + k
        else:
            path.append(_mth(hashed, lo, lo + k))
            lo += k
    return path[::-1]


def consistency_path(first: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(first, D[n]) (RFC 9162, 2.1.4.1) for 0 < first <= n."""
    if not 0 < first <= len(leaves):
        raise IndexError(f"no consistency proof from {first} to {len(leaves)}")
    hashed = [leaf_hash(leaf) for leaf in leaves]
    path: list[bytes] = []
    lo, hi, m, complete = 0, len(hashed), first, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            path.append(_mth(hashed, lo + k, hi))
            hi = lo + k
        else:
            path.append(_mth(hashed, lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        path.append(_mth(hashed, lo, hi))
    return path[::-1]


class MerkleFrontier:
    """The roots of the perfect subtrees of a growing tree: append and root in O(log n).

    `extend` hashes whole aligned blocks level by level, which is several times faster in
    CPython than appending leaf by leaf.
    """

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []
        self.size = 0

    def append(self, leaf: bytes) -> None:
        self.extend([leaf])

    def extend(self, leaves: Sequence[bytes]) -> None:
        level = [_sha256(b"\x00" + leaf).digest() for leaf in leaves]
        start = 0
        while start < len(level):
            # A block may only start where a perfect subtree of its size starts.
            aligned = self.size & -self.size or 1 << 62
            block = min(aligned, 1 << ((len(level) - start).bit_length() - 1))
            self._push(block, _perfect_root(level[start : start + block]))
            start += block

    def _push(self, size: int, node: bytes) -> None:
        stack, self.size = self._stack, self.size + size
        while stack and stack[-1][0] == size:
            node = node_hash(stack.pop()[1], node)
            size *= 2
        stack.append((size, node))

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node


def _perfect_root(level: list[bytes]) -> bytes:
    """The root over leaf hashes whose count is a power of two."""
    while len(level) > 1:
        level = [_sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0]
