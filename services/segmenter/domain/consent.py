"""A customer's consent as the segmenter sees it, and whether a purpose is effective right now."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PurposeConsent:
    """One purpose: status, expiry and when it was recorded (epoch seconds)."""

    status: str
    expires_at: float | None
    recorded_at: float

    def effective(self, now: float) -> bool:
        """Granted and not expired; checked at evaluation time so an expiry fails closed."""
        return self.status == "granted" and (self.expires_at is None or self.expires_at > now)

    def expired(self, now: float) -> bool:
        return self.status == "granted" and self.expires_at is not None and self.expires_at <= now


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

    def next_expiry(self, now: float) -> float | None:
        """The earliest future expiry of an effective grant, for the expiry sweep."""
        times = [s.expires_at for s in self.purposes.values() if s.effective(now) and s.expires_at]
        return min(times) if times else None
