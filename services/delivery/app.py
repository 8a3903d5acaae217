"""The delivery service's app: its router on the shared skeleton (`shared.http.create_service_app`)."""

from __future__ import annotations

from fastapi import FastAPI

from services.delivery.api import customers, destinations
from services.delivery.bootstrap import DeliveryRuntime
from services.delivery.settings import DeliverySettings
from shared.http import create_service_app


def create_app(settings: DeliverySettings) -> FastAPI:
    routers = [destinations.router, customers.router]
    return create_service_app("delivery", settings, DeliveryRuntime(settings), routers)
