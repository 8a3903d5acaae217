"""Synthetic customers drawn from known groups, in the segmenter's feature names (tests, bench, demo)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Group:
    name: str
    purchases: float  # mean purchase count
    order_value: float  # mean spend per purchase
    recency: float  # mean days since the last purchase
    tenure: float  # mean days since the first event
    browsing: float  # mean non-purchase events
    last_seen: float  # mean days since the last event


GROUPS = (
    Group("loyal", purchases=20, order_value=110, recency=4, tenure=700, browsing=40, last_seen=2),
    Group("occasional", purchases=3, order_value=45, recency=75, tenure=300, browsing=15, last_seen=30),
    Group("browsers", purchases=0, order_value=0, recency=0, tenure=45, browsing=25, last_seen=6),
)


def customer_features(group: Group, rng: random.Random) -> dict[str, float | int]:
    """One customer of `group`, with spread around its means."""
    purchases = max(0, round(rng.gauss(group.purchases, group.purchases * 0.15)))
    views = max(1, round(rng.gauss(group.browsing, group.browsing * 0.2)))
    tenure = max(1.0, rng.gauss(group.tenure, group.tenure * 0.1))
    features: dict[str, float | int] = {
        "event_count": purchases + views,
        "events.page_view": views,
        "purchase_count": purchases,
        "total_spend": round(sum(rng.gauss(group.order_value, 8) for _ in range(purchases)), 2),
        "first_seen_days": round(tenure, 2),
        "last_seen_days": round(rng.uniform(0.5, 1.5) * group.last_seen, 2),
    }
    if purchases:
        features["events.purchase"] = purchases
        features["last_purchase_days"] = round(max(0.0, rng.gauss(group.recency, group.recency * 0.2)), 2)
    return features


def population(per_group: int, seed: int = 7) -> list[tuple[int, dict[str, float | int]]]:
    """`per_group` customers of each of `GROUPS`, as (group index, features), shuffled."""
    rng = random.Random(seed)
    people = [(g, customer_features(group, rng)) for g, group in enumerate(GROUPS) for _ in range(per_group)]
    rng.shuffle(people)
    return people
