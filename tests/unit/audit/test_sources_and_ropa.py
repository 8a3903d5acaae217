"""What source events become: no raw identifiers, stable subjects, definitions de-duplicated; the RoPA."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

from services.audit.domain import ropa, sources
from shared.catalog import load_catalog
from shared.events import ConsentChanged, MembershipChanged, SegmentDefinition

KEY = b"k" * 32
NOW = datetime(2026, 11, 30, tzinfo=UTC)


def definition(event_id: str = "d-1", rule: str = "total_spend >= 100") -> SegmentDefinition:
    return SegmentDefinition(
        event_id=event_id,
        segment_id="vip",
        name="VIP",
        rule=rule,
        required_purposes=("marketing_email",),
        updated_at=NOW,
    )


def test_customer_events_carry_the_pseudonym_and_no_raw_id() -> None:
    change = ConsentChanged(
        event_id="e-1",
        customer_id="alice@example.com",
        purpose="profiling",
        status="denied",
        previous_status="granted",
        reason="user",
        source="app",
        jurisdiction="GDPR",
        policy_version="v1",
        recorded_at=NOW,
    )
    moved = MembershipChanged(
        event_id="e-2",
        segment_id="vip",
        customer_id="alice@example.com",
        action="left",
        reason="consent_withdrawn",
        cause_event_id="e-1",
        cause_at=NOW,
        at=NOW,
    )
    for entry in (sources.consent_change(KEY, change), sources.membership_change(KEY, moved)):
        assert entry.subject == hmac.new(KEY, b"alice@example.com", hashlib.sha256).hexdigest()
        assert "alice" not in json.dumps(entry.payload) and "customer_id" not in entry.payload
    assert sources.consent_change(KEY, change).payload["status"] == "denied"


def test_definitions_are_recorded_when_new_or_changed_and_deleted_once() -> None:
    first, state = sources.resolve_definition(sources.definition_change(KEY, definition()), None)
    assert first is not None and first.kind == "segment_defined" and state is not None
    same, _ = sources.resolve_definition(sources.definition_change(KEY, definition("d-2")), state)
    assert same is None  # republished with a new event id, same content
    changed, state = sources.resolve_definition(
        sources.definition_change(KEY, definition("d-3", "total_spend >= 5")), state
    )
    assert changed is not None and changed.event_id == "d-3"
    deleted, state = sources.resolve_definition(sources.DefinitionChange("vip"), state)
    assert deleted is not None and deleted.kind == "segment_deleted" and deleted.event_id == "d-3:deleted"
    again, _ = sources.resolve_definition(sources.DefinitionChange("vip"), state)
    assert again is None
    unknown, _ = sources.resolve_definition(sources.DefinitionChange("ghost"), None)
    assert unknown is None


def test_ropa_lists_each_purpose_with_the_live_segments_that_need_it() -> None:
    live = sources.KnownDefinition("vip", "d-1", {"required_purposes": ["marketing_email"]}, False)
    gone = sources.KnownDefinition("old", "d-0", {"required_purposes": ["marketing_email"]}, True)
    rows = ropa.activities(load_catalog(), [live, gone], [])
    email = next(r for r in rows if r["purpose"] == "marketing_email")
    assert email["segments"] == ["vip"] and email["recipients"] and email["lawful_basis"] == "consent"
    assert next(r for r in rows if r["purpose"] == "profiling")["segments"] == []
    text = ropa.to_csv(rows)
    assert text.splitlines()[0] == ",".join(ropa.CSV_COLUMNS) and len(text.splitlines()) == len(rows) + 1


def test_ropa_lists_destinations_as_recipients_of_what_they_receive() -> None:
    live = sources.KnownDefinition("vip", "d-1", {"required_purposes": ["marketing_email"]}, False)
    agreement = {
        "processor": "Ads Inc",
        "reference": "DPA-9",
        "expires_on": "2027-01-01",
        "country": "US",
        "transfer_mechanism": "scc",
    }
    by_segment = {"destination_id": "mailer", "name": "Mailer", "segments": ["vip"], "purposes": []}
    by_purpose = {"destination_id": "ads", "name": "Ads", "segments": [], "purposes": ["profiling"]}
    rows = ropa.activities(
        load_catalog(),
        [live],
        [by_segment | {"agreement": None}, by_purpose | {"agreement": agreement, "status": "active"}],
    )
    recipients = {r["purpose"]: r["recipients"] for r in rows}
    assert recipients["marketing_email"][1:] == [
        "destination mailer (Mailer): no data-processing agreement, receives nothing"
    ]
    assert recipients["profiling"] == [
        "destination ads (Ads): processor Ads Inc, US, transfer scc, agreement DPA-9 until 2027-01-01"
    ]
