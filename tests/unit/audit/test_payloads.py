"""The ledger's payload allow-list: no raw id, no free text beyond a short token, no unlisted field."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from services.audit.domain import payloads, sources
from shared.events import ConsentChanged, MembershipChanged, RetentionRun, SegmentDefinition
from shared.pseudonym import pseudonymize

KEY = b"k" * 32
NOW = datetime(2026, 12, 1, tzinfo=UTC)
EMAIL = "alice@example.com"
LONG = "customer asked by phone on Tuesday, see ticket " + "x" * 200


def consent(source: str, policy_version: str = "v3") -> ConsentChanged:
    return ConsentChanged(
        event_id="e-1",
        customer_id="c-42",
        purpose="profiling",
        status="granted",
        previous_status=None,
        reason="user",
        source=source,
        jurisdiction="GDPR",
        policy_version=policy_version,
        recorded_at=NOW,
    )


def test_free_text_in_a_consent_is_hashed_and_tokens_are_kept() -> None:
    entry = sources.consent_change(KEY, consent(EMAIL, LONG))
    stored = json.dumps(entry.payload)
    assert "alice" not in stored and "ticket" not in stored and "c-42" not in stored
    assert entry.payload["source"] == "hmac:" + pseudonymize(KEY, EMAIL)
    assert entry.payload["policy_version"] == "hmac:" + pseudonymize(KEY, LONG)
    kept = sources.consent_change(KEY, consent("web-form", "2026-11:v3")).payload
    assert kept["source"] == "web-form" and kept["policy_version"] == "2026-11:v3"
    assert kept["status"] == "granted" and kept["purpose"] == "profiling"


def test_a_token_naming_the_customer_or_a_long_number_is_hashed() -> None:
    assert payloads.free_text(KEY, "import:c-42", "c-42").startswith("hmac:")
    assert payloads.free_text(KEY, "4915112345678").startswith("hmac:")
    assert payloads.free_text(KEY, "import:batch-7", "c-42") == "import:batch-7"


def test_a_record_keeps_a_generated_event_id_and_hashes_one_that_names_someone() -> None:
    generated = sources.consent_change(KEY, consent("app"))
    assert generated.event_id == "e-1"
    named = sources.consent_change(KEY, consent("app").model_copy(update={"event_id": f"{EMAIL}-1"}))
    assert named.event_id == "hmac:" + pseudonymize(KEY, f"{EMAIL}-1")
    long_token = "model_trained:rfm:" + "a" * 100
    assert payloads.record_event_id(KEY, long_token) == long_token
    uuid_hex = "0715d4e2e1a943d8a3f9855409092fd8"  # digits in a row by chance: still an id, kept
    assert payloads.record_event_id(KEY, uuid_hex) == uuid_hex


def test_fields_not_on_the_allow_list_are_dropped() -> None:
    fields = {"purpose": "profiling", "status": "denied", "customer_id": EMAIL, "event_id": "e"}
    fields["note"] = EMAIL
    assert payloads.allowed_payload("consent_change", KEY, fields, EMAIL) == {
        "purpose": "profiling",
        "status": "denied",
    }


def test_a_retention_run_is_recorded_with_its_counts_and_no_subject() -> None:
    run = RetentionRun(
        event_id="0715d4e2e1a943d8a3f9855409092fd8",
        service="consent",
        started_at=NOW,
        finished_at=NOW,
        customers=3,
        records={"marketing_email": 5},
    )
    entry = sources.retention_run(KEY, run)
    assert (entry.kind, entry.subject, entry.event_id) == ("retention_run", None, run.event_id)
    assert entry.payload == {
        "service": "consent",
        "started_at": "2026-12-01T00:00:00Z",
        "finished_at": "2026-12-01T00:00:00Z",
        "customers": 3,
        "records": {"marketing_email": 5},
    }


def test_a_membership_cause_chosen_by_the_event_producer_is_hashed() -> None:
    moved = MembershipChanged(
        event_id="m-1",
        segment_id="vip",
        customer_id="c-42",
        action="joined",
        reason="rule_matched",
        cause_event_id=f"order for {EMAIL}",
        cause_at=NOW,
        at=NOW,
    )
    payload = sources.membership_change(KEY, moved).payload
    assert payload["cause_event_id"].startswith("hmac:") and payload["segment_id"] == "vip"
    assert EMAIL not in json.dumps(payload)


def test_a_rule_keeps_its_shape_and_loses_its_identifying_literals() -> None:
    rule = "attributes.email == 'bob@example.com' and country == \"DE\" and note == 'it\\'s me'"
    definition = SegmentDefinition(
        event_id="d-1", segment_id="vip", name="VIP customers", rule=rule, updated_at=NOW
    )
    payload = sources.definition_change(KEY, definition).payload
    assert payload is not None
    assert payload["rule"] == (
        f"attributes.email == 'hmac:{pseudonymize(KEY, 'bob@example.com')}' and country == \"DE\" "
        f"and note == 'hmac:{pseudonymize(KEY, 'it' + chr(92) + chr(39) + 's me')}'"
    )
    assert payload["name"].startswith("hmac:") and "event_id" not in payload


@given(st.text(max_size=300))
def test_any_free_text_becomes_a_token_or_its_pseudonym(text: str) -> None:
    out = payloads.free_text(KEY, text)
    assert out == text or out == "hmac:" + pseudonymize(KEY, text)
    assert payloads.TOKEN.fullmatch(out) or len(out) == 69
    assert "@" not in out and " " not in out
