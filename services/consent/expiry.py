"""The expiry job: grants past their `expires_at` become denied (reason expired) without a visit."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.exc import SQLAlchemyError

from services.consent.service import ConsentService

log = logging.getLogger(__name__)


async def run_expiry(service: ConsentService, interval: float) -> None:
    """Every `interval` seconds, expire what has lapsed; a store outage is logged and retried."""
    while True:
        try:
            while await service.expire_lapsed():
                pass  # a full batch may leave more lapsed grants behind
        except SQLAlchemyError as exc:
            log.error("expiry job failed; will retry", extra={"error": type(exc).__name__})
        await asyncio.sleep(interval)
