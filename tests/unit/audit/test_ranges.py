"""The chain checked in seq ranges and joined finds what one pass from seq 0 finds, at any boundary."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit.domain.ledger import ChainCheck, LedgerEntry, Row, Run, runs
from services.audit.domain.ranges import SeqRange, check_range, join_ranges, plan_ranges
from tests.unit.audit.test_ledger import chain, feed, stored


def ledger_rows(count: int) -> list[Row]:
    return [stored(r) for r in chain([LedgerEntry("k", None, str(i), {"i": i}) for i in range(count)])]


def tampered(rows: list[Row], fault: str, k: int) -> list[Row]:
    """The rows as the database would return them (in seq order) after one change at seq k."""
    out = list(rows)
    if fault == "body":
        out[k] = (k, rows[k][1].replace(b'"i":', b'"i":-'), rows[k][2])
    elif fault == "hash":
        out[k] = (k, rows[k][1], rows[k - 1][2] if k else "00" * 32)
    elif fault == "delete":
        del out[k]
    elif fault == "swap":
        out[k], out[k + 1] = (k, *rows[k + 1][1:]), (k + 1, *rows[k][1:])
    return out


def as_read(rows: list[Row], span: SeqRange, size: int) -> list[Run]:
    """What a worker reads: seq in [start - 1, stop), in runs."""
    return list(runs([row for row in rows if max(span.start - 1, 0) <= row[0] < span.stop], size))


@settings(max_examples=300)
@given(
    st.integers(2, 14),
    st.sampled_from(["none", "body", "hash", "delete", "swap"]),
    st.data(),
    st.integers(1, 4),
    st.integers(1, 5),
)
def test_ranges_joined_find_the_first_bad_seq_of_one_pass(count, fault, data, workers, chunk) -> None:
    k = data.draw(st.integers(0, count - 2))
    rows = tampered(ledger_rows(count), fault, k)
    one_pass = ChainCheck()
    feed(one_pass, rows)
    picks = data.draw(st.lists(st.integers(0, count - 1), max_size=4))
    ranges = plan_ranges(count, workers, picks, smallest=1)
    joined = join_ranges([check_range(span, as_read(rows, span, chunk)) for span in ranges])
    assert (joined.first_bad_seq, joined.length, joined.head) == (
        one_pass.first_bad_seq,
        one_pass.length,
        one_pass.head,
    )
    by_seq = {row[0]: row[2] for row in rows}
    assert joined.picked == {seq: by_seq[seq] for seq in picks if seq < joined.length}


def test_a_range_whose_previous_record_is_missing_is_bad_there() -> None:
    rows = ledger_rows(6)
    found = check_range(SeqRange(3, 6), runs(rows[3:], 512))
    assert (found.first_bad_seq, found.length) == (2, 2)


def test_a_range_that_ends_early_is_bad_at_the_first_missing_seq() -> None:
    rows = ledger_rows(6)
    found = check_range(SeqRange(3, 6), runs(rows[2:5], 512))
    assert (found.first_bad_seq, found.length, found.head) == (5, 5, rows[4][2])


def test_ranges_cover_the_ledger_once_and_are_not_split_below_the_smallest() -> None:
    ranges = plan_ranges(10, 3, [0, 4, 9, 4], smallest=3)
    assert [(r.start, r.stop) for r in ranges] == [(0, 3), (3, 6), (6, 10)]
    assert [r.picks for r in ranges] == [(0,), (4,), (9,)]
    assert len(plan_ranges(99_999, 8, [])) == 1
