"""`append_to_ledger`: how another process (e.g. the model trainer) records a fact in the ledger.

The database serializes it with the service's own appends (one writer lock); the running
audit service publishes it to `audit.log` within about a second.
"""

from __future__ import annotations

import re
from typing import Any

from services.audit.adapters.sql_database import create_schema, make_engine
from services.audit.adapters.sql_ledger import SqlLedgerStore
from services.audit.domain.ledger import LedgerEntry, SealedRecord
from services.audit.settings import AuditSettings
from shared.pseudonym import load_pseudonym_key, pseudonymize

_KIND = re.compile(r"^[a-z_]{1,64}$")
_FORBIDDEN = {"customer_id", "email", "phone"}


def append_to_ledger(
    settings: AuditSettings,
    kind: str,
    event_id: str,
    payload: dict[str, Any],
    customer_id: str | None = None,
) -> SealedRecord | None:
    """Append one record (kind e.g. `model_trained`); None when `event_id` is already recorded.

    `customer_id`, when given, is stored only as its pseudonym; a payload must not carry
    direct identifiers, so keys like `customer_id` or `email` are refused.
    """
    if not _KIND.match(kind):
        raise ValueError(f"kind: expected [a-z_]{{1,64}}, got {kind!r}")
    if leaked := _FORBIDDEN & payload.keys():
        raise ValueError(f"payload: must not hold direct identifiers ({sorted(leaked)})")
    subject = None if customer_id is None else pseudonymize(load_pseudonym_key(settings), customer_id)
    engine = make_engine(settings.database_url())
    try:
        create_schema(engine)
        result = SqlLedgerStore(engine).append([LedgerEntry(kind, subject, event_id, payload)])
    finally:
        engine.dispose()
    return result.appended[0] if result.appended else None
