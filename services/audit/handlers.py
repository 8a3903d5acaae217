"""The audit service's use cases, over the ports they need (the adapters implement them).

`Checkpointer` keeps the Merkle frontier in step with the ledger and signs new tree heads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Protocol

from services.audit.domain.checkpoints import Checkpoint, Signer, checkpoint_text, head_text
from services.audit.domain.ledger import GENESIS, format_at
from services.audit.domain.merkle import BLOCK, MerkleFrontier, Part, parts
from services.audit.metrics import LEDGER_LENGTH, checkpoint_signed
from shared.events import utcnow

log = logging.getLogger(__name__)


class LedgerLeaves(Protocol):
    def head(self) -> tuple[int, str]: ...

    def leaf_hashes(self, start: int, stop: int) -> Iterator[list[bytes]]: ...

    def subtrees(self, needed: Iterable[Part]) -> dict[Part, bytes]: ...


class CheckpointStore(Protocol):
    def add(self, checkpoint: Checkpoint) -> None: ...

    def latest(self) -> Checkpoint | None: ...


class Checkpointer:
    def __init__(self, ledger: LedgerLeaves, store: CheckpointStore, signer: Signer) -> None:
        self.ledger, self.store, self.signer = ledger, store, signer
        self.frontier = MerkleFrontier()
        self.head = GENESIS
        self._lock = threading.Lock()

    def checkpoint(self) -> Checkpoint:
        """The latest signed tree head, made now when the ledger has grown past it (blocking)."""
        with self._lock:
            self._catch_up()
            latest = self.store.latest()
            if latest is not None and latest.tree_size >= self.frontier.size:
                return latest
            made = self._sign(self.frontier.size, self.frontier.root().hex(), self.head)
            self.store.add(made)
            checkpoint_signed()
            log.info("signed a checkpoint", extra={"tree_size": made.tree_size, "root": made.root})
            return made

    def _catch_up(self) -> None:
        length, head = self.ledger.head()
        if self.frontier.size == 0 and length >= BLOCK:
            # At start: the stored subtrees, then at most 15 leaves, rather than every leaf.
            needed = parts(0, length // BLOCK * BLOCK)
            found = self.ledger.subtrees(needed)
            self.frontier = MerkleFrontier.from_parts([(part, found[part]) for part in needed])
        for leaves in self.ledger.leaf_hashes(self.frontier.size, length):
            self.frontier.extend(leaves)
        if length:
            self.head = head
        LEDGER_LENGTH.set(self.frontier.size)

    def _sign(self, tree_size: int, root: str, head: str) -> Checkpoint:
        timestamp = format_at(utcnow())
        signature = self.signer.sign(checkpoint_text(tree_size, root, timestamp))
        head_signature = self.signer.sign(head_text(tree_size, head))
        return Checkpoint(tree_size, root, timestamp, signature, head, head_signature)
