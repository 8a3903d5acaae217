"""Zero-party preferences end to end, in a real browser against real consent and segmenter processes
on one broker: a preference stated on the page is a profile_update of source `preference-center`
on customer.events, a segment whose rule reads `profile.pref.<key>` takes the customer in, the page
says where it is used; removing it with one click takes the customer out."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from services.consent.preference.messages import MESSAGES
from shared.events import CustomerEvent
from tests.integration.consent.conftest import choice, for_key, link, put, read_topic, topic
from tests.integration.consent.test_preference_segments import segments_of, serious_violations, stack
from tests.integration.segmenter.conftest import ADMIN
from tests.support import http_client, wait_for

EN = MESSAGES["en"]
__all__ = ["stack"]  # the module's fixture: a segmenter and a consent service on one prefix


def preference_events(consent, customer: str, count: int) -> list[CustomerEvent]:
    bootstrap = consent.env["KAFKA_BOOTSTRAP_SERVERS"]
    records = read_topic(
        bootstrap, topic(consent, "customer.events"), lambda r: len(for_key(r, customer)) >= count
    )
    return [CustomerEvent.model_validate_json(v or b"") for v in for_key(records, customer)]


def test_a_stated_preference_joins_a_segment_reading_it_and_its_removal_leaves(
    stack, browser, customer, tmp_path
) -> None:
    consent, segmenter = stack
    with httpx.Client(base_url=segmenter.url, headers=ADMIN, timeout=10) as api:
        rule = "'books' in profile.pref.interests"
        body = {"name": "Book lovers", "rule": rule, "required_purposes": ["personalization"]}
        assert api.put("/v1/segments/book_lovers", json=body).status_code == 200
    assert put(consent, customer, "personalization", choice("granted")).status_code == 200

    page = browser.new_page(viewport={"width": 720, "height": 1400})
    page.goto(link(consent, customer))
    interests = page.locator('form.stated[data-preference="interests"]')
    expect(interests).to_have_attribute("data-stated", "false")
    expect(interests.locator(".used-by")).to_have_text(EN["used_by"].format(segments="Book lovers"))
    expect(interests.get_by_role("button", name=EN["remove"])).to_be_hidden()
    interests.get_by_label(EN["pref.interests.books"]).check()
    interests.get_by_label(EN["pref.interests.music"]).check()
    interests.get_by_role("button", name=EN["save"]).click()
    expect(interests).to_have_attribute("data-published", "true")
    expect(interests).to_have_attribute("data-stated", "true")
    expect(interests.locator(".outcome")).to_have_text(EN["saved_published"])
    [stated] = preference_events(consent, customer, 1)
    assert (stated.type, stated.source, stated.attributes) == (
        "profile_update", "preference-center", {"pref.interests": ["books", "music"]},
    )  # fmt: skip
    wait_for(lambda: segments_of(segmenter, customer) == ["book_lovers"], what="the segmenter's join")

    page.reload()  # the page shows what was stored, the segment and why
    interests = page.locator('form.stated[data-preference="interests"]')
    expect(interests.get_by_label(EN["pref.interests.books"])).to_be_checked()
    expect(interests.get_by_label(EN["pref.interests.outdoor"])).not_to_be_checked()
    why = page.locator('#segments .segment[data-segment="book_lovers"] .why')
    expect(why).to_have_text(
        "Why: your answer to “Interests” includes “Books” and you allowed Personalization."
    )
    page.screenshot(path=tmp_path / "preferences-stated.png", full_page=True)
    assert serious_violations(page) == []

    interests.get_by_role("button", name=EN["remove"]).click()  # one click
    expect(interests).to_have_attribute("data-stated", "false")
    expect(interests).to_have_attribute("data-published", "true")
    expect(interests.locator(".outcome")).to_have_text(EN["pref_removed"])
    assert preference_events(consent, customer, 2)[-1].attributes == {"pref.interests": None}
    wait_for(lambda: segments_of(segmenter, customer) == [], what="the segmenter's leave")
    page.reload()
    expect(page.locator('form.stated[data-preference="interests"] input:checked')).to_have_count(0)
    page.screenshot(path=tmp_path / "preferences-removed.png", full_page=True)


def test_a_preference_outside_the_catalog_gets_422_naming_the_field(stack, customer) -> None:
    consent, _ = stack
    url = link(consent, customer)
    cases = [
        ("nickname", {"value": "x"}, ["path", "key"]),
        ("interests", {"value": ["books", "cars"]}, ["body", "value"]),
        ("frequency", {"value": ["weekly"]}, ["body", "value"]),  # one value, not a list
        ("frequency", {"value": "daily"}, ["body", "value"]),
    ]
    for key, body, where in cases:
        response = http_client.put(f"{url}/preferences/{key}", json=body, timeout=10)
        assert response.status_code == 422, (key, body, response.text)
        assert response.json()["detail"][0]["loc"] == where
    stated = http_client.put(f"{url}/preferences/frequency", json={"value": "monthly"}, timeout=10)
    assert stated.status_code == 200 and stated.json()["feature"] == "profile.pref.frequency"
    assert stated.json()["used_by"] == []
