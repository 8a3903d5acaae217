"""A real segmenter killed (or failing) at each step of the event path converges on redelivery:
member sets, the API and the last announced action per customer and segment agree with the rule,
features count each event once, and no outbox is left behind. A background re-evaluation that
fails is counted, shown on /readyz and retried; deleting the segment ends it; one killed between
two chunks is redone by the next start. Sweeps are slowed down so that they cannot mask a missing
repair."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.segmenter.reevaluation import TASK
from services.segmenter.sweeps import CHUNK
from tests.integration.segmenter.conftest import ADMIN, Outputs, RedisView, put_segment, wait_until
from tests.support import ServiceProcess, http_client

SLOW = {"SEGMENTER_SWEEP_INTERVAL_S": "600", "SEGMENTER_COMPLIANCE_INTERVAL_S": "600"}
EXPECTED = {"anyone": {"c-1", "c-2"}, "mail": {"c-1"}}
STEPS = (
    "events_between_writes",
    "events_mid_batch",
    "after_slot_commit",
    "after_member_sync",
    "after_publish",
)


def last_actions(outputs: Outputs) -> dict[tuple[str, str], str]:
    last: dict[tuple[str, str], str] = {}
    for m in outputs.messages:
        last[(m.customer_id, m.segment_id)] = m.action
    return last


def api_members(service: ServiceProcess, segment: str) -> set[str]:
    response = http_client.get(
        f"{service.url}/v1/segments/{segment}/members?limit=100", headers=ADMIN, timeout=5
    )
    return set(response.json()["members"]) if response.status_code == 200 else set()


async def send_inputs(inputs: Any, redis_view: RedisView) -> None:
    await inputs.consent("c-1", "marketing_email", "granted")
    await wait_until(lambda: redis_view.consent("c-1", "marketing_email"), what="the grant")
    await inputs.event("c-1", "purchase", amount=20, currency="EUR")
    await inputs.event("c-2", "click")


async def assert_converged(
    service: ServiceProcess, inputs: Any, outputs: Outputs, redis_view: RedisView
) -> None:
    def converged() -> bool:
        joined = {(c, s): "joined" for s, members in EXPECTED.items() for c in members}
        return (
            all(redis_view.members(s) == members for s, members in EXPECTED.items())
            and all(api_members(service, s) == members for s, members in EXPECTED.items())
            and last_actions(outputs) == joined
            and not redis_view.outbox("c-1")
            and not redis_view.outbox("c-2")
        )

    await wait_until(converged, timeout=60, what="member sets, API and announcements to converge")
    assert redis_view.segments_of("c-1") == {"anyone", "mail"} and redis_view.segments_of("c-2") == {"anyone"}
    assert redis_view.features("c-1")["purchases"] == "1" and redis_view.features("c-2")["events"] == "1"
    assert redis_view.known("c-1") and redis_view.known("c-2")  # the sweeps and retention find them
    # And the path goes on: a withdrawal evicts and is announced.
    await inputs.consent("c-1", "marketing_email", "denied")
    await wait_until(lambda: last_actions(outputs).get(("c-1", "mail")) == "left", what="the left")
    assert "c-1" not in redis_view.members("mail") and api_members(service, "mail") == set()


@pytest.mark.parametrize("step", STEPS)
async def test_a_kill_at_a_step_converges_after_restart(
    step: str, start_service: Any, kafka_io: Any, redis_view: RedisView
) -> None:
    inputs, outputs = kafka_io
    first = start_service("segmenter", FAILPOINTS=f"segmenter.{step}=kill", **SLOW).wait_ready()
    with httpx.Client(base_url=first.url, headers=ADMIN) as api:
        put_segment(api, "anyone", "event_count >= 1")
        put_segment(api, "mail", "purchase_count >= 1", "marketing_email")
    await send_inputs(inputs, redis_view)
    await wait_until(lambda: first.process.poll() is not None, what=f"the kill at {step}")
    second = start_service("segmenter", **SLOW).wait_ready()
    await assert_converged(second, inputs, outputs, redis_view)


async def test_an_error_at_every_step_is_retried_to_convergence(
    start_service: Any, kafka_io: Any, redis_view: RedisView
) -> None:
    inputs, outputs = kafka_io
    armed = ",".join(f"segmenter.{step}=raise" for step in STEPS)
    service = start_service("segmenter", FAILPOINTS=armed, **SLOW).wait_ready()
    with httpx.Client(base_url=service.url, headers=ADMIN) as api:
        put_segment(api, "anyone", "event_count >= 1")
        put_segment(api, "mail", "purchase_count >= 1", "marketing_email")
    await send_inputs(inputs, redis_view)
    await assert_converged(service, inputs, outputs, redis_view)
    log = service.log_path.read_text()
    assert log.count("InjectedFaultError") >= len(STEPS)  # every fault was injected (and retried)


def failing_tasks(service: ServiceProcess) -> str:
    """The `tasks` reason of /readyz ("" while ready)."""
    body = http_client.get(f"{service.url}/readyz", timeout=5).json()
    return str(body.get("reasons", {}).get("tasks", ""))


def reevaluation_done(service: ServiceProcess) -> bool:
    """No segment is waiting for (or in) a background re-evaluation."""
    metrics = http_client.get(f"{service.url}/metrics", timeout=5).text
    return "segwarden_segmenter_reevaluation_pending_segments 0.0" in metrics


async def start_for_segment_jobs(start_service: Any, failpoints: str) -> ServiceProcess:
    """A segmenter whose start-up re-evaluation has ended before any customer is known, so every
    hit of `reevaluate_mid_batch` is the test's segment change."""
    service = start_service("segmenter", FAILPOINTS=failpoints, **SLOW).wait_ready()
    await wait_until(lambda: reevaluation_done(service), what="start-up re-evaluation")
    return service


