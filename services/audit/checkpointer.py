"""`Checkpointer`: keeps the Merkle frontier in step with the ledger and signs new tree heads."""

from __future__ import annotations

import logging
import threading

from services.audit.ledger import GENESIS, format_at
from services.audit.merkle import MerkleFrontier
from services.audit.metrics import LEDGER_LENGTH, checkpoint_signed
from services.audit.side_stores import Checkpoint, SqlCheckpointStore
from services.audit.signing import Ed25519Signer, checkpoint_text, head_text
from services.audit.store import SqlLedgerStore
from shared.events import utcnow

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(self, ledger: SqlLedgerStore, store: SqlCheckpointStore, signer: Ed25519Signer) -> None:
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
        length, _ = self.ledger.head()
        for leaves in self.ledger.leaf_hashes(self.frontier.size, length):
            self.frontier.extend(leaves)
            self.head = leaves[-1].hex()
        LEDGER_LENGTH.set(self.frontier.size)

    def _sign(self, tree_size: int, root: str, head: str) -> Checkpoint:
        timestamp = format_at(utcnow())
        signature = self.signer.sign(checkpoint_text(tree_size, root, timestamp))
        head_signature = self.signer.sign(head_text(tree_size, head))
        return Checkpoint(tree_size, root, timestamp, signature, head, head_signature)
