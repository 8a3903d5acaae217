"""Entry point: `segwarden serve audit`."""

from __future__ import annotations

from services.audit.app import create_app
from services.audit.settings import AuditSettings
from shared import failpoints
from shared.files import keep_files_private
from shared.http import serve
from shared.logs import configure_logging


def run() -> None:
    keep_files_private()
    settings = AuditSettings()
    configure_logging(settings.log_level, "audit")
    failpoints.configure(settings.failpoints)
    serve(create_app(settings), settings.bind_host, settings.audit_port, "AUDIT_PORT", settings.log_level)
