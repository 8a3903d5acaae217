"""The Redis key layout: a customer's keys share one hash slot, each segment's members have their own.

On Redis Cluster the hash tag `{c:<customer_id>}` puts a customer's features, consent, segments,
version and outbox in one slot, so one Lua script updates them atomically; a
segment's member set `{<segment_id>}` lives in its own slot and is updated in a second step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyLayout:
    namespace: str  # settings.redis_namespace: "sw:<TOPIC_PREFIX>"

    def customer(self, customer_id: str, part: str) -> str:
        return f"{self.namespace}{{c:{customer_id}}}:{part}"

    def features(self, customer_id: str) -> str:
        return self.customer(customer_id, "f")

    def consent(self, customer_id: str) -> str:
        return self.customer(customer_id, "consent")

    def segments(self, customer_id: str) -> str:
        return self.customer(customer_id, "segs")

    def version(self, customer_id: str) -> str:
        return self.customer(customer_id, "ver")

    def outbox(self, customer_id: str) -> str:
        """Membership changes committed but not yet acknowledged by the broker, oldest first."""
        return self.customer(customer_id, "outbox")

    def members(self, segment_id: str) -> str:
        return f"{self.namespace}seg:{{{segment_id}}}:members"

    def known(self, partition: int) -> str:
        """Customers seen on one partition, so the partition's owner can sweep them."""
        return f"{self.namespace}known:{partition}"

    def expiry(self, partition: int) -> str:
        """Sorted set customer -> earliest consent expiry of one partition, for the expiry sweep."""
        return f"{self.namespace}consent-expiry:{partition}"
