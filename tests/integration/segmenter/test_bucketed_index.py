"""The bucketed index (adapters/redis_buckets.py, the scripts in adapters/lua.py) against a real
Redis: every bucket stays a listpack, the members and their scores are those of a plain dict, and
listings go across buckets, also while splits move members."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.segmenter.adapters.redis_buckets import BucketedIndex, adding, removing
from services.segmenter.adapters.redis_store import EventWrite, RedisCustomerStore

SCORES = [float("-inf"), -1e300, 0.0, 1.5, 7.0, 1e9]


def new_head(store: RedisCustomerStore) -> str:
    return f"{store.keys.namespace}{{test-index}}:{uuid.uuid4().hex[:8]}"


async def listed(index: BucketedIndex, head: str, limit: int) -> list[str]:
    """Every page of the index from cursor 0 to the end, concatenated."""
    found, cursor = [], 0
    while True:
        page, cursor = await index.page(head, cursor, limit)
        found += page
        if cursor == 0:
            return found


async def test_buckets_stay_listpacks_and_list_every_member_once(store: RedisCustomerStore) -> None:
    index, head = store.index, new_head(store)
    customers = [f"c-{i}" for i in range(20_000)]
    for start in range(0, len(customers), 500):
        await index.add(head, {c: float(i) for i, c in enumerate(customers[start : start + 500], start)})
    buckets = await index.buckets(head)
    assert buckets >= len(customers) // 32
    encodings = {store.client.object("encoding", f"{head}:{b}") for b in range(buckets)}
    assert {await e for e in encodings} == {"listpack"}
    assert await index.size([head]) == [len(customers)]
    assert sorted(await listed(index, head, 100)) == sorted(customers)  # each once: no split meanwhile
    assert sorted([c async for c in index.members(head)]) == sorted(customers)

    await index.remove(head, customers[::2])
    assert await index.size([head]) == [len(customers) // 2]
    assert sorted(await listed(index, head, 1000)) == sorted(customers[1::2])
    await index.remove(head, customers[1::2])
    assert [k async for k in store.client.scan_iter(f"{head}*")] == []  # the head goes with the last


async def test_a_listing_sees_every_member_present_throughout_while_splits_move_them(
    store: RedisCustomerStore,
) -> None:
    index, head = store.index, new_head(store)
    present = [f"p-{i}" for i in range(2_000)]
    await index.add(head, dict.fromkeys(present, 0.0))
    found, cursor, pages = [], 0, 0
    while True:
        page, cursor = await index.page(head, cursor, 50)
        found += page
        pages += 1
        if pages <= 10:  # 2,000 more: the index doubles, splitting buckets under the reader
            await index.add(head, {f"n-{pages}-{i}": 0.0 for i in range(200)})
        if cursor == 0:
            break
    assert set(present) <= set(found) and await index.buckets(head) >= 4_000 // 32


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["GT", "XX", "remove"]),
            st.lists(st.tuples(st.integers(0, 300), st.sampled_from(SCORES)), max_size=60),
        ),
        max_size=12,
    )
)
async def test_the_index_holds_what_a_dict_would(
    store: RedisCustomerStore, steps: list[tuple[str, list[tuple[int, float]]]]
) -> None:
    """GT adds or raises, XX sets those held, remove removes: the same members and scores as a dict."""
    index, head = store.index, new_head(store)
    model: dict[str, float] = {}
    for op, items in steps:
        pairs = {f"m-{n}": score for n, score in items}
        if op == "remove":
            await index.remove(head, list(pairs))
            for member in pairs:
                model.pop(member, None)
        else:
            await index.add(head, pairs, only_held=op == "XX")
            for member, score in pairs.items():
                held = model.get(member)
                if (held is None and op == "GT") or (held is not None and (op == "XX" or score > held)):
                    model[member] = score
    members = sorted(await listed(index, head, 64))
    assert members == sorted(model) and await index.size([head]) == [len(model)]
    assert [float(s) for s in await index.scores(head, members)] == [model[m] for m in members]
    assert await index.scores(head, ["absent"]) == [None]


async def test_the_inactive_are_found_across_buckets_oldest_first(store: RedisCustomerStore) -> None:
    for i in range(1_000):
        await store.index.add(store.keys.known(0), {f"c-{i}": float(i)})
    await store.forget_activity(0, "c-3")  # let go by retention: known, without an activity
    await store.forget_activity(0, "absent")  # not known: stays so
    assert await store.known_scores(0, ["c-3", "c-4", "absent"]) == [float("-inf"), 4.0, None]
    assert await store.inactive_since(0, 500.0, limit=5) == ["c-0", "c-1", "c-2", "c-4", "c-5"]
    assert len(await store.inactive_since(0, 500.0, limit=1000)) == 500
    assert await store.known_count([0, 1]) == 1_000


async def test_an_event_scores_its_customer_by_the_second_rounded_up(store: RedisCustomerStore) -> None:
    """Whole seconds are integers in a listpack; rounded up, the retention job is never early."""
    write = EventWrite(0, 1, "c-1", "e-1", "click", 1_700_000_000.2, None, {}, 1_700_000_000_200)
    await store.apply_events([write], [(0, "c-1")])
    assert await store.known_scores(0, ["c-1"]) == [1_700_000_001.0]
    assert await store.inactive_since(0, 1_700_000_000.5) == []
    assert await store.inactive_since(0, 1_700_000_001.0) == ["c-1"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.booleans(),
    st.lists(
        st.lists(
            st.tuples(
                st.integers(0, 2),  # which index
                st.sampled_from(["GT", "XX", "remove"]),
                st.lists(st.tuples(st.integers(0, 80), st.sampled_from(SCORES)), min_size=1, max_size=40),
            ),
            min_size=2,
            max_size=6,
        ),
        min_size=1,
        max_size=6,
    ),
)
async def test_many_indexes_changed_in_one_update_hold_what_dicts_would(
    store: RedisCustomerStore, by_slot: bool, steps: list[list[tuple[int, str, list[tuple[int, float]]]]]
) -> None:
    """Each step one `update` of several indexes (one Lua call on a standalone Redis; one per
    hash slot as on a cluster with `by_slot`), an index maybe changed twice in it: every index
    ends as a dict given the same changes in the same order."""
    index = BucketedIndex(store.client)
    index.by_slot = by_slot
    heads = [f"{store.keys.namespace}{{test-index-{i}}}:{uuid.uuid4().hex[:8]}" for i in range(3)]
    models: list[dict[str, float]] = [{}, {}, {}]
    for step in steps:
        changes = []
        for which, op, items in step:
            pairs, model = {f"m-{n}": score for n, score in items}, models[which]
            if op == "remove":
                changes.append(removing(heads[which], list(pairs)))
                for member in pairs:
                    model.pop(member, None)
                continue
            changes.append(adding(heads[which], pairs, only_held=op == "XX"))
            for member, score in pairs.items():
                held = model.get(member)
                if (held is None and op == "GT") or (held is not None and (op == "XX" or score > held)):
                    model[member] = score
        await index.update(changes)
    for head, model in zip(heads, models, strict=True):
        members = sorted(await listed(index, head, 64))
        assert members == sorted(model) and await index.size([head]) == [len(model)]
        assert [float(s) for s in await index.scores(head, members)] == [model[m] for m in members]
