"""Annotated dependencies of the delivery routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.params import Depends as DependsParam

from services.delivery.bootstrap import DeliveryRuntime
from shared.auth import require_scope


def _runtime(request: Request) -> DeliveryRuntime:
    runtime: DeliveryRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[DeliveryRuntime, Depends(_runtime)]
# require_scope returns a Depends(); typed here so routes can list it in `dependencies`.
DESTINATIONS_READ: DependsParam = require_scope("destinations:read")  # type: ignore[assignment]
DESTINATIONS_WRITE: DependsParam = require_scope("destinations:write")  # type: ignore[assignment]
