"""Routing: what each destination should hold, and the joins and leaves that get it there."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from services.delivery.domain.destinations import Agreement, Destination
from services.delivery.domain.routing import Cause, Consent, merge_consent, newest_changes, plan
from tests.unit.delivery.test_destinations import TODAY, agreement

JOINED = Cause("m-1", "membership", "rule_matched")
LEFT = Cause("m-2", "membership", "rule_unmatched")
WITHDRAWN = Cause("c-1", "consent", "user")


def destination(
    destination_id: str = "mailer",
    segments: tuple[str, ...] = ("vip",),
    purposes: tuple[str, ...] = ("marketing_email",),
    deal: Agreement | None = None,
) -> Destination:
    return Destination(
        destination_id,
        destination_id,
        "https://example.test/hook",
        frozenset(segments),
        frozenset(purposes),
        deal or agreement(),
        "pseudonym",
        "s" * 32,
    )


GRANTED: Consent = {"marketing_email": (True, 1)}


def test_a_consented_member_is_joined_at_every_linked_destination() -> None:
    intents = plan(
        [destination("a"), destination("b", segments=("other",))], TODAY, {"vip"}, GRANTED, set(), JOINED
    )
    assert [(i.destination_id, i.segment_id, i.action, i.reason) for i in intents] == [
        ("a", "vip", "joined", "rule_matched")
    ]


def test_without_the_destination_purpose_nothing_is_sent() -> None:
    assert plan([destination()], TODAY, {"vip"}, {"marketing_email": (False, 2)}, set(), JOINED) == []
    assert plan([destination()], TODAY, {"vip"}, {}, set(), JOINED) == []


def test_a_withdrawal_leaves_although_the_segment_still_holds() -> None:
    held = {("mailer", "vip")}
    intents = plan([destination()], TODAY, {"vip"}, {"marketing_email": (False, 2)}, held, WITHDRAWN)
    assert [(i.action, i.reason) for i in intents] == [("left", "consent_withdrawn")]


def test_a_segment_left_is_passed_on_with_its_reason() -> None:
    intents = plan([destination()], TODAY, set(), GRANTED, {("mailer", "vip")}, LEFT)
    assert [(i.action, i.reason) for i in intents] == [("left", "rule_unmatched")]


def test_an_erasure_leaves_every_destination_with_reason_erased() -> None:
    erased = Cause("e-1", "erasure", "erased")
    held = {("a", "vip"), ("b", "vip")}
    intents = plan([destination("a"), destination("b")], TODAY, set(), {}, held, erased)
    assert [(i.destination_id, i.action, i.reason) for i in intents] == [
        ("a", "left", "erased"),
        ("b", "left", "erased"),
    ]


def test_an_expired_agreement_gets_neither_joins_nor_leaves() -> None:
    expired = destination(deal=agreement(expires_on=date(2026, 6, 1)))
    assert plan([expired], TODAY, {"vip"}, GRANTED, set(), JOINED) == []
    assert plan([expired], TODAY, set(), GRANTED, {("mailer", "vip")}, LEFT) == []


def test_the_same_input_makes_the_same_idempotency_keys() -> None:
    first = plan([destination()], TODAY, {"vip"}, GRANTED, set(), JOINED)
    again = plan([destination()], TODAY, {"vip"}, GRANTED, set(), JOINED)
    other = plan([destination()], TODAY, {"vip"}, GRANTED, set(), Cause("m-9", "membership", "rule_matched"))
    assert first[0].idempotency_key == again[0].idempotency_key != other[0].idempotency_key


segments = st.sets(st.sampled_from(["a", "b", "c"]))
consents = st.dictionaries(st.sampled_from(["p", "q"]), st.tuples(st.booleans(), st.integers(1, 9)))


@given(
    segments,
    segments,
    consents,
    st.sets(st.tuples(st.sampled_from(["d1", "d2"]), st.sampled_from(["a", "b", "c"]))),
)
def test_after_the_plan_each_destination_holds_exactly_what_it_should(
    members: set[str], linked: set[str], consent: Consent, held: set[tuple[str, str]]
) -> None:
    destinations = [destination("d1", tuple(linked), ("p",)), destination("d2", ("a", "b"), ())]
    after = set(held)
    for intent in plan(destinations, TODAY, members, consent, held, JOINED):
        holding = (intent.destination_id, intent.segment_id)
        assert (intent.action == "joined") == (holding not in after)
        (after.add if intent.action == "joined" else after.discard)(holding)
    assert plan(destinations, TODAY, members, consent, after, JOINED) == []
    granted = {p for p, (effective, _) in consent.items() if effective}
    for destination_id, segment in after:
        d = destinations[0] if destination_id == "d1" else destinations[1]
        assert segment in members & d.segments and d.purposes <= granted


@given(consents, consents)
def test_an_older_consent_change_never_overrides_a_newer_one(held: Consent, incoming: Consent) -> None:
    merged = merge_consent(held, incoming)
    for purpose, state in merged.items():
        candidates = [s for s in (held.get(purpose), incoming.get(purpose)) if s is not None]
        assert state[1] == max(at for _, at in candidates if at is not None)


def test_a_snapshot_carries_the_change_of_its_highest_sequence() -> None:
    assert newest_changes({"email": (False, 4), "sms": (True, 2), "ads": (True, None)}) == (("email", 4),)
    assert newest_changes({"email": (True, None)}) == ()  # records from before sequences
    assert newest_changes({}) == ()
