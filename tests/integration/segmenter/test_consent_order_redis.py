"""The Lua consent update against the real Redis: it orders by sequence exactly as the domain does,
so any interleaving or duplication of changes and snapshots ends at the highest sequence."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.segmenter.adapters.redis_keys import CONSENT, KeyLayout
from services.segmenter.adapters.redis_store import RedisCustomerStore, encode_consent
from services.segmenter.domain.consent import PurposeConsent
from tests.support import TEST_PSEUDONYM_KEY
from tests.unit.segmenter.test_consent_order import T, build, fold, history_entries, snapshot_at


async def _apply_all(url: str, namespace: str, deliveries: list[dict[str, PurposeConsent]]) -> Any:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        store = RedisCustomerStore(client, KeyLayout(namespace), TEST_PSEUDONYM_KEY)
        for delivery in deliveries:
            await store.apply_consent("c-1", delivery)
        return (await store.read("c-1")).consent.purposes
    finally:
        await client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose


def _clean(url: str, namespace: str) -> None:
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)
    client.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history_entries, st.data())
def test_redis_applies_consent_in_sequence_order(redis_url: str, entries: list[Any], data: Any) -> None:
    history = build(entries)
    picks = data.draw(st.lists(st.tuples(st.booleans(), st.integers(1, len(history))), max_size=12))
    deliveries = [dict([history[k - 1]]) if change else snapshot_at(history, k) for change, k in picks]
    deliveries = data.draw(st.permutations([*deliveries, dict([history[-1]])]))
    expected: dict[str, PurposeConsent] = {}
    for delivery in deliveries:
        fold(expected, delivery)
    namespace = f"sw:t{uuid.uuid4().hex[:10]}."
    try:
        held = asyncio.run(_apply_all(redis_url, namespace, deliveries))
    finally:
        _clean(redis_url, namespace)
    assert held == expected


async def test_an_older_granted_snapshot_with_the_same_timestamp_does_not_flip_a_withdrawal(
    redis_url: str,
) -> None:
    namespace = f"sw:t{uuid.uuid4().hex[:10]}."
    withdrawal, older_grant = PurposeConsent("denied", None, T, 5), PurposeConsent("granted", None, T, 4)
    legacy = PurposeConsent("granted", None, T + 60)
    try:
        held = await _apply_all(
            redis_url,
            namespace,
            [{"m": withdrawal}, {"m": older_grant}, {"n": PurposeConsent("denied", None, T, 6)}],
        )
        assert held["m"] == withdrawal
        # A value written before sequences existed (three fields) is read, and loses to a sequenced one.
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        client.hset(KeyLayout(namespace).state("c-1"), CONSENT + "o", "granted||1800000060.0")
        client.close()
        held = await _apply_all(redis_url, namespace, [{"o": PurposeConsent("denied", None, T, 7)}])
        assert held["o"] == PurposeConsent("denied", None, T, 7) and encode_consent(legacy).count("|") == 4
    finally:
        _clean(redis_url, namespace)
