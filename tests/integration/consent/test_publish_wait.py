"""A consent PUT answers once its change is on the broker, or says that it is not yet."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.integration.consent.conftest import choice, for_key, put, read_topic, topic
from tests.support import http_client

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def _unsent(data_dir: str, customer: str) -> tuple[int, int]:
    """(unsent, sent) outbox rows of the customer, read straight from the service's database."""
    with sqlite3.connect(f"file:{Path(data_dir) / 'consent.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT sent_at IS NULL FROM outbox WHERE customer_id = ?", (customer,)).fetchall()
    unsent = sum(1 for (pending,) in rows if pending)
    return unsent, len(rows) - unsent


def _metric(service, name: str) -> float:
    text = http_client.get(f"{service.url}/metrics", timeout=5).text
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


def test_a_put_answers_only_once_its_change_is_published(start_service, kafka_bootstrap, customer) -> None:
    # The relay's first two publishes fail (a broker hiccup): the old code answered at commit,
    # with the denial still in the outbox, where no admission barrier can see it.
    service = start_service(
        "consent", FAILPOINTS="consent.relay_publish=raise@1x2", CONSENT_PUBLISH_WAIT_S="20"
    ).wait_ready()
    for status in ("granted", "denied"):
        response = put(service, customer, "marketing_email", choice(status))
        assert response.status_code == 200
        assert response.json()["pending_publication"] is False
        unsent, sent = _unsent(service.env["DATA_DIR"], customer)
        assert (unsent, sent) == (0, sent) and sent > 0, f"answered with {unsent} rows unpublished"
    changes = read_topic(
        kafka_bootstrap, topic(service, "consent.changes"), lambda r: len(for_key(r, customer)) >= 2
    )
    assert [json.loads(v)["status"] for v in for_key(changes, customer)] == ["granted", "denied"]
    assert _metric(service, "segwarden_consent_publish_errors_total") >= 2


def test_a_put_answers_after_the_wait_when_the_broker_cannot_take_it(start_service, customer) -> None:
    service = start_service(
        "consent", FAILPOINTS="consent.relay_publish=raise@1x100000", CONSENT_PUBLISH_WAIT_S="0.5"
    ).wait_ready()
    response = put(service, customer, "marketing_email", choice("granted"))  # a change: it publishes
    assert response.status_code == 200
    assert response.json()["pending_publication"] is True
    assert _unsent(service.env["DATA_DIR"], customer)[0] > 0
    assert _metric(service, "segwarden_consent_publish_wait_timeouts_total") == 1
