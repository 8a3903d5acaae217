"""Consent under faults: bursts of grant and deny, a consent crash after its commit, two replicas, a
clock stepped back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from tests.faults.clock import SteppedClock
from tests.faults.scenario import Scenario

BURST_CUSTOMERS = 12
BURST_CHOICES = 6  # alternating, the last one a denial
STEP_BACK = timedelta(minutes=10)  # longer than the scenario runs: every later stamp is earlier


def _called(name: str) -> bool:
    """Whether some service calls the failpoint yet (the consent one is being added)."""
    root = Path(__file__).resolve().parents[2] / "services"
    return any(f'failpoint("{name}")' in p.read_text() for p in root.rglob("*.py"))


def burst(s: Scenario) -> None:
    """After phase 1: members of a marketing_email segment (and some others) each send alternating
    grants and denials of marketing_email at once, ending on a denial."""
    customers = s.workload.customers[:BURST_CUSTOMERS]
    s.workload.burst(customers, "marketing_email", BURST_CHOICES)
    s.stack.faults.add(f"burst: {BURST_CUSTOMERS} customers x {BURST_CHOICES} grant/deny at once")


def test_burst_of_concurrent_grant_and_deny(scenario: Callable[..., Scenario]) -> None:
    s = scenario().start()
    s.workload.run(between=lambda: burst(s))
    s.verify()


@pytest.mark.skipif(not _called("consent.after_commit"), reason="waits for the consent.after_commit call")
def test_consent_sigkill_after_commit_then_restart(scenario: Callable[..., Scenario]) -> None:
    s = scenario()
    s.stack.start_consent(failpoints="consent.after_commit=kill@15")
    s.start(consents=0)
    s.workload.run(between=lambda: s.recovered(s.stack.consent, "consent.after_commit"))
    s.verify()


def test_two_consent_processes_on_one_database(scenario: Callable[..., Scenario]) -> None:
    """Every other choice goes to the other replica; the burst's choices for one customer race
    across both. The second replica starts once the first has migrated the fresh database."""
    s = scenario()
    s.stack.start_consent()
    s.stack.wait_ready()
    s.start(consents=1)
    s.workload.run(between=lambda: burst(s))
    s.verify()


def test_consent_clock_stepped_back_mid_workload(scenario: Callable[..., Scenario]) -> None:
    """Consent's wall clock jumps 10 minutes back half-way through phase 1, while choices are being
    recorded: every later record is stamped before the grants it follows (and phase 2 withdraws).
    Only the per-customer sequence keeps their order."""
    s = scenario()
    clock = SteppedClock(s.stack.tmp / "consent-clock", s.stack.faults)
    s.stack.start_consent(**clock.env())
    s.start(consents=0)
    s.workload.run(midway=(lambda: clock.step_back(s.stack.consent, STEP_BACK), None))
    s.verify()
