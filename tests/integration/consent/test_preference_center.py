"""The preference center in a real browser (Debian's chromium driven by Playwright) against a real
consent service and broker: links, one-click withdraw and grant, publication, GPC, refusals."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from playwright.sync_api import expect

from services.consent.preference.links import KEY_FILE, LinkClaims, PreferenceLinks
from services.consent.preference.messages import MESSAGES
from shared.catalog import load_catalog
from shared.events import ConsentChanged, utcnow
from tests.integration.consent.conftest import WRITER, choice, for_key, link, purpose, put, read_topic, topic
from tests.support import ServiceProcess, http_client

EN = MESSAGES["en"]
# What a browser with Global Privacy Control on exposes to scripts.
GPC_SCRIPT = "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true})"


def history(service: ServiceProcess, customer_id: str) -> list[dict[str, object]]:
    response = http_client.get(f"{service.url}/v1/customers/{customer_id}/consents/history", headers=WRITER)
    assert response.status_code == 200, response.text
    rows: list[dict[str, object]] = response.json()["history"]
    return rows


def published(kafka_bootstrap: str, service: ServiceProcess, customer_id: str, count: int) -> list[str]:
    """The statuses on consent.changes for the customer, once `count` of them are there."""
    changes = read_topic(
        kafka_bootstrap,
        topic(service, "consent.changes"),
        lambda r: len(for_key(r, customer_id)) >= count,
    )
    events = [ConsentChanged.model_validate_json(v or b"") for v in for_key(changes, customer_id)]
    return [f"{e.purpose}:{e.status}:{e.reason}" for e in events]


def test_withdraw_and_grant_back_are_recorded_and_published(
    consent, browser, kafka_bootstrap, customer, tmp_path
) -> None:
    assert put(consent, customer, "marketing_email", choice("granted")).status_code == 200
    page = browser.new_page()
    page.goto(link(consent, customer))
    email = purpose(page, "marketing_email")
    expect(email).to_have_attribute("data-status", "granted")
    expect(page.locator(".purpose")).to_have_count(5)  # every purpose of the shipped catalog
    expect(email).to_contain_text("730 days")
    # This module's segmenter URL is a closed port: the page says the segments cannot be shown.
    expect(page.locator('#segments [data-segments="unavailable"]')).to_have_text(EN["segments_unavailable"])
    page.screenshot(path=tmp_path / "before.png", full_page=True)

    email.get_by_role("button", name=EN["withdraw"]).click()
    expect(email).to_have_attribute("data-published", "true")
    expect(email).to_have_attribute("data-status", "denied")
    expect(email.locator(".outcome")).to_have_text(EN["saved_published"])
    page.screenshot(path=tmp_path / "withdrawn.png", full_page=True)
    last = history(consent, customer)[-1]
    assert (last["purpose"], last["status"], last["reason"], last["source"]) == (
        "marketing_email", "denied", "user", "preference-center",
    )  # fmt: skip
    assert published(kafka_bootstrap, consent, customer, 2)[-1] == "marketing_email:denied:user"

    # Granting back is as easy, and works from the keyboard.
    email.get_by_role("button", name=EN["allow"]).focus()
    page.keyboard.press("Enter")
    expect(email).to_have_attribute("data-status", "granted")
    expect(email).to_have_attribute("data-published", "true")
    assert history(consent, customer)[-1]["status"] == "granted"
    assert published(kafka_bootstrap, consent, customer, 3)[-1] == "marketing_email:granted:user"
    page.reload()  # the page shows the recorded state, not only the script's
    expect(purpose(page, "marketing_email")).to_have_attribute("data-status", "granted")
    # Published, but the segmenter (a closed port here) cannot be asked whether it applied it.
    latest = page.locator("#recent-choices .choice").first
    expect(latest).to_have_attribute("data-consent", "published")
    expect(latest.locator(".reach-segmenter")).to_have_text(EN["reach.segmenter.unavailable"])


def test_gpc_from_browser_records_gpc_denials_and_says_so(consent, browser, customer, tmp_path) -> None:
    assert put(consent, customer, "third_party_sharing", choice("granted")).status_code == 200
    context = browser.new_context(extra_http_headers={"Sec-GPC": "1"})
    context.add_init_script(GPC_SCRIPT)
    page = context.new_page()
    page.goto(link(consent, customer))
    expect(page.locator("#gpc-notice")).to_be_visible()
    expect(page.locator("#gpc-notice")).to_have_text(EN["gpc_recorded"])
    sharing = purpose(page, "third_party_sharing")
    expect(sharing).to_have_attribute("data-status", "denied")
    rows = history(consent, customer)
    assert [(r["purpose"], r["status"], r["reason"]) for r in rows[1:]] == [
        ("third_party_sharing", "denied", "gpc")
    ]
    # Under GPC a grant of a sale/share purpose is recorded as a GPC denial, and the page says why.
    sharing.get_by_role("button", name=EN["allow"]).click()
    expect(sharing.locator(".outcome")).to_have_text(EN["gpc_blocks_grant"])
    expect(sharing).to_have_attribute("data-status", "denied")
    assert history(consent, customer)[-1]["reason"] == "gpc"
    page.screenshot(path=tmp_path / "gpc.png", full_page=True)
    context.close()


def test_gpc_seen_only_by_the_script_is_recorded(consent, browser, customer) -> None:
    context = browser.new_context()
    context.add_init_script(GPC_SCRIPT)
    page = context.new_page()
    page.goto(link(consent, customer))
    expect(page.locator("#preferences")).to_have_attribute("data-gpc-recorded", "true")
    expect(page.locator("#gpc-notice")).to_be_visible()
    rows = history(consent, customer)
    assert [(r["purpose"], r["reason"]) for r in rows] == [("third_party_sharing", "gpc")]
    context.close()


def _token(service: ServiceProcess, claims: LinkClaims) -> str:
    key = (Path(service.env["DATA_DIR"]) / KEY_FILE).read_bytes().strip()
    return PreferenceLinks(key).issue(claims)


def test_expired_tampered_and_revoked_links_get_the_refusal_page(
    consent, browser, customer, tmp_path
) -> None:
    past = int((utcnow() - timedelta(days=1)).timestamp())
    expired = _token(consent, LinkClaims(customer, 0, "GDPR", "2026-03", past))
    url = link(consent, customer)
    token = url.rsplit("/", 1)[1]
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    page = browser.new_page()
    for reason, target in (("expired", expired), ("invalid", tampered)):
        response = page.goto(f"{consent.url}/preferences/{target}")
        assert response is not None and response.status == 403
        expect(page.locator("#refusal")).to_have_attribute("data-reason", reason)
        expect(page.locator("#refusal")).to_have_text(EN[f"refused.{reason}"])
        page.screenshot(path=tmp_path / f"refused-{reason}.png")

    page.goto(url)
    expect(page.locator(".purpose")).to_have_count(5)  # the link works until it is revoked
    revoked = http_client.delete(f"{consent.url}/v1/customers/{customer}/preference-link", headers=WRITER)
    assert revoked.status_code == 204
    purpose(page, "marketing_email").get_by_role("button", name=EN["allow"]).click()
    expect(purpose(page, "marketing_email").locator(".outcome")).to_have_text(EN["failed"])
    assert history(consent, customer) == []  # the open page's click was refused too
    response = page.goto(url)
    assert response is not None and response.status == 403
    expect(page.locator("#refusal")).to_have_attribute("data-reason", "revoked")


def test_an_erasure_revokes_the_customers_links(consent, browser, customer) -> None:
    url = link(consent, customer)
    erased = http_client.post(
        f"{consent.url}/v1/customers/{customer}/erasure",
        headers={"Authorization": "Bearer dsr-officer-0001"},
        timeout=10,
    )
    assert erased.status_code == 202, erased.text
    page = browser.new_page()
    response = page.goto(url)
    assert response is not None and response.status == 403
    expect(page.locator("#refusal")).to_have_attribute("data-reason", "revoked")


def test_a_german_browser_gets_the_german_page(consent, browser, customer) -> None:
    context = browser.new_context(locale="de-DE")  # sends Accept-Language: de-DE
    page = context.new_page()
    page.goto(link(consent, customer))
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.get_by_role("heading", level=1)).to_have_text(MESSAGES["de"]["title"])
    email = purpose(page, "marketing_email")
    shipped = load_catalog().get("marketing_email")
    assert shipped is not None
    expect(email.locator(".notice-text")).to_have_text(shipped.notice_translations["de"])
    email.get_by_role("button", name=MESSAGES["de"]["allow"]).click()
    expect(email.locator(".outcome")).to_have_text(MESSAGES["de"]["saved_published"])
    expect(email.get_by_role("button")).to_have_text(MESSAGES["de"]["withdraw"])
    context.close()


def test_the_site_declares_gpc_support(consent) -> None:
    response = http_client.get(f"{consent.url}/.well-known/gpc.json")
    assert response.status_code == 200
    assert response.json()["gpc"] is True


def test_the_customer_downloads_the_export_and_erases_after_confirming(consent, browser, customer) -> None:
    assert put(consent, customer, "marketing_email", choice("granted")).status_code == 200
    url = link(consent, customer)
    page = browser.new_page()
    page.goto(url)
    with page.expect_download() as caught:
        page.get_by_role("link", name=EN["download"]).click()
    assert caught.value.suggested_filename == "my-data.json"
    bundle = json.loads(Path(caught.value.path()).read_text())
    assert bundle["customer_id"] == customer
    assert bundle["consents"]["marketing_email"]["status"] == "granted"
    assert [row["purpose"] for row in bundle["history"]] == ["marketing_email"]
    assert bundle["unavailable"] == ["segmenter", "audit", "delivery"]  # this module's peers are closed ports

    # Without the confirmation nothing is erased, whether by a stray request or a cancelled step.
    assert http_client.post(f"{url}/erasure", json={}, timeout=10).status_code == 422
    erase = page.get_by_role("button", name=EN["erase"])
    confirm = page.get_by_role("button", name=EN["erase_confirm"])
    erase.click()
    expect(confirm).to_be_focused()
    expect(page.locator("#erase-warning")).to_have_text(EN["erase_warning"])
    page.get_by_role("button", name=EN["cancel"]).click()
    expect(confirm).to_be_hidden()
    expect(erase).to_be_focused()
    assert len(history(consent, customer)) == 1

    erase.click()
    confirm.click()
    expect(page.locator("#preferences")).to_have_attribute("data-erased", "true")
    expect(page.locator("#erase-outcome")).to_have_text(EN["erased"])
    assert history(consent, customer) == []
    response = page.goto(url)  # the erasure revoked the link
    assert response is not None and response.status == 403
    expect(page.locator("#refusal")).to_have_attribute("data-reason", "revoked")


def test_a_link_expires_after_its_setting_and_opens_only_its_own_customers_page(consent, customer) -> None:
    other = f"{customer}-b"
    assert put(consent, other, "marketing_email", choice("granted")).status_code == 200
    before = utcnow()
    response = http_client.post(
        f"{consent.url}/v1/customers/{customer}/preference-link",
        json={"jurisdiction": "GDPR", "policy_version": "2026-03"},
        headers=WRITER,
    )
    after = utcnow()
    assert response.status_code == 200 and set(response.json()) == {"url", "expires_at"}
    ttl = timedelta(days=7)  # CONSENT_PREFERENCE_LINK_TTL_S's default; the module's service keeps it
    expires = datetime.fromisoformat(response.json()["expires_at"])
    assert before + ttl - timedelta(seconds=1) <= expires <= after + ttl + timedelta(seconds=1)
    url = response.json()["url"]
    assert customer not in url
    # The page is the customer's own: nothing granted, though the other customer allowed e-mail.
    html = http_client.get(url).text
    assert 'data-purpose="marketing_email" data-status="denied"' in html
    # The token opens the page and its calls only: it is no token of the API, for anyone.
    token = url.rsplit("/", 1)[1]
    for whose in (customer, other):
        history_url = f"{consent.url}/v1/customers/{whose}/consents/history"
        assert http_client.get(history_url, headers={"Authorization": f"Bearer {token}"}).status_code == 401
