"""The consent policy without I/O: defaults, effective state, GPC, no-op choices, expiry, erasure."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.consent.domain.consent import CurrentConsent, InvalidConsentError, RecordConsent
from services.consent.domain.policy import ConsentPolicy
from shared.catalog import load_catalog
from shared.events import ConsentStatus

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
POLICY = ConsentPolicy(load_catalog())


STATUSES: tuple[ConsentStatus, ...] = ("granted", "denied")


# `fields` are any of RecordConsent's, each of its own type: `replace` checks them at run time.
def command(
    purpose: str = "marketing_email", status: ConsentStatus = "granted", **fields: Any
) -> RecordConsent:
    base = RecordConsent("c-1", purpose, status, "preference-center", "GDPR", "2026-03")
    return replace(base, **fields)


def current(status: ConsentStatus = "granted", expires_at: datetime | None = None) -> CurrentConsent:
    return CurrentConsent(status, NOW - timedelta(days=1), "app", "CCPA", "2025-01", expires_at)


def test_without_records_every_purpose_is_denied() -> None:
    states = POLICY.states({}, NOW)
    assert set(states) == set(POLICY.catalog.ids)
    assert all(s.status == "denied" and not s.effective and s.recorded_at is None for s in states.values())


def test_a_grant_is_effective_until_it_expires() -> None:
    record = current(expires_at=NOW + timedelta(hours=1))
    assert POLICY.effective_status("profiling", {"profiling": record}, NOW) == "granted"
    assert POLICY.effective_status("profiling", {"profiling": record}, NOW + timedelta(hours=1)) == "denied"
    lapsed = POLICY.states({"profiling": record}, NOW + timedelta(hours=2))["profiling"]
    assert (lapsed.status, lapsed.effective) == ("granted", False)


def test_a_first_grant_publishes_and_names_no_previous_status() -> None:
    [entry] = POLICY.decide(command(), {}, NOW)
    assert (entry.status, entry.previous_status, entry.reason, entry.method, entry.publishes) == (
        "granted",
        None,
        "user",
        "api",
        True,
    )
    assert entry.to_event().event_id == entry.event_id


def test_a_choice_that_keeps_the_effective_state_is_recorded_but_not_published() -> None:
    [first_denial] = POLICY.decide(command(status="denied"), {}, NOW)
    [regrant] = POLICY.decide(command(source="app"), {"marketing_email": current()}, NOW)
    assert not first_denial.publishes and not regrant.publishes
    assert regrant.previous_status == "granted"


def test_a_denial_after_a_lapsed_grant_publishes_because_nobody_heard_of_the_lapse() -> None:
    lapsed = {"marketing_email": current(expires_at=NOW - timedelta(seconds=1))}
    [entry] = POLICY.decide(command(status="denied"), lapsed, NOW)
    assert entry.publishes and entry.previous_status == "granted"


def test_gpc_denies_every_sale_or_share_purpose_with_reason_gpc() -> None:
    entries = POLICY.decide(command(gpc=True), {"third_party_sharing": current()}, NOW)
    assert [(e.purpose, e.status, e.reason, e.method, e.publishes) for e in entries] == [
        ("marketing_email", "granted", "user", "api", True),
        ("third_party_sharing", "denied", "gpc", "gpc", True),
    ]


def test_gpc_overrides_a_grant_of_a_sale_or_share_purpose() -> None:
    [entry] = POLICY.decide(command("third_party_sharing", gpc=True), {}, NOW)
    assert (entry.status, entry.reason, entry.publishes) == ("denied", "gpc", False)


@pytest.mark.parametrize(
    ("cmd", "field"),
    [
        (command("no_such_purpose"), "purpose"),
        (command(expires_at=NOW - timedelta(seconds=1)), "expires_at"),
        (command(expires_at=datetime(2099, 1, 1)), "expires_at"),
    ],
)
def test_invalid_commands_name_the_field(cmd: RecordConsent, field: str) -> None:
    with pytest.raises(InvalidConsentError) as raised:
        POLICY.decide(cmd, {}, NOW)
    assert raised.value.field == field and field in str(raised.value)


def test_expiry_denies_only_lapsed_grants() -> None:
    records = {
        "marketing_email": current(expires_at=NOW - timedelta(seconds=1)),
        "marketing_sms": current(expires_at=NOW + timedelta(days=1)),
        "profiling": current(),
        "personalization": current("denied"),
    }
    [entry] = POLICY.expire("c-1", records, NOW)
    assert (entry.purpose, entry.status, entry.previous_status, entry.reason, entry.method) == (
        "marketing_email",
        "denied",
        "granted",
        "expired",
        "expiry",
    )
    assert entry.publishes and entry.jurisdiction == "CCPA" and entry.policy_version == "2025-01"


def test_erasure_withdraws_every_recorded_grant() -> None:
    records = {"marketing_email": current(), "profiling": current("denied")}
    assert [(e.purpose, e.reason, e.status) for e in POLICY.erase("c-1", records, NOW)] == [
        ("marketing_email", "erasure", "denied")
    ]


def test_a_snapshot_holds_every_catalog_purpose() -> None:
    snapshot = POLICY.snapshot("c-1", {"profiling": current()}, NOW)
    assert set(snapshot.purposes) == set(POLICY.catalog.ids)
    assert snapshot.purposes["profiling"].effective and not snapshot.purposes["marketing_email"].effective


choices = st.lists(
    st.tuples(st.sampled_from(POLICY.catalog.ids), st.sampled_from(STATUSES), st.booleans()),
    max_size=25,
)


@given(choices)
def test_published_changes_replay_to_the_effective_state(
    steps: list[tuple[str, ConsentStatus, bool]],
) -> None:
    """A reader that applies only published changes ends where the store is, whatever was asked."""
    records: dict[str, CurrentConsent] = {}
    seen_by_reader: dict[str, str] = {}
    for purpose, status, gpc in steps:
        for entry in POLICY.decide(command(purpose, status, gpc=gpc), records, NOW):
            records[entry.purpose] = entry.as_current()
            if entry.publishes:
                assert seen_by_reader.get(entry.purpose, "denied") != entry.status
                seen_by_reader[entry.purpose] = entry.status
    states = POLICY.states(records, NOW)
    assert {p: seen_by_reader.get(p, "denied") for p in POLICY.catalog.ids} == {
        p: s.status for p, s in states.items()
    }
    if any(gpc for _, _, gpc in steps):
        last_gpc = max(i for i, (_, _, gpc) in enumerate(steps) if gpc)
        later = {p for p, s, _ in steps[last_gpc + 1 :] if s == "granted"}
        assert all(states[p].status == "denied" for p in POLICY.catalog.sale_or_share_ids if p not in later)


def test_the_default_follows_the_latest_record_by_sequence_not_by_clock() -> None:
    catalog = POLICY.catalog.model_copy(
        update={
            "purposes": tuple(
                p.model_copy(update={"defaults": {"GDPR": "denied", "CCPA": "granted", "OTHER": "denied"}})
                if p.id == "personalization"
                else p
                for p in POLICY.catalog.purposes
            )
        }
    )
    policy = ConsentPolicy(catalog)
    # The CCPA record is newer (higher sequence) though its clock read earlier (a step back).
    gdpr = replace(current(), jurisdiction="GDPR", recorded_at=NOW, sequence=7)
    ccpa = replace(current(), jurisdiction="CCPA", recorded_at=NOW - timedelta(seconds=30), sequence=8)
    states = policy.states({"marketing_email": gdpr, "profiling": ccpa}, NOW)
    assert states["personalization"].status == "granted"
    # A pre-sequence record (null) is older than any numbered one, whatever its time.
    old = replace(ccpa, recorded_at=NOW + timedelta(days=1), sequence=None)
    states = policy.states({"marketing_email": gdpr, "profiling": old}, NOW)
    assert states["personalization"].status == "denied"


def test_a_renewal_publishes_and_a_true_repeat_does_not() -> None:
    old_end, new_end = NOW + timedelta(days=1), NOW + timedelta(days=30)
    held = {"marketing_email": current(expires_at=old_end)}
    [renewal] = POLICY.decide(command(expires_at=new_end), held, NOW)
    assert (renewal.status, renewal.previous_status, renewal.publishes) == ("granted", "granted", True)
    assert renewal.to_event().expires_at == new_end
    [open_ended] = POLICY.decide(command(), held, NOW)  # the expiry removed: also a change
    assert open_ended.publishes and open_ended.expires_at is None
    [repeat] = POLICY.decide(command(source="app", expires_at=old_end), held, NOW)
    assert not repeat.publishes
    [denied_again] = POLICY.decide(command(status="denied", expires_at=new_end), {}, NOW)
    assert not denied_again.publishes  # a denial's expires_at is ignored: nothing changed


def test_a_choice_keeps_the_notice_version_it_was_made_under_and_gpc_rows_none() -> None:
    choice = POLICY.decide(command(notice_version=1, gpc=True), {}, NOW)
    assert [(e.purpose, e.reason, e.notice_version) for e in choice] == [
        ("marketing_email", "user", 1), ("third_party_sharing", "gpc", None),
    ]  # fmt: skip
    state = POLICY.states({"marketing_email": choice[0].as_current()}, NOW)["marketing_email"]
    assert state.notice_version == 1


@pytest.mark.parametrize("version", [0, 2])
def test_a_notice_version_the_catalog_never_showed_is_refused(version: int) -> None:
    with pytest.raises(InvalidConsentError) as refused:
        POLICY.decide(command(notice_version=version), {}, NOW)
    assert refused.value.field == "notice_version"
