"""Whether each of the customer's recent choices has reached every service: published by consent
(its outbox row is out: a row is deleted or marked sent only once the broker acknowledged it) and
applied by the segmenter (it holds that change of the purpose, or a later one). Delivery's
propagation view is per destination and membership change, not per consent change, so it cannot
answer for one choice and is not asked."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, select

from services.consent.adapters.http_peers import HttpPeerExport, PeerUnavailableError
from services.consent.adapters.sql_engine import reader
from services.consent.adapters.sql_tables import outbox
from services.consent.service import ConsentService

log = logging.getLogger(__name__)
RECENT = 5  # choices shown, newest first
Published = Literal["published", "pending", "unchanged"]
Applied = Literal["applied", "pending", "unavailable"]


@dataclass(frozen=True)
class ChoiceReach:
    purpose: str
    status: str
    reason: str
    recorded_at: datetime
    consent: Published  # "unchanged": the choice kept the state, so there was nothing to tell
    segmenter: Applied | None  # None when there was nothing to tell

    @property
    def settled(self) -> bool:
        """Nothing more will arrive (or the segmenter cannot be asked: the page stops waiting)."""
        return self.consent != "pending" and self.segmenter != "pending"


def choice_reach(
    rows: Sequence[Mapping[str, Any]], unsent: set[str], applied: Mapping[str, Mapping[str, Any]] | None
) -> list[ChoiceReach]:
    """The newest RECENT history rows, each with where it has arrived (pure)."""
    return [_reach(row, unsent, applied) for row in list(rows)[-RECENT:][::-1]]


def _reach(
    row: Mapping[str, Any], unsent: set[str], applied: Mapping[str, Mapping[str, Any]] | None
) -> ChoiceReach:
    published: Published = "published"
    if not row["published"]:
        published = "unchanged"
    elif row["event_id"] in unsent:
        published = "pending"
    segmenter: Applied | None = None
    if published != "unchanged":
        segmenter = "unavailable" if applied is None else _applied(row, applied.get(row["purpose"]))
    return ChoiceReach(row["purpose"], row["status"], row["reason"], row["recorded_at"], published, segmenter)


def _applied(row: Mapping[str, Any], held: Mapping[str, Any] | None) -> Applied:
    if held is None:
        return "pending"
    sequence, mine = held.get("sequence"), row.get("sequence")
    if sequence is None or mine is None:  # rows from before sequences: only the status can tell
        return "applied" if held.get("status") == row["status"] else "pending"
    return "applied" if int(sequence) >= int(mine) else "pending"


class RecentChoices:
    def __init__(self, service: ConsentService, engine: Engine, peers: HttpPeerExport) -> None:
        self.service = service
        self.engine = engine
        self.peers = peers

    async def recent(self, customer_id: str) -> list[ChoiceReach]:
        rows = (await self.service.history(customer_id))[-RECENT:]
        ids = [row["event_id"] for row in rows]
        unsent, applied = await asyncio.gather(
            asyncio.to_thread(self._unsent, customer_id, ids), self._applied(customer_id)
        )
        return choice_reach(rows, unsent, applied)

    def _unsent(self, customer_id: str, event_ids: list[str]) -> set[str]:
        query = select(outbox.c.event_id).where(
            outbox.c.customer_id == customer_id, outbox.c.sent_at.is_(None), outbox.c.event_id.in_(event_ids)
        )
        with self.engine.connect() as connection:
            return set(reader(connection).execute(query).scalars())

    async def _applied(self, customer_id: str) -> dict[str, dict[str, Any]] | None:
        try:
            return await self.peers.applied_consent(customer_id)
        except PeerUnavailableError as exc:
            log.warning("no applied consent for the preference center", extra={"error": str(exc)})
            return None
