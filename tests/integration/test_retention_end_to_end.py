"""Retention end to end on the shortest setting (one day) against real consent, segmenter and audit
processes sharing one purpose catalog: a customer who chose and was active three days ago (both
services' wall clocks shifted back with libfaketime, then restarted on the real one) has their
superseded history pseudonymized, leaves their segment with `retention_expired` and loses their
features, while the grant in force stays; the ledger has both runs (counts only) and the leave."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.events import CustomerEvent, new_event_id
from tests.conftest import bearer
from tests.faults.collector import MembershipCollector
from tests.integration.consent.conftest import choice, produce, put
from tests.integration.consent.test_retention import one_day_catalog, retention_runs
from tests.integration.segmenter.conftest import put_segment
from tests.integration.segmenter.test_retention import FAKED
from tests.support import ServiceProcess, http_client, stored_customer, wait_for

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
PURPOSE = "marketing_email"


def restart_on_the_real_clock(service: ServiceProcess, **env: str) -> None:
    service.stop()
    for name in FAKED:
        del service.env[name]
    service.env.update(env)
    service.start().wait_ready(90)


def ledger(audit: ServiceProcess, customer: str) -> list[dict[str, Any]]:
    url = f"{audit.url}/v1/audit"
    params = {"customer_id": customer, "kind": "membership_change"}
    records: list[dict[str, Any]] = http_client.get(url, params=params, headers=bearer(), timeout=10).json()[
        "records"
    ]
    return records


def test_a_customer_past_a_one_day_retention_is_let_go_by_both_services_and_the_ledger_says_so(
    start_service: Any, tmp_path: Path, kafka_bootstrap: str, topic_prefix: str, redis_client: Any
) -> None:
    catalog = str(one_day_catalog(tmp_path / "purposes.yaml"))
    segmenter = start_service("segmenter", PURPOSES_FILE=catalog, **FAKED).wait_ready(90)
    consent = start_service("consent", PURPOSES_FILE=catalog, **FAKED).wait_ready(90)
    audit = start_service("audit").wait_ready(90)
    customer, segment = "c-retained-e2e", "e2e-active-subscribers"
    with httpx.Client(base_url=segmenter.url, headers=bearer(), timeout=10) as api:
        put_segment(api, segment, "event_count >= 1", PURPOSE)
    collector = MembershipCollector(kafka_bootstrap, f"{topic_prefix}segment.membership").start()
    try:
        # Three days ago (on both services' clocks): a grant, a withdrawal, a grant again, an event.
        for status in ("granted", "denied", "granted"):
            assert put(consent, customer, PURPOSE, choice(status)).status_code == 200
        three_days_ago = datetime.now(UTC) - timedelta(days=3)
        event = CustomerEvent(
            event_id=new_event_id(),
            customer_id=customer,
            type="click",
            occurred_at=three_days_ago,
            source="t",
        )
        produce(kafka_bootstrap, f"{topic_prefix}customer.events", customer, [event.to_bytes()])

        def announced() -> list[tuple[str, str]]:
            return [(m.action, m.reason) for m in collector.messages() if m.customer_id == customer]

        wait_for(lambda: [a for a, _ in announced()] == ["joined"], timeout=90, what="the join")

        # Now, on the real clock, with the jobs every half second.
        restart_on_the_real_clock(segmenter, SEGMENTER_RETENTION_INTERVAL_S="0.5")
        restart_on_the_real_clock(consent, CONSENT_RETENTION_INTERVAL_S="0.5")
        wait_for(lambda: len(announced()) == 2, timeout=90, what="the leave")
        assert announced()[1] == ("left", "retention_expired")
    finally:
        collector.stop()

    # The segmenter kept no features; consent kept only the grant in force.
    assert not stored_customer(redis_client, f"sw:{topic_prefix}", customer).features
    history = http_client.get(
        f"{consent.url}/v1/customers/{customer}/consents/history", headers=bearer()
    ).json()
    assert [h["status"] for h in history["history"]] == ["granted"]
    states = http_client.get(f"{consent.url}/v1/customers/{customer}/consents", headers=bearer()).json()
    assert states["purposes"][PURPOSE]["effective"] is True

    # The ledger: each service's run that let the customer go (counts, no subject), and the leave.
    def purging(service: str) -> list[dict[str, Any]]:
        return [r["payload"] for r in retention_runs(audit, service) if r["payload"]["customers"]]

    [consent_run] = wait_for(lambda: purging("consent"), timeout=60, what="consent's run in the ledger")
    [segmenter_run] = wait_for(lambda: purging("segmenter"), timeout=60, what="the segmenter's run")
    assert (consent_run["customers"], consent_run["records"]) == (1, {PURPOSE: 2})
    assert (segmenter_run["customers"], segmenter_run["records"]) == (1, {})
    leave = wait_for(
        lambda: [r for r in ledger(audit, customer) if r["payload"]["action"] == "left"],
        timeout=60,
        what="the leave in the ledger",
    )
    assert [r["payload"]["reason"] for r in leave] == ["retention_expired"]
