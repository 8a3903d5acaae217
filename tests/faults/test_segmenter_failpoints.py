"""Each segmenter failpoint: SIGKILL there and restart, or raise there (a transient error, retried)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.faults.scenario import Scenario

# The hit that fires: far enough into the workload that the stack holds members and opt-outs are
# still to come, and early enough that phase 1 reaches it however its commits are batched (how
# many customers share a commit follows the machine's pace: at 12, phase 1 sometimes ended first).
STEPS = {
    "segmenter.after_slot_commit": 8,
    "segmenter.after_member_sync": 8,
    "segmenter.after_publish": 8,
    "segmenter.events_mid_batch": 6,
    "segmenter.events_between_writes": 6,
    "segmenter.consent_mid_batch": 20,
}
AFTER_A_COMMIT = {"segmenter.after_slot_commit", "segmenter.after_member_sync", "segmenter.after_publish"}


CASES = sorted(STEPS)


@pytest.mark.parametrize("name", CASES)
def test_sigkill_at_a_segmenter_step_then_restart(scenario: Callable[..., Scenario], name: str) -> None:
    s = scenario()
    if name in AFTER_A_COMMIT:  # also reached by batches that change nothing: re-arm those kills
        s.stack.arm_probe = lambda: s.stack.in_flight(s.workload.customers)
    s.start(failpoints=f"{name}=kill@{STEPS[name]}")
    worker = s.stack.segmenter
    s.workload.run(between=lambda: s.recovered(worker, name))
    s.verify()


@pytest.mark.parametrize("name", CASES)
def test_raise_at_a_segmenter_step_is_retried(scenario: Callable[..., Scenario], name: str) -> None:
    s = scenario().start(failpoints=f"{name}=raise@{STEPS[name]}x2")
    s.workload.run()
    outcome = s.settle()
    s.raised(s.stack.segmenter, name)
    s.verify(outcome)
