"""The retention job in a real segmenter on the real broker and Redis: a customer whose last event
is older than the retention of the segment's purpose is announced `left`/`retention_expired` and
their features are purged; a customer active since stays; the run reaches the audit ledger as a
`retention_run` record, counts only. The customer became a member three days ago, with the
segmenter's wall clock shifted back (libfaketime), so nothing waits days."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.segmenter.adapters.redis_keys import KeyLayout
from shared.catalog import load_catalog
from tests.integration.consent.test_retention import retention_runs
from tests.integration.segmenter.conftest import (
    ADMIN,
    FAST,
    RedisView,
    module_segmenter,
    put_segment,
    wait_until,
)
from tests.integration.segmenter.test_redis_rebuild import announced_state
from tests.support import ServiceProcess, http_client, index_score, libfaketime

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]
PURPOSE = "marketing_email"
FAKED = {
    "LD_PRELOAD": libfaketime(),
    "FAKETIME": "-3d",
    "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    "NO_FAKE_STAT": "1",
}


def _catalog(path: Path) -> Path:
    """The shipped catalog with PURPOSE kept for one day (the shortest retention there is)."""
    purposes = [
        p.model_dump(mode="json") | ({"retention_days": 1} if p.id == PURPOSE else {})
        for p in load_catalog().purposes
    ]
    path.write_text(yaml.safe_dump({"purposes": purposes}))
    return path


@pytest.fixture
def aged_segmenter(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    """A segmenter whose clock runs three days behind until the test restarts it."""
    env = {**FAST, **FAKED, "PURPOSES_FILE": str(_catalog(tmp_path / "purposes.yaml"))}
    env["SEGMENTER_RETENTION_INTERVAL_S"] = "0.5"
    with module_segmenter(kafka_bootstrap, redis_url, tmp_path, **env) as service:
        yield service


@pytest.fixture
def io_prefix(aged_segmenter: ServiceProcess) -> str:
    return aged_segmenter.env["TOPIC_PREFIX"]


def _purged(service: ServiceProcess) -> float:
    text = http_client.get(f"{service.url}/metrics", timeout=5).text
    name = "segwarden_segmenter_retention_purged_total"
    line = next((line for line in text.splitlines() if line.startswith(name + " ")), None)
    return float(line.split()[1]) if line else 0.0


async def test_a_customer_inactive_past_retention_leaves_and_loses_features_an_active_one_stays(
    aged_segmenter: ServiceProcess, kafka_io: Any, redis_view: RedisView, kafka_bootstrap: str
) -> None:
    inputs, outputs = kafka_io
    service = aged_segmenter
    segment = f"ret-{uuid.uuid4().hex[:8]}"
    idle, active = f"idle-{uuid.uuid4().hex[:8]}", f"active-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=service.url, headers=ADMIN, timeout=10) as api:
        put_segment(api, segment, "event_count >= 1", PURPOSE)
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    await inputs.consent(idle, PURPOSE, "granted", recorded_at=three_days_ago)
    await inputs.event(idle, occurred_at=three_days_ago)
    await wait_until(lambda: outputs.find(idle, segment, "joined"), what="the idle customer to join")

    # Now, three days later, on the real clock.
    await asyncio.to_thread(service.stop)
    for name in FAKED:
        del service.env[name]
    await asyncio.to_thread(lambda: service.start().wait_ready())
    await inputs.consent(active, PURPOSE, "granted")
    await inputs.event(active)
    await wait_until(lambda: outputs.find(active, segment, "joined"), what="the active customer to join")

    left = await wait_until(
        lambda: outputs.find(idle, segment, "left"), timeout=60, what="the idle customer to leave"
    )
    assert left.reason == "retention_expired"
    await wait_until(lambda: _purged(service) == 1, what="the purge to be counted")
    audit = ServiceProcess("audit", service.env, service.log_path.with_name("audit.log"))
    try:
        await asyncio.to_thread(audit.wait_ready, 90)

        def purging_run() -> list[dict[str, Any]]:
            runs = retention_runs(audit, "segmenter")
            return [r["payload"] for r in runs if r["payload"]["customers"]]

        [run] = await wait_until(purging_run, timeout=60, what="the purging run in the ledger")
        assert (run["customers"], run["records"]) == (1, {})
        assert idle not in str(retention_runs(audit, "segmenter"))
    finally:
        audit.kill()
    assert redis_view.features(idle) == {}
    assert redis_view.segments_of(idle) == set()
    assert redis_view.members(segment) == {active}
    assert redis_view.features(active)["events"] == "1"
    assert outputs.find(active, segment, "left") is None
    # The leave went through the outbox and was acknowledged like any other, its trace too.
    assert redis_view.outbox(idle) == []
    state = await announced_state(kafka_bootstrap, service.env["TOPIC_PREFIX"] + "segment.membership.state")
    assert (segment, active) in state and (segment, idle) not in state


async def test_a_customer_known_only_from_consent_leaves_past_retention_and_is_let_go(
    aged_segmenter: ServiceProcess, kafka_io: Any, redis_view: RedisView
) -> None:
    """No event, so no `last` feature: the customer's activity is their latest consent choice."""
    inputs, outputs = kafka_io
    service = aged_segmenter
    segment = f"never-bought-{uuid.uuid4().hex[:8]}"
    idle, active = f"idle-{uuid.uuid4().hex[:8]}", f"active-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=service.url, headers=ADMIN, timeout=10) as api:
        put_segment(api, segment, "not purchase_count >= 1", PURPOSE)  # subscribers who never bought
    await inputs.consent(idle, PURPOSE, "granted", recorded_at=datetime.now(UTC) - timedelta(days=3))
    await wait_until(lambda: outputs.find(idle, segment, "joined"), what="the consent-only customer to join")

    await asyncio.to_thread(service.stop)
    for name in FAKED:
        del service.env[name]
    await asyncio.to_thread(lambda: service.start().wait_ready())
    await inputs.consent(active, PURPOSE, "granted")
    await wait_until(lambda: outputs.find(active, segment, "joined"), what="the recent one to join")

    left = await wait_until(
        lambda: outputs.find(idle, segment, "left"), timeout=60, what="the consent-only customer to leave"
    )
    assert left.reason == "retention_expired"
    await wait_until(lambda: _purged(service) == 1, what="the customer let go, counted")
    assert redis_view.members(segment) == {active}
    assert redis_view.segments_of(idle) == set()
    known = [KeyLayout(redis_view.ns).known(p) for p in range(3)]
    idle_scores = [index_score(redis_view.client, head, idle) for head in known]
    assert [s for s in idle_scores if s is not None] == [float("-inf")]  # known, no activity left
    assert any(index_score(redis_view.client, head, active) not in (None, float("-inf")) for head in known)
    assert outputs.find(active, segment, "left") is None
