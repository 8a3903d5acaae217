"""The membership rule: a customer is in a segment exactly when its rule holds and consent is effective."""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.segmenter.domain.consent import ConsentView
from services.segmenter.domain.segments import Segment


@dataclass(frozen=True)
class MembershipChange:
    segment_id: str
    action: str  # "joined" | "left"
    reason: str
    required_purposes: tuple[str, ...] = ()

    @property
    def is_eviction(self) -> bool:
        """A leave because consent is no longer effective: decided from consent alone."""
        return self.action == "left" and self.reason in EVICTIONS


def member_flags(applied: Sequence[MembershipChange]) -> dict[str, bool]:
    """Segment -> member, as the changes that took effect leave a customer's member sets."""
    return {change.segment_id: change.action == "joined" for change in applied}


# The leave reasons that consent alone decides (domain.consent.ConsentView.why_not).
EVICTIONS = ("consent_withdrawn", "consent_expired")


@dataclass(frozen=True)
class Trigger:
    """Why a customer is evaluated: the reasons a join or a rule-caused leave get."""

    join_reason: str
    leave_reason: str


ON_EVENT = Trigger("rule_matched", "rule_unmatched")
ON_CONSENT = Trigger("consent_granted", "rule_unmatched")
ON_DEFINITION = Trigger("segment_changed", "segment_changed")
ON_SWEEP = Trigger("rule_matched", "rule_unmatched")

# (model id, features, effectively granted purposes) -> cluster, or None: the model scorer, passed
# in so the domain stays free of model files and their loading.
Assign = Callable[[str, Mapping[str, Any], Container[str]], int | None]


def _no_models(model_id: str, features: Mapping[str, Any], granted: Container[str]) -> int | None:
    return None


class _Matcher:
    """Whether a segment's condition holds: its rule, or the model's cluster for the customer."""

    def __init__(self, features: Mapping[str, Any], consent: ConsentView, now: float, assign: Assign):
        self.features, self.consent, self.now, self.assign = features, consent, now, assign
        self._granted: set[str] | None = None

    def matches(self, segment: Segment) -> bool:
        if segment.rule is not None:
            return segment.rule.matches(self.features)
        definition = segment.definition
        if definition.model is None or definition.cluster is None:
            return False
        if self._granted is None:  # once per customer, only when a model segment is evaluated
            self._granted = {p for p in self.consent.purposes if self.consent.effective(p, self.now)}
        return self.assign(definition.model, self.features, self._granted) == definition.cluster


def decide(
    candidates: Iterable[Segment],
    features: Mapping[str, Any],
    consent: ConsentView,
    current: set[str],
    now: float,
    trigger: Trigger,
    assign: Assign = _no_models,
    expired: Container[str] = (),
) -> list[MembershipChange]:
    """The joins and leaves that make `current` agree with the membership rule for `candidates`;
    a model-based segment's condition is `assign(model, features, granted) == cluster`. A segment
    in `expired` (its retention passed since the customer's last activity) holds no one."""
    changes, matcher = [], _Matcher(features, consent, now, assign)
    # Consent first, once per set of required purposes: a catalogue shares a few, so an opt-out
    # from a thousand segments is a thousand look-ups, and no rule is evaluated where consent
    # alone decides (a member without effective consent leaves whatever its rule says).
    gaps: dict[tuple[str, ...], str | None] = {}
    for segment in candidates:
        was_member = segment.id in current
        if segment.id in expired:
            if was_member:
                changes.append(MembershipChange(segment.id, "left", "retention_expired"))
            continue
        purposes = segment.required_purposes
        if not purposes:
            consent_gap = None  # a segment requiring none needs no look-up
        elif purposes in gaps:
            consent_gap = gaps[purposes]
        else:
            consent_gap = gaps[purposes] = consent.why_not(purposes, now)
        if consent_gap is not None:
            if was_member:
                changes.append(MembershipChange(segment.id, "left", consent_gap))
            continue
        matches = matcher.matches(segment)
        if matches and not was_member:
            changes.append(MembershipChange(segment.id, "joined", trigger.join_reason, purposes))
        elif not matches and was_member:
            changes.append(MembershipChange(segment.id, "left", trigger.leave_reason))
    return changes
