"""The preference center's segments and why, through real consent and segmenter processes on one
broker: grant, an event, the segment and its reason on the page, withdraw, the segment gone; and
axe-core's accessibility check of the whole page (segments shown, the script's states)."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from services.consent.preference.messages import MESSAGES
from shared.events import CustomerEvent, new_event_id, utcnow
from tests.integration.consent.conftest import choice, link, produce, purpose, put
from tests.integration.segmenter.conftest import ADMIN, put_segment
from tests.prepare import AXE_SCRIPT
from tests.support import ServiceProcess, http_client, wait_for

EN = MESSAGES["en"]


@pytest.fixture
def stack(preference_stack: tuple[ServiceProcess, ServiceProcess]) -> tuple[ServiceProcess, ServiceProcess]:
    """The package's segmenter and consent service (conftest.py), shared with the zero-party tests."""
    return preference_stack


def segments_of(segmenter: ServiceProcess, customer: str) -> list[str]:
    response = http_client.get(f"{segmenter.url}/v1/customers/{customer}/segments", headers=ADMIN, timeout=10)
    assert response.status_code == 200, response.text
    found: list[str] = response.json()["segments"]
    return found


def purchase(segmenter: ServiceProcess, customer: str, amount: float) -> None:
    event = CustomerEvent(
        event_id=new_event_id(),
        customer_id=customer,
        type="purchase",
        occurred_at=utcnow(),
        source="test",
        attributes={"amount": amount, "currency": "CHF"},
    )
    topic = segmenter.env["TOPIC_PREFIX"] + "customer.events"
    produce(segmenter.env["KAFKA_BOOTSTRAP_SERVERS"], topic, customer, [event.to_bytes()])


def test_the_page_shows_each_segment_and_why_until_consent_is_withdrawn(
    stack, browser, customer, tmp_path
) -> None:
    consent, segmenter = stack
    with httpx.Client(base_url=segmenter.url, headers=ADMIN, timeout=10) as api:
        rule = "100 <= total_spend"  # turned round by the explanation
        body = {"name": "Big spenders", "rule": rule, "required_purposes": ["marketing_email"]}
        assert api.put("/v1/segments/big_spenders", json=body).status_code == 200
    assert put(consent, customer, "marketing_email", choice("granted")).status_code == 200
    purchase(segmenter, customer, 150.0)
    wait_for(lambda: segments_of(segmenter, customer) == ["big_spenders"], what="the segmenter's join")

    page = browser.new_page(viewport={"width": 720, "height": 900})
    page.goto(link(consent, customer))
    spenders = page.locator('#segments .segment[data-segment="big_spenders"]')
    expect(spenders.get_by_role("heading", level=3)).to_have_text("Big spenders")
    expect(spenders.locator(".why")).to_have_text(
        "Why: you spent at least 100 CHF and you allowed Marketing e-mail."
    )
    page.screenshot(path=tmp_path / "segments.png", full_page=True)

    email = purpose(page, "marketing_email")
    email.get_by_role("button", name=EN["withdraw"]).click()
    expect(email).to_have_attribute("data-published", "true")
    # Without a reload: the script fetches the segments and the recent choices again until the
    # withdrawal has reached every service (waited for as long as wait_for would, on a busy machine).
    expect(page.locator("#segments .segment")).to_have_count(0, timeout=30_000)
    expect(page.locator('#segments [data-segments="none"]')).to_have_text(EN["segments_none"])
    assert segments_of(segmenter, customer) == []
    # The withdrawal, newest first, has reached consent's topic and the segmenter; so had the grant.
    choices = page.locator("#recent-choices .choice")
    expect(choices).to_have_count(2)
    withdrawal = choices.first
    expect(withdrawal).to_have_attribute("data-purpose", "marketing_email")
    expect(withdrawal.locator("strong")).to_have_text("Marketing e-mail: " + EN["denied"])
    expect(withdrawal.locator(".reach-consent")).to_have_text(EN["reach.consent.published"])
    expect(withdrawal.locator(".reach-segmenter")).to_have_text(EN["reach.segmenter.applied"])
    # No delivery nor audit service answers (closed ports): not known, and nothing waits for them.
    expect(withdrawal.locator(".reach-delivery")).to_have_text(EN["reach.delivery.unavailable"])
    expect(withdrawal.locator(".reach-ledger")).to_have_text(EN["reach.ledger.unavailable"])
    expect(choices.nth(1)).to_have_attribute("data-segmenter", "applied")
    expect(page.locator("#recent-choices")).to_have_attribute("data-settled", "true")
    page.screenshot(path=tmp_path / "recent-choices.png", full_page=True)
    page.reload()  # what is stored, not only what the script put in place
    expect(page.locator("#segments .segment")).to_have_count(0)
    expect(page.locator("#recent-choices .choice").first).to_have_attribute("data-segmenter", "applied")


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now, one line each."""
    assert AXE_SCRIPT.exists(), "no axe-core: run tests/prepare.py (make test does)"
    if page.evaluate("() => typeof axe === 'undefined'"):
        page.add_script_tag(path=AXE_SCRIPT)
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['impact']} {v['id']}: {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.parametrize("locale", ["en-GB", "de-DE"])
def test_the_page_has_no_serious_accessibility_violation(stack, browser, customer, locale) -> None:
    consent, segmenter = stack
    with httpx.Client(base_url=segmenter.url, headers=ADMIN, timeout=10) as api:
        put_segment(api, "regulars", "purchase_count >= 1 and not profile.opted_out", "profiling")
    assert put(consent, customer, "profiling", choice("granted")).status_code == 200
    purchase(segmenter, customer, 20.0)
    wait_for(lambda: "regulars" in segments_of(segmenter, customer), what="the segmenter's join")
    context = browser.new_context(locale=locale)
    page = context.new_page()
    page.goto(link(consent, customer))
    expect(page.locator('#segments .segment[data-segment="regulars"]')).to_be_visible()
    assert serious_violations(page) == []

    # The states the script creates: a recorded click, the erasure's confirmation step.
    marketing = purpose(page, "marketing_email")
    marketing.locator("button.toggle").click()
    expect(marketing).to_have_attribute("data-published", "true")
    page.locator("#erase").click()
    expect(page.locator("#erase-confirm")).to_be_visible()
    assert serious_violations(page) == []
    context.close()
