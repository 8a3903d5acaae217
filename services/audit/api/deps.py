"""Annotated dependencies of the audit routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam

from services.audit.bootstrap import AuditRuntime
from shared.auth import require_scope


def _runtime(request: Request) -> AuditRuntime:
    runtime: AuditRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[AuditRuntime, Depends(_runtime)]
# Every seq and size fits the ledger's SQL BIGINT: a larger query integer is a 422 naming it,
# not an overflow in the database driver (a 500).
MAX_SEQ = 2**63 - 1
# require_scope returns a Depends(); typed here so routers can list it in `dependencies`.
AUDIT_READ: DependsParam = require_scope("audit:read")  # type: ignore[assignment]
