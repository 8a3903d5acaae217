"""`HeavyRequests`: how many more proofs and verifications may run now (AUDIT_HEAVY_REQUESTS at once)."""

from __future__ import annotations


class HeavyRequests:
    """Each heavy request holds a worker thread and a database connection; past the limit one is
    refused at once with 503 and Retry-After (`api/deps.py`, `Heavy`) instead of queueing behind
    the others. Counted on the event loop only, so no lock is needed. One per runtime."""

    def __init__(self, limit: int) -> None:
        self.free = limit
