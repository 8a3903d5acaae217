"""A customer's stored counters turned into the rule features of the contract."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

DAY = 86400.0
# Field names of the stored feature hash (short: one hash per customer in Redis).
SPEND, PURCHASES, EVENTS, FIRST, LAST, LAST_PURCHASE = (
    "spend",
    "purchases",
    "events",
    "first",
    "last",
    "lastp",
)
EVENT_PREFIX, PROFILE_PREFIX = "e:", "p:"


def rule_features(stored: Mapping[str, str], now: float) -> CustomerFeatures:
    """Feature name -> value; a feature the customer lacks is absent (its comparisons are false)."""
    features = CustomerFeatures()
    if not stored:
        return features
    features.update(
        {
            "total_spend": float(stored.get(SPEND, 0)),
            "purchase_count": int(stored.get(PURCHASES, 0)),
            "event_count": int(stored.get(EVENTS, 0)),
        }
    )
    for field, name in (
        (FIRST, "first_seen_days"),
        (LAST, "last_seen_days"),
        (LAST_PURCHASE, "last_purchase_days"),
    ):
        if field in stored:
            features[name] = _days_since(float(stored[field]), now)
    for field, raw in stored.items():
        if field.startswith(EVENT_PREFIX):
            features["events." + field[len(EVENT_PREFIX) :]] = int(raw)
        elif field.startswith(PROFILE_PREFIX):
            value = _profile_value(raw)
            if value is not None:  # a profile_update's null removes the attribute (a preference)
                features["profile." + field[len(PROFILE_PREFIX) :]] = value
    return features


# Profile values as JSON text -> their (immutable) value: a customer's are parsed at every
# evaluation, the same few (a country, a tier) for many customers, and json.loads took longer
# than the rest of rule_features. Short texts only, emptied when full.
_PROFILE_VALUES: dict[str, Any] = {}
PROFILE_CACHE_CAP, PROFILE_CACHE_TEXT = 4096, 64
_UNPARSED = object()


def _profile_value(raw: str) -> Any:
    value = _PROFILE_VALUES.get(raw, _UNPARSED)
    if value is _UNPARSED:
        value = json.loads(raw)
        if len(raw) <= PROFILE_CACHE_TEXT and (value is None or isinstance(value, str | int | float)):
            if len(_PROFILE_VALUES) >= PROFILE_CACHE_CAP:
                _PROFILE_VALUES.clear()
            _PROFILE_VALUES[raw] = value
    return value


class CustomerFeatures(dict[str, Any]):
    """Features of a known customer: `events.<type>` they never sent counts 0, not missing."""

    def get(self, name: str, default: Any = None) -> Any:
        if name in self:
            return self[name]
        if self and name.startswith("events."):
            return 0
        return default


def _days_since(then: float, now: float) -> int:
    """Whole days elapsed; an event stamped in the future counts as today."""
    return max(0, math.floor((now - then) / DAY))
