"""The minimized feature vector: documented defaults, bounds, and nothing but the named counters."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from services.segmenter.modeling.feature_vector import (
    AMOUNT_CAP,
    FEATURES,
    RECENCY_CAP_DAYS,
    SOURCE_FEATURES,
    TENURE_CAP_DAYS,
    feature_vector,
)

REGULAR = {
    "total_spend": 300.0,
    "purchase_count": 3,
    "event_count": 12,
    "events.purchase": 3,
    "events.page_view": 9,
    "last_seen_days": 2.0,
    "last_purchase_days": 5.5,
    "first_seen_days": 400.0,
}


def named(vector: tuple[float, ...]) -> dict[str, float]:
    return dict(zip(FEATURES, vector, strict=True))


def test_a_regular_customer_gets_recency_frequency_monetary_tenure_and_mix() -> None:
    assert named(feature_vector(REGULAR)) == {
        "recency_days": 5.5,
        "inactivity_days": 2.0,
        "frequency": 3.0,
        "monetary": 300.0,
        "avg_order_value": 100.0,
        "tenure_days": 400.0,
        "purchase_share": 0.25,
    }


def test_a_customer_who_never_purchased_has_capped_recency_and_no_spend() -> None:
    vector = named(feature_vector({"event_count": 4, "events.page_view": 4, "last_seen_days": 1.0}))
    assert vector["recency_days"] == RECENCY_CAP_DAYS
    assert vector["inactivity_days"] == 1.0
    assert vector["frequency"] == vector["monetary"] == vector["avg_order_value"] == 0.0
    assert vector["purchase_share"] == 0.0


def test_an_empty_mapping_is_the_documented_default() -> None:
    assert feature_vector({}) == (RECENCY_CAP_DAYS, RECENCY_CAP_DAYS, 0.0, 0.0, 0.0, 0.0, 0.0)


def test_old_customers_are_clipped_to_the_caps() -> None:
    vector = named(feature_vector({**REGULAR, "last_purchase_days": 9000, "first_seen_days": 99999}))
    assert vector["recency_days"] == RECENCY_CAP_DAYS
    assert vector["tenure_days"] == TENURE_CAP_DAYS


def test_malformed_values_count_as_absent() -> None:
    bad = {"total_spend": "lots", "purchase_count": True, "event_count": -3, "last_seen_days": math.nan}
    assert feature_vector(bad) == feature_vector({})


def test_profile_text_and_identifiers_never_change_the_vector() -> None:
    noisy = {**REGULAR, "profile.country": "DE", "profile.email": "a@b.c", "customer_id": "c-1"}
    assert feature_vector(noisy) == feature_vector(REGULAR)


numbers = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=5),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(allow_nan=True, allow_infinity=True),
)
names = st.sampled_from(
    [
        "total_spend",
        "purchase_count",
        "event_count",
        "events.purchase",
        "events.click",
        "last_seen_days",
        "last_purchase_days",
        "first_seen_days",
        "profile.country",
    ]
)


@given(st.dictionaries(names, numbers))
def test_any_mapping_gives_a_bounded_finite_vector(features: dict[str, object]) -> None:
    vector = named(feature_vector(features))
    assert len(vector) == len(FEATURES)
    assert all(math.isfinite(value) and value >= 0 for value in vector.values())
    assert vector["recency_days"] <= RECENCY_CAP_DAYS and vector["inactivity_days"] <= RECENCY_CAP_DAYS
    assert vector["tenure_days"] <= TENURE_CAP_DAYS
    assert vector["monetary"] <= AMOUNT_CAP and vector["avg_order_value"] <= AMOUNT_CAP
    assert vector["purchase_share"] <= 1.0


@given(st.dictionaries(names, numbers), st.dictionaries(names, numbers))
def test_only_the_source_features_are_read(features: dict[str, object], other: dict[str, object]) -> None:
    mixed = {**{k: v for k, v in other.items() if k not in SOURCE_FEATURES}, **features}
    kept = {k: v for k, v in features.items() if k in SOURCE_FEATURES}
    assert feature_vector(mixed) == feature_vector(kept)


@given(st.dictionaries(names, numbers), st.text(), st.text())
def test_keys_outside_the_contract_never_matter(features: dict[str, object], key: str, value: str) -> None:
    extra = {f"profile.{key}": value, f"x{key}": value}
    assert feature_vector({**extra, **features}) == feature_vector(features)
