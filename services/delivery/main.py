"""Entry point: `segwarden serve delivery`."""

from __future__ import annotations

from services.delivery.app import create_app
from services.delivery.settings import DeliverySettings
from shared import failpoints
from shared.files import keep_files_private
from shared.http import serve
from shared.logs import configure_logging


def run() -> None:
    keep_files_private()
    settings = DeliverySettings()
    configure_logging(settings.log_level, "delivery")
    failpoints.configure(settings.failpoints)
    serve(
        create_app(settings), settings.bind_host, settings.delivery_port, "DELIVERY_PORT", settings.log_level
    )
