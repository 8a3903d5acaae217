"""Consent ordered by sequence: any interleaving or duplication of changes and snapshots converges
to the state of the highest sequence; unsequenced records are handled explicitly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.segmenter.domain.consent import ConsentView, PurposeConsent
from services.segmenter.handlers import change_consent, purpose_consent
from shared.events import ConsentChanged, PurposeState

T = 1_800_000_000.0
PURPOSES = ("marketing_email", "marketing_sms", "profiling")

# One customer's history: entry i has sequence i + 1, a purpose, a status and a recorded_at that
# never goes down but often repeats (one group commit stamps several choices alike).
history_entries = st.lists(
    st.tuples(st.sampled_from(PURPOSES), st.sampled_from(("granted", "denied")), st.integers(0, 1)),
    min_size=1,
    max_size=12,
)


def build(entries: list[tuple[str, str, int]]) -> list[tuple[str, PurposeConsent]]:
    out, at = [], T
    for i, (purpose, status, step) in enumerate(entries):
        at += step * 0.001
        out.append((purpose, PurposeConsent(status, None, at, i + 1)))
    return out


def snapshot_at(history: list[tuple[str, PurposeConsent]], k: int) -> dict[str, PurposeConsent]:
    """consent.state as the consent service would publish it after the k-th change."""
    latest: dict[str, PurposeConsent] = {}
    for purpose, state in history[:k]:
        latest[purpose] = state
    return latest


def fold(held: dict[str, PurposeConsent], delivery: dict[str, PurposeConsent]) -> None:
    for purpose, state in delivery.items():
        if state.supersedes(held.get(purpose)):
            held[purpose] = state


@given(history_entries, st.data())
def test_any_interleaving_converges_to_the_highest_sequence(entries: list[Any], data: Any) -> None:
    history = build(entries)
    n = len(history)
    # Deliveries: changes (one purpose) and snapshots (every purpose so far), each possibly repeated,
    # in any order; the last change is always among them (the stream delivers it at least once).
    picks = data.draw(st.lists(st.tuples(st.booleans(), st.integers(1, n)), max_size=20))
    deliveries = [dict([history[k - 1]]) if is_change else snapshot_at(history, k) for is_change, k in picks]
    deliveries.append(dict([history[-1]]))
    deliveries = data.draw(st.permutations(deliveries))
    held: dict[str, PurposeConsent] = {}
    legacy = data.draw(st.sampled_from((None, "granted", "denied")))
    if legacy is not None:  # a state written before sequences existed, recorded "later" than all
        held["marketing_email"] = PurposeConsent(legacy, None, T + 100)
    for delivery in deliveries:
        fold(held, delivery)
    for purpose in PURPOSES:
        delivered = [d[purpose] for d in deliveries if purpose in d]
        if delivered:
            assert held[purpose] == max(delivered, key=lambda s: s.sequence or 0)


def test_an_older_snapshot_sharing_the_timestamp_does_not_undo_a_withdrawal() -> None:
    withdrawal = PurposeConsent("denied", None, T, 5)
    older_grant = PurposeConsent("granted", None, T, 4)
    assert not older_grant.supersedes(withdrawal) and withdrawal.supersedes(older_grant)
    assert not withdrawal.supersedes(withdrawal)  # a redelivery changes nothing


def test_unsequenced_records_lose_to_sequenced_ones_and_order_by_time_between_them() -> None:
    legacy_late = PurposeConsent("granted", None, T + 60)
    sequenced = PurposeConsent("denied", None, T, 1)
    assert sequenced.supersedes(legacy_late) and not legacy_late.supersedes(sequenced)
    earlier, later = PurposeConsent("denied", None, T), PurposeConsent("granted", None, T + 1)
    assert later.supersedes(earlier) and not earlier.supersedes(later)
    tie_grant, tie_denial = PurposeConsent("granted", None, T), PurposeConsent("denied", None, T)
    assert tie_denial.supersedes(tie_grant) and not tie_grant.supersedes(tie_denial)  # fail closed


def _change(status: str, reason: str, sequence: int | None = 3) -> ConsentChanged:
    return ConsentChanged(
        event_id="e-1",
        customer_id="c-1",
        purpose="marketing_email",
        status=status,  # type: ignore[arg-type]
        previous_status="granted",
        reason=reason,  # type: ignore[arg-type]
        source="segwarden-expiry",
        jurisdiction="GDPR",
        policy_version="2026-03",
        recorded_at=datetime.fromtimestamp(T, UTC),
        sequence=sequence,
    )


def test_an_expiry_denial_leaves_with_consent_expired() -> None:
    expired, withdrawn = (
        change_consent(_change("denied", "expired")),
        change_consent(_change("denied", "user")),
    )
    assert expired.sequence == 3 and expired.lapsed and not withdrawn.lapsed
    assert ConsentView({"m": expired}).why_not(["m"], T) == "consent_expired"
    assert ConsentView({"m": withdrawn}).why_not(["m"], T) == "consent_withdrawn"
    by_job = PurposeState(status="denied", effective=False, source="segwarden-expiry", sequence=4)
    ran_out = PurposeState(
        status="granted", effective=False, expires_at=datetime.fromtimestamp(T - 1, UTC), sequence=2
    )
    for state in (by_job, ran_out):
        held = purpose_consent(state, T)
        assert held.status == "denied" and ConsentView({"m": held}).why_not(["m"], T) == "consent_expired"
