"""The Checkpointer use case against in-memory ports: it signs the tree the ledger holds, once per size."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.adapters.ed25519 import Ed25519Signer
from services.audit.domain.checkpoints import Checkpoint, checkpoint_text, head_text
from services.audit.domain.merkle import Part, span, subtree_root
from services.audit.handlers import Checkpointer
from tests.unit.audit.rfc9162 import mth


class ListLedger:
    """The `LedgerLeaves` port over a list of record hashes, served in chunks of two."""

    def __init__(self) -> None:
        self.hashes: list[bytes] = []
        self.leaves_read = 0

    def grow(self, count: int) -> None:
        start = len(self.hashes)
        self.hashes += [hashlib.sha256(str(start + i).encode()).digest() for i in range(count)]

    def head(self) -> tuple[int, str]:
        return len(self.hashes), self.hashes[-1].hex() if self.hashes else "0" * 64

    def leaf_hashes(self, start: int, stop: int) -> Iterator[list[bytes]]:
        for i in range(start, stop, 2):
            self.leaves_read += min(i + 2, stop) - i
            yield self.hashes[i : min(i + 2, stop)]

    def subtrees(self, needed: Iterable[Part]) -> dict[Part, bytes]:
        return {part: subtree_root(self.hashes[slice(*span(part))]) for part in needed}


class ListCheckpoints:
    def __init__(self) -> None:
        self.added: list[Checkpoint] = []

    def add(self, checkpoint: Checkpoint) -> None:
        self.added.append(checkpoint)

    def latest(self) -> Checkpoint | None:
        return max(self.added, key=lambda c: c.tree_size, default=None)


def test_signs_the_ledgers_tree_once_per_size_and_again_when_it_grew() -> None:
    ledger, store = ListLedger(), ListCheckpoints()
    signer = Ed25519Signer(Ed25519PrivateKey.generate())
    checkpointer = Checkpointer(ledger, store, signer)
    ledger.grow(5)
    first = checkpointer.checkpoint()
    assert (first.tree_size, first.root, first.head) == (5, mth(ledger.hashes).hex(), ledger.hashes[-1].hex())
    assert signer.verifies(checkpoint_text(5, first.root, first.timestamp), first.signature)
    assert signer.verifies(head_text(5, first.head), first.head_signature)
    assert checkpointer.checkpoint() == first and store.added == [first]
    ledger.grow(6)
    grown = checkpointer.checkpoint()
    assert grown.tree_size == 11 and grown.root == mth(ledger.hashes).hex() and len(store.added) == 2


def test_starts_from_the_stored_subtrees_not_from_every_leaf() -> None:
    ledger = ListLedger()
    ledger.grow(1000)
    signer = Ed25519Signer(Ed25519PrivateKey.generate())
    made = Checkpointer(ledger, ListCheckpoints(), signer).checkpoint()
    assert (made.tree_size, made.root, made.head) == (1000, mth(ledger.hashes).hex(), ledger.hashes[-1].hex())
    assert ledger.leaves_read == 1000 % 16
