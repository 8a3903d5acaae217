"""No fault: the harness itself, and what every fault scenario is compared with."""

from __future__ import annotations

from collections.abc import Callable

from tests.faults.scenario import Scenario


def test_no_fault_membership_equals_the_model(scenario: Callable[..., Scenario]) -> None:
    s = scenario().start()
    s.workload.run()
    s.verify()
