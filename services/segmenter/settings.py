"""Settings of the segmenter service."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings, renamed


class SegmenterSettings(ServiceSettings):
    segmenter_port: int = Field(8002, ge=1, le=65535)
    # Between sweeps for time-based features and consent expiry (tests set it small).
    segmenter_sweep_interval_s: float = renamed(
        "segmenter_sweep_interval_s", "sweep_interval_s", default=30.0, gt=0
    )
    # Between compliance scans of every live membership against effective consent.
    segmenter_compliance_interval_s: float = renamed(
        "segmenter_compliance_interval_s", "compliance_interval_s", default=60.0, gt=0
    )
    # Between runs of the retention job (customers inactive past their purposes' retention).
    segmenter_retention_interval_s: float = renamed(
        "segmenter_retention_interval_s", "retention_interval_s", default=3600.0, gt=0
    )
    # A pass over every owned customer waits for live input at most this many times as long as it
    # has worked (a sweep or compliance scan longer while ahead of its interval); 0: never.
    segmenter_pass_pause_ratio: float = Field(3.0, ge=0)
    # customer.events is read in batches of at most this many records; an idle fetch waits this long.
    segmenter_event_batch_size: int = renamed(
        "segmenter_event_batch_size", "event_batch_size", default=500, ge=1, le=10_000
    )
    segmenter_event_batch_wait_s: float = renamed(
        "segmenter_event_batch_wait_s", "event_batch_wait_s", default=0.1, ge=0.001, le=5
    )
    # faust's own web server stays off; if a faust version starts it anyway it binds here.
    segmenter_faust_web_port: int = renamed(
        "segmenter_faust_web_port", "faust_web_port", default=6066, ge=1, le=65535
    )

    @property
    def db_url(self) -> str:
        """`sqlite:///$DATA_DIR/segments.db`, the segmenter's own copy of the definitions (no setting:
        Redis and the topics hold the rest, and each worker keeps its own file)."""
        self.ensure_data_dir()
        return self.sqlite_url("segments.db")

    @property
    def consumer_group(self) -> str:
        """The stream's group (faust's app id); the segmenter's other groups are named after it."""
        return f"{self.topic_prefix}segwarden-segmenter"
