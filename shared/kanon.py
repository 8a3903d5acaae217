"""k-anonymity for aggregate stats: no published group is smaller than k (K_ANONYMITY): the
segmenter's segment breakdowns, the preference center's data-use answers."""

from __future__ import annotations

from collections.abc import Mapping

SUPPRESSED = "_suppressed"


def suppress_small_groups(counts: Mapping[str, int], k: int) -> dict[str, int]:
    """Groups under k merge into `_suppressed`, which is itself dropped when still under k."""
    kept = {group: n for group, n in counts.items() if n >= k}
    small = sum(n for n in counts.values() if n < k)
    if small >= k:
        kept[SUPPRESSED] = small
    return dict(sorted(kept.items()))
