"""The features a rule may name (contract: Segmenter service, rule language)."""

from __future__ import annotations

import re

SCALAR_FEATURES = frozenset(
    {
        "total_spend",
        "purchase_count",
        "event_count",
        "last_seen_days",
        "last_purchase_days",
        "first_seen_days",
    }
)
# Features that change with the clock alone: segments reading them are swept periodically.
TIME_FEATURES = frozenset({"last_seen_days", "last_purchase_days", "first_seen_days"})
_EVENT_TYPE = re.compile(r"[a-z0-9_.]{1,64}")
# `pref.<key>`: a preference the customer stated on the preference center (shared/catalog.py).
_PROFILE_ATTR = re.compile(r"(?:pref\.)?[A-Za-z_][A-Za-z0-9_]{0,63}")


def is_known_feature(name: str) -> bool:
    if name in SCALAR_FEATURES:
        return True
    family, _, rest = name.partition(".")
    if family == "events":
        return _EVENT_TYPE.fullmatch(rest) is not None
    if family == "profile":
        return _PROFILE_ATTR.fullmatch(rest) is not None
    return False
