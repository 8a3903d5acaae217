"""The periodic jobs: grants past their `expires_at` become denied (reason expired) without a
visit; history past its purpose's retention is pseudonymized."""

from __future__ import annotations

from collections import Counter

from services.consent.service import ConsentService
from shared.events import RetentionRun, new_event_id, utcnow
from shared.retention_runs import RetentionRuns


async def expire_all_lapsed(service: ConsentService) -> None:
    """Expire what has lapsed; run every CONSENT_EXPIRY_INTERVAL_S by the service's supervisor,
    which logs a store outage, shows it on /readyz and tries again."""
    while await service.expire_lapsed():
        pass  # a full batch may leave more lapsed grants behind


async def retire_all_past_retention(service: ConsentService, runs: RetentionRuns) -> None:
    """Retire what outlived its retention, then record the run in the ledger (counts only); run
    every CONSENT_RETENTION_INTERVAL_S, supervised."""
    started, customers, rows = utcnow(), 0, Counter[str]()
    while True:  # a full batch may leave more customers behind
        retired, retired_rows = await service.retire_history()
        if not retired:
            break
        customers, rows = customers + retired, rows + retired_rows
    run = RetentionRun(
        event_id=new_event_id(),
        service="consent",
        started_at=started,
        finished_at=utcnow(),
        customers=customers,
        records=dict(rows),
    )
    await runs.record(run)
