"""Loads `consent.state` into Redis before the service reports ready (last value per key wins)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from services.segmenter.adapters.kafka_compacted import KafkaCompactedReader
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.handlers import purpose_consent, tombstone_mark
from shared.events import ConsentStateSnapshot, key_id

log = logging.getLogger(__name__)


async def load_consent_state(
    reader: KafkaCompactedReader,
    store: RedisCustomerStore,
    track: Callable[[int, str], Awaitable[None]] | None = None,
) -> int:
    """Fill in the consent Redis lacks from the latest snapshot of every customer; returns how
    many customers were read.

    Only purposes Redis holds no state for are written (a new worker's Redis, or one emptied for a
    rebuild). A purpose Redis holds is left to the streams, which resume from their committed
    offsets and apply every change in order: the latest snapshot would jump over a change made
    while the segmenter was down (an opt-out, then a grant again), and the opt-out, then older
    than what Redis holds, would never be announced as a `left`. A tombstone (an erasure)
    marks the customer erased and drops their consent (all denied); the stream's handler erases
    the rest and announces it. States from before a marked erasure are refused. Invalid records
    are left to the stream agent, which dead-letters them once. `track(partition, customer)`
    queues each loaded grant's expiry.
    """
    latest: dict[bytes, ConsumerRecord] = {}
    for record in await reader.read_once():
        if record.key is not None:
            latest[record.key] = record
    for key, record in latest.items():
        if record.value is None:
            customer_id = key_id(key, "customer")
            if customer_id is not None:  # else the stream agent dead-letters it
                await store.mark_erased(customer_id, tombstone_mark(record))
            continue
        try:
            snapshot = ConsentStateSnapshot.model_validate_json(record.value)
        except ValidationError:
            continue
        fallback = snapshot.updated_at.timestamp()
        held = (await store.read(snapshot.customer_id)).consent.purposes
        states = {p: purpose_consent(s, fallback) for p, s in snapshot.purposes.items() if p not in held}
        if states and (await store.apply_consent(snapshot.customer_id, states)).refused == len(states):
            continue  # every state is from before the customer's erasure
        if (held or states) and track is not None:
            await store.remember(record.partition, snapshot.customer_id)
            await track(record.partition, snapshot.customer_id)
    log.info("loaded consent state", extra={"customers": len(latest)})
    return len(latest)
