"""RFC 9162 trees: the service's fast code against the RFC's recursive definitions, written out here."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from services.audit.merkle import EMPTY_ROOT, MerkleFrontier, consistency_path, inclusion_path, root


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(d: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, literally."""
    n = len(d)
    if n == 0:
        return h(b"")
    if n == 1:
        return h(b"\x00" + d[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return h(b"\x01" + mth(d[:k]) + mth(d[k:]))


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], expected: bytes) -> bool:
    """RFC 9162 2.1.3.2, literally."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, h(b"\x00" + leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = h(b"\x01" + p + r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = h(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == expected


def verify_consistency(first: int, second: int, r1: bytes, r2: bytes, path: list[bytes]) -> bool:
    """RFC 9162 2.1.4.2, literally."""
    if first == second:
        return not path and r1 == r2
    if first & (first - 1) == 0:
        path = [r1, *path]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = h(b"\x01" + c + fr), h(b"\x01" + c + sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = h(b"\x01" + sr + c)
        fn, sn = fn >> 1, sn >> 1
    return fr == r1 and sr == r2 and sn == 0


leaf_lists = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40)


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=70))
def test_root_and_frontier_match_the_definition(leaves) -> None:
    frontier = MerkleFrontier()
    for leaf in leaves:
        frontier.append(leaf)
    assert root(leaves) == mth(leaves) == frontier.root()
    assert frontier.size == len(leaves)


def test_empty_tree_is_the_hash_of_nothing() -> None:
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


@given(leaf_lists, st.data())
def test_inclusion_proofs_verify_and_bind_the_leaf(leaves, data) -> None:
    index = data.draw(st.integers(0, len(leaves) - 1))
    path = inclusion_path(index, leaves)
    assert verify_inclusion(index, len(leaves), leaves[index], path, mth(leaves))
    assert not verify_inclusion(index, len(leaves), b"\xff" * 32, path, mth(leaves))


@given(leaf_lists, st.data())
def test_consistency_proofs_verify(leaves, data) -> None:
    first = data.draw(st.integers(1, len(leaves)))
    path = consistency_path(first, leaves)
    assert verify_consistency(first, len(leaves), mth(leaves[:first]), mth(leaves), path)
    if first < len(leaves):
        assert not verify_consistency(first, len(leaves), h(b"other"), mth(leaves), path)
