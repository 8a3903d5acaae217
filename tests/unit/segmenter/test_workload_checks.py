"""The integration tests' stream checks fail on the violations they exist to catch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.events import ConsentChanged, MembershipChanged, new_event_id
from tests.integration.segmenter.workload import Model, check_stream, repeated, replay

T0 = datetime(2026, 11, 30, tzinfo=UTC)


def change(purpose: str, status: str, seconds: int) -> ConsentChanged:
    return ConsentChanged(
        event_id=new_event_id(),
        customer_id="c",
        purpose=purpose,
        status=status,  # type: ignore[arg-type]
        previous_status=None,
        reason="user",
        source="t",
        jurisdiction="GDPR",
        policy_version="1",
        recorded_at=T0 + timedelta(seconds=seconds),
    )


def message(
    action: str, seconds: int, cause: str | None = None, segment: str = "spenders"
) -> MembershipChanged:
    return MembershipChanged(
        event_id=new_event_id(),
        segment_id=segment,
        customer_id="c",
        action=action,  # type: ignore[arg-type]
        reason="rule_matched" if action == "joined" else "consent_withdrawn",
        cause_event_id=cause,
        cause_at=None,
        at=T0 + timedelta(seconds=seconds),
    )


def model_with(*changes: ConsentChanged) -> Model:
    model = Model()
    model.changes["c"].extend(changes)
    return model


def test_a_valid_stream_passes_and_replays() -> None:
    grant, deny = change("marketing_email", "granted", 1), change("marketing_email", "denied", 3)
    stream = [message("joined", 2), message("left", 4, deny.event_id)]
    check_stream(stream, model_with(grant, deny))
    assert replay(stream)["c"] == set()


def test_a_join_without_consent_fails() -> None:
    with pytest.raises(AssertionError, match="join without consent"):
        check_stream([message("joined", 2)], model_with())


def test_a_rejoin_after_an_acted_on_opt_out_fails_until_a_new_grant() -> None:
    grant, deny = change("marketing_email", "granted", 1), change("marketing_email", "denied", 3)
    rejoin = [message("joined", 2), message("left", 4, deny.event_id), message("joined", 5)]
    with pytest.raises(AssertionError, match="join without consent"):
        check_stream(rejoin, model_with(grant, deny))
    regrant = change("marketing_email", "granted", 5)
    check_stream(rejoin[:2] + [message("joined", 6)], model_with(grant, deny, regrant))


def test_a_double_join_fails() -> None:
    grant = change("marketing_email", "granted", 1)
    with pytest.raises(AssertionError, match="twice in a row"):
        check_stream([message("joined", 2), message("joined", 3)], model_with(grant))


def test_a_join_kept_at_the_barrier_is_judged_by_when_it_went_out() -> None:
    """Decided at 2, sent at 5 after a `left` caused by a change recorded at 3: the consent it was
    checked against at the door includes that change, which its `at` (the decision) precedes."""
    grant = change("marketing_email", "granted", 1)
    share, unshare = change("third_party_sharing", "granted", 0), change("third_party_sharing", "denied", 3)
    regulars = [message("joined", 1, segment="regulars"), message("left", 4, unshare.event_id, "regulars")]
    late = message("joined", 2)
    model = model_with(share, grant, unshare)
    with pytest.raises(AssertionError, match="join without consent"):
        check_stream([*regulars, late], model)
    check_stream([*regulars, late], model, {late.event_id: T0 + timedelta(seconds=5)})


def test_a_repeated_event_id_is_one_change_and_named_by_repeated() -> None:
    """At least once: consumers drop a repeat of an event id, so the stream checks pass it; a test
    that forbids repeats (a clean stop) finds it with `repeated`, with the pair's history."""
    grant, deny = change("marketing_email", "granted", 1), change("marketing_email", "denied", 3)
    left = message("left", 4, deny.event_id)
    stream = [message("joined", 2), left, left]
    model = model_with(grant, deny)
    check_stream(stream, model)
    assert repeated(stream[:2], model) == ""
    twice = repeated(stream, model)
    assert twice.startswith("c / spenders announced:") and twice.count(left.event_id) == 2


def test_a_left_twice_in_a_row_shows_the_pairs_history() -> None:
    grant, deny = change("marketing_email", "granted", 1), change("marketing_email", "denied", 3)
    first, second = message("left", 2), message("left", 4, deny.event_id)
    with pytest.raises(AssertionError, match="left twice in a row") as failure:
        check_stream([first, second], model_with(grant, deny))
    assert first.event_id in str(failure.value) and deny.event_id in str(failure.value)
