"""The membership rule: a customer is in a segment exactly when its rule holds and consent is effective."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


@dataclass(frozen=True)
class Trigger:
    """Why a customer is evaluated: the reasons a join or a rule-caused leave get."""

    join_reason: str
    leave_reason: str


ON_EVENT = Trigger("rule_matched", "rule_unmatched")
ON_CONSENT = Trigger("consent_granted", "rule_unmatched")
ON_DEFINITION = Trigger("segment_changed", "segment_changed")
ON_SWEEP = Trigger("rule_matched", "rule_unmatched")


def decide(
    candidates: Iterable[Segment],
    features: Mapping[str, Any],
    consent: ConsentView,
    current: set[str],
    now: float,
    trigger: Trigger,
) -> list[MembershipChange]:
    """The joins and leaves that make `current` agree with the membership rule for `candidates`."""
    changes = []
    for segment in candidates:
        if segment.rule is None:
            continue  # model-based: assigned by the model scorer, not by a rule
        matches, was_member = segment.rule.matches(features), segment.id in current
        if not matches and not was_member:
            continue  # the common case: consent cannot change anything here
        consent_gap = consent.why_not(segment.required_purposes, now)
        member = matches and consent_gap is None
        if member and segment.id not in current:
            changes.append(
                MembershipChange(segment.id, "joined", trigger.join_reason, segment.required_purposes)
            )
        elif not member and segment.id in current:
            changes.append(MembershipChange(segment.id, "left", consent_gap or trigger.leave_reason))
    return changes
