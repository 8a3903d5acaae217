"""The canonical form equals the contract's json.dumps recipe; verification names the first bad seq."""

from __future__ import annotations

import hashlib
import json
from dataclasses import astuple, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from services.audit.domain.ledger import (
    GENESIS,
    ChainCheck,
    LedgerEntry,
    Row,
    Run,
    SealedRecord,
    canonical,
    runs,
    seal,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
entries = st.builds(
    LedgerEntry,
    kind=st.sampled_from(["consent_change", "membership_change", "segment_defined"]),
    subject=st.none() | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    event_id=st.text(min_size=1, max_size=128),
    payload=st.dictionaries(st.text(), json_values, max_size=6),
)


def contract_hash(record: dict) -> str:
    """The contract's recipe, verbatim."""
    body = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(bytes.fromhex(record["prev_hash"]) + text.encode()).hexdigest()


def stored(record: SealedRecord) -> tuple[int, bytes, str]:
    """The record as the ledger stores it: seq, the canonical bytes of its fields, hash."""
    return record.seq, canonical(*astuple(record)[:7]), record.hash


def feed(check: ChainCheck, rows: list[Row], size: int = 512) -> bool:
    """Feed rows as a store that reads them with their seqs hands them over."""
    return all(check.feed(run) for run in runs(rows, size))


def chain(items: list[LedgerEntry]) -> list[SealedRecord]:
    out, head = [], GENESIS
    for seq, entry in enumerate(items):
        record = seal(entry, seq, "2026-11-30T00:00:00.000000Z", head)
        out.append(record)
        head = record.hash
    return out


@given(entries, st.integers(0, 10**9), st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
def test_seal_hashes_exactly_as_the_contract_says(entry, seq, prev) -> None:
    record = seal(entry, seq, "2026-11-30T00:00:00.123456Z", prev)
    assert record.hash == contract_hash(record.to_dict())
    body = {k: v for k, v in record.to_dict().items() if k != "hash"}
    expected = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical(*astuple(record)[:7]) == expected


@settings(max_examples=40)
@given(st.lists(entries, min_size=1, max_size=8))
def test_an_intact_chain_verifies(items) -> None:
    records = chain(items)
    check = ChainCheck()
    assert feed(check, [stored(r) for r in records])
    assert (check.length, check.head, check.first_bad_seq) == (len(records), records[-1].hash, None)


@given(st.integers(1, 11))
def test_runs_of_any_size_verify_like_one_stream(size) -> None:
    rows = [stored(r) for r in chain([LedgerEntry("k", None, str(i), {"i": i}) for i in range(10)])]
    check = ChainCheck()
    assert feed(check, rows, size)
    assert (check.length, check.head) == (10, rows[-1][2])


def test_rows_become_runs_cut_at_each_seq_that_does_not_follow_and_at_the_size() -> None:
    rows: list[Row] = [(seq, b"%d" % seq, f"h{seq}") for seq in (0, 1, 2, 3, 5, 6, 6, 9)]
    assert [(run.first, [body for body, _ in run.records]) for run in runs(rows, 3)] == [
        (0, [b"0", b"1", b"2"]),
        (3, [b"3"]),
        (5, [b"5", b"6"]),
        (6, [b"6"]),
        (9, [b"9"]),
    ]


def test_a_run_that_does_not_start_where_the_chain_ends_is_bad_there() -> None:
    rows = [stored(r) for r in chain([LedgerEntry("k", None, str(i), {"i": i}) for i in range(4)])]
    check = ChainCheck()
    assert check.feed(Run(0, [record[1:] for record in rows[:2]]))
    assert not check.feed(Run(3, [rows[3][1:]]))
    assert (check.first_bad_seq, check.length, check.head) == (2, 2, rows[1][2])
    assert check.reason == "record 2 is missing or out of place (found 3)"


@settings(max_examples=40)
@given(st.lists(entries, min_size=3, max_size=8, unique_by=lambda e: e.event_id), st.data())
def test_edit_deletion_and_swap_name_the_first_bad_seq(items, data) -> None:
    records = chain(items)
    k = data.draw(st.integers(0, len(records) - 2))
    edited = list(records)
    edited[k] = replace(records[k], payload='{"forged":true}')
    deleted = records[:k] + records[k + 1 :]
    swapped = list(records)
    swapped[k], swapped[k + 1] = replace(records[k + 1], seq=k), replace(records[k], seq=k + 1)
    for rows in (edited, deleted, swapped):
        check = ChainCheck()
        assert not feed(check, [stored(r) for r in rows])
        assert check.first_bad_seq == k and check.length == k
