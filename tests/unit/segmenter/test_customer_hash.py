"""One hash a customer: its fields read apart, and what the erasure check reports of it."""

from __future__ import annotations

from services.segmenter.adapters.redis_store import snapshot_of
from services.segmenter.api.customers import held_parts
from services.segmenter.domain.consent import PurposeConsent

STORED = {
    "events": "2",
    "e:click": "2",
    "last": "1800000000.5",
    "_o:0": "41",
    "_t:0": "1800000000500",
    "_r": "a8e8332b904a",
    "_v": "3",
    "_c:marketing_email": "granted||1800000000.0|4|",
    "_s:recent": "1",
    "_s:e:click": "1",  # a segment id that looks like a feature's field stays a segment
}


def test_the_hash_reads_as_features_consent_segments_and_version() -> None:
    snapshot = snapshot_of("c-1", STORED.items(), 2)
    assert snapshot.features == {"events": "2", "e:click": "2", "last": "1800000000.5"}
    assert snapshot.consent.purposes == {"marketing_email": PurposeConsent("granted", None, 1800000000.0, 4)}
    assert snapshot.segments == {"recent", "e:click"}
    assert (snapshot.version, snapshot.outbox) == (3, 2)


def test_a_missing_hash_is_an_unknown_customer() -> None:
    snapshot = snapshot_of("c-1", [])
    assert (snapshot.features, snapshot.consent.purposes, snapshot.segments) == ({}, {}, set())
    assert snapshot.version == 0


def test_every_part_held_is_reported() -> None:
    assert held_parts(list(STORED), outbox=True) == [
        "customer:f",
        "customer:consent",
        "customer:segs",
        "customer:ver",
        "customer:outbox",
    ]


def test_a_hash_left_with_only_applied_offsets_still_names_the_customer() -> None:
    """After a retention purge the features are gone but the offsets stay: the key still exists
    under the raw id, so the erasure receipt must not call it done."""
    assert held_parts(["_o:0", "_t:0", "_r"], outbox=False) == ["customer:f"]
    assert held_parts([], outbox=False) == []
