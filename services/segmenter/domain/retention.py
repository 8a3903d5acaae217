"""How long a customer's features and memberships may be kept without activity, per the purpose catalog.

A segment serves every purpose it requires, so it may hold an inactive customer only as long as
the shortest retention among them (a segment requiring no purpose: the catalog's longest). The
features feed every registered segment, so they are kept as long as the longest of those.
Activity is the latest `occurred_at` of the customer's applied events (the `last` feature); a
customer known only from consent (no event yet) is active as of its latest consent choice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.segmenter.domain.consent import ConsentView
from services.segmenter.domain.feature_values import DAY, LAST
from services.segmenter.domain.segments import Segment
from shared.catalog import PurposeCatalog


@dataclass(frozen=True)
class RetentionPolicy:
    days: Mapping[str, int]  # purpose -> retention_days

    @classmethod
    def from_catalog(cls, catalog: PurposeCatalog) -> RetentionPolicy:
        return cls({p.id: p.retention_days for p in catalog.purposes})

    def longest_s(self) -> float:
        return max(self.days.values()) * DAY

    def shortest_any_s(self) -> float:
        """At or below every segment's limit (segment_s), whatever purposes it requires."""
        return min(self.days.values()) * DAY

    def segment_s(self, segment: Segment) -> float:
        known = [self.days[p] for p in segment.required_purposes if p in self.days]
        return min(known) * DAY if known else self.longest_s()

    def features_s(self, segments: Iterable[Segment]) -> float:
        return max((self.segment_s(s) for s in segments), default=self.longest_s())

    def shortest_s(self, segments: Iterable[Segment]) -> float:
        """The earliest any customer can become due: what the retention job looks for."""
        segments = list(segments)
        return min([self.segment_s(s) for s in segments], default=self.longest_s())

    def expired(
        self, segments: Iterable[Segment], features: Mapping[str, str], consent: ConsentView, now: float
    ) -> set[str]:
        """Ids of the `segments` whose retention passed since the customer's last activity (none
        for a customer without one)."""
        last = active_since(features, consent)
        if last is None:
            return set()
        idle = now - last
        if idle <= self.shortest_any_s():
            return set()  # the common case, an active customer: no segment's limit is that short
        limits: dict[tuple[str, ...], float] = {}  # per set of purposes: a catalogue shares a few
        expired = set()
        for s in segments:
            purposes = s.required_purposes
            if purposes not in limits:
                limits[purposes] = self.segment_s(s)
            if idle > limits[purposes]:
                expired.add(s.id)
        return expired

    def features_expired(self, segments: Iterable[Segment], last: float, now: float) -> bool:
        return now - last > self.features_s(segments)


def active_since(features: Mapping[str, str], consent: ConsentView) -> float | None:
    """The customer's last activity: their latest event, or, known only from consent, their latest
    consent choice (else a customer who never sent an event would be kept for ever)."""
    last = features.get(LAST)
    return float(last) if last is not None else consent.last_choice()
