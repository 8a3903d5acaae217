"""Verification of the whole ledger: the hash chain, then every signed checkpoint's Merkle root.

Streams the records in runs, so memory stays flat however long the ledger is; with `workers`,
the chain is checked in seq ranges at once, one process each (`ranges.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from services.audit.domain.checkpoints import Checkpoint, Verifier, checkpoint_text, head_text
from services.audit.domain.ledger import GENESIS, ChainCheck, Run
from services.audit.domain.merkle import MerkleFrontier
from services.audit.domain.ranges import RECORDS_PER_WORKER, RangeCheck, SeqRange, join_ranges, plan_ranges

Progress = Callable[[int], None]


class LedgerRows(Protocol):
    def runs(self) -> Iterator[Run]:
        """The stored records from seq 0 in seq order, in runs."""
        ...

    def underived_columns(self) -> list[str]:
        """Columns served beside the hashed bytes that no longer come from them."""
        ...

    def head(self) -> tuple[int, str]:
        """(length, hash of the last record)."""
        ...

    def check_ranges(self, ranges: list[SeqRange], progress: Progress | None) -> list[RangeCheck]:
        """`ranges.check_range` of each range, at once, in the order given."""
        ...


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    length: int
    head: str
    first_bad_seq: int | None
    reason: str | None
    checkpoints_checked: int


class _CheckpointCheck:
    """Checks every signed checkpoint as the verified records stream past its size.

    The signed head (hash of record tree_size - 1) pins the whole prefix once the chain is
    intact; with `merkle`, each root is also recomputed from the records (RFC 9162).
    """

    def __init__(self, checkpoints: list[Checkpoint], signer: Verifier | None, merkle: bool) -> None:
        self.pending = sorted(checkpoints, key=lambda c: c.tree_size)
        self.signer = signer
        self.frontier = MerkleFrontier() if merkle else None
        self.size, self.last_hash = 0, GENESIS
        self.good_size, self.checked = 0, 0
        self.failure: tuple[int, str] | None = None
        self.feed(Run(0, []))  # a checkpoint of the empty tree is reached before any record

    def feed(self, run: Run) -> None:
        """Take the next verified records (contiguous with those before)."""
        while self.failure is None and self.pending:
            reach = self.pending[0].tree_size - self.size
            if reach > len(run.records):
                self._grow(run)
                return
            reached, run = run.split(reach)
            self._grow(reached)
            self._check(self.pending.pop(0))

    def reach(self, length: int, hashes: dict[int, str]) -> None:
        """Check the checkpoints within the first `length` verified records by their signed heads
        alone, `hashes` holding the stored hash of each one's last record (no Merkle roots)."""
        while self.failure is None and self.pending and self.pending[0].tree_size <= length:
            head = self.pending.pop(0)
            self.size, self.last_hash = head.tree_size, hashes.get(head.tree_size - 1, GENESIS)
            self._check(head)

    def _grow(self, run: Run) -> None:
        if run.records:
            self.size, self.last_hash = run.stop, run.records[-1][1]
            if self.frontier is not None:
                self.frontier.extend([bytes.fromhex(stored) for _, stored in run.records])

    def _check(self, head: Checkpoint) -> None:
        if not self._signed(head):
            self.failure = (self.good_size, f"checkpoint {head.tree_size}: bad signature")
        elif head.head != self.last_hash or (
            self.frontier is not None and self.frontier.root().hex() != head.root
        ):
            span = f"[{self.good_size}, {head.tree_size})"
            self.failure = (self.good_size, f"a record in {span} differs from its signed checkpoint")
        else:
            self.good_size, self.checked = head.tree_size, self.checked + 1

    def _signed(self, head: Checkpoint) -> bool:
        if self.signer is None:
            return False
        text = checkpoint_text(head.tree_size, head.root, head.timestamp)
        tail = head_text(head.tree_size, head.head)
        return self.signer.verifies(text, head.signature) and self.signer.verifies(tail, head.head_signature)


def verify_ledger(
    ledger: LedgerRows,
    checkpoints: list[Checkpoint],
    signer: Verifier | None,
    progress: Progress | None = None,
    merkle: bool = False,
    workers: int = 1,
    records_per_worker: int = RECORDS_PER_WORKER,
) -> VerifyReport:
    """Verify from seq 0; `merkle` also recomputes every checkpoint's Merkle root (slower, in this
    process); otherwise up to `workers` processes check the chain, each a range of at least
    `records_per_worker` records."""
    if underived := ledger.underived_columns():
        # The hashed bytes would still verify, but what is served and queried could differ.
        reason = f"columns {', '.join(underived)} are no longer generated from the hashed bytes"
        return VerifyReport(False, 0, GENESIS, 0, reason, 0)
    heads = _CheckpointCheck(checkpoints, signer, merkle)
    if not merkle and workers > 1:
        # Planned after the checkpoints were read, so the ledger is at least as long as each.
        heads_at = [c.tree_size - 1 for c in checkpoints]
        ranges = plan_ranges(ledger.head()[0], workers, heads_at, records_per_worker)
        if len(ranges) > 1:
            return _verify_ranges(ledger, ranges, heads, progress)
    chain = ChainCheck()
    for run in ledger.runs():
        before = chain.length
        intact = chain.feed(run)
        heads.feed(run if intact else run.split(chain.length - before)[0])  # the verified part
        if progress is not None:
            progress(len(run.records))
        if not intact:
            break
    return _report(chain, heads)


def _verify_ranges(
    ledger: LedgerRows, ranges: list[SeqRange], heads: _CheckpointCheck, progress: Progress | None
) -> VerifyReport:
    joined = join_ranges(ledger.check_ranges(ranges, progress))
    heads.reach(joined.length, joined.picked)
    chain = ChainCheck(joined.length, joined.head, joined.first_bad_seq, joined.reason)
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
