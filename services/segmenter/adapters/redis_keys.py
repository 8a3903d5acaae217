"""The Redis key layout: a customer's keys share one hash slot, each segment's members have their own.

A customer is one hash (`state`) and, while membership changes wait for the broker, an outbox
list: one key at rest, since every key costs some 70 bytes of its own beside its contents and
Redis 7.0 keeps a small set of strings as a hashtable (about 200 bytes), where a small hash is
one listpack. The hash holds the features under their own names (domain.features) and, under
names that start with `_` (never a feature's), the bookkeeping: the version (VERSION), each
purpose's consent (CONSENT + purpose), each segment the customer is in (SEGMENT + segment id),
the applied offsets (`_o:`, `_t:`, `_r`, adapters/lua.py) and, once a rebuild replayed the
customer's events, that replay's number (`_b`).
On Redis Cluster the hash tag `{c:<customer_id>}` puts the hash and the outbox in one slot, so
one Lua script updates them atomically; a segment's members `{<segment_id>}` live in their own
slot and are updated in a second step. The members and the customers known on a partition are
bucketed indexes (adapters/redis_buckets.py): many small sorted sets under one hash tag.
An erased customer's marker is named by their pseudonym, not their id, and put in the same slot
by a hash tag that only shares the slot number (see `slot_tag`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

# Field names in a customer's hash; the Lua scripts (adapters/lua.py) spell the same ones.
VERSION, CONSENT, SEGMENT = "_v", "_c:", "_s:"
# `_u:<event id>`: a join in the outbox its builder handed over unpublished (a rebalance moved the
# customer's partition while the join waited for the consent barrier): no one announced it yet.
UNSENT = "_u:"


@cache
def _slot_tags() -> dict[int, str]:
    """For every Redis Cluster slot the shortest hex string that hashes to it (about 0.2 s once)."""
    tags: dict[int, str] = {}
    n = 0
    while len(tags) < REDIS_CLUSTER_HASH_SLOTS:
        tag = format(n, "x")
        tags.setdefault(key_slot(tag.encode()), tag)
        n += 1
    return tags


def slot_tag(customer_id: str) -> str:
    """A hash tag with the slot of `{c:<customer_id>}` that does not contain the id: the marker's
    Lua runs with the customer's keys (one slot) and the key reveals 14 bits of a hash, no more."""
    return _slot_tags()[key_slot(customer_tag(customer_id).encode())]


def customer_tag(customer_id: str) -> str:
    """What the hash slot of every key of the customer is computed from (KeyLayout.customer)."""
    return f"c:{customer_id}"


def calls_by_slot(
    names: Sequence[str], by_slot: bool, most: int, key: Callable[[str], str] = customer_tag
) -> list[list[int]]:
    """The positions of the names (customers; with `key=str`, keys) in groups of at most `most`,
    one Lua call each (adapters/lua.py): on a Redis Cluster (`by_slot`) a group's names share a
    hash slot, as each one's keys do, so the call touches one slot; on a standalone Redis, where
    a call may touch any key, in the order given."""
    groups: dict[int, list[int]] = {}
    for i, name in enumerate(names):
        slot = key_slot(key(name).encode()) if by_slot else 0
        groups.setdefault(slot, []).append(i)
    return [group[i : i + most] for group in groups.values() for i in range(0, len(group), most)]


@dataclass(frozen=True)
class KeyLayout:
    namespace: str  # settings.redis_namespace: "sw:<TOPIC_PREFIX>"

    def customer(self, customer_id: str, part: str) -> str:
        return f"{self.namespace}{{c:{customer_id}}}:{part}"

    def state(self, customer_id: str) -> str:
        """The customer's hash: features, consent, segments, version and applied offsets."""
        return self.customer(customer_id, "s")

    def outbox(self, customer_id: str) -> str:
        """Membership changes committed but not yet acknowledged by the broker, oldest first."""
        return self.customer(customer_id, "outbox")

    def erased(self, customer_id: str, subject: str) -> str:
        """The erasure marker (a hash `at`, `seq`) of the customer whose pseudonym is `subject`."""
        return f"{self.namespace}{{{slot_tag(customer_id)}}}:erased:{subject}"

    def members(self, segment_id: str) -> str:
        """The head of the segment's members (a bucketed index, adapters/redis_buckets.py: members
        scored 0), in the segment's own slot."""
        return f"{self.namespace}seg:{{{segment_id}}}:members"

    def known(self, partition: int) -> str:
        """The head of the customers seen on one partition (a bucketed index, so the partition's
        owner can sweep them), each scored by their last activity (latest `occurred_at` applied; for
        a customer known only from consent, their latest choice; -inf for none or once the retention
        job let them go), so the retention job finds the inactive without reading everyone."""
        return f"{self.namespace}{{known:{partition}}}"

    def replays(self) -> str:
        """The number of the latest rebuild replay (a counter): a customer's hash keeps the one
        that last started their features over (`_b`, adapters/lua.py APPLY_EVENTS)."""
        return f"{self.namespace}replays"

    def expiry(self, partition: int) -> str:
        """Sorted set customer -> earliest consent expiry of one partition, for the expiry sweep."""
        return f"{self.namespace}consent-expiry:{partition}"
