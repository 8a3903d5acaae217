"""The preference center's "reached delivery": real consent, segmenter, delivery and audit processes on
one broker and a real receiver as the destination. A withdrawal on the page shows that delivery applied
it, that the destination holding the customer was told and that the audit ledger recorded it; the
receiver got the leave."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from services.consent.preference.messages import MESSAGES
from tests.integration.consent.conftest import choice, consent_env, link, purpose, put
from tests.integration.consent.test_preference_segments import purchase, segments_of, serious_violations
from tests.integration.delivery.harness import PURPOSE, put_destination
from tests.integration.delivery.receiver import Receiver
from tests.integration.segmenter.conftest import ADMIN, FAST, module_segmenter
from tests.support import ServiceProcess, wait_for

EN = MESSAGES["en"]
DOCS_IMAGE = Path(__file__).parents[3] / "docs" / "img" / "preference-center.png"
Stack = tuple[ServiceProcess, ServiceProcess, Receiver]


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Segmenter, delivery, audit and consent on one topic prefix; consent asks the other three; one
    destination (`mailer`: segment `vip`, purpose marketing_email) at a receiver."""
    tmp = tmp_path_factory.mktemp("stack")
    with module_segmenter(kafka_bootstrap, redis_url, tmp, **FAST) as segmenter:
        shared = {"TOPIC_PREFIX": segmenter.env["TOPIC_PREFIX"]}
        delivery_env = consent_env(kafka_bootstrap, redis_url, tmp / "delivery-data", **shared)
        delivery = ServiceProcess("delivery", delivery_env, tmp / "delivery.log")
        audit_env = consent_env(kafka_bootstrap, redis_url, tmp / "audit-data", **shared)
        audit = ServiceProcess("audit", audit_env, tmp / "audit.log")
        mailer = Receiver(uuid.uuid4().hex * 2, tmp / "receiver.jsonl")
        env = consent_env(
            kafka_bootstrap,
            redis_url,
            tmp / "consent-data",
            SEGMENTER_URL=segmenter.url,
            DELIVERY_URL=delivery.url,
            AUDIT_URL=audit.url,
            **shared,
        )
        consent = ServiceProcess("consent", env, tmp / "consent.log")
        try:
            delivery.wait_ready()
            audit.wait_ready()
            put_destination(delivery, "mailer", mailer.start())
            yield consent.wait_ready(), segmenter, mailer
        finally:
            for process in (consent, delivery, audit, mailer):
                process.kill()


def test_a_withdrawal_shows_it_reached_delivery_and_the_destination_was_told(
    stack: Stack, browser, customer: str, tmp_path: Path
) -> None:
    consent, segmenter, mailer = stack
    with httpx.Client(base_url=segmenter.url, headers=ADMIN, timeout=10) as api:
        body = {"name": "VIP", "rule": "total_spend >= 100", "required_purposes": [PURPOSE]}
        assert api.put("/v1/segments/vip", json=body).status_code == 200
    assert put(consent, customer, PURPOSE, choice("granted")).status_code == 200
    purchase(segmenter, customer, 150.0)
    wait_for(lambda: segments_of(segmenter, customer) == ["vip"], what="the segmenter's join")
    wait_for(lambda: [b["action"] for b in mailer.bodies()] == ["joined"], what="the destination's join")

    page = browser.new_page(viewport={"width": 720, "height": 1000})
    page.goto(link(consent, customer))
    expect(page.locator('#segments .segment[data-segment="vip"] .why')).to_have_text(
        "Why: you spent at least 100 EUR and you allowed Marketing e-mail."
    )
    expect(page.locator("#recent-choices .choice").first).to_have_attribute("data-delivery", "applied")
    if os.environ.get("UPDATE_DOCS_IMAGES"):  # the README's picture, every service running: docs/consent.md
        page.screenshot(path=DOCS_IMAGE, full_page=True)
    email = purpose(page, PURPOSE)
    email.get_by_role("button", name=EN["withdraw"]).click()
    expect(email).to_have_attribute("data-published", "true")
    withdrawal = page.locator("#recent-choices .choice").first
    # The script asks again until the leave is acknowledged (waited for as long as wait_for would).
    expect(withdrawal).to_have_attribute("data-destinations", "delivered", timeout=30_000)
    expect(withdrawal.locator("strong")).to_have_text("Marketing e-mail: " + EN["denied"])
    expect(withdrawal.locator(".reach-delivery")).to_have_text(EN["reach.delivery.applied"])
    expect(withdrawal.locator(".reach-destinations")).to_have_text(EN["reach.destinations.delivered"])
    expect(withdrawal).to_have_attribute("data-ledger", "recorded", timeout=30_000)  # audit's own pace
    expect(withdrawal.locator(".reach-ledger")).to_have_text(EN["reach.ledger.recorded"])
    expect(page.locator("#recent-choices")).to_have_attribute("data-settled", "true")
    # The join's reason depends on which input delivery routed second; the leave's never does.
    assert [b["action"] for b in mailer.bodies()] == ["joined", "left"]
    assert mailer.bodies()[1]["reason"] == "consent_withdrawn"
    # The grant before it reached delivery too; what followed it is the withdrawal's, not shown.
    grant = page.locator("#recent-choices .choice").nth(1)
    expect(grant).to_have_attribute("data-delivery", "applied")
    expect(grant).to_have_attribute("data-destinations", "unknown")
    expect(grant).to_have_attribute("data-ledger", "recorded")
    page.screenshot(path=tmp_path / "reached-delivery.png", full_page=True)
    assert serious_violations(page) == []
    page.reload()  # what the services hold, not only what the script put in place
    expect(page.locator("#recent-choices .choice").first).to_have_attribute("data-destinations", "delivered")
    expect(page.locator("#recent-choices .choice").first).to_have_attribute("data-ledger", "recorded")
