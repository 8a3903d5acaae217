"""Records of processing activities (GDPR Art. 30) from the purpose catalog and the live segments.

Pure: imports only `shared/` and the audit service's own core types.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from services.audit.domain.sources import KnownDefinition
from shared.catalog import PurposeCatalog

DATA_SUBJECTS = "customers of the controller"
MEMBERSHIP_RECIPIENTS = "campaign tools subscribed to segment.membership"
CSV_COLUMNS = (
    "activity",
    "purpose",
    "description",
    "lawful_basis",
    "data_subjects",
    "data_categories",
    "recipients",
    "segments",
    "sale_or_share",
    "retention_days",
)


def activities(
    catalog: PurposeCatalog, definitions: list[KnownDefinition], destinations: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One activity per purpose (with the segments that rely on it and the destinations that get
    them), plus the audit trail itself. `destinations` as the delivery service lists them."""
    live = [d for d in definitions if not d.deleted]
    result = []
    for purpose in catalog.purposes:
        segments = sorted(d.segment_id for d in live if purpose.id in d.payload.get("required_purposes", ()))
        third_parties = [
            _recipient(d)
            for d in destinations
            if purpose.id in d.get("purposes", []) or set(d.get("segments", [])) & set(segments)
        ]
        result.append(
            {
                "activity": f"segmentation for {purpose.id}",
                "purpose": purpose.id,
                "description": purpose.description,
                "lawful_basis": purpose.lawful_basis,
                "data_subjects": DATA_SUBJECTS,
                "data_categories": list(purpose.data_categories),
                "recipients": ([MEMBERSHIP_RECIPIENTS] if segments else []) + third_parties,
                "segments": segments,
                "sale_or_share": purpose.sale_or_share,
                "retention_days": purpose.retention_days,
            }
        )
    result.append(_audit_trail(live))
    return result


def _recipient(destination: dict[str, Any]) -> str:
    """A destination as a recipient (GDPR Art. 30(1)(d), (e)): processor, where, under which agreement."""
    name = f"destination {destination.get('destination_id')} ({destination.get('name')})"
    agreement = destination.get("agreement")
    if not agreement:
        return f"{name}: no data-processing agreement, receives nothing"
    text = (
        f"{name}: processor {agreement['processor']}, {agreement['country']}, transfer"
        f" {agreement['transfer_mechanism']}, agreement {agreement['reference']}"
        f" until {agreement['expires_on']}"
    )
    return text if destination.get("status") != "suspended" else f"{text}, suspended"


def _audit_trail(live: list[KnownDefinition]) -> dict[str, Any]:
    return {
        "activity": "audit trail of consent and segmentation",
        "purpose": "accountability",
        "description": "Tamper-evident, pseudonymized record of consent changes, segment membership "
        "changes, segment definitions and erasure requests (GDPR Art. 5(2), 7(1)).",
        "lawful_basis": "legal_obligation",
        "data_subjects": DATA_SUBJECTS,
        "data_categories": ["pseudonymous consent history", "pseudonymous segment membership history"],
        "recipients": ["auditors and data protection officer (audit:read)"],
        "segments": sorted(d.segment_id for d in live),
        "sale_or_share": False,
        "retention_days": None,
    }


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "; ".join(v) if isinstance(v, list) else v for k, v in row.items()})
    return out.getvalue()
