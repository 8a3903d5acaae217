"""A circuit breaker per endpoint: after a run of failures it stops sending, then probes once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half_open"]
# The value of the state gauge: 0 sends, 1 probes, 2 holds everything back.
STATE_VALUES: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}


@dataclass
class CircuitBreaker:
    """Closed: every webhook goes. After `threshold` consecutive failures it opens: nothing goes
    until `cooldown_s` have passed; then one webhook goes as a probe (half-open). The probe's
    success closes it, its failure opens it for another cool-down."""

    threshold: int
    cooldown_s: float
    state: State = "closed"
    failures: int = 0
    opened_at: float = 0.0

    def allow(self, now: float) -> bool:
        """Whether a webhook may go now; the first one after the cool-down becomes the probe."""
        if self.state == "closed":
            return True
        if now < self.reopens_at():
            return False
        # Open past its cool-down: this webhook is the probe. Half-open this late: the probe's
        # outcome never came (its attempt failed around the POST, the store away), so another goes.
        self.state, self.opened_at = "half_open", now - self.cooldown_s
        return True

    def reopens_at(self) -> float:
        """When the next probe may go (while half-open: when a lost probe is replaced)."""
        if self.state == "half_open":
            return self.opened_at + 2 * self.cooldown_s
        return self.opened_at + self.cooldown_s

    def succeeded(self) -> bool:
        """Record an acknowledged webhook; True when that closed an open or half-open circuit."""
        reopened = self.state != "closed"
        self.state, self.failures = "closed", 0
        return reopened

    def failed(self, now: float) -> None:
        self.failures += 1
        if self.state == "half_open" or self.failures >= self.threshold:
            self.state, self.opened_at = "open", now
