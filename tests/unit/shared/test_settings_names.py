"""One naming rule for settings, and the old names of renamed ones still read (docs/contract.md, Settings)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo

from services.audit.settings import AuditSettings
from services.consent.settings import ConsentSettings
from services.delivery.settings import DeliverySettings
from services.segmenter.settings import SegmenterSettings
from shared.settings import ServiceSettings

SERVICES: dict[str, type[ServiceSettings]] = {
    "consent": ConsentSettings,
    "segmenter": SegmenterSettings,
    "audit": AuditSettings,
    "delivery": DeliverySettings,
}
CONTRACT = Path(__file__).resolve().parents[3] / "docs" / "contract.md"
# A duration in seconds ends in `_s`; the Kafka client timings keep Kafka's own milliseconds and
# topic retention its hours and days, each named in the suffix too.
DURATION = re.compile(r"(interval|timeout|wait|ttl|retention|delay|cap)")
UNIT = re.compile(r"_(s|ms|hours|days)$")


def old_names(field: FieldInfo) -> tuple[str, ...]:
    alias = field.validation_alias
    return tuple(str(a) for a in alias.choices[1:]) if isinstance(alias, AliasChoices) else ()


def renames() -> dict[str, str]:
    """Old variable name to new, over every service's settings."""
    return {
        old.upper(): name.upper()
        for cls in SERVICES.values()
        for name, field in cls.model_fields.items()
        for old in old_names(field)
    }


def test_a_setting_only_one_service_reads_starts_with_its_name() -> None:
    shared = set(ServiceSettings.model_fields)
    misnamed = [
        f"{service}: {name}"
        for service, cls in SERVICES.items()
        for name in cls.model_fields
        if name not in shared and not name.startswith(f"{service}_")
    ]
    assert misnamed == []


def test_every_duration_names_its_unit() -> None:
    names = {name for cls in SERVICES.values() for name in cls.model_fields}
    assert [n for n in sorted(names) if DURATION.search(n) and not UNIT.search(n)] == []
    assert [n for n in sorted(names) if n.endswith("_seconds")] == []


def test_a_renamed_field_reads_its_own_name_first() -> None:
    for cls in SERVICES.values():
        for name, field in cls.model_fields.items():
            if isinstance(field.validation_alias, AliasChoices):
                assert field.validation_alias.choices[0] == name, name


def test_an_old_variable_still_sets_the_setting_and_the_new_one_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONSENT_EXPIRY_INTERVAL", "5")
    assert ConsentSettings().consent_expiry_interval_s == 5
    monkeypatch.setenv("CONSENT_EXPIRY_INTERVAL_S", "7")
    assert ConsentSettings().consent_expiry_interval_s == 7


@pytest.mark.parametrize("service", SERVICES)
def test_every_old_variable_of_a_service_still_reads(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = SERVICES[service]
    expected: dict[str, object] = {}
    for name, field in cls.model_fields.items():
        for old in old_names(field):
            # A value other than the default, within every bound: twice a number, a text reversed
            # (same characters and length, so its pattern still holds), else a name.
            default = field.default
            if isinstance(default, str):
                value: object = default[::-1]
            else:
                value = "prefs.example" if default is None else default * 2
            monkeypatch.setenv(old.upper(), str(value))
            expected[name] = value
    settings = cls()
    for name, value in expected.items():
        got = getattr(settings, name)
        # Compared as text: a Path or a secret holds the same characters as its variable.
        assert str(got.get_secret_value() if isinstance(got, SecretStr) else got) == str(value), name


def test_the_contract_lists_every_renamed_variable() -> None:
    section = CONTRACT.read_text().split("### Renamed variables", 1)[1].split("\n## ", 1)[0]
    listed = dict(re.findall(r"^\| `([A-Z0-9_]+)` \| `([A-Z0-9_]+)` \|", section, re.MULTILINE))
    assert listed == renames()


def test_the_contract_table_names_every_setting_of_every_service() -> None:
    table = CONTRACT.read_text().split("## Settings", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([A-Z0-9_]+)`", table))
    every = {name.upper() for cls in SERVICES.values() for name in cls.model_fields}
    missing = sorted(name for name in every if name not in named)
    assert missing == ["FAILPOINTS"]  # test-only fault injection, deliberately not in the contract


def test_no_other_document_keeps_a_settings_table() -> None:
    every = {name.upper() for cls in SERVICES.values() for name in cls.model_fields}
    documents = [CONTRACT.parent.parent / "README.md", *CONTRACT.parent.glob("*.md")]
    rows = [
        f"{document.name}: {row}"
        for document in documents
        if document != CONTRACT
        for row in re.findall(r"^\| `([A-Z0-9_]+)`", document.read_text(), re.MULTILINE)
        if row in every
    ]
    assert rows == []
