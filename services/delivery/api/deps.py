"""Annotated dependencies of the delivery routes: the runtime and the scopes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.delivery.bootstrap import DeliveryRuntime
from shared.auth import Principal, require_scope
from shared.http import app_runtime

Runtime = Annotated[DeliveryRuntime, Depends(app_runtime)]
# Each route's first parameter (`_: DestinationsRead`), as in every service.
DestinationsRead = Annotated[Principal, require_scope("destinations:read")]
DestinationsWrite = Annotated[Principal, require_scope("destinations:write")]
# The consent service's export asks with INTERNAL_TOKEN, which has `propagation:read` only.
Dsr = Annotated[Principal, require_scope("dsr", "propagation:read")]
