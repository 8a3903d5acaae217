"""Notice versions in a real browser against a real consent service: a catalog whose notice is newer
than the one the customer agreed to makes the page show the version agreed to and ask again; agreeing
records the new version, and the API refuses a version the catalog never showed."""

from __future__ import annotations

from pathlib import Path

import yaml
from playwright.sync_api import expect

from services.consent.preference.messages import MESSAGES
from shared.catalog import load_catalog
from tests.integration.consent.conftest import WRITER, choice, link, purpose, put
from tests.integration.consent.test_preference_segments import serious_violations
from tests.support import ServiceProcess, http_client

EN = MESSAGES["en"]
NEW_NOTICE = "We send you e-mail about offers, now also from our partner shops."


def _catalog_with_a_newer_email_notice(path: Path) -> Path:
    shipped = load_catalog().model_dump(mode="json")
    for item in shipped["purposes"]:
        if item["id"] == "marketing_email":
            item.update(notice=NEW_NOTICE, notice_version=2, notice_translations={})
    path.write_text(yaml.safe_dump(shipped))
    return path


def _records(service: ServiceProcess, customer: str) -> list[tuple[object, object]]:
    response = http_client.get(f"{service.url}/v1/customers/{customer}/consents/history", headers=WRITER)
    assert response.status_code == 200, response.text
    return [(row["status"], row["notice_version"]) for row in response.json()["history"]]


def test_a_newer_notice_is_asked_for_again_and_the_new_version_recorded(
    start_service, browser, customer, tmp_path
) -> None:
    catalog = _catalog_with_a_newer_email_notice(tmp_path / "purposes.yaml")
    consent = start_service("consent", PURPOSES_FILE=str(catalog)).wait_ready()
    refused = put(consent, customer, "marketing_email", choice("granted", notice_version=3))
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "notice_version"]
    assert put(consent, customer, "marketing_email", choice("granted", notice_version=1)).status_code == 200

    page = browser.new_page(viewport={"width": 720, "height": 900})
    page.goto(link(consent, customer))
    email = purpose(page, "marketing_email")
    expect(email).to_have_attribute("data-notice", "outdated")
    expect(email.locator(".notice-text")).to_have_text(NEW_NOTICE)
    expect(email.locator(".notice-agreed")).to_have_text(EN["notice_agreed"].format(version=1))
    expect(email.locator(".notice-changed")).to_have_text(EN["notice_changed"])
    expect(purpose(page, "profiling")).to_have_attribute("data-notice", "current")
    page.screenshot(path=tmp_path / "notice-outdated.png", full_page=True)
    assert serious_violations(page) == []  # the request to agree again is accessible too

    email.get_by_role("button", name=EN["agree_again"].format(version=2)).click()
    expect(email).to_have_attribute("data-published", "true")
    expect(email).to_have_attribute("data-notice", "current")
    expect(email.locator(".notice-agreed")).to_have_text(EN["notice_agreed"].format(version=2))
    expect(email.locator(".renew")).to_have_count(0)
    assert _records(consent, customer) == [("granted", 1), ("granted", 2)]
    page.screenshot(path=tmp_path / "notice-agreed.png", full_page=True)

    page.reload()  # what was recorded, not only what the script shows
    email = purpose(page, "marketing_email")
    expect(email).to_have_attribute("data-notice", "current")
    expect(email.locator(".notice-agreed")).to_have_text(EN["notice_agreed"].format(version=2))
    # Withdrawing records the notice it was made under too, and nothing is "agreed" any more.
    email.get_by_role("button", name=EN["withdraw"]).click()
    expect(email).to_have_attribute("data-status", "denied")
    expect(email.locator(".notice-agreed")).to_have_text("")
    assert _records(consent, customer)[-1] == ("denied", 2)
