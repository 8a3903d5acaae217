"""Entry point: `segwarden serve consent`."""

from __future__ import annotations

from services.consent.app import create_app
from services.consent.settings import ConsentSettings
from shared import failpoints
from shared.files import keep_files_private
from shared.http import serve
from shared.logs import configure_logging


def run() -> None:
    keep_files_private()
    settings = ConsentSettings()
    configure_logging(settings.log_level, "consent")
    failpoints.configure(settings.failpoints)
    serve(create_app(settings), settings.bind_host, settings.consent_port, "CONSENT_PORT", settings.log_level)
