"""Annotated dependencies of the audit routes: the runtime, the scope, the bound on heavy requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, status

from services.audit.bootstrap import AuditRuntime
from services.audit.metrics import HEAVY_REFUSED
from shared.auth import Principal, require_scope
from shared.http import app_runtime

Runtime = Annotated[AuditRuntime, Depends(app_runtime)]
# Each route's first parameter (`_: AuditRead`), as in every service.
AuditRead = Annotated[Principal, require_scope("audit:read")]
# Every seq and size fits the ledger's SQL BIGINT: a larger query integer is a 422 naming it,
# not an overflow in the database driver (a 500).
MAX_SEQ = 2**63 - 1


async def _heavy(runtime: Runtime) -> AsyncIterator[None]:
    heavy = runtime.heavy
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


# A parameter, after the scope, of a route that reads much of the ledger or many of its nodes.
Heavy = Annotated[None, Depends(_heavy)]