async def test_a_reevaluation_that_raises_is_counted_shown_and_retried_to_membership(
    start_service: Any, kafka_io: Any, redis_view: RedisView
) -> None:
    inputs, outputs = kafka_io
    # The job of a new segment fails three times on its first chunk, before applying anything.
    service = await start_for_segment_jobs(start_service, "segmenter.reevaluate_mid_batch=raise@1x3")
    await inputs.event("c-1", "click")
    await inputs.event("c-2", "click")
    known = ("c-1", "c-2")
    await wait_until(lambda: all(redis_view.features(c).get("events") == "1" for c in known), what="events")
    with httpx.Client(base_url=service.url, headers=ADMIN) as api:
        put_segment(api, "clickers", "event_count >= 1")  # defined after the events: only its job adds them

    reason = await wait_until(
        lambda: r if f"{TASK}: failed" in (r := failing_tasks(service)) else None,
        what="/readyz naming the failing job",
    )
    assert "InjectedFaultError at failpoints.py" in reason
    await wait_until(
        lambda: (
            redis_view.members("clickers") == set(known)
            and api_members(service, "clickers") == set(known)
            and all(last_actions(outputs).get((c, "clickers")) == "joined" for c in known)
        ),
        what="the retried job to add both customers",
    )
    metrics = http_client.get(f"{service.url}/metrics", timeout=5).text
    assert f'segwarden_task_failures_total{{task="{TASK}"}} 3.0' in metrics
    await wait_until(lambda: failing_tasks(service) == "", what="/readyz clear again")


async def test_deleting_a_segment_ends_its_failing_reevaluation(
    start_service: Any, kafka_io: Any, redis_view: RedisView
) -> None:
    inputs, _ = kafka_io
    service = await start_for_segment_jobs(start_service, "segmenter.reevaluate_mid_batch=raise@1x1000")
    await inputs.event("c-1", "click")
    await wait_until(lambda: redis_view.features("c-1").get("events") == "1", what="the event")
    with httpx.Client(base_url=service.url, headers=ADMIN) as api:
        put_segment(api, "doomed", "event_count >= 1")
        await wait_until(lambda: f"{TASK}: failed" in failing_tasks(service), what="failing")
        assert api.delete("/v1/segments/doomed").status_code == 200
    # The deletion replaced the failing re-evaluation (emptying reads no chunk to evaluate).
    await wait_until(lambda: http_client.get(f"{service.url}/readyz").status_code == 200, what="ready again")
    assert failing_tasks(service) == "" and reevaluation_done(service)
    assert redis_view.members("doomed") == set()


