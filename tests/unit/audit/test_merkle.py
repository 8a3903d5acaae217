"""RFC 9162 trees: the service's fast code against the RFC's definitions, written out in rfc9162.py."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from services.audit.domain.merkle import (
    EMPTY_ROOT,
    MerkleFrontier,
    consistency_path,
    inclusion_path,
    inclusion_proof,
    root,
)
from tests.unit.audit.rfc9162 import h, mth, verify_consistency, verify_inclusion

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
    assert inclusion_proof(index, leaves) == (mth(leaves), path)
    assert verify_inclusion(index, len(leaves), leaves[index], path, mth(leaves))
    assert not verify_inclusion(index, len(leaves), b"\xff" * 32, path, mth(leaves))


@given(leaf_lists, st.data())
def test_consistency_proofs_verify(leaves, data) -> None:
    first = data.draw(st.integers(1, len(leaves)))
    path = consistency_path(first, leaves)
    assert verify_consistency(first, len(leaves), mth(leaves[:first]), mth(leaves), path)
    if first < len(leaves):
        assert not verify_consistency(first, len(leaves), h(b"other"), mth(leaves), path)
