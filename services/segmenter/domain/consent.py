"""A customer's consent as the segmenter sees it, and whether a purpose is effective right now."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PurposeConsent:
    """One purpose: status, expiry, when it was recorded (epoch seconds) and the customer's consent
    sequence of the change that set it (None on records written before sequences existed).
    `lapsed` marks a denial the consent service made because the grant expired."""

    status: str
    expires_at: float | None
    recorded_at: float
    sequence: int | None = None
    lapsed: bool = False

    def effective(self, now: float) -> bool:
        """Granted and not expired; checked at evaluation time so an expiry fails closed."""
        return self.status == "granted" and (self.expires_at is None or self.expires_at > now)

    def expired(self, now: float) -> bool:
        """Not effective because a grant ran out: past its expiry, or denied by the expiry job."""
        if self.status == "granted":
            return self.expires_at is not None and self.expires_at <= now
        return self.lapsed

    def supersedes(self, held: PurposeConsent | None) -> bool:
        """Whether this state replaces the held one (the Lua APPLY_CONSENT decides the same way).

        Sequenced states order by sequence, strictly, so a duplicate or an older snapshot never
        wins; a sequenced state always beats an unsequenced one (written before sequences
        existed). Between unsequenced ones the later recorded_at wins, and on a tie the denial
        (fail closed); the same status at the same instant keeps what is held.
        """
        if held is None:
            return True
        if self.sequence is not None and held.sequence is not None:
            return self.sequence > held.sequence
        if self.sequence is not None or held.sequence is not None:
            return self.sequence is not None
        if self.recorded_at != held.recorded_at:
            return self.recorded_at > held.recorded_at
        return self.status == "denied" and held.status != "denied"


@dataclass(frozen=True)
class ConsentView:
    purposes: Mapping[str, PurposeConsent]

    def effective(self, purpose: str, now: float) -> bool:
        """No record means the catalog default, which is denied (fail closed)."""
        state = self.purposes.get(purpose)
        return state is not None and state.effective(now)

    def all_effective(self, purposes: Iterable[str], now: float) -> bool:
        return all(self.effective(p, now) for p in purposes)

    def why_not(self, purposes: Iterable[str], now: float) -> str | None:
        """The leave reason when a required purpose is not effective, else None."""
        missing = [p for p in purposes if not self.effective(p, now)]
        if not missing:
            return None
        if all((state := self.purposes.get(p)) is not None and state.expired(now) for p in missing):
            return "consent_expired"
        return "consent_withdrawn"

    def last_choice(self) -> float | None:
        """When the customer last made a choice: the latest `recorded_at` (a denial the expiry job
        made counts only when nothing else is held, since the customer did not make it)."""
        made = [s.recorded_at for s in self.purposes.values() if not s.lapsed]
        return max(made or [s.recorded_at for s in self.purposes.values()], default=None)

    def next_expiry(self, now: float) -> float | None:
        """The earliest future expiry of an effective grant, for the expiry scheduler."""
        times = [s.expires_at for s in self.purposes.values() if s.effective(now) and s.expires_at]
        return min(times) if times else None
