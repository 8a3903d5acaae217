"""Retention per purpose: a segment holds an inactive customer for the shortest retention of its
purposes, features stay for the longest any registered segment needs, and an expired segment
neither keeps nor takes the customer back."""

from __future__ import annotations

from services.segmenter.domain.consent import PurposeConsent
from services.segmenter.domain.feature_values import DAY
from services.segmenter.domain.membership import ON_EVENT, decide
from services.segmenter.domain.retention import RetentionPolicy
from tests.unit.segmenter.test_membership import GRANTED, NOW, consent, segment

POLICY = RetentionPolicy({"marketing_email": 30, "personalization": 365, "profiling": 7})
EMAIL = segment("email", "event_count >= 1", "marketing_email")
BOTH = segment("both", "event_count >= 1", "marketing_email", "personalization")
LONG = segment("long", "event_count >= 1", "personalization")
OPEN = segment("open", "event_count >= 1")


def idle(days: float) -> dict[str, str]:
    return {"events": "1", "last": repr(NOW - days * DAY)}


def test_a_segment_keeps_an_inactive_customer_for_the_shortest_retention_of_its_purposes() -> None:
    assert POLICY.segment_s(BOTH) == 30 * DAY
    assert POLICY.segment_s(OPEN) == 365 * DAY  # no purpose: the catalog's longest
    segments = [EMAIL, BOTH, LONG, OPEN]
    assert POLICY.expired(segments, idle(6), consent(), NOW) == set()  # within the shortest of all
    assert POLICY.expired(segments, idle(29), consent(), NOW) == set()
    assert POLICY.expired(segments, idle(31), consent(), NOW) == {"email", "both"}
    assert POLICY.expired(segments, {"events": "1"}, consent(), NOW) == set()  # no activity known
    assert POLICY.shortest_s(segments) == 30 * DAY


def test_a_customer_known_only_from_consent_is_active_as_of_their_latest_choice() -> None:
    segments = [EMAIL, LONG]
    chose = consent(marketing_email=PurposeConsent("granted", None, NOW - 31 * DAY))
    assert POLICY.expired(segments, {}, chose, NOW) == {"email"}
    again = consent(
        marketing_email=PurposeConsent("granted", None, NOW - 31 * DAY),
        personalization=PurposeConsent("granted", None, NOW - 2 * DAY),
    )
    assert POLICY.expired(segments, {}, again, NOW) == set()
    # A denial the expiry job made is not the customer's choice.
    lapsed = PurposeConsent("denied", None, NOW - DAY, lapsed=True)
    assert POLICY.expired(
        segments, {}, consent(marketing_email=chose.purposes["marketing_email"], profiling=lapsed), NOW
    ) == {"email"}
    # Once events come, they are the activity.
    assert POLICY.expired(segments, idle(1), chose, NOW) == set()


def test_features_stay_for_the_longest_retention_the_registered_segments_need() -> None:
    assert not POLICY.features_expired([EMAIL, LONG], NOW - 300 * DAY, NOW)
    assert POLICY.features_expired([EMAIL], NOW - 31 * DAY, NOW)
    assert POLICY.features_expired([], NOW - 366 * DAY, NOW)  # no segment: the catalog's longest


def test_an_expired_segment_announces_retention_expired_and_admits_no_one() -> None:
    granted = consent(marketing_email=GRANTED)
    features = {"event_count": 1}
    left = decide([EMAIL], features, granted, {"email"}, NOW, ON_EVENT, expired={"email"})
    assert [(c.segment_id, c.action, c.reason) for c in left] == [("email", "left", "retention_expired")]
    assert decide([EMAIL], features, granted, set(), NOW, ON_EVENT, expired={"email"}) == []
    assert [c.action for c in decide([EMAIL], features, granted, set(), NOW, ON_EVENT)] == ["joined"]
