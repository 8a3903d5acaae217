"""The membership rule, consent effectiveness (fail closed) and the segment index, without I/O."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.segmenter.domain.consent import ConsentView, PurposeConsent
from services.segmenter.domain.feature_values import DAY, rule_features
from services.segmenter.domain.membership import ON_CONSENT, ON_EVENT, MembershipChange, decide
from services.segmenter.domain.segments import Segment, SegmentRegistry, features_changed_by
from shared.events import SegmentDefinition, utcnow
from shared.kanon import suppress_small_groups

NOW = 1_800_000_000.0


def segment(segment_id: str, rule: str, *purposes: str) -> Segment:
    definition = SegmentDefinition(
        event_id=f"e-{segment_id}",
        segment_id=segment_id,
        name=segment_id,
        rule=rule,
        required_purposes=purposes,
        updated_at=utcnow(),
    )
    return Segment.from_definition(definition)


def consent(**purposes: PurposeConsent) -> ConsentView:
    return ConsentView(purposes)


GRANTED = PurposeConsent("granted", None, NOW - 10)
DENIED = PurposeConsent("denied", None, NOW - 5)
EXPIRED = PurposeConsent("granted", NOW - 1, NOW - 100)


def test_join_needs_the_rule_and_every_required_purpose() -> None:
    big = segment("big", "total_spend >= 100", "marketing_email", "personalization")
    features = {"total_spend": 150.0}
    both = consent(marketing_email=GRANTED, personalization=GRANTED)
    one = consent(marketing_email=GRANTED)
    assert [c.action for c in decide([big], features, both, set(), NOW, ON_EVENT)] == ["joined"]
    assert decide([big], features, one, set(), NOW, ON_EVENT) == []


def test_leave_reasons_say_why() -> None:
    big = segment("big", "total_spend >= 100", "marketing_email")
    rich, poor = {"total_spend": 150.0}, {"total_spend": 1.0}
    withdrawn = decide([big], rich, consent(marketing_email=DENIED), {"big"}, NOW, ON_CONSENT)
    expired = decide([big], rich, consent(marketing_email=EXPIRED), {"big"}, NOW, ON_CONSENT)
    unmatched = decide([big], poor, consent(marketing_email=GRANTED), {"big"}, NOW, ON_EVENT)
    never = decide([big], rich, consent(), {"big"}, NOW, ON_EVENT)
    assert [c.reason for c in withdrawn + expired + unmatched + never] == [
        "consent_withdrawn",
        "consent_expired",
        "rule_unmatched",
        "consent_withdrawn",
    ]


def test_expiry_is_checked_at_evaluation_time() -> None:
    state = PurposeConsent("granted", NOW + 60, NOW)
    assert state.effective(NOW) and not state.effective(NOW + 60)
    assert consent(p=state).next_expiry(NOW) == NOW + 60


def test_features_from_stored_counters() -> None:
    stored = {"spend": "12.5", "purchases": "2", "events": "5", "first": str(NOW - 3 * DAY), "last": str(NOW)}
    stored |= {"e:click": "3", "p:country": '"DE"'}
    stored |= {"p:pref.interests": '["books"]', "p:pref.frequency": "null"}
    features = rule_features(stored, NOW)
    assert (
        features["total_spend"] == 12.5
        and features["first_seen_days"] == 3
        and features["last_seen_days"] == 0
    )
    assert features["events.click"] == 3 and features.get("events.never") == 0
    assert features["profile.country"] == "DE" and "last_purchase_days" not in features
    # A stated preference is a profile attribute; a removed one (null) is missing, not None.
    assert features["profile.pref.interests"] == ["books"] and "profile.pref.frequency" not in features
    # Parsed profile values are kept by their text, but a list is parsed anew: never shared.
    again = rule_features(stored, NOW)
    assert again == features and again["profile.pref.interests"] is not features["profile.pref.interests"]
    assert rule_features({}, NOW).get("events.click") is None  # an unknown customer has no features


def test_index_finds_only_segments_an_event_can_change() -> None:
    registry = SegmentRegistry()
    for s in (
        segment("spend", "total_spend > 10"),
        segment("clicks", "events.click > 1"),
        segment("de", "profile.country == 'DE'", "marketing_email"),
    ):
        registry.put(s)
    assert [s.id for s in registry.reading(features_changed_by("click"))] == ["clicks"]
    assert [s.id for s in registry.reading(features_changed_by("purchase"))] == ["spend"]
    assert [s.id for s in registry.reading(features_changed_by("profile_update", ["country"]))] == ["de"]
    assert [s.id for s in registry.requiring(["marketing_email"])] == ["de"]
    # An opt-out looks among the customer's own segments (one gone from the registry is skipped).
    assert [s.id for s in registry.requiring_among(["marketing_email"], {"spend", "de", "gone"})] == ["de"]
    assert registry.requiring_among(["marketing_email"], {"spend", "clicks"}) == []
    registry.remove("de")
    assert registry.requiring(["marketing_email"]) == []
    # The answers kept by feature set follow every change of the registry.
    assert registry.reading(features_changed_by("profile_update", ["country"])) == []
    registry.put(segment("views", "events.click > 1 or events.view > 1"))
    assert [s.id for s in registry.reading(features_changed_by("click"))] == ["clicks", "views"]


def test_small_groups_are_suppressed() -> None:
    assert suppress_small_groups({"DE": 12, "FR": 3, "IT": 4}, 5) == {"DE": 12, "_suppressed": 7}
    assert suppress_small_groups({"DE": 12, "FR": 3}, 5) == {"DE": 12}


IDS = [f"s{i}" for i in range(6)]
PURPOSES = st.sampled_from(["marketing_email", "personalization", "profiling"])


@given(
    specs=st.lists(st.tuples(st.integers(0, 3), st.lists(PURPOSES, max_size=2, unique=True)), max_size=6),
    spend=st.integers(0, 3),
    states=st.dictionaries(PURPOSES, st.sampled_from([GRANTED, DENIED, EXPIRED])),
    current=st.sets(st.sampled_from(IDS)),
    expired=st.sets(st.sampled_from(IDS)),
)
def test_decide_moves_each_candidate_to_what_the_rule_says_and_says_why(
    specs: list[tuple[int, list[str]]],
    spend: int,
    states: dict[str, PurposeConsent],
    current: set[str],
    expired: set[str],
) -> None:
    """Whatever the order it checks consent and rules in: a candidate is in exactly when it has not
    expired, its rule holds and its purposes are effective; a leave says retention, else the
    consent gap, else the rule; nothing else changes."""
    candidates = [
        segment(IDS[i], f"total_spend >= {threshold}", *purposes)
        for i, (threshold, purposes) in enumerate(specs)
    ]
    view = ConsentView(states)
    changes = decide(candidates, {"total_spend": spend}, view, current, NOW, ON_CONSENT, expired=expired)
    by_segment = {c.segment_id: c for c in changes}
    assert len(by_segment) == len(changes) and set(by_segment) <= {s.id for s in candidates}
    for s, (threshold, _) in zip(candidates, specs, strict=True):
        gap = view.why_not(s.required_purposes, NOW)
        member = s.id not in expired and spend >= threshold and gap is None
        if member == (s.id in current):
            assert s.id not in by_segment
        elif member:
            assert by_segment[s.id] == MembershipChange(
                s.id, "joined", "consent_granted", s.required_purposes
            )
        else:
            reason = "retention_expired" if s.id in expired else gap or "rule_unmatched"
            assert by_segment[s.id] == MembershipChange(s.id, "left", reason)
