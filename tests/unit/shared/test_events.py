"""The topic schemas accept the contract's examples and refuse bad input with the field named."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.events import (
    MAX_ATTRIBUTE_DEPTH,
    MAX_ATTRIBUTE_NAME,
    MAX_ATTRIBUTE_TEXT,
    MAX_ATTRIBUTE_VALUES,
    MAX_EVENT_ATTRIBUTES,
    AuditRecord,
    ConsentChanged,
    CustomerEvent,
    MembershipChanged,
    SegmentDefinition,
    new_event_id,
    new_event_ids,
)

PURCHASE = {
    "event_id": "9b2f",
    "customer_id": "c-1042",
    "type": "purchase",
    "occurred_at": "2026-11-29T10:00:00Z",
    "source": "webshop",
    "attributes": {"amount": 59.90, "currency": "EUR"},
}


def decode(model, payload: dict):
    return model.model_validate_json(json.dumps(payload))


def field_names(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in error["loc"]) for error in exc.errors()}


def test_contract_example_event_round_trips() -> None:
    event = decode(CustomerEvent, PURCHASE)
    assert event.occurred_at.tzinfo is not None
    assert CustomerEvent.model_validate_json(event.to_bytes()) == event


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", "Purchase!"),
        ("customer_id", "has space"),
        ("occurred_at", "2026-11-29T10:00:00"),  # no timezone
        ("event_id", ""),
    ],
)
def test_event_refuses_bad_field_and_names_it(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        decode(CustomerEvent, {**PURCHASE, field: value})
    assert field in field_names(caught.value)


def test_purchase_needs_non_negative_amount() -> None:
    with pytest.raises(ValidationError, match="attributes.amount"):
        decode(CustomerEvent, {**PURCHASE, "attributes": {"amount": -1, "currency": "EUR"}})
    with pytest.raises(ValidationError, match="attributes.currency"):
        decode(CustomerEvent, {**PURCHASE, "attributes": {"amount": 3}})


def with_attributes(attributes_json: str) -> bytes:
    """A purchase whose attributes are raw JSON text (json.dumps would not write NaN as given)."""
    head = json.dumps({k: v for k, v in PURCHASE.items() if k != "attributes"})
    return (head[:-1] + f', "attributes": {attributes_json}}}').encode()


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize(
    "where", ['{"amount": %s, "currency": "EUR"}', '{"amount": 1, "currency": "EUR", "x": [%s]}']
)
def test_only_finite_numbers_are_accepted_in_attributes(number: str, where: str) -> None:
    with pytest.raises(ValidationError, match="must be a finite number") as caught:
        CustomerEvent.model_validate_json(with_attributes(where % number))
    assert field_names(caught.value) == {"attributes"}


@pytest.mark.parametrize(
    ("attributes", "words"),
    [
        ({f"k{i}": 1 for i in range(MAX_EVENT_ATTRIBUTES + 1)}, f"at most {MAX_EVENT_ATTRIBUTES} items"),
        ({"k" * (MAX_ATTRIBUTE_NAME + 1): 1}, f"at most {MAX_ATTRIBUTE_NAME} characters"),
        ({"note": "x" * (MAX_ATTRIBUTE_TEXT + 1)}, f"at most {MAX_ATTRIBUTE_TEXT} characters"),
        ({"tags": list(range(MAX_ATTRIBUTE_VALUES))}, f"more than {MAX_ATTRIBUTE_VALUES} values"),
        ({"deep": [[[[1]]]]}, f"deeper than {MAX_ATTRIBUTE_DEPTH} levels"),
        ({"id": 2**64}, "fit 64 bits"),
    ],
)
def test_attributes_are_bounded(attributes: dict, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        decode(CustomerEvent, {**PURCHASE, "type": "profile_update", "attributes": attributes})


def test_attributes_at_the_bounds_are_accepted() -> None:
    attributes: dict[str, object] = {
        f"k{i}": "x" * MAX_ATTRIBUTE_TEXT for i in range(MAX_EVENT_ATTRIBUTES - 1)
    }
    attributes["deep"] = [[[1.5, -(2**63) + 1]]]
    assert decode(CustomerEvent, {**PURCHASE, "type": "profile_update", "attributes": attributes})


def test_other_event_types_need_no_attributes() -> None:
    event = decode(CustomerEvent, {**PURCHASE, "type": "page.view", "attributes": {}})
    assert event.type == "page.view"


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        decode(CustomerEvent, {**PURCHASE, "email": "a@b.c"})
    assert "email" in field_names(caught.value)


def test_messages_are_immutable() -> None:
    event = decode(CustomerEvent, PURCHASE)
    with pytest.raises(ValidationError):
        event.customer_id = "other"


def test_consent_change_reason_is_closed_set() -> None:
    change = {
        "event_id": "e1",
        "customer_id": "c-1",
        "purpose": "marketing_email",
        "status": "denied",
        "previous_status": "granted",
        "reason": "user",
        "source": "preference-center",
        "jurisdiction": "GDPR",
        "policy_version": "2026-03",
        "recorded_at": "2026-11-29T10:00:00+01:00",
        "expires_at": None,
    }
    assert decode(ConsentChanged, change).reason == "user"
    with pytest.raises(ValidationError) as caught:
        decode(ConsentChanged, {**change, "reason": "because"})
    assert "reason" in field_names(caught.value)


def test_segment_definition_has_rule_or_model() -> None:
    base = {
        "event_id": "e",
        "segment_id": "eu-high-value",
        "name": "EU",
        "updated_at": "2026-11-29T10:00:00Z",
    }
    assert decode(SegmentDefinition, {**base, "rule": "total_spend >= 100"}).rule
    assert decode(SegmentDefinition, {**base, "model": "m1", "cluster": 2}).cluster == 2
    with pytest.raises(ValidationError, match="exactly one of rule or model"):
        decode(SegmentDefinition, base)
    with pytest.raises(ValidationError, match="cluster"):
        decode(SegmentDefinition, {**base, "model": "m1"})


def test_membership_action_and_reason_are_checked() -> None:
    record = {
        "event_id": "e",
        "segment_id": "s",
        "customer_id": "c",
        "action": "left",
        "reason": "consent_withdrawn",
        "cause_event_id": "x",
        "cause_at": "2026-11-29T10:00:00Z",
        "at": "2026-11-29T10:00:01Z",
    }
    assert decode(MembershipChanged, record).action == "left"
    with pytest.raises(ValidationError) as caught:
        decode(MembershipChanged, {**record, "action": "kicked"})
    assert "action" in field_names(caught.value)


def test_audit_record_subject_is_a_pseudonym_not_an_id() -> None:
    record = {
        "seq": 0,
        "at": "2026-11-29T10:00:00Z",
        "kind": "consent_change",
        "subject": "c-1042",
        "event_id": "e",
        "payload": {},
        "prev_hash": "0" * 64,
        "hash": "a" * 64,
    }
    with pytest.raises(ValidationError) as caught:
        decode(AuditRecord, record)
    assert "subject" in field_names(caught.value)


def test_event_ids_made_in_bulk_are_random_version_4_uuids_like_single_ones() -> None:
    ids = new_event_ids(1000)
    assert len(set(ids)) == 1000 and new_event_ids(0) == []
    for made in [*ids, new_event_id()]:
        parsed = uuid.UUID(hex=made)
        assert (parsed.hex, parsed.version, parsed.variant) == (made, 4, uuid.RFC_4122)


@pytest.mark.parametrize(
    "text",
    [
        "1700000000",  # seconds since the epoch, as text: pydantic alone takes it
        "2026-12-01T10:00Z",  # no seconds
        "2026-12-01",  # a date only
        "2026-12-01T10:00:00+0100",  # an offset without its colon
        "2026-12-01T10:00:00 Z",
        " 2026-12-01T10:00:00Z",
    ],
)
def test_a_timestamp_is_an_rfc3339_date_time_or_refused(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        decode(CustomerEvent, {**PURCHASE, "occurred_at": text})
    assert field_names(caught.value) == {"occurred_at"}


# RFC 3339 offsets are whole minutes, less than a day either way.
OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda minutes: timezone(timedelta(minutes=minutes)))


@given(st.datetimes(timezones=OFFSETS), st.sampled_from(["T", "t", " "]))
def test_every_rfc3339_rendering_of_an_aware_time_is_accepted_as_that_time(moment, separator: str) -> None:
    text = moment.isoformat(sep=separator)
    event = decode(CustomerEvent, {**PURCHASE, "occurred_at": text})
    assert event.occurred_at == moment
