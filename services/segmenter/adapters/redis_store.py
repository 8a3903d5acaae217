"""RedisCustomerStore: features, consent and live membership of customers in Redis, shared by all workers."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from services.segmenter.adapters import lua
from services.segmenter.adapters.redis_buckets import BucketedIndex, adding, removing
from services.segmenter.adapters.redis_keys import (
    CONSENT,
    SEGMENT,
    UNSENT,
    VERSION,
    KeyLayout,
    calls_by_slot,
)
from services.segmenter.domain.consent import ConsentView, PurposeConsent
from services.segmenter.domain.customer import (
    Committed,
    ConsentApplied,
    CustomerSnapshot,
    EventResult,
    EventWrite,
    Pending,
)
from services.segmenter.domain.erasure import ErasureMark
from services.segmenter.domain.feature_values import LAST
from services.segmenter.domain.membership import MembershipChange, member_flags
from shared.failpoints import failpoint
from shared.pseudonym import pseudonymize
from shared.topics import Retention

# The score in the known index of a customer without a last activity (never active, or let go by
# the retention job): below every time, so any activity raises it (`GT`) and no retention run reads it.
NO_ACTIVITY = "-inf"
MARKER_CACHE_CAP = 8192  # marker keys kept at hand (about 2 MB)
# Customers a Lua call of a batch takes at most: one call for many customers costs the client and
# Redis less than one each, and the cap bounds how long one call holds Redis (the consent path's
# calls wait behind it). 25 rather than 100: the same CPU an event, and a lower eviction p99 under
# load on a slow machine (docs/benchmarks.md, 2026-12-03).
CUSTOMERS_PER_CALL = 25


def activity_score(at: float) -> int:
    """A last activity as the known index scores it: rounded up to the second, so a listpack holds
    it as an integer (5 bytes, not the 18 of a time's digits) and the retention job, which decides
    from the customer's own `last`, reads a customer at most a second late, never early."""
    return math.ceil(at)


def encode_consent(state: PurposeConsent) -> str:
    """`status|expires_at|recorded_at|sequence|lapsed` (empty for none); see decode_consent."""
    expires = "" if state.expires_at is None else repr(state.expires_at)
    sequence = "" if state.sequence is None else str(state.sequence)
    return f"{state.status}|{expires}|{state.recorded_at!r}|{sequence}|{'1' if state.lapsed else ''}"


def decode_one(value: str) -> PurposeConsent:
    """A stored purpose; values written before sequences existed have three fields."""
    status, expires, recorded, *rest = value.split("|")
    sequence, lapsed = (rest + ["", ""])[:2]
    return PurposeConsent(
        status,
        float(expires) if expires else None,
        float(recorded),
        int(sequence) if sequence else None,
        lapsed == "1",
    )


def decode_consent(raw: dict[str, str]) -> ConsentView:
    return ConsentView({purpose: decode_one(value) for purpose, value in raw.items()})


_HEAD = len(SEGMENT)  # and len(CONSENT): the prefixes snapshot_of tells apart by one slice


def snapshot_of(customer_id: str, fields: Iterable[tuple[str, str]], outbox: int = 0) -> CustomerSnapshot:
    """A customer's hash (its field, value pairs) read apart: features are the fields without a leading
    `_`; the version, consent and segments have theirs (redis_keys); the offsets are skipped."""
    features: dict[str, str] = {}
    consent: dict[str, str] = {}
    segments: set[str] = set()
    version = 0
    for field, value in fields:  # read for every customer of every batch: one slice a field
        if field[:1] != "_":
            features[field] = value
            continue
        head = field[:_HEAD]
        if head == SEGMENT:
            segments.add(field[_HEAD:])
        elif head == CONSENT:
            consent[field[_HEAD:]] = value
        elif field == VERSION:
            version = int(value)
    return CustomerSnapshot(customer_id, version, features, decode_consent(consent), segments, int(outbox))


def _state(customer_id: str, flat: Sequence[str], outbox: int) -> CustomerSnapshot:
    """A script's HGETALL (flat) and outbox length."""
    return snapshot_of(customer_id, zip(flat[::2], flat[1::2], strict=True), outbox)


async def _turn() -> None:
    """Let the loop run between two Lua calls' worth of a batch's packing or parsing: an eviction
    waits for the loop at each of its awaits, and without a turn it waited for a whole batch's
    stretch at each (docs/benchmarks.md, the batch sizes of 2026-12-02)."""
    await asyncio.sleep(0)


def _event_args(w: EventWrite) -> list[str]:
    """One event's entry in APPLY_EVENTS' JSON argument: strings only (Lua's numbers are doubles)."""
    profile = [item for attr, value in w.profile.items() for item in (attr, json.dumps(value))]
    amount = "" if w.amount is None else repr(w.amount)
    head = [f"_o:{w.partition}", str(w.offset), w.event_id, w.type, repr(w.occurred_at), amount]
    return [*head, str(w.timestamp_ms), *profile]


class RedisCustomerStore:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: KeyLayout,
        pseudonym_key: bytes,
        marker_ttl_ms: int = Retention().erasure_marker_ms(),
        customers_per_call: int = CUSTOMERS_PER_CALL,
    ) -> None:
        self.client = client
        # A call's customers share a hash slot on a cluster (redis_keys.calls_by_slot).
        self.by_slot = isinstance(client, aioredis.RedisCluster)
        self.customers_per_call = customers_per_call
        self.keys = keys
        self.pseudonym_key = pseudonym_key  # names the erasure markers (never the raw id)
        self.marker_ttl_ms = marker_ttl_ms
        # Customer id -> their marker's key: every batch names it for each of its customers, and
        # the keyed hash (HMAC-SHA256) and slot look-up cost more than the rest of their Lua call.
        self._markers: dict[str, str] = {}
        self.index = BucketedIndex(client)
        self._apply_events = client.register_script(lua.APPLY_EVENTS)
        self._read = client.register_script(lua.READ_CUSTOMER)
        self._apply_consent = client.register_script(lua.APPLY_CONSENT)
        self._commit = client.register_script(lua.COMMIT)
        self._clear_outbox = client.register_script(lua.CLEAR_OUTBOX)
        self._erase = client.register_script(lua.ERASE)
        self._mark_erased = client.register_script(lua.MARK_ERASED)
        self._purge_features = client.register_script(lua.PURGE_FEATURES)
        self._forget_features = client.register_script(lua.FORGET_FEATURES)

    async def ping(self) -> None:
        await self.client.ping()

    def marker(self, customer_id: str) -> str:
        """The key of the customer's erasure marker (named by pseudonym)."""
        key = self._markers.get(customer_id)
        if key is None:
            key = self.keys.erased(customer_id, pseudonymize(self.pseudonym_key, customer_id))
            if len(self._markers) >= MARKER_CACHE_CAP:
                self._markers.clear()
            self._markers[customer_id] = key
        return key

    def _customer_keys(self, customer_id: str) -> list[str]:
        """KEYS of APPLY_EVENTS, APPLY_CONSENT and ERASE (READ_CUSTOMER takes the first two)."""
        return [self.keys.state(customer_id), self.keys.outbox(customer_id), self.marker(customer_id)]

    def _mark_args(self, mark: ErasureMark) -> list[str | int]:
        return [mark.at_ms, "" if mark.sequence is None else mark.sequence, self.marker_ttl_ms]

    async def apply_events(
        self, writes: Sequence[EventWrite], known: Iterable[tuple[int, str]], replay: str = ""
    ) -> list[EventResult]:
        """Apply every event, each customer's in order, in Lua calls of many customers (one hash
        slot each on a cluster) and one pipeline for all: per event whether it was applied now
        (False for a redelivery, an offset at or below its partition's applied one) and the
        customer's state after all of its events, or None when it is from before the customer's
        erasure. Then the customers of `known` (partition, customer) are remembered unless all
        their events were refused: the caller holds their locks, so no erasure of theirs runs in
        between. `replay`: a rebuild's replay number (`next_replay`), under which every customer
        starts over at their first event (adapters/lua.py, APPLY_EVENTS), and the state returned
        holds only the last activity (a replay keeps nothing else of it: the whole hash for every
        customer of every call cost the replay about a quarter of its CPU)."""
        by_customer: dict[str, list[int]] = {}
        for i, w in enumerate(writes):
            by_customer.setdefault(w.customer_id, []).append(i)
        customers = list(by_customer)
        calls = [
            [customers[i] for i in call]
            for call in calls_by_slot(customers, self.by_slot, self.customers_per_call)
        ]
        async with self.client.pipeline(transaction=False) as pipe:
            for call in calls:
                events = orjson.dumps([[_event_args(writes[i]) for i in by_customer[c]] for c in call])
                keys = [key for c in call for key in self._customer_keys(c)]
                await self._apply_events(keys=keys, args=[events, replay], client=pipe)
                await _turn()
            replies = await pipe.execute()
        out: list[EventResult] = [None] * len(writes)
        last: dict[str, str | None] = {}
        for call, reply in zip(calls, replies, strict=True):
            await _turn()
            for customer_id, (outcomes, *state) in zip(call, reply, strict=True):
                snapshot = _state(customer_id, *state)
                for i, outcome in zip(by_customer[customer_id], outcomes, strict=True):
                    out[i] = None if outcome == -1 else (outcome == 1, snapshot)
                if any(outcome != -1 for outcome in outcomes):
                    last[customer_id] = snapshot.features.get(LAST)
        failpoint("segmenter.events_between_writes")  # features written, customers not yet known
        await self._remember_active([(p, c) for p, c in known if c in last], last)
        return out

    async def _remember_active(
        self, remembered: Sequence[tuple[int, str]], last: Mapping[str, str | None]
    ) -> None:
        """The customers known on their partitions, with their last activity: one script per
        partition, whatever the number of customers."""
        if not remembered:
            return
        known: dict[int, dict[str, int | str]] = {}
        for partition, customer_id in remembered:
            at = last[customer_id]
            known.setdefault(partition, {})[customer_id] = (
                NO_ACTIVITY if at is None else activity_score(float(at))
            )
        async with self.client.pipeline(transaction=False) as pipe:
            for partition, scores in known.items():  # GT: a late, older event does not move it back
                await self.index.add(self.keys.known(partition), scores, pipe)
            await pipe.execute()

    async def read(self, customer_id: str) -> CustomerSnapshot:
        flat, outbox = await self._read(keys=self._customer_keys(customer_id)[:2])
        return _state(customer_id, flat, outbox)

    async def apply_consent(self, customer_id: str, states: dict[str, PurposeConsent]) -> ConsentApplied:
        """Record the purposes' states, each only when it supersedes the held one
        (PurposeConsent.supersedes) and is not from before the customer's erasure."""
        args: list[Any] = []
        for purpose, state in states.items():
            args += [purpose, encode_consent(state)]
        changed, refused, flat, outbox = await self._apply_consent(
            keys=self._customer_keys(customer_id), args=args
        )
        return ConsentApplied(bool(changed), int(refused), _state(customer_id, flat, outbox))

    @staticmethod
    def _commit_entry(snapshot: CustomerSnapshot, pending: Sequence[Pending]) -> list[Any]:
        """One customer's entry in COMMIT's JSON argument: expected version, the ops."""
        ops = []
        for change, message in pending:
            action = "j" if change.action == "joined" else "l"
            ops.append([action, change.segment_id, message, *change.required_purposes])
        return [str(snapshot.version), ops]

    async def commit_many(
        self, batch: Sequence[tuple[CustomerSnapshot, Sequence[Pending]]], now: float
    ) -> list[Committed | None]:
        """Apply each customer's changes if it is unchanged since its snapshot (else None), in Lua
        calls of many customers (one hash slot each on a cluster) and one pipeline.

        Returns the changes that took effect (a join whose consent is not effective now does not)
        and the customer's outbox: the messages of applied changes, after any older leftovers.
        """
        if not batch:
            return []
        ids = [snapshot.customer_id for snapshot, _ in batch]
        calls = calls_by_slot(ids, self.by_slot, self.customers_per_call)
        async with self.client.pipeline(transaction=False) as pipe:
            for call in calls:
                keys = [key for i in call for key in (self.keys.state(ids[i]), self.keys.outbox(ids[i]))]
                entries = orjson.dumps([self._commit_entry(*batch[i]) for i in call])
                await self._commit(keys=keys, args=[repr(now), entries], client=pipe)
                await _turn()
            replies = await pipe.execute()
        out: list[Committed | None] = [None] * len(batch)
        for call, reply in zip(calls, replies, strict=True):
            await _turn()
            for i, result in zip(call, reply, strict=True):
                if result != -1:
                    done, pending = set(result[0]), batch[i][1]
                    applied = [c for c, _ in pending if c.segment_id in done]
                    out[i] = Committed(applied, list(result[1]), frozenset(result[2]))
        return out

    async def read_outboxes(self, customer_ids: Sequence[str]) -> list[list[str]]:
        async with self.client.pipeline(transaction=False) as pipe:
            for customer_id in customer_ids:
                pipe.lrange(self.keys.outbox(customer_id), 0, -1)
            return [list(box) for box in await pipe.execute()]

    async def clear_outbox(self, sent: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Drop messages the broker acknowledged (or that were withheld) from their outboxes: one
        Lua step per customer, whatever the number of its messages, in one pipeline."""
        todo = [(customer_id, messages) for customer_id, messages in sent if messages]
        if not todo:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for customer_id, messages in todo:
                keys, args = [self.keys.outbox(customer_id)], [orjson.dumps(list(messages))]
                await self._clear_outbox(keys=keys, args=args, client=pipe)
            await pipe.execute()

    async def mark_unsent(self, joins: Sequence[tuple[str, str]]) -> None:
        """Record (customer, event id) joins as never published, for whoever owns them next."""
        if not joins:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for customer_id, event_id in joins:
                pipe.hset(self.keys.state(customer_id), UNSENT + event_id, "1")
            await pipe.execute()

    async def unsent(self, customer_id: str, event_ids: Sequence[str]) -> set[str]:
        """Those of the joins that were handed over as never published."""
        found = await self.client.hmget(self.keys.state(customer_id), [UNSENT + i for i in event_ids])
        return {i for i, value in zip(event_ids, found, strict=True) if value is not None}

    async def forget_unsent(self, joins: Sequence[tuple[str, str]]) -> None:
        """Drop the marks of joins about to leave the outbox: before a publish, so a crash after
        it never leaves a published join marked as unpublished."""
        if not joins:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for customer_id, event_id in joins:
                pipe.hdel(self.keys.state(customer_id), UNSENT + event_id)
            await pipe.execute()

    async def outbox_lengths(self, customer_ids: Sequence[str]) -> list[int]:
        async with self.client.pipeline(transaction=False) as pipe:
            for customer_id in customer_ids:
                pipe.llen(self.keys.outbox(customer_id))
            return [int(n) for n in await pipe.execute()]

    async def set_members_many(self, batch: Sequence[tuple[str, Mapping[str, bool]]]) -> None:
        """Second step: the segments' members (other hash slots) follow the customers' hashes;
        per customer, segment -> whether the customer is a member (as its slot says). One add and
        one removal per segment at most (one customer's entry per segment: they commute)."""
        adds: dict[str, list[str]] = {}
        removes: dict[str, list[str]] = {}
        for customer_id, membership in batch:
            for segment_id, member in membership.items():
                (adds if member else removes).setdefault(segment_id, []).append(customer_id)
        changes = [adding(self.keys.members(s), dict.fromkeys(c, 0.0)) for s, c in adds.items()]
        changes += [removing(self.keys.members(s), c) for s, c in removes.items()]
        if changes:
            async with self.client.pipeline(transaction=False) as pipe:
                await self.index.update(changes, pipe)
                await pipe.execute()

    async def sync_members(self, customer_id: str, applied: Sequence[MembershipChange]) -> None:
        """The member sets of the segments `applied` changed follow those changes."""
        await self.set_members_many([(customer_id, member_flags(applied))])

    async def erase(
        self, customer_id: str, left: Sequence[tuple[str, str]], mark: ErasureMark
    ) -> list[str] | None:
        """Delete every key of the customer but the outbox, mark the erasure and queue `left`
        (segment, message) in the outbox, atomically; the outbox, or None when `left` does not
        name exactly the segments the customer is in (re-read and try again)."""
        args = [*self._mark_args(mark), *(part for pair in left for part in pair)]
        result = await self._erase(keys=self._customer_keys(customer_id), args=args)
        return None if result == -1 else list(result)

    async def mark_erased(self, customer_id: str, mark: ErasureMark) -> int:
        """Mark an erasure read where nothing is announced (consent load, rebuild) and drop the
        consent states from before it; how many were dropped."""
        keys = [self.keys.state(customer_id), self.marker(customer_id)]
        return int(await self._mark_erased(keys=keys, args=self._mark_args(mark)))

    async def holds(self, customer_id: str) -> bool:
        """Whether the customer has any state (every write of it is in their hash)."""
        return bool(await self.client.exists(self.keys.state(customer_id)))

    async def consents(self, customer_ids: Sequence[str]) -> list[ConsentView]:
        """Each customer's consent, in one pipeline (the rest of their hash is read and dropped)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for customer_id in customer_ids:
                pipe.hgetall(self.keys.state(customer_id))
            rows = await pipe.execute()
        return [snapshot_of(cid, row.items()).consent for cid, row in zip(customer_ids, rows, strict=True)]

    async def next_replay(self) -> str:
        """A number no earlier replay of this Redis had, for `apply_events(replay=...)`."""
        return str(await self.client.incr(self.keys.replays()))

    async def forget_features(self, customer_ids: Sequence[str]) -> None:
        """Drop the customers' features and applied offsets (a rebuild starts them over); their
        consent, segments and version stay."""
        async with self.client.pipeline(transaction=False) as pipe:
            for customer_id in customer_ids:
                await self._forget_features(keys=[self.keys.state(customer_id)], client=pipe)
            await pipe.execute()

    async def forget(self, partition: int, customer_id: str) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            await self.index.remove(self.keys.known(partition), [customer_id], pipe)
            pipe.zrem(self.keys.expiry(partition), customer_id)
            await pipe.execute()

    async def remember(self, partition: int, customer_id: str) -> None:
        """Remember the customer for sweeps. One known only from consent (no event applied, so no
        `last`) is scored as of their latest consent choice, so the retention job finds them too;
        once an event comes its time takes over (`GT` both ways). One with `last` keeps the score
        their events gave (NO_ACTIVITY is below every score)."""
        state = await self.client.hgetall(self.keys.state(customer_id))
        held = snapshot_of(customer_id, state.items())
        since = None if LAST in held.features else held.consent.last_choice()
        score = NO_ACTIVITY if since is None else activity_score(since)
        await self.index.add(self.keys.known(partition), {customer_id: score})

    async def known_customers(self, partition: int) -> AsyncIterator[str]:
        async for customer_id in self.index.members(self.keys.known(partition)):
            yield customer_id

    async def known_count(self, partitions: Sequence[int]) -> int:
        """How many customers the partitions' known indexes hold."""
        return sum(await self.index.size([self.keys.known(p) for p in partitions]))

    async def segment_sizes(self, segment_ids: Sequence[str]) -> list[int]:
        """Live members of each segment, in one pipeline (a catalogue of a thousand is one round trip)."""
        return await self.index.size([self.keys.members(s) for s in segment_ids])

    async def read_many(self, customer_ids: Sequence[str]) -> list[CustomerSnapshot]:
        async with self.client.pipeline(transaction=False) as pipe:
            for cid in customer_ids:
                await self._read(keys=self._customer_keys(cid)[:2], client=pipe)
            results = await pipe.execute()
        return [_state(cid, *r) for cid, r in zip(customer_ids, results, strict=True)]

    async def set_expiry(self, partition: int, customer_id: str, expires_at: float | None) -> None:
        if expires_at is None:
            await self.client.zrem(self.keys.expiry(partition), customer_id)
        else:
            await self.client.zadd(self.keys.expiry(partition), {customer_id: expires_at})

    async def expiry_heads(
        self, partitions: Sequence[int], now: float, limit: int = 1000
    ) -> dict[int, tuple[list[str], float | None]]:
        """Per partition: the customers whose queued expiry is due at `now`, and the earliest one."""
        async with self.client.pipeline(transaction=False) as pipe:
            for partition in partitions:
                key = self.keys.expiry(partition)
                pipe.zrangebyscore(key, "-inf", now, start=0, num=limit)
                pipe.zrange(key, 0, 0, withscores=True)
            results = await pipe.execute()
        heads = {}
        for i, partition in enumerate(partitions):
            due, first = results[2 * i], results[2 * i + 1]
            heads[partition] = (list(due), float(first[0][1]) if first else None)
        return heads

    async def inactive_since(self, partition: int, before: float, limit: int = 1000) -> list[str]:
        """Customers of the partition whose last activity is at or before `before`, oldest first:
        up to `limit` from each bucket of its index (those without one, NO_ACTIVITY, excluded), the
        oldest `limit` of them. A customer a split moved meanwhile can be missed: the next run reads them."""

        def query(pipe: Any, key: str) -> Any:
            return pipe.zrangebyscore(key, f"({NO_ACTIVITY}", before, start=0, num=limit, withscores=True)

        due: list[tuple[float, str]] = []
        async for answer in self.index.each_bucket(self.keys.known(partition), query):
            due += [(float(score), customer_id) for customer_id, score in answer]
        return [customer_id for _, customer_id in sorted(due)[:limit]]

    async def purge_features(self, customer_id: str, last: str) -> bool:
        """Delete the customer's features unless an event moved `last` since; whether it did."""
        return bool(await self._purge_features(keys=[self.keys.state(customer_id)], args=[last]))

    async def forget_activity(self, partition: int, customer_id: str) -> None:
        """The customer stays known on the partition, without a last activity (NO_ACTIVITY)."""
        await self.index.add(self.keys.known(partition), {customer_id: NO_ACTIVITY}, only_held=True)

    async def known_scores(self, partition: int, customer_ids: Sequence[str]) -> list[float | None]:
        """Each customer's score in the partition's known index (None: not known there; NO_ACTIVITY
        as -inf: known without a last activity)."""
        scores = await self.index.scores(self.keys.known(partition), customer_ids)
        return [None if s is None else float(s) for s in scores]
