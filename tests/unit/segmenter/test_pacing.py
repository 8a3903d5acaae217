"""Passes over every owned customer give way to live input, never below their minimum pace
(services/segmenter/pacing.py), on the in-memory store and a clock that moves when a pass sleeps."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from prometheus_client import REGISTRY

from services.segmenter.domain.consent import PurposeConsent
from services.segmenter.domain.customer import CustomerSnapshot
from services.segmenter.domain.segments import Segment
from services.segmenter.pacing import COMPLIANCE, REEVALUATION, Pacer
from services.segmenter.sweeps import Sweeper
from shared.events import CustomerEvent, utcnow
from tests.support import TEST_PSEUDONYM_KEY
from tests.unit.segmenter.memory_store import Backlog, FakeClock
from tests.unit.segmenter.test_handlers import EMAIL, MAIL, OPEN, Segmenter, _record, segmenter
from tests.unit.segmenter.test_membership import segment

CUSTOMERS = 1_000  # five chunks of the sweeps' 200
STRICTER = segment("open", "event_count >= 2")  # every customer of OPEN leaves on re-evaluation


async def populated(*segments: Segment, granted: bool = False) -> Segmenter:
    """CUSTOMERS customers with an event each (one batch), granted EMAIL first when `granted`."""
    s = segmenter(*segments)
    ids = [f"c-{i:04}" for i in range(CUSTOMERS)]
    if granted:
        state = PurposeConsent("granted", None, s.now[0] - 120, 1)
        for customer_id in ids:
            await s.store.apply_consent(customer_id, {EMAIL: state})
    events = [
        CustomerEvent(event_id=f"ev-{c}", customer_id=c, type="click", occurred_at=utcnow(), source="test")
        for c in ids
    ]
    await s.handlers.on_events([_record("customer.events", e, i) for i, e in enumerate(events, 1)])
    return s


def reads_at(s: Segmenter, clock: FakeClock, work_s: float = 0.0) -> list[float]:
    """The clock at each chunk the store reads; each read takes `work_s` of the clock."""
    times: list[float] = []
    read_many = s.store.read_many

    async def timed(customer_ids: Sequence[str]) -> list[CustomerSnapshot]:
        times.append(clock.now)
        clock.now += work_s
        return await read_many(customer_ids)

    s.store.read_many = timed  # type: ignore[method-assign]
    return times


def sampled(name: str, pass_name: str) -> float:
    return REGISTRY.get_sample_value(name, {"pass": pass_name}) or 0.0


def left(s: Segmenter, segment_id: str, reason: str) -> set[str]:
    return {
        m.customer_id
        for m in s.publisher.sent
        if m.segment_id == segment_id and m.action == "left" and m.reason == reason
    }


async def test_a_pass_waits_while_input_is_pending_and_completes_once_it_clears() -> None:
    s, clock = await populated(OPEN), FakeClock()
    pacer = Pacer([Backlog(clock, clears_at=1.0)], ratio=3, clock=clock, sleep=clock.sleep)
    sweeper = Sweeper(s.store, s.registry, s.membership, lambda: [0], TEST_PSEUDONYM_KEY, pacer=pacer)
    times = reads_at(s, clock, work_s=0.5)  # each chunk takes 0.5 s
    paused = sampled("segwarden_segmenter_pass_paused_seconds_total", REEVALUATION)
    s.registry.put(STRICTER)
    await sweeper.reevaluate({"open"}, deleted=False)
    # The first chunk at once, the next once the input cleared, the rest without a pause.
    assert times == pytest.approx([0.0, 1.0, 1.5, 2.0, 2.5])
    assert len(left(s, "open", "segment_changed")) == CUSTOMERS  # every customer re-evaluated
    paused = sampled("segwarden_segmenter_pass_paused_seconds_total", REEVALUATION) - paused
    assert paused == pytest.approx(0.5)


async def test_a_pass_goes_on_at_its_minimum_pace_when_the_backlog_never_clears() -> None:
    s, clock = await populated(OPEN), FakeClock()
    pacer = Pacer([Backlog(clock)], ratio=3, clock=clock, sleep=clock.sleep)
    sweeper = Sweeper(s.store, s.registry, s.membership, lambda: [0], TEST_PSEUDONYM_KEY, pacer=pacer)
    times = reads_at(s, clock, work_s=0.5)
    s.registry.put(STRICTER)
    await sweeper.reevaluate({"open"}, deleted=False)
    # Before each chunk it pauses until it has paused three times as long as it worked; none after
    # the last chunk: 8.5 s, within 4 x its 2.5 s of work.
    assert times == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0])
    assert len(left(s, "open", "segment_changed")) == CUSTOMERS
    assert sampled("segwarden_segmenter_pass_seconds", REEVALUATION) == pytest.approx(8.5)


async def test_without_pending_input_a_pass_never_pauses() -> None:
    s, clock = await populated(OPEN), FakeClock()
    pacer = Pacer([Backlog(clock, clears_at=0.0)], ratio=3, clock=clock, sleep=clock.sleep)
    sweeper = Sweeper(s.store, s.registry, s.membership, lambda: [0], TEST_PSEUDONYM_KEY, pacer=pacer)
    times = reads_at(s, clock, work_s=0.5)
    s.registry.put(STRICTER)
    await sweeper.reevaluate({"open"}, deleted=False)
    assert times == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


async def test_a_compliance_scan_under_a_lasting_backlog_spreads_over_its_interval_and_evicts() -> None:
    s, clock = await populated(MAIL, granted=True), FakeClock()
    # Withdrawals recorded but never acted on (as after a crash): the scan's to find.
    lapsed = [f"c-{i:04}" for i in range(0, CUSTOMERS, 97)]
    for customer_id in lapsed:
        await s.store.apply_consent(customer_id, {EMAIL: PurposeConsent("denied", None, s.now[0] - 60, 2)})
    pacer = Pacer([Backlog(clock)], ratio=3, intervals={COMPLIANCE: 20.0}, clock=clock, sleep=clock.sleep)
    sweeper = Sweeper(s.store, s.registry, s.membership, lambda: [0], TEST_PSEUDONYM_KEY, pacer=pacer)
    times = reads_at(s, clock, work_s=0.5)
    overruns = sampled("segwarden_segmenter_pass_overruns_total", COMPLIANCE)
    assert await sweeper.compliance_once() == len(lapsed)
    assert left(s, "mail", "consent_withdrawn") == set(lapsed)
    # Each chunk when its schedule says (200 customers every 4 s): longer than three times its
    # work allows, and done within the interval although input never stopped.
    assert times == pytest.approx([0.0, 4.0, 8.0, 12.0, 16.0])
    assert sampled("segwarden_segmenter_pass_overruns_total", COMPLIANCE) == overruns


async def test_a_scan_whose_paced_work_outlasts_its_interval_still_ends_and_counts_the_overrun() -> None:
    s, clock = await populated(MAIL, granted=True), FakeClock()
    pacer = Pacer([Backlog(clock)], ratio=3, intervals={COMPLIANCE: 1.0}, clock=clock, sleep=clock.sleep)
    sweeper = Sweeper(s.store, s.registry, s.membership, lambda: [0], TEST_PSEUDONYM_KEY, pacer=pacer)
    times = reads_at(s, clock, work_s=0.5)  # 2.5 s of work for a 1 s interval
    overruns = sampled("segwarden_segmenter_pass_overruns_total", COMPLIANCE)
    await sweeper.compliance_once()
    assert times == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0])  # at most 4 x its work: 10 s
    assert sampled("segwarden_segmenter_pass_overruns_total", COMPLIANCE) == overruns + 1
    assert sampled("segwarden_segmenter_pass_seconds", COMPLIANCE) == pytest.approx(8.5)
