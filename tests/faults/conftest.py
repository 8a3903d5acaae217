"""Fixtures of the fault-injection suite: per scenario its own broker, Redis and PostgreSQL database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.scenario import Scenario
from tests.faults.stack import FaultStack
from tests.faults.workload import seed

pytestmark = pytest.mark.slow


@pytest.fixture
def fault_seed() -> int:
    return seed()


@pytest.fixture
def fault_stack(tmp_path: Path, postgres_url: str) -> Iterator[FaultStack]:
    stack = FaultStack(tmp_path, postgres_url, f"f{uuid.uuid4().hex[:8]}.")
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def scenario(
    request: pytest.FixtureRequest, fault_stack: FaultStack, fault_seed: int
) -> Iterator[Callable[..., Scenario]]:
    """`scenario(size=30)`: the test's scenario on its own stack (one per test)."""
    made: list[Scenario] = []

    def make(size: int = 30) -> Scenario:
        made.append(Scenario(request.node.name, fault_stack, fault_seed, size))
        return made[-1]

    yield make
    for s in made:
        s.close()
