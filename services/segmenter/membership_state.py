"""The announced membership, read back from `segment.membership.state`.

The topic is the durable record of what campaign tools were told: for each (segment,
customer) the last `joined` as value, a tombstone after the `left`. The broker may deliver
uncompacted history (the embedded one never compacts), so a reader keeps the last value per
key and honours tombstones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from shared.events import MembershipChanged, MembershipState

log = logging.getLogger(__name__)
Key = tuple[str, str]  # (segment_id, customer_id)


def parse_key(raw: bytes) -> Key | None:
    segment_id, sep, customer_id = raw.decode(errors="replace").partition("|")
    return (segment_id, customer_id) if sep and segment_id and customer_id else None


def last_announced(records: Iterable[ConsumerRecord]) -> dict[Key, MembershipState]:
    """Every (segment, customer) whose last announced action is `joined`, in topic order."""
    joined: dict[Key, MembershipState] = {}
    for record in records:
        key = parse_key(record.key) if record.key else None
        if key is None:
            continue
        if record.value is None:
            joined.pop(key, None)
            continue
        try:
            joined[key] = MembershipState.model_validate_json(record.value)
        except ValidationError:
            log.warning("ignored an invalid membership state record", extra={"offset": record.offset})
    return joined


class AnnouncedMembership:
    """What campaign tools were last told about some customers: the topic's record, overridden
    by whatever this worker publishes while the record is read and compared (the publisher's
    observer), so a change announced meanwhile is never announced twice or contradicted."""

    def __init__(self, wanted: Callable[[str], bool] = lambda _customer: True) -> None:
        self.joined: dict[str, set[str]] = {}  # customer -> segments announced as joined
        self._meanwhile: dict[Key, bool] = {}
        self._loaded = False
        # Whose announcements are kept: a reconcile's customers still to compare. Kept for every
        # change published while a paced reconcile ran, they grew with every join of a drain
        # (some 40 MB at 200,000 customers: docs/benchmarks.md, 2026-12-03).
        self.wanted = wanted

    def forget(self, customer_ids: Iterable[str]) -> None:
        """Drop what is known of these customers (compared already, or not to be)."""
        for customer_id in customer_ids:
            self.joined.pop(customer_id, None)

    def observe(self, changes: Sequence[MembershipChanged]) -> None:
        for c in changes:
            if not self.wanted(c.customer_id):
                continue
            key, joined = (c.segment_id, c.customer_id), c.action == "joined"
            if self._loaded:
                self._set(key, joined)
            else:
                self._meanwhile[key] = joined

    def load(self, records: Iterable[ConsumerRecord]) -> None:
        for key in last_announced(records):
            if self.wanted(key[1]):
                self._set(key, True)
        for key, joined in self._meanwhile.items():
            self._set(key, joined)
        self._meanwhile.clear()
        self._loaded = True

    def segments_of(self, customer_id: str) -> set[str]:
        return self.joined.get(customer_id, set())

    def _set(self, key: Key, joined: bool) -> None:
        segment_id, customer_id = key
        segments = self.joined.setdefault(customer_id, set())
        if joined:
            segments.add(segment_id)
        else:
            segments.discard(segment_id)
            if not segments:
                del self.joined[customer_id]
