"""The compliance monitor finds a membership without effective consent, evicts it and counts it."""

from __future__ import annotations

from typing import Any

import httpx

from services.segmenter.adapters.redis_keys import SEGMENT, KeyLayout
from shared.pseudonym import load_pseudonym_key, pseudonymize
from shared.settings import ServiceSettings
from tests.integration.segmenter.conftest import ADMIN, FAST, put_segment, wait_until
from tests.integration.segmenter.test_invariants import metric
from tests.support import index_add


async def test_monitor_evicts_and_counts_a_membership_without_consent(
    start_service: Any, kafka_io: Any, redis_view: Any, service_env: dict[str, str]
) -> None:
    inputs, outputs = kafka_io
    service = start_service("segmenter", **FAST).wait_ready()
    with httpx.Client(base_url=service.url, headers=ADMIN) as client:
        put_segment(client, "mail", "event_count >= 1", "marketing_email")
    await inputs.event("c-5", "click")  # known to the worker, never consented
    await wait_until(lambda: redis_view.features("c-5").get("events") == "1", what="the event")
    # What a bug elsewhere could leave behind: a membership no consent allows.
    redis_view.client.hset(redis_view.state("c-5"), SEGMENT + "mail", "1")
    index_add(redis_view.client, KeyLayout(redis_view.ns).members("mail"), "c-5")

    evicted = await wait_until(lambda: outputs.find("c-5", "mail", "left"), what="the monitor's eviction")
    assert evicted.reason == "consent_withdrawn"
    assert redis_view.segments_of("c-5") == set() and redis_view.members("mail") == set()
    assert metric(service.url, "segwarden_segmenter_compliance_violations_total") == 1
    log = service.log_path.read_text()
    key = load_pseudonym_key(ServiceSettings(data_dir=service_env["DATA_DIR"]))
    assert pseudonymize(key, "c-5") in log and '"c-5"' not in log
