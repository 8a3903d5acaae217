"""RFC 9162 Merkle tree hashes, inclusion and consistency proofs, over the ledger's record hashes.

Pure: standard library only. A leaf is the 32 bytes of a record's `hash`; leaf hash
`SHA-256(0x00 || leaf)`, node hash `SHA-256(0x01 || left || right)` (RFC 9162, 2.1.1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


# A perfect subtree of the ledger's tree, (level, index): the leaves [index << level, (index + 1) << level).
Part = tuple[int, int]
# Subtrees of 2^STORED_LEVEL leaves and more are stored as records are appended; smaller ones are
# hashed from at most 15 record hashes when asked for. 16 keeps the stored nodes to one for
# every 8 records (the append stays cheap) while a proof reads a few dozen rows at most.
STORED_LEVEL = 4
BLOCK = 1 << STORED_LEVEL


def parts(lo: int, hi: int) -> list[Part]:
    """The perfect subtrees, left to right, that make up MTH over the leaves [lo, hi) of the tree.

    Every range a proof names starts at a multiple of its largest part (RFC 9162's split at the
    largest power of two), so each part is a node of the one tree and can be stored once.
    """
    found: list[Part] = []
    while hi > lo:
        size = hi - lo
        level = (size.bit_length() - 1) if size & (size - 1) == 0 else (_split(size).bit_length() - 1)
        found.append((level, lo >> level))
        lo += 1 << level
    return found


def span(part: Part) -> tuple[int, int]:
    """The leaves [start, stop) under a part."""
    level, index = part
    return index << level, (index + 1) << level


def subtree_root(leaves: Sequence[bytes]) -> bytes:
    """The root of a perfect subtree from its leaves (record hashes)."""
    return _perfect_root([leaf_hash(leaf) for leaf in leaves])


def _range_root(lo: int, hi: int, hashes: Mapping[Part, bytes]) -> bytes:
    """MTH over the leaves [lo, hi): its parts folded from the right."""
    found = parts(lo, hi)
    node = hashes[found[-1]]
    for part in reversed(found[:-1]):
        node = node_hash(hashes[part], node)
    return node


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges of PATH(index, D[size]) (RFC 9162, 2.1.3.1), nearest sibling first."""
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    return ranges[::-1]


def _consistency_ranges(first: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges of PROOF(first, D[size]) (RFC 9162, 2.1.4.1), in proof order."""
    ranges: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, size, first, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        ranges.append((lo, hi))
    return ranges[::-1]


def _parts_of(ranges: list[tuple[int, int]]) -> set[Part]:
    return {part for lo, hi in ranges for part in parts(lo, hi)}


def inclusion_parts(index: int, size: int) -> set[Part]:
    """The subtrees `inclusion_proof` needs: O(log size) of them."""
    if not 0 <= index < size:
        raise IndexError(f"leaf {index} is not in a tree of {size}")
    return {(0, index)} | _parts_of(_inclusion_ranges(index, size))


def inclusion_proof(index: int, size: int, hashes: Mapping[Part, bytes]) -> tuple[bytes, list[bytes]]:
    """(MTH(D[size]), PATH(index, D[size])) from the subtree hashes of `inclusion_parts`."""
    path = [_range_root(lo, hi, hashes) for lo, hi in _inclusion_ranges(index, size)]
    return _fold(index, size, hashes[(0, index)], path), path


def consistency_parts(first: int, size: int) -> set[Part]:
    """The subtrees `consistency_proof` needs (both roots included): O(log size) of them."""
    if not 0 < first <= size:
        raise IndexError(f"no consistency proof from {first} to {size}")
    ranges = _consistency_ranges(first, size) + [(0, first), (0, size)]
    return _parts_of(ranges)


def consistency_proof(
    first: int, size: int, hashes: Mapping[Part, bytes]
) -> tuple[list[bytes], bytes, bytes]:
    """(PROOF(first, D[size]), MTH(D[first]), MTH(D[size])) from the hashes of `consistency_parts`."""
    path = [_range_root(lo, hi, hashes) for lo, hi in _consistency_ranges(first, size)]
    return path, _range_root(0, first, hashes), _range_root(0, size, hashes)


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


class NodeBuilder:
    """The stored subtrees (level >= STORED_LEVEL) that appending leaves completes.

    Starts from a tree of `start` leaves (a multiple of BLOCK) and the hashes of its parts, left
    to right; `add` takes leaves from there on and returns each node as it is completed.
    """

    def __init__(self, start: int, frontier: Sequence[tuple[Part, bytes]]) -> None:
        if start % BLOCK:
            raise ValueError(f"a builder starts at a multiple of {BLOCK}, not {start}")
        self.size, self._stack = start, list(frontier)

    def add(self, leaves: Sequence[bytes]) -> list[tuple[Part, bytes]]:
        """Nodes completed by whole blocks of `leaves` (a trailing partial block is left out)."""
        made: list[tuple[Part, bytes]] = []
        for at in range(0, len(leaves) - BLOCK + 1, BLOCK):
            part, node = (STORED_LEVEL, self.size >> STORED_LEVEL), subtree_root(leaves[at : at + BLOCK])
            made.append((part, node))
            while self._stack and self._stack[-1][0][0] == part[0]:
                (level, index), left = self._stack.pop()
                part, node = (level + 1, index >> 1), node_hash(left, node)
                made.append((part, node))
            self._stack.append((part, node))
            self.size += BLOCK
        return made


class MerkleFrontier:
    """The roots of the perfect subtrees of a growing tree: append and root in O(log n).

    `extend` hashes whole aligned blocks level by level, which is several times faster in
    CPython than appending leaf by leaf.
    """

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []
        self.size = 0

    @classmethod
    def from_parts(cls, found: Sequence[tuple[Part, bytes]]) -> MerkleFrontier:
        """The frontier of a tree from the hashes of its `parts(0, size)`, without reading its leaves."""
        frontier = cls()
        for (level, _), node in found:
            frontier._stack.append((1 << level, node))
            frontier.size += 1 << level
        return frontier

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
