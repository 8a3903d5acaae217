"""Annotated dependencies of the delivery routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.delivery.bootstrap import DeliveryRuntime
from shared.auth import require_scope


def _runtime(request: Request) -> DeliveryRuntime:
    runtime: DeliveryRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[DeliveryRuntime, Depends(_runtime)]
DESTINATIONS_READ = require_scope("destinations:read")
DESTINATIONS_WRITE = require_scope("destinations:write")
# The consent service's export asks with INTERNAL_TOKEN, which has `propagation:read` only.
DSR = require_scope("dsr", "propagation:read")
