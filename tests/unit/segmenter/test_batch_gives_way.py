"""An event batch gives way to consent changes at its yield points (handlers.StreamHandlers._give_way):
a change fetched while a batch runs is handled before the batch evaluates its next customer, and
the batch, paused mid-way, still decides right for the customers the change touched."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from services.segmenter.domain.customer import EventResult, EventWrite
from services.segmenter.handlers import DECODES_BETWEEN_YIELDS
from services.segmenter.membership_service import Plan
from shared.events import CustomerEvent, MembershipChanged, utcnow
from tests.unit.segmenter.test_handlers import MAIL, OPEN, Segmenter, _record, segmenter

BATCH = 300  # customers of the batch: several yield points (membership_service.CUSTOMERS_BETWEEN_YIELDS)
ROUND_TRIPS = (
    "apply_events",
    "apply_consent",
    "read",
    "read_many",
    "commit_many",
    "read_outboxes",
    "set_members_many",
    "clear_outbox",
    "forget_unsent",
    "holds",
    "remember",
)


class FetchedChanges:
    """Stands in for the consent follower: a change the test fetches is handled in a task of its
    own; `give_way` returns once those fetched before the call are handled."""

    def __init__(self) -> None:
        self.handling: list[asyncio.Task[None]] = []

    def fetch(self, handle: Coroutine[Any, Any, None]) -> None:
        self.handling.append(asyncio.ensure_future(handle))

    async def give_way(self) -> None:
        await asyncio.gather(*list(self.handling))


def with_round_trips(s: Segmenter) -> None:
    """Every store call answers only after the loop ran what else was ready, as a Redis call does:
    so a change handled beside a batch moves one call at a time between the batch's stretches."""
    for name in ROUND_TRIPS:
        method = getattr(s.store, name)

        async def call(*args: Any, _method: Callable[..., Awaitable[Any]] = method, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            return await _method(*args, **kwargs)

        setattr(s.store, name, call)


def logging_order(s: Segmenter, log: list[tuple[str, str]]) -> None:
    """Log each customer the batch plans and each `left` published, in order."""
    plan, publish = s.membership.plan, s.publisher.publish

    def planned(snapshot: Any, *args: Any, **kwargs: Any) -> Plan | None:
        log.append(("planned", snapshot.customer_id))
        return plan(snapshot, *args, **kwargs)

    async def published(changes: Sequence[MembershipChanged], encoded: Any = None) -> list[MembershipChanged]:
        log.extend(("left", m.customer_id) for m in changes if m.action == "left")
        return await publish(changes, encoded)

    s.membership.plan = planned  # type: ignore[method-assign]
    s.publisher.publish = published  # type: ignore[method-assign]


def fetch_after_features(s: Segmenter, changes: FetchedChanges, *withdrawn: str) -> None:
    """The withdrawals of `withdrawn` are fetched once the batch's features are written."""
    apply_events = s.store.apply_events

    async def applied(writes: Sequence[EventWrite], known: Any) -> list[EventResult]:
        results = await apply_events(writes, known)
        for i, customer in enumerate(withdrawn):
            changes.fetch(s.consent("denied", 10 + i, customer=customer))
        return results

    s.store.apply_events = applied  # type: ignore[method-assign]


async def test_a_change_fetched_mid_batch_is_handled_before_the_batch_evaluates_on() -> None:
    s = segmenter(MAIL, OPEN)
    await s.consent("granted", 1, customer="member")
    await s.event(customer="member", event_id="ev-member")  # in `mail` and `open`
    await s.consent("granted", 1, customer="newcomer")  # granted, no event yet: in no segment
    changes = FetchedChanges()
    s.handlers.give_way = changes.give_way
    with_round_trips(s)
    log: list[tuple[str, str]] = []
    logging_order(s, log)
    fetch_after_features(s, changes, "member", "newcomer")
    customers = [f"c-{i}" for i in range(BATCH)] + ["member", "newcomer"]
    await s.handlers.on_events([_click(c, offset) for offset, c in enumerate(customers, start=100)])

    first_plan = log.index(("planned", "c-0"))
    assert log.index(("left", "member")) < first_plan  # before the batch's remaining evaluation
    assert len([e for e in log[first_plan:] if e[0] == "planned"]) == BATCH + 2  # and went on
    assert s.announced("member")[-1] == ("mail", "left", "consent_withdrawn")
    # The newcomer's first event matched `mail` on the batch's snapshot (granted then): the commit
    # of that stale snapshot is refused and decided again, so the join never happens.
    assert s.announced("newcomer") == [("open", "joined", "rule_matched")]
    assert (await s.store.read("newcomer")).segments == {"open"}
    assert (await s.store.read("member")).segments == {"open"}
    assert len(s.store.members["open"]) == BATCH + 2
    assert s.store.members["mail"] == set()


def _click(customer: str, offset: int) -> Any:
    event = CustomerEvent(
        event_id=f"ev-{customer}", customer_id=customer, type="click", occurred_at=utcnow(), source="test"
    )
    return _record("customer.events", event, offset)


async def test_a_change_fetched_before_a_long_batch_is_handled_while_the_batch_decodes() -> None:
    """A batch of more records than handlers.DECODES_BETWEEN_YIELDS gives way while decoding, before
    its features are written: a change waiting then is not held up by the batch's Redis step."""
    s = segmenter(MAIL, OPEN)
    await s.consent("granted", 1, customer="member")
    await s.event(customer="member", event_id="ev-member")  # in `mail` and `open`
    changes = FetchedChanges()
    s.handlers.give_way = changes.give_way
    with_round_trips(s)
    log: list[tuple[str, str]] = []
    logging_order(s, log)
    apply_events = s.store.apply_events

    async def applied(writes: Sequence[EventWrite], known: Any) -> list[EventResult]:
        log.append(("apply_events", str(len(writes))))
        return await apply_events(writes, known)

    s.store.apply_events = applied  # type: ignore[method-assign]
    records = [_click(f"c-{i}", offset) for offset, i in enumerate(range(DECODES_BETWEEN_YIELDS + 1), 100)]
    changes.fetch(s.consent("denied", 10, customer="member"))
    await s.handlers.on_events(records)

    assert log.index(("left", "member")) < log.index(("apply_events", str(len(records))))
    assert s.announced("member")[-1] == ("mail", "left", "consent_withdrawn")
    assert len(s.store.members["open"]) == len(records) + 1  # the batch went on
