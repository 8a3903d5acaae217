"""Segments as the evaluator holds them, indexed by the features their rules read."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from services.segmenter.rules import CompiledRule, compile_rule
from shared.events import SegmentDefinition

# Features an event of each type can change; any event changes the counters and recency.
_EVERY_EVENT = ("event_count", "last_seen_days", "first_seen_days")
_PURCHASE = ("total_spend", "purchase_count", "last_purchase_days")
READING_CACHE_CAP = 1024  # feature sets whose segments the registry keeps at hand


@dataclass(frozen=True)
class Segment:
    definition: SegmentDefinition
    rule: CompiledRule | None  # None for model-based segments (assigned by a clustering model)

    # Cached: read for every candidate of every evaluation, a property call each time was a
    # measurable share of an event's cost (docs/benchmarks.md, 2026-12-02 "CPU per event").
    @cached_property
    def id(self) -> str:
        return self.definition.segment_id

    @cached_property
    def required_purposes(self) -> tuple[str, ...]:
        return self.definition.required_purposes

    @property
    def model(self) -> str | None:
        return self.definition.model

    @classmethod
    def from_definition(cls, definition: SegmentDefinition) -> Segment:
        rule = compile_rule(definition.rule) if definition.rule is not None else None
        return cls(definition, rule)


@dataclass(frozen=True)
class StoredDefinition:
    """A definition as the segmenter's own store keeps it; deleted ones keep their version."""

    segment_id: str
    version: int
    definition: SegmentDefinition | None  # None once deleted


def features_changed_by(event_type: str, profile_attrs: Iterable[str] = ()) -> set[str]:
    changed = {*_EVERY_EVENT, f"events.{event_type}"}
    if event_type == "purchase":
        changed.update(_PURCHASE)
    changed.update(f"profile.{attr}" for attr in profile_attrs)
    return changed


class SegmentRegistry:
    """The live segments, with an index from feature and purpose to the segments using it.

    Model-based segments are indexed under `model_features` (what every model reads) and count as
    time-sensitive: their models read day counts that change with time.
    """

    def __init__(self, model_features: Iterable[str] = ()) -> None:
        self._model_features = frozenset(model_features)
        self._segments: dict[str, Segment] = {}
        self._by_feature: dict[str, set[str]] = defaultdict(set)
        self._by_purpose: dict[str, set[str]] = defaultdict(set)
        # reading()'s answers by the features asked: events of one type ask the same ones, and
        # the union and sort per event were a share of its cost. Emptied on every change.
        self._reading: dict[frozenset[str], list[Segment]] = {}

    def put(self, segment: Segment) -> Segment | None:
        """Install `segment`; returns the one it replaced."""
        previous = self.remove(segment.id)
        self._reading.clear()
        self._segments[segment.id] = segment
        for feature in segment.rule.features if segment.rule else self._model_features:
            self._by_feature[feature].add(segment.id)
        for purpose in segment.required_purposes:
            self._by_purpose[purpose].add(segment.id)
        return previous

    def remove(self, segment_id: str) -> Segment | None:
        segment = self._segments.pop(segment_id, None)
        self._reading.clear()
        for index in (self._by_feature, self._by_purpose):
            for ids in index.values():
                ids.discard(segment_id)
        return segment

    def get(self, segment_id: str) -> Segment | None:
        return self._segments.get(segment_id)

    def all(self) -> list[Segment]:
        return list(self._segments.values())

    def time_sensitive(self) -> list[Segment]:
        return [s for s in self._segments.values() if s.rule is None or s.rule.time_sensitive]

    def using_models(self, model_ids: Iterable[str]) -> set[str]:
        """Ids of the segments assigned by any of `model_ids`."""
        wanted = set(model_ids)
        return {s.id for s in self._segments.values() if s.model is not None and s.model in wanted}

    def reading(self, features: Iterable[str]) -> list[Segment]:
        """Segments whose condition reads any of `features`: the only ones an event can change."""
        asked = frozenset(features)
        found = self._reading.get(asked)
        if found is None:
            ids: set[str] = set()
            for feature in asked:
                ids |= self._by_feature.get(feature, set())
            found = [self._segments[i] for i in sorted(ids)]
            if len(self._reading) >= READING_CACHE_CAP:  # event types and attributes are open-ended
                self._reading.clear()
            self._reading[asked] = found
        return list(found)

    def requiring(self, purposes: Iterable[str]) -> list[Segment]:
        ids: set[str] = set()
        for purpose in purposes:
            ids |= self._by_purpose.get(purpose, set())
        return [self._segments[i] for i in sorted(ids)]

    def requiring_among(self, purposes: Iterable[str], segment_ids: Iterable[str]) -> list[Segment]:
        """The live segments of `segment_ids` (a customer's own) that require any of `purposes`:
        all an opt-out can change, found in the customer's segments, not the whole catalogue."""
        wanted = set(purposes)
        found = (self._segments.get(i) for i in sorted(segment_ids))
        return [s for s in found if s is not None and not wanted.isdisjoint(s.required_purposes)]
