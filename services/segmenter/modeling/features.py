"""The minimized numeric feature vector of one customer, from the segmenter's feature names.

Pure: standard library only. Only the counters and day counts named below are read; profile
attributes (free text, locations) and identifiers never reach a model, whatever the mapping holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# Recency of a customer with no purchase (or no event): a year, the edge of what "recent" means to
# a marketer; larger day counts are clipped to it so one dormant customer cannot stretch the scale.
RECENCY_CAP_DAYS = 365.0
# Tenure is clipped too (ten years), for the same reason.
TENURE_CAP_DAYS = 3650.0
# Counts and amounts beyond this are clipped: no real customer gets there, and it keeps every
# derived ratio finite whatever a corrupt counter says.
AMOUNT_CAP = 1e12

# The segmenter's feature names the vector reads: an event that changes none of them cannot move a
# customer to another cluster (what a segment index keys model segments on).
SOURCE_FEATURES = frozenset(
    {
        "total_spend",
        "purchase_count",
        "event_count",
        "events.purchase",
        "last_seen_days",
        "last_purchase_days",
        "first_seen_days",
    }
)

FEATURES: tuple[str, ...] = (
    "recency_days",  # days since the last purchase, RECENCY_CAP_DAYS if none
    "inactivity_days",  # days since the last event of any type, RECENCY_CAP_DAYS if none
    "frequency",  # purchases
    "monetary",  # total spend
    "avg_order_value",  # spend per purchase, 0 without purchases
    "tenure_days",  # days since the first event, 0 if unknown
    "purchase_share",  # purchases among all events, 0 without events
)


def feature_vector(features: Mapping[str, object]) -> tuple[float, ...]:
    """The customer's vector in `FEATURES` order; every entry finite and non-negative.

    A missing, non-numeric, negative or non-finite input counts as absent (the documented
    default), so a malformed counter can never crash training or online assignment.
    """
    purchases = _amount(features, "purchase_count")
    spend = _amount(features, "total_spend")
    events = max(_amount(features, "event_count"), _amount(features, "events.purchase"), purchases)
    return (
        _days(features, "last_purchase_days", RECENCY_CAP_DAYS),
        _days(features, "last_seen_days", RECENCY_CAP_DAYS),
        purchases,
        spend,
        spend / max(purchases, 1.0) if purchases > 0 else 0.0,
        min(_amount(features, "first_seen_days"), TENURE_CAP_DAYS),
        purchases / events if events > 0 else 0.0,
    )


def _number(features: Mapping[str, object], name: str) -> float | None:
    value = features.get(name)
    # bool is an int to Python but never a count or an amount here.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _amount(features: Mapping[str, object], name: str) -> float:
    number = _number(features, name)
    return 0.0 if number is None else min(number, AMOUNT_CAP)


def _days(features: Mapping[str, object], name: str, cap: float) -> float:
    number = _number(features, name)
    return cap if number is None else min(number, cap)
