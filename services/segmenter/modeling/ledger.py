"""`SqlAuditLedger`: records a training in the audit service's ledger database (counts, no identifiers)."""

from __future__ import annotations

from typing import Any

from services.audit.append import append_to_ledger
from services.audit.settings import AuditSettings


class SqlAuditLedger:
    """Appends through the audit service's own writer, which serializes with the running service."""

    def __init__(self, settings: AuditSettings) -> None:
        self._settings = settings

    def record(self, kind: str, event_id: str, payload: dict[str, Any]) -> None:
        append_to_ledger(self._settings, kind, event_id, payload)
