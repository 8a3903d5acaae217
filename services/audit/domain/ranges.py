"""The hash chain checked in disjoint seq ranges at once (one process each), then joined.

A record's link needs only the previous record's stored hash, so a range [start, stop) verifies
on its own from the stored hash of record start - 1; the range before it checks that hash. The
first range that fails names the ledger's first bad seq, exactly as one pass from seq 0 would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from services.audit.domain.ledger import GENESIS, ChainCheck, Run

# Below this many records a range is not worth a process of its own (its start costs some 0.1 s).
RECORDS_PER_WORKER = 50_000


@dataclass(frozen=True)
class SeqRange:
    """Records [start, stop) to verify, and the seqs whose stored hashes the caller wants back."""

    start: int
    stop: int
    picks: tuple[int, ...] = ()


@dataclass
class RangeCheck:
    """What verifying one range found: how far it is intact, and the picked hashes there."""

    length: int
    head: str
    first_bad_seq: int | None = None
    reason: str | None = None
    picked: dict[int, str] = field(default_factory=dict)


def plan_ranges(
    length: int, workers: int, picks: Iterable[int], smallest: int = RECORDS_PER_WORKER
) -> list[SeqRange]:
    """Split [0, length) into at most `workers` ranges of at least `smallest` records (one when short)."""
    parts = max(1, min(workers, length // max(smallest, 1)))
    bounds = [length * i // parts for i in range(parts + 1)]
    wanted = sorted(set(picks))
    return [
        SeqRange(start, stop, tuple(p for p in wanted if start <= p < stop))
        for start, stop in zip(bounds, bounds[1:], strict=False)
    ]


def check_range(
    span: SeqRange, runs: Iterable[Run], progress: Callable[[int], None] | None = None
) -> RangeCheck:
    """Verify `span` from runs of seq >= start - 1 in seq order (the first record only lends its hash).

    A range that ends early is bad at the first missing seq, as is one whose previous record is
    missing: the ledger had `stop` records when the ranges were planned.
    """
    chain, picks = ChainCheck(length=span.start), set(span.picks)
    picked: dict[int, str] = {}
    for run in _after_previous(span, chain, runs):
        first = chain.length
        intact = chain.feed(run)
        picked.update((seq, run.records[seq - first][1]) for seq in picks if first <= seq < chain.length)
        if progress is not None:
            progress(len(run.records))
        if not intact:
            break
    if chain.first_bad_seq is None and chain.length < span.stop:
        chain.first_bad_seq, chain.reason = chain.length, f"record {chain.length} is missing"
    return RangeCheck(chain.length, chain.head, chain.first_bad_seq, chain.reason, picked)


def _after_previous(span: SeqRange, chain: ChainCheck, runs: Iterable[Run]) -> Iterable[Run]:
    """The runs without the record before the range, whose stored hash becomes the chain's head."""
    waiting = span.start > 0
    for run in runs:
        if waiting and run.records:
            waiting = False
            if run.first != span.start - 1:
                chain.length = chain.first_bad_seq = span.start - 1
                chain.reason = f"record {span.start - 1} is missing or out of place (found {run.first})"
                return
            chain.head, run = run.records[0][1], run.split(1)[1]
        if run.records:
            yield run


def join_ranges(checks: Sequence[RangeCheck]) -> RangeCheck:
    """The ledger's result from its ranges' in seq order: intact up to the first bad one."""
    joined = RangeCheck(0, GENESIS)
    for check in checks:
        joined.length, joined.head = check.length, check.head
        joined.picked.update(check.picked)
        if check.first_bad_seq is not None:
            joined.first_bad_seq, joined.reason = check.first_bad_seq, check.reason
            break
    return joined
