"""RFC 9162 trees: the service's fast code against the RFC's definitions, written out in rfc9162.py."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from services.audit.domain.merkle import (
    BLOCK,
    EMPTY_ROOT,
    STORED_LEVEL,
    MerkleFrontier,
    NodeBuilder,
    Part,
    consistency_parts,
    consistency_proof,
    inclusion_parts,
    inclusion_proof,
    parts,
    span,
    subtree_root,
)
from tests.unit.audit.rfc9162 import h, mth, verify_consistency, verify_inclusion

leaf_lists = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70)


def hashes(leaves: list[bytes], needed: set[Part]) -> dict[Part, bytes]:
    """The subtree hashes a proof asks for, computed from all the leaves."""
    return {part: subtree_root(leaves[slice(*span(part))]) for part in needed}


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=70))
def test_root_and_frontier_match_the_definition(leaves) -> None:
    frontier = MerkleFrontier()
    for leaf in leaves:
        frontier.append(leaf)
    assert mth(leaves) == frontier.root()
    assert frontier.size == len(leaves)


def test_empty_tree_is_the_hash_of_nothing() -> None:
    assert MerkleFrontier().root() == EMPTY_ROOT == hashlib.sha256(b"").digest()


@given(leaf_lists, st.data())
def test_inclusion_proofs_verify_and_bind_the_leaf(leaves, data) -> None:
    index = data.draw(st.integers(0, len(leaves) - 1))
    root, path = inclusion_proof(index, len(leaves), hashes(leaves, inclusion_parts(index, len(leaves))))
    assert root == mth(leaves)
    assert verify_inclusion(index, len(leaves), leaves[index], path, mth(leaves))
    assert not verify_inclusion(index, len(leaves), b"\xff" * 32, path, mth(leaves))


@given(leaf_lists, st.data())
def test_consistency_proofs_verify(leaves, data) -> None:
    first = data.draw(st.integers(1, len(leaves)))
    needed = consistency_parts(first, len(leaves))
    path, first_root, second_root = consistency_proof(first, len(leaves), hashes(leaves, needed))
    assert (first_root, second_root) == (mth(leaves[:first]), mth(leaves))
    assert verify_consistency(first, len(leaves), mth(leaves[:first]), mth(leaves), path)
    if first < len(leaves):
        assert not verify_consistency(first, len(leaves), h(b"other"), mth(leaves), path)


@given(st.integers(1, 2**40), st.data())
def test_a_proof_needs_logarithmically_many_subtrees(size, data) -> None:
    index, first = data.draw(st.integers(0, size - 1)), data.draw(st.integers(1, size))
    bound = 3 * size.bit_length() + 2
    assert len(inclusion_parts(index, size)) <= bound and len(consistency_parts(first, size)) <= bound
    assert parts(0, size)[-1][0] <= size.bit_length()


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=140), st.data())
def test_the_node_builder_stores_each_completed_subtree_once_wherever_appends_split(leaves, data) -> None:
    cut = data.draw(st.integers(0, len(leaves) // BLOCK)) * BLOCK
    first = NodeBuilder(0, []).add(leaves[:cut])
    frontier = [(part, dict(first)[part]) for part in parts(0, cut)]
    made = dict(first) | dict(NodeBuilder(cut, frontier).add(leaves[cut:]))
    complete = len(leaves) // BLOCK * BLOCK
    expected = {
        (level, index)
        for level in range(STORED_LEVEL, complete.bit_length())
        for index in range(complete >> level)
    }
    assert set(made) == expected
    assert all(node == subtree_root(leaves[slice(*span(part))]) for part, node in made.items())


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=90), st.data())
def test_a_frontier_from_stored_parts_grows_like_one_from_the_leaves(leaves, data) -> None:
    cut = data.draw(st.integers(0, len(leaves)))
    found = [(part, subtree_root(leaves[slice(*span(part))])) for part in parts(0, cut)]
    frontier = MerkleFrontier.from_parts(found)
    assert frontier.size == cut and frontier.root() == mth(leaves[:cut])
    frontier.extend(leaves[cut:])
    assert frontier.root() == mth(leaves)
