"""The erasure marker: what the segmenter keeps of an erased customer, to refuse their older input."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErasureMark:
    """When the customer was erased and the consent sequence of the erasure (None when unknown:
    a consent.state tombstone, or a request written before requests carried it). Input dated at or
    before `at_ms`, and consent with a sequence at or below `sequence`, is from before the erasure."""

    at_ms: int
    sequence: int | None = None
