"""The optional data-use question in a real browser against a real consent service: answers are
counted once per customer, the privacy officer sees only counts with groups under K_ANONYMITY
suppressed, and nothing the consent service stores ties an answer (or the customer) to it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from playwright.sync_api import expect

from services.consent.preference.messages import MESSAGES
from tests.integration.consent.conftest import WRITER, link
from tests.integration.consent.test_preference_segments import serious_violations
from tests.support import ServiceProcess, http_client

EN = MESSAGES["en"]
OFFICER = {"Authorization": "Bearer dsr-officer-0001"}


def counts(consent: ServiceProcess) -> dict[str, int]:
    response = http_client.get(f"{consent.url}/v1/feedback/data-use", headers=OFFICER, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["k_anonymity"] == 2
    found: dict[str, int] = response.json()["counts"]
    return found


def answer_on_the_page(browser, consent: ServiceProcess, customer: str, answer: str, tmp_path: Path) -> None:
    page = browser.new_page()
    page.goto(link(consent, customer))
    feeling = page.locator("#feeling")
    expect(feeling).to_have_attribute("data-answered", "false")
    assert serious_violations(page) == []
    feeling.get_by_label(EN[f"feeling.{answer}"]).check()
    feeling.get_by_role("button", name=EN["send"]).click()
    expect(page.locator("#feeling-outcome")).to_have_text(EN["feeling_thanks"])
    expect(feeling).to_have_attribute("data-answered", "true")
    page.screenshot(path=tmp_path / f"feeling-{customer}.png", full_page=True)
    page.close()


def test_answers_are_counted_once_and_shown_k_anonymously_with_no_link_to_the_customer(
    start_service, browser, tmp_path
) -> None:
    consent = start_service("consent", K_ANONYMITY="2").wait_ready()
    first, second, third = (f"c-feel-{n}-{tmp_path.name[-6:]}" for n in range(3))
    answer_on_the_page(browser, consent, first, "uneasy", tmp_path)
    assert counts(consent) == {}  # one answer is a group of one: suppressed
    answer_on_the_page(browser, consent, second, "uneasy", tmp_path)
    assert counts(consent) == {"uneasy": 2}
    url = link(consent, third)
    counted = http_client.post(f"{url}/feeling", json={"answer": "comfortable"}, timeout=10)
    assert counted.status_code == 200 and counted.json() == {"counted": True}
    assert counts(consent) == {"uneasy": 2}  # the one "comfortable" stays hidden
    again = http_client.post(f"{link(consent, first)}/feeling", json={"answer": "comfortable"}, timeout=10)
    assert again.json() == {"counted": False}
    assert counts(consent) == {"uneasy": 2}
    refused = http_client.post(f"{url}/feeling", json={"answer": "angry"}, timeout=10)
    assert refused.json()["detail"][0]["loc"] == ["body", "answer"]
    metrics = http_client.get(f"{consent.url}/metrics", timeout=10).text
    assert 'segwarden_consent_data_use_answers_total{counted="true"} 3.0' in metrics
    assert 'segwarden_consent_data_use_answers_total{counted="false"} 1.0' in metrics
    forbidden = http_client.get(f"{consent.url}/v1/feedback/data-use", headers=WRITER, timeout=10)
    assert forbidden.status_code == 403

    page = browser.new_page()
    page.goto(link(consent, first))  # answered before: thanks, no question
    expect(page.locator("#feeling")).to_have_attribute("data-answered", "true")
    expect(page.locator("#feeling-form")).to_have_count(0)
    page.close()

    # No stored byte names these customers: answers are counts, who answered is a pseudonym.
    database = Path(consent.env["DATA_DIR"]) / "consent.db"
    stored = b"".join(p.read_bytes() for p in database.parent.glob("consent.db*"))
    assert not [c for c in (first, second, third) if c.encode() in stored]
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT answer, count FROM data_use_feelings ORDER BY answer").fetchall()
        assert rows == [("comfortable", 1), ("uneasy", 2)]
        assert connection.execute("SELECT count(*) FROM data_use_answered").fetchone() == (3,)
    erased = http_client.post(f"{consent.url}/v1/customers/{first}/erasure", headers=OFFICER, timeout=10)
    assert erased.status_code == 202
    with sqlite3.connect(database) as connection:  # whether they answered goes; the counts stay
        assert connection.execute("SELECT count(*) FROM data_use_answered").fetchone() == (2,)
    assert counts(consent) == {"uneasy": 2}
