"""The periodic jobs: grants past their `expires_at` become denied (reason expired) without a
visit; history past its purpose's retention is pseudonymized."""

from __future__ import annotations

from services.consent.service import ConsentService


async def expire_all_lapsed(service: ConsentService) -> None:
    """Expire what has lapsed; run every CONSENT_EXPIRY_INTERVAL by the service's supervisor,
    which logs a store outage, shows it on /readyz and tries again."""
    while await service.expire_lapsed():
        pass  # a full batch may leave more lapsed grants behind


async def retire_all_past_retention(service: ConsentService) -> None:
    """Retire what outlived its retention; run every CONSENT_RETENTION_INTERVAL, supervised."""
    while await service.retire_history():
        pass  # a full batch may leave more customers behind
