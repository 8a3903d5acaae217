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
    purchases = _read(features, "purchase_count", 0.0, AMOUNT_CAP)
    spend = _read(features, "total_spend", 0.0, AMOUNT_CAP)
    events = max(
        _read(features, "event_count", 0.0, AMOUNT_CAP), _read(features, "events.purchase", 0.0, AMOUNT_CAP)
    )
    events = max(events, purchases)
    return (
        _read(features, "last_purchase_days", RECENCY_CAP_DAYS, RECENCY_CAP_DAYS),
        _read(features, "last_seen_days", RECENCY_CAP_DAYS, RECENCY_CAP_DAYS),
        purchases,
        spend,
        spend / max(purchases, 1.0) if purchases > 0 else 0.0,
        _read(features, "first_seen_days", 0.0, TENURE_CAP_DAYS),
        purchases / events if events > 0 else 0.0,
    )


_PLAIN = (int, float)


def _read(features: Mapping[str, object], name: str, missing: float, cap: float) -> float:
    """The value as a float clipped to `cap`, or `missing`. Runs on every event: kept to one call."""
    value = features.get(name)
    # bool is an int to Python but never a count or an amount here.
    if type(value) not in _PLAIN and (isinstance(value, bool) or not isinstance(value, int | float)):
        return missing
    number = float(value)  # type: ignore[arg-type]
    # False for NaN as well as for negatives and infinities.
    return min(number, cap) if 0.0 <= number < math.inf else missing
