"""Settings of the segmenter service."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class SegmenterSettings(ServiceSettings):
    segmenter_port: int = Field(8002, ge=1, le=65535)
    # Seconds between sweeps for time-based features and consent expiry (tests set it small).
    sweep_interval_s: float = Field(30.0, gt=0)
    # Seconds between compliance scans of every live membership against effective consent.
    compliance_interval_s: float = Field(60.0, gt=0)
    # Seconds between runs of the retention job (customers inactive past their purposes' retention).
    retention_interval_s: float = Field(3600.0, gt=0)
    # Events are taken from the stream in batches of at most this many, waiting this long.
    event_batch_size: int = Field(500, ge=1, le=10_000)
    event_batch_wait_s: float = Field(0.1, ge=0.001, le=5)
    # faust's own web server stays off; if a faust version starts it anyway it binds here.
    faust_web_port: int = Field(6066, ge=1, le=65535)
