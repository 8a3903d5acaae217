"""The access bundle with its peers running: segments from the segmenter, the trail from the audit
service, the destinations from the delivery service."""

from __future__ import annotations

import pytest

from tests.conftest import bearer
from tests.integration.consent.conftest import choice, put
from tests.support import http_client, wait_for

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def test_export_gathers_segments_and_the_audit_trail(start_service, peer_segmenter, customer) -> None:
    segmenter = peer_segmenter
    on_its_prefix = {"TOPIC_PREFIX": segmenter.env["TOPIC_PREFIX"]}
    audit = start_service("audit", **on_its_prefix)
    delivery = start_service("delivery", **on_its_prefix)
    # The internal token with only the scopes deploy/make_env.py gives it: enough for the calls.
    peers = {"SEGMENTER_URL": segmenter.url, "AUDIT_URL": audit.url, "DELIVERY_URL": delivery.url}
    consent = start_service("consent", INTERNAL_TOKEN="internal-token-01", **peers, **on_its_prefix)
    for service in (segmenter, audit, delivery, consent):
        service.wait_ready(90)
    assert put(consent, customer, "marketing_email", choice()).status_code == 200
    url = f"{consent.url}/v1/customers/{customer}/export"

    def bundle_with_trail() -> dict | None:
        bundle = http_client.get(url, headers=bearer("dsr-officer-0001"), timeout=30).json()
        return bundle if bundle["audit"] else None

    bundle = wait_for(bundle_with_trail, timeout=60, what="the consent change in the audit trail")
    assert bundle["unavailable"] == []
    assert bundle["segments"] == [] and bundle["destinations"] == []
    assert {record["kind"] for record in bundle["audit"]} >= {"consent_change"}
    assert all(customer not in str(record) for record in bundle["audit"])  # the ledger is pseudonymous
    assert [h["purpose"] for h in bundle["history"]] == ["marketing_email"]
