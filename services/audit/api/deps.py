"""Annotated dependencies of the audit routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, params, status

from services.audit.bootstrap import AuditRuntime
from services.audit.metrics import HEAVY_REFUSED
from shared.auth import require_scope


def _runtime(request: Request) -> AuditRuntime:
    runtime: AuditRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[AuditRuntime, Depends(_runtime)]
# Every seq and size fits the ledger's SQL BIGINT: a larger query integer is a 422 naming it,
# not an overflow in the database driver (a 500).
MAX_SEQ = 2**63 - 1
AUDIT_READ = require_scope("audit:read")


class HeavyRequests:
    """How many more proofs and verifications may run now (AUDIT_HEAVY_REQUESTS at once).

    Each holds a worker thread and a database connection; past the limit a request is refused
    at once with 503 and Retry-After instead of queueing behind the others. Counted on the
    event loop only, so no lock is needed.
    """

    def __init__(self, limit: int) -> None:
        self.free = limit


async def _heavy(request: Request) -> AsyncIterator[None]:
    heavy: HeavyRequests = request.app.state.heavy
    if heavy.free <= 0:
        HEAVY_REFUSED.inc()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "too many proofs and verifications running at once; retry after a second",
            headers={"Retry-After": "1"},
        )
    heavy.free -= 1
    try:
        yield
    finally:
        heavy.free += 1


# A route's `dependencies` entry for work that reads much of the ledger or many of its nodes.
HEAVY = params.Depends(_heavy)
