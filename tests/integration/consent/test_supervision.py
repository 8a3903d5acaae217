"""A crash of the requests consumer mid-batch is restarted by the supervisor, shown on /readyz,
and skips nothing of the batch it was handling."""

from __future__ import annotations

import pytest

from tests.conftest import bearer
from tests.integration.consent.conftest import produce, profiling_requests, topic
from tests.support import http_client, wait_for

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def test_a_raise_mid_batch_restarts_the_consumer_and_records_every_request(
    start_service, kafka_bootstrap, customer
) -> None:
    # The first request of each of three runs is recorded, then its run fails before the commit.
    service = start_service("consent", FAILPOINTS="consent.requests_mid_batch=raise@1x3").wait_ready()
    statuses = ["granted", "denied"] * 3
    requests = profiling_requests(customer, statuses)
    produce(kafka_bootstrap, topic(service, "consent.requests"), customer, requests)

    def failing() -> str | None:
        body = http_client.get(f"{service.url}/readyz").json()
        reason = body.get("reasons", {}).get("tasks", "")
        return reason if "requests-consumer: failed" in reason else None

    assert "InjectedFaultError at failpoints.py" in wait_for(failing, what="/readyz naming the consumer")
    url = f"{service.url}/v1/customers/{customer}/consents/history"
    history = wait_for(
        lambda: len(h := http_client.get(url, headers=bearer()).json()["history"]) >= len(statuses) and h,
        timeout=90,
        what="every request after the restarts",
    )
    assert [h["status"] for h in history] == statuses  # each once, none skipped, in order
    metrics = http_client.get(f"{service.url}/metrics").text
    assert 'segwarden_task_failures_total{task="requests-consumer"} 3.0' in metrics
    wait_for(lambda: http_client.get(f"{service.url}/readyz").status_code == 200, what="ready again")
