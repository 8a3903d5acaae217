"""Model-based segments in the membership rule and the segment index, with a stand-in scorer."""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

from services.segmenter.domain.consent import ConsentView, PurposeConsent
from services.segmenter.domain.membership import ON_CONSENT, ON_EVENT, decide
from services.segmenter.domain.segments import Segment, SegmentRegistry, features_changed_by
from shared.events import SegmentDefinition, utcnow

NOW = 1_800_000_000.0
GRANTED = PurposeConsent("granted", None, NOW - 10)
DENIED = PurposeConsent("denied", None, NOW - 5)
EXPIRED = PurposeConsent("granted", NOW - 1, NOW - 100)
MODEL_FEATURES = {"total_spend", "purchase_count", "event_count", "last_seen_days"}


def model_segment(segment_id: str, cluster: int, *purposes: str, model: str = "rfm") -> Segment:
    definition = SegmentDefinition(
        event_id=f"e-{segment_id}",
        segment_id=segment_id,
        name=segment_id,
        model=model,
        cluster=cluster,
        required_purposes=purposes,
        updated_at=utcnow(),
    )
    return Segment.from_definition(definition)


def by_spend(model_id: str, features: Mapping[str, Any], granted: Container[str]) -> int | None:
    """Like `ModelAssigner.assign`: no cluster without profiling or for an unknown model."""
    if model_id != "rfm" or "profiling" not in granted:
        return None
    return 1 if features.get("total_spend", 0) >= 100 else 0


def test_a_customer_joins_the_segment_of_their_cluster_only() -> None:
    high, low = model_segment("high", 1, "profiling"), model_segment("low", 0, "profiling")
    consent = ConsentView({"profiling": GRANTED})
    changes = decide([high, low], {"total_spend": 150.0}, consent, set(), NOW, ON_EVENT, by_spend)
    assert [(c.segment_id, c.action, c.reason) for c in changes] == [("high", "joined", "rule_matched")]


def test_no_effective_profiling_means_no_join_whatever_the_definition_requires() -> None:
    loose = model_segment("loose", 1)  # a definition that forgot to require profiling
    strict = model_segment("strict", 1, "profiling")
    rich = {"total_spend": 500.0}
    for purposes in ({}, {"profiling": DENIED}, {"profiling": EXPIRED}):
        consent = ConsentView(purposes)
        assert decide([loose, strict], rich, consent, set(), NOW, ON_EVENT, by_spend) == []


def test_withdrawal_and_expiry_evict_with_the_consent_reason() -> None:
    high = model_segment("high", 1, "profiling")
    rich = {"total_spend": 150.0}
    withdrawn = decide([high], rich, ConsentView({"profiling": DENIED}), {"high"}, NOW, ON_CONSENT, by_spend)
    expired = decide([high], rich, ConsentView({"profiling": EXPIRED}), {"high"}, NOW, ON_CONSENT, by_spend)
    assert [(c.action, c.reason) for c in withdrawn + expired] == [
        ("left", "consent_withdrawn"),
        ("left", "consent_expired"),
    ]


def test_moving_cluster_or_losing_the_model_leaves_the_segment() -> None:
    high, gone = model_segment("high", 1, "profiling"), model_segment("gone", 1, "profiling", model="old")
    consent = ConsentView({"profiling": GRANTED})
    poor = {"total_spend": 5.0}
    moved = decide([high], poor, consent, {"high"}, NOW, ON_EVENT, by_spend)
    removed = decide([gone], {"total_spend": 500.0}, consent, {"gone"}, NOW, ON_EVENT, by_spend)
    assert [(c.segment_id, c.reason) for c in moved + removed] == [
        ("high", "rule_unmatched"),
        ("gone", "rule_unmatched"),
    ]


def test_without_a_scorer_model_segments_never_admit() -> None:
    high = model_segment("high", 1, "profiling")
    consent = ConsentView({"profiling": GRANTED})
    assert decide([high], {"total_spend": 150.0}, consent, set(), NOW, ON_EVENT) == []


def test_model_segments_are_indexed_under_the_model_features_and_swept() -> None:
    registry = SegmentRegistry(MODEL_FEATURES)
    registry.put(model_segment("high", 1, "profiling"))
    registry.put(model_segment("other", 0, "profiling", model="other"))
    assert [s.id for s in registry.reading(features_changed_by("click"))] == ["high", "other"]
    assert [s.id for s in registry.reading({"profile.country"})] == []
    assert {s.id for s in registry.time_sensitive()} == {"high", "other"}
    assert [s.id for s in registry.requiring(["profiling"])] == ["high", "other"]
    assert registry.using_models({"rfm"}) == {"high"}
    registry.remove("high")
    assert registry.using_models({"rfm"}) == set()
