"""Clearing an outbox in Redis: what was sent goes in one step per customer, each message once, and
what was not sent keeps its place and its order."""

from __future__ import annotations

from services.segmenter.adapters.redis_store import RedisCustomerStore
from tests.integration.segmenter.conftest import outbox_of


async def test_only_the_sent_messages_go_each_once_the_rest_in_order(store: RedisCustomerStore) -> None:
    # Messages are JSON: quotes, backslashes and non-ASCII text must come back byte for byte.
    quoted = '{"segment_id":"a","note":"say \\"hi\\" \\\\ é ☃"}'
    box = ["m1", quoted, "m2", "m1", "m3", "waits"]
    await store.client.rpush(store.keys.outbox("c-1"), *box)
    await store.client.rpush(store.keys.outbox("c-2"), "other")
    # c-1: "m1" sent once (its repeat stays), a message not in the outbox is ignored.
    await store.clear_outbox([("c-1", ["m1", quoted, "m3", "gone already"]), ("c-2", [])])
    assert await outbox_of(store, "c-1") == ["m2", "m1", "waits"]
    assert await outbox_of(store, "c-2") == ["other"]


async def test_a_thousand_messages_go_in_one_step_and_the_empty_outbox_with_them(
    store: RedisCustomerStore,
) -> None:
    messages = [f'{{"segment_id":"cat-{i:04d}"}}' for i in range(1000)]
    for customer in ("c-3", "c-4"):
        await store.client.rpush(store.keys.outbox(customer), *messages, "later")
    await store.clear_outbox([("c-3", messages), ("c-4", [*messages, "later"])])
    assert await outbox_of(store, "c-3") == ["later"]
    assert not await store.client.exists(store.keys.outbox("c-4"))
