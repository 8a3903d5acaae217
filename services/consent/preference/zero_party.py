"""Zero-party preferences: what the customer states on the preference center, kept in the consent
store and published as `profile_update` events (source `preference-center`) on customer.events,
where the segmenter makes each the rule feature `profile.pref.<key>`."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select

from services.consent import metrics
from services.consent.adapters.http_peers import HttpPeerExport, PeerUnavailableError
from services.consent.adapters.sql_engine import reader
from services.consent.adapters.sql_store import SqlConsentStore
from services.consent.adapters.sql_tables import customer_preferences as table
from services.consent.service import ConsentService, Recorded
from shared import topics
from shared.catalog import PreferenceCatalog, PreferenceKey
from shared.events import PREFERENCE_CENTER_SOURCE, CustomerEvent, new_event_id, utcnow

log = logging.getLogger(__name__)
Value = str | list[str]


def preference_event(
    customer_id: str, key: PreferenceKey, value: Value | None, now: datetime
) -> CustomerEvent:
    """The profile_update that sets (or, with None, removes) the customer's `profile.pref.<key>`."""
    return CustomerEvent(
        event_id=new_event_id(),
        customer_id=customer_id,
        type="profile_update",
        occurred_at=now,
        source=PREFERENCE_CENTER_SOURCE,
        # A null attribute removes it: the segmenter then treats the feature as missing.
        attributes={key.attribute: value},
    )


def used_by(key: PreferenceKey, definitions: Sequence[Mapping[str, Any]]) -> list[str]:
    """The names of the segments whose rule reads the preference (the segmenter lists `features`)."""
    return [str(d.get("name", "")) for d in definitions if key.feature in d.get("features", ())]


async def preference_uses(
    peers: HttpPeerExport, keys: Sequence[PreferenceKey]
) -> dict[str, list[str]] | None:
    """Per key, the segments reading it; None (the page says so) when the segmenter does not answer."""
    try:
        definitions = await peers.segment_definitions()
    except PeerUnavailableError as exc:
        log.warning("no segment definitions for the preference center", extra={"error": str(exc)})
        return None
    return {key.id: used_by(key, definitions) for key in keys}


class SqlStatedPreferences:
    """The stated preferences in the consent store (sync: call from a thread)."""

    def __init__(self, store: SqlConsentStore) -> None:
        self.store = store

    def stated(self, customer_id: str) -> dict[str, Value]:
        query = select(table.c.preference, table.c.value).where(table.c.customer_id == customer_id)
        with self.store.engine.connect() as connection:
            rows = reader(connection).execute(query)
            return {row.preference: json.loads(row.value) for row in rows}

    def change(self, event: CustomerEvent, key: PreferenceKey, value: Value | None) -> None:
        """Set or remove one preference, and enqueue its event, in one transaction (so what the
        page shows and what the segmenter reads cannot part)."""
        customer_id, now = event.customer_id, event.occurred_at
        with self.store.customer(customer_id) as unit:
            where = (table.c.customer_id == customer_id) & (table.c.preference == key.id)
            unit.connection.execute(delete(table).where(where))
            if value is not None:
                row = {"customer_id": customer_id, "preference": key.id, "value": json.dumps(value)}
                unit.connection.execute(insert(table).values(**row, updated_at=now))
            unit.enqueue(topics.CUSTOMER_EVENTS.base, event.event_id, event.to_bytes(), now)


class StatedPreferences:
    """The async face: validated changes, answered once their event is on the broker (as a consent
    PUT is), so a segment joined or left on it is decided after the answer."""

    def __init__(
        self, store: SqlStatedPreferences, catalog: PreferenceCatalog, service: ConsentService
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.service = service

    async def stated(self, customer_id: str) -> dict[str, Value]:
        return await asyncio.to_thread(self.store.stated, customer_id)

    async def change(self, customer_id: str, key: PreferenceKey, value: Value | None) -> bool:
        """Record the preference (None removes it); whether its event was published in time."""
        event = preference_event(customer_id, key, value, utcnow())
        await asyncio.to_thread(self.store.change, event, key, value)
        metrics.PREFERENCES_STATED.labels(key.id, "removed" if value is None else "stated").inc()
        ticket = self.service.publication.committed()
        return await self.service.wait_published(Recorded([], ticket))
