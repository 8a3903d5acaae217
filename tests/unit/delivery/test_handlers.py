"""What each input does to a customer's state, and the cause it gives the webhooks."""

from __future__ import annotations

from datetime import timedelta

from services.delivery.domain.routing import plan
from services.delivery.handlers import consent_change_update, membership_update
from shared.events import ConsentChanged, MembershipChanged, utcnow
from tests.unit.delivery.test_destinations import TODAY
from tests.unit.delivery.test_routing import GRANTED, destination

NOW = utcnow()


def change(**fields: object) -> ConsentChanged:
    base: dict[str, object] = {
        "event_id": "c-9",
        "customer_id": "c-1",
        "purpose": "marketing_email",
        "status": "granted",
        "previous_status": None,
        "reason": "user",
        "source": "web",
        "jurisdiction": "GDPR",
        "policy_version": "v1",
        "recorded_at": NOW,
        "sequence": 5,
    }
    return ConsentChanged(**(base | fields))  # type: ignore[arg-type]


def test_a_grant_past_its_expiry_is_not_consent() -> None:
    update, _ = consent_change_update(change(expires_at=NOW - timedelta(seconds=1)), NOW)
    assert update(set(), {}) == (set(), {"marketing_email": (False, 5)})
    update, _ = consent_change_update(change(expires_at=NOW + timedelta(days=1)), NOW)
    assert update(set(), {}) == (set(), {"marketing_email": (True, 5)})


def test_the_withdrawal_an_erasure_begins_with_is_the_erasure() -> None:
    update, cause = consent_change_update(change(status="denied", reason="erasure"), NOW)
    members, consent = update({"vip"}, GRANTED)
    intents = plan([destination()], TODAY, members, consent, {("mailer", "vip")}, cause)
    assert (members, consent) == (set(), {})
    assert [(i.action, i.reason) for i in intents] == [("left", "erased")]


def test_a_membership_change_moves_the_customer_in_or_out() -> None:
    joined = MembershipChanged(
        event_id="m-1",
        segment_id="vip",
        customer_id="c-1",
        action="joined",
        reason="rule_matched",
        cause_event_id=None,
        cause_at=None,
        at=NOW,
    )
    update, cause = membership_update(joined)
    assert update(set(), {})[0] == {"vip"} and cause.reason == "rule_matched"
    update, _ = membership_update(joined.model_copy(update={"action": "left"}))
    assert update({"vip", "other"}, {})[0] == {"other"}
