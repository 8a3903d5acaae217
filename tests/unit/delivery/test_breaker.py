"""The circuit breaker of an endpoint, on a clock the test sets."""

from __future__ import annotations

from services.delivery.domain.breaker import CircuitBreaker


def test_it_opens_after_the_threshold_of_consecutive_failures() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown_s=10)
    breaker.failed(0)
    breaker.failed(0)
    assert breaker.succeeded() is False  # a success in between starts the count again
    for _ in range(3):
        assert breaker.allow(1)
        breaker.failed(1)
    assert breaker.state == "open" and not breaker.allow(10.9) and breaker.reopens_at() == 11


def test_after_the_cooldown_one_probe_goes_and_its_outcome_decides() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown_s=10)
    breaker.failed(0)
    assert breaker.allow(10) and breaker.state == "half_open"
    assert not breaker.allow(10)  # one probe at a time
    breaker.failed(12)
    assert breaker.state == "open" and breaker.reopens_at() == 22 and not breaker.allow(21)
    assert breaker.allow(22)
    assert breaker.succeeded() is True and breaker.state == "closed" and breaker.allow(22)


def test_a_probe_whose_outcome_never_came_is_replaced_after_another_cooldown() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown_s=10)
    breaker.failed(0)
    assert breaker.allow(10)
    assert not breaker.allow(19.9)
    assert breaker.allow(20) and breaker.state == "half_open" and not breaker.allow(20)
