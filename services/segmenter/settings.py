"""Settings of the segmenter service."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class SegmenterSettings(ServiceSettings):
    segmenter_port: int = Field(8002, ge=1, le=65535)
