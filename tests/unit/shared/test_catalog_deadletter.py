"""The purpose catalog fails closed; dead-letter reasons name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from shared.catalog import load_catalog
from shared.deadletter import dead_letter_for, describe_error
from shared.events import CustomerEvent, DeadLetter
from shared.pseudonym import pseudonymize

KEY = b"k" * 32


def test_shipped_catalog_has_the_contract_purposes_all_denied_by_default() -> None:
    catalog = load_catalog()
    assert set(catalog.ids) == {
        "marketing_email",
        "marketing_sms",
        "personalization",
        "profiling",
        "third_party_sharing",
    }
    for purpose in catalog.purposes:
        for jurisdiction in ("GDPR", "CCPA", "OTHER"):
            assert purpose.default_for(jurisdiction) == "denied"
    assert catalog.sale_or_share_ids == ("third_party_sharing",)
    assert catalog.get("nope") is None


def test_catalog_file_override(tmp_path: Path) -> None:
    path = tmp_path / "purposes.yaml"
    path.write_text(
        "purposes:\n  - {id: analytics, description: d, lawful_basis: legitimate_interest,"
        " defaults: {OTHER: granted}, retention_days: 30}\n"
    )
    catalog = load_catalog(path)
    assert catalog.ids == ("analytics",)
    analytics = catalog.get("analytics")
    assert analytics is not None
    assert analytics.default_for("OTHER") == "granted" and analytics.default_for("GDPR") == "denied"


def test_bad_catalog_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "purposes.yaml"
    path.write_text(
        "purposes:\n  - {id: Bad-Id, description: d, lawful_basis: x, defaults: {}, retention_days: 1}\n"
    )
    with pytest.raises(ValidationError):
        load_catalog(path)


def test_dead_letter_names_the_failing_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        CustomerEvent.model_validate_json(b'{"event_id": "e", "customer_id": "c", "type": "x"}')
    reason = describe_error(caught.value)
    assert "occurred_at" in reason and "source" in reason


def test_dead_letter_keeps_the_raw_value_and_position() -> None:
    record = ConsumerRecord(
        topic="p.customer.events",
        partition=2,
        offset=41,
        timestamp=0,
        timestamp_type=0,
        key=b"c-1",
        value=b"\xffnot json",
        checksum=None,
        serialized_key_size=3,
        serialized_value_size=9,
        headers=(),
    )
    letter = dead_letter_for(record, "bad", KEY)
    assert DeadLetter.model_validate_json(letter.to_bytes()) == letter
    assert (letter.topic, letter.partition, letter.offset) == ("p.customer.events", 2, 41)
    assert letter.value.endswith("not json")
    assert (letter.value_bytes, letter.truncated) == (9, False)
    assert letter.key_pseudonym == pseudonymize(KEY, "c-1")


def big_record(value: bytes, key: bytes | None = b"c-1") -> ConsumerRecord:
    return ConsumerRecord("p.customer.events", 0, 7, 0, 0, key, value, None, 3, len(value), ())


def test_a_dead_letter_keeps_a_bounded_prefix_cut_on_a_character_boundary() -> None:
    value = b'{"customer_id": "c-1", "x": "' + "\u00e9".encode() * 600_000  # 29 bytes, then 2 a character
    letter = dead_letter_for(big_record(value), "e" * 5000, KEY, max_value_bytes=4096)
    assert letter.truncated and letter.value_bytes == len(value)
    assert len(letter.value.encode()) <= 4096 and "\ufffd" not in letter.value
    assert len(letter.error) == 1024
    assert len(letter.to_bytes()) < 16 * 1024


def test_a_record_without_a_key_has_no_pseudonym() -> None:
    letter = dead_letter_for(big_record(b"{}", key=None), "bad", KEY)
    assert letter.key_pseudonym is None and not letter.truncated
