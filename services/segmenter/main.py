"""Entry point: `segwarden serve segmenter`."""

from __future__ import annotations

from services.segmenter.app import create_app
from services.segmenter.settings import SegmenterSettings
from shared import failpoints
from shared.files import keep_files_private
from shared.http import serve
from shared.logs import configure_logging


def run() -> None:
    keep_files_private()
    settings = SegmenterSettings()
    configure_logging(settings.log_level, "segmenter")
    failpoints.configure(settings.failpoints)
    serve(
        create_app(settings),
        settings.bind_host,
        settings.segmenter_port,
        "SEGMENTER_PORT",
        settings.log_level,
    )