async def test_a_kill_in_the_middle_of_a_reevaluation_is_redone_by_the_next_start(
    start_service: Any, kafka_io: Any, redis_view: RedisView
) -> None:
    inputs, outputs = kafka_io
    # SIGKILL when the second chunk is read: the first chunk's customers joined, the others not yet.
    first = await start_for_segment_jobs(start_service, "segmenter.reevaluate_mid_batch=kill@2")
    customers = {f"r-{i}" for i in range(CHUNK + 40)}
    for customer in sorted(customers):
        await inputs.event(customer, "click", wait=False)
    await inputs.producer.flush()
    await wait_until(
        lambda: all(redis_view.features(c).get("events") == "1" for c in customers), what="the events"
    )
    with httpx.Client(base_url=first.url, headers=ADMIN) as api:
        put_segment(
            api, "clickers", "event_count >= 1"
        )  # defined after the events: only re-evaluation adds them
    process = first.process
    assert process is not None
    await wait_until(lambda: process.poll() is not None, what="the kill in the second chunk")
    halfway = redis_view.members("clickers")
    assert 0 < len(halfway) < len(customers)

    second = start_service("segmenter", **SLOW).wait_ready()

    def joins() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for m in outputs.messages:
            if m.segment_id == "clickers":
                out.setdefault(m.customer_id, set()).add(f"{m.action}:{m.event_id}")
        return out

    await wait_until(
        lambda: redis_view.members("clickers") == customers and set(joins()) == customers,
        timeout=60,
        what="the next start to finish the re-evaluation",
    )
    await wait_until(lambda: reevaluation_done(second), what="the re-evaluation to end")
    # Every customer announced joined exactly once (one event id), none left: the restart
    # redid the pass without announcing again the chunk the killed worker had applied.
    assert all(len(j) == 1 and next(iter(j)).startswith("joined:") for j in joins().values())
    assert all(redis_view.segments_of(c) == {"clickers"} and not redis_view.outbox(c) for c in customers)


def processed(service: ServiceProcess, outcome: str) -> float:
    """Events the service counted with `outcome` (applied, duplicate, ...), all types together."""
    total = 0.0
    for line in http_client.get(f"{service.url}/metrics", timeout=5).text.splitlines():
        if line.startswith("segwarden_segmenter_events_processed_total{") and f'outcome="{outcome}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_a_crash_mid_batch_applies_nothing_twice_on_redelivery(
    start_service: Any, kafka_io: Any, redis_view: RedisView
) -> None:
    inputs, outputs = kafka_io
    first = start_service("segmenter", **SLOW).wait_ready()
    with httpx.Client(base_url=first.url, headers=ADMIN) as api:
        put_segment(api, "anyone", "event_count >= 1")
    first.kill()
    # A backlog, so the restarted segmenter reads it in one fetch: several events per customer
    # (one Lua step each), killed once their features are written and before the offsets are.
    sent = {"c-1": 5, "c-2": 3, "c-3": 4}
    for customer, count in sent.items():
        for _ in range(count):
            await inputs.event(customer, "purchase", amount=10, currency="EUR")
    crashed = start_service("segmenter", FAILPOINTS="segmenter.events_mid_batch=kill", **SLOW)
    await wait_until(lambda: crashed.process.poll() is not None, timeout=60, what="the kill mid-batch")
    written = {c: int(redis_view.features(c).get("events", "0")) for c in sent}
    assert any(written.values())  # the batch's features were written before the kill
    second = start_service("segmenter", **SLOW).wait_ready()
    await wait_until(
        lambda: processed(second, "applied") + processed(second, "duplicate") >= sum(sent.values()),
        what="the redelivered backlog",
    )
    assert processed(second, "duplicate") >= sum(written.values())  # redelivered, not applied again
    for customer, count in sent.items():
        features = redis_view.features(customer)
        assert (features["events"], features["purchases"], float(features["spend"])) == (
            str(count),
            str(count),
            10.0 * count,
        )
    await wait_until(lambda: redis_view.members("anyone") == set(sent), what="the members")
    await wait_until(lambda: last_actions(outputs) == {(c, "anyone"): "joined" for c in sent}, what="joins")
    assert sorted(m.customer_id for m in outputs.messages) == sorted(sent)  # each announced once
