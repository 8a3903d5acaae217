"""Verification of the whole ledger: the hash chain, then every signed checkpoint's Merkle root.

Streams the records in chunks, so memory stays flat however long the ledger is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.audit.ledger import ChainCheck, Row
from services.audit.merkle import MerkleFrontier
from services.audit.side_stores import Checkpoint
from services.audit.signing import Ed25519Verifier, checkpoint_text
from services.audit.store import SqlLedgerStore

Progress = Callable[[int], None]


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    length: int
    head: str
    first_bad_seq: int | None
    reason: str | None
    checkpoints_checked: int


class _CheckpointCheck:
    """Compares the Merkle root at each checkpoint's size, as the records stream past."""

    def __init__(self, checkpoints: list[Checkpoint], signer: Ed25519Verifier | None) -> None:
        self.pending = sorted(checkpoints, key=lambda c: c.tree_size)
        self.signer = signer
        self.frontier = MerkleFrontier()
        self.good_size, self.checked = 0, 0
        self.failure: tuple[int, str] | None = None

    def feed(self, rows: list[Row]) -> None:
        for row in rows:
            if self.failure is not None or not self.pending:
                return
            self._compare()
            self.frontier.append(bytes.fromhex(row[7]))
        self._compare()

    def _compare(self) -> None:
        while self.failure is None and self.pending and self.pending[0].tree_size == self.frontier.size:
            head = self.pending.pop(0)
            text = checkpoint_text(head.tree_size, head.root, head.timestamp)
            if self.signer is None or not self.signer.verifies(text, head.signature):
                self.failure = (self.good_size, f"checkpoint {head.tree_size}: bad signature")
            elif self.frontier.root().hex() != head.root:
                self.failure = (
                    self.good_size,
                    f"a record in [{self.good_size}, {head.tree_size}) differs from its checkpoint",
                )
            else:
                self.good_size, self.checked = head.tree_size, self.checked + 1


def verify_ledger(
    ledger: SqlLedgerStore,
    checkpoints: list[Checkpoint],
    signer: Ed25519Verifier | None,
    progress: Progress | None = None,
) -> VerifyReport:
    chain, heads = ChainCheck(), _CheckpointCheck(checkpoints, signer)
    for rows in ledger.rows():
        before = chain.length
        intact = chain.feed(rows)
        heads.feed(rows[: chain.length - before])
        if progress is not None:
            progress(len(rows))
        if not intact:
            break
    return _report(chain, heads)


def _report(chain: ChainCheck, heads: _CheckpointCheck) -> VerifyReport:
    if chain.first_bad_seq is None and heads.pending and heads.failure is None:
        missing = heads.pending[0].tree_size
        heads.failure = (
            chain.length,
            f"the ledger has {chain.length} records; checkpoint {missing} had more",
        )
    first_bad, reason = chain.first_bad_seq, chain.reason
    if heads.failure is not None and (first_bad is None or heads.failure[0] < first_bad):
        first_bad, reason = heads.failure
    return VerifyReport(first_bad is None, chain.length, chain.head, first_bad, reason, heads.checked)
