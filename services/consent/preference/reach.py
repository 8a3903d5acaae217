"""Whether each of the customer's recent choices has reached every service: published by consent
(its outbox row is out: a row is deleted or marked sent only once the broker acknowledged it),
applied by the segmenter and by delivery (each holds that change of the purpose, or a later one),
recorded in the audit ledger (it holds a record of that very change), and, while delivery holds
that very change, whether the webhooks it caused reached the destinations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, TypeVar

from sqlalchemy import Engine, select

from services.consent.adapters.http_peers import HttpPeerExport, PeerUnavailableError
from services.consent.adapters.sql_engine import reader
from services.consent.adapters.sql_tables import outbox
from services.consent.service import ConsentService

log = logging.getLogger(__name__)
T = TypeVar("T")
RECENT = 5  # choices shown, newest first
Published = Literal["published", "pending", "unchanged"]
Applied = Literal["applied", "pending", "unavailable"]
Recorded = Literal["recorded", "pending", "unavailable"]
# What the change delivery applied sent: none needed, still sending, one failed, all acknowledged.
Sent = Literal["none", "sending", "failed", "delivered"]
COUNTS = ("total", "pending", "failed", "delivered")  # delivery's `webhooks`


@dataclass(frozen=True)
class ChoiceReach:
    purpose: str
    status: str
    reason: str
    recorded_at: datetime
    consent: Published  # "unchanged": the choice kept the state, so there was nothing to tell
    segmenter: Applied | None  # None when there was nothing to tell
    delivery: Applied | None = None
    destinations: Sent | None = None  # None: not known (delivery holds a later change, or none yet)
    ledger: Recorded | None = None  # None when there was nothing to tell

    @property
    def settled(self) -> bool:
        """Nothing more will arrive (or a service cannot be asked: the page stops waiting)."""
        waiting = "pending" in (self.consent, self.segmenter, self.delivery, self.ledger)
        return not waiting and self.destinations != "sending"


Held = Mapping[str, Mapping[str, Any]]  # per purpose, what a service holds (None: it did not answer)


def choice_reach(
    rows: Sequence[Mapping[str, Any]],
    unsent: set[str],
    applied: Held | None,
    delivered: Held | None,
    recorded: set[str] | None,
) -> list[ChoiceReach]:
    """The newest RECENT history rows, each with where it has arrived (pure). `recorded`: the
    event ids the ledger holds a record of (None: audit did not answer)."""
    return [_reach(row, unsent, applied, delivered, recorded) for row in list(rows)[-RECENT:][::-1]]


def _reach(
    row: Mapping[str, Any],
    unsent: set[str],
    applied: Held | None,
    delivered: Held | None,
    recorded: set[str] | None,
) -> ChoiceReach:
    published: Published = "published"
    if not row["published"]:
        published = "unchanged"
    elif row["event_id"] in unsent:
        published = "pending"
    reach = ChoiceReach(row["purpose"], row["status"], row["reason"], row["recorded_at"], published, None)
    if published == "unchanged":
        return reach
    held = None if delivered is None else delivered.get(row["purpose"])
    delivery = "unavailable" if delivered is None else _applied(row, held)
    return replace(
        reach,
        segmenter="unavailable" if applied is None else _applied(row, applied.get(row["purpose"])),
        delivery=delivery,
        destinations=_sent(row, held) if delivery == "applied" and held is not None else None,
        ledger=_recorded(row, recorded),
    )


def _recorded(row: Mapping[str, Any], recorded: set[str] | None) -> Recorded:
    if recorded is None:
        return "unavailable"
    return "recorded" if row["event_id"] in recorded else "pending"


def _applied(row: Mapping[str, Any], held: Mapping[str, Any] | None) -> Applied:
    if held is None:
        return "pending"
    sequence, mine = held.get("sequence"), row.get("sequence")
    if sequence is None or mine is None:  # rows from before sequences: only the state can tell
        return "applied" if _same_state(row, held) else "pending"
    return "applied" if int(sequence) >= int(mine) else "pending"


def _same_state(row: Mapping[str, Any], held: Mapping[str, Any]) -> bool:
    """The segmenter holds the status; delivery only whether the purpose is effective."""
    if "status" in held:
        return bool(held["status"] == row["status"])
    return held.get("effective") == (row["status"] == "granted")


def _sent(row: Mapping[str, Any], held: Mapping[str, Any]) -> Sent | None:
    """What followed from this very change at the destinations; None when delivery holds a
    later change (its webhooks are not this choice's) or did not record the change's inputs."""
    webhooks = held.get("webhooks")
    if row.get("sequence") is None or held.get("sequence") != row["sequence"]:
        return None
    if not isinstance(webhooks, Mapping) or not set(COUNTS) <= set(webhooks):
        return None
    if int(webhooks["total"]) == 0:
        return "none"
    if int(webhooks["pending"]):
        return "sending"
    return "failed" if int(webhooks["failed"]) else "delivered"


class RecentChoices:
    def __init__(self, service: ConsentService, engine: Engine, peers: HttpPeerExport) -> None:
        self.service = service
        self.engine = engine
        self.peers = peers

    async def recent(self, customer_id: str) -> list[ChoiceReach]:
        rows = (await self.service.history(customer_id))[-RECENT:]
        ids = [row["event_id"] for row in rows]
        told = [row["event_id"] for row in rows if row["published"]]  # a repeat made no event
        unsent, applied, delivered, recorded = await asyncio.gather(
            asyncio.to_thread(self._unsent, customer_id, ids),
            self._ask(self.peers.applied_consent, customer_id),
            self._ask(self.peers.delivered_consent, customer_id),
            self._ask(lambda c: self.peers.recorded_consent_changes(c, told), customer_id),
        )
        return choice_reach(rows, unsent, applied, delivered, recorded)

    def _unsent(self, customer_id: str, event_ids: list[str]) -> set[str]:
        query = select(outbox.c.event_id).where(
            outbox.c.customer_id == customer_id, outbox.c.sent_at.is_(None), outbox.c.event_id.in_(event_ids)
        )
        with self.engine.connect() as connection:
            return set(reader(connection).execute(query).scalars())

    async def _ask(self, peer: Callable[[str], Awaitable[T]], customer_id: str) -> T | None:
        """What a peer holds, or None (the page says it is not known) when it does not answer:
        not configured, not running, or failing."""
        try:
            return await peer(customer_id)
        except PeerUnavailableError as exc:
            log.warning("a peer did not answer the preference center", extra={"error": str(exc)})
            return None
