"""Model-based segments online: a model trained on consented customers assigns live events' customers,
only with effective profiling consent; a withdrawal evicts at once; PUT refuses what cannot assign."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from services.segmenter.adapters.redis_keys import KeyLayout
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.domain.feature_values import rule_features
from services.segmenter.modeling.assign import ModelAssigner
from services.segmenter.modeling.sources import RedisTrainingSource
from services.segmenter.modeling.store import FileModelStore, model_store
from services.segmenter.modeling.synthetic import population
from services.segmenter.modeling.trainer import TrainingRun, train_model
from services.segmenter.modeling.training import TrainingSpec
from services.segmenter.settings import SegmenterSettings
from tests.integration.modeling.conftest import PARTITIONS, event_plan, seed
from tests.integration.segmenter.conftest import ADMIN, Inputs, Outputs, RedisView, wait_until
from tests.support import TEST_PSEUDONYM_KEY, RecordedTrainings

MODEL = "rfm-live"
LOYAL = 0  # index of the "loyal" group in synthetic.GROUPS


async def train(
    service_env: dict[str, str], topic_prefix: str, redis_url: str, tmp_path: Path
) -> tuple[ModelAssigner, FileModelStore]:
    """Seed consented and unconsented customers into Redis, train on them into the segmenter's store."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    customers = RedisCustomerStore(client, KeyLayout(f"sw:{topic_prefix}"), TEST_PSEUDONYM_KEY)
    people: list[tuple[str, Any, str | None]] = [
        (f"t-{i}", features, "granted") for i, (_, features) in enumerate(population(20, seed=3))
    ]
    people += [(f"u-{i}", features, "denied") for i, (_, features) in enumerate(population(4, seed=8))]
    await seed(customers, people)
    store = model_store(SegmenterSettings(data_dir=Path(service_env["DATA_DIR"])))
    run = TrainingRun(TrainingSpec(MODEL, 3), store, RecordedTrainings())
    model = await train_model(RedisTrainingSource(customers, PARTITIONS), run)
    assert model.metadata.n_training == 60
    await client.aclose()  # type: ignore[attr-defined]
    assigner = ModelAssigner(store)
    assigner.refresh()
    return assigner, store


async def send_history(inputs: Inputs, customer: str, features: dict[str, Any]) -> int:
    """The customer's events, stamped in the past so they add up to `features`; returns how many."""
    plan = event_plan(features, time.time())
    for kind, at, amount in plan:
        attributes = {} if amount is None else {"amount": round(amount, 2), "currency": "EUR"}
        occurred = datetime.fromtimestamp(at, UTC)
        await inputs.event(customer, kind, wait=False, occurred_at=occurred, **attributes)
    await inputs.producer.flush()
    return len(plan)


def refused(api: httpx.Client, **changes: Any) -> list[Any]:
    """PUT a model segment with `changes`; the location of the field the 422 names."""
    body = {"name": "m", "model": MODEL, "cluster": 0, "required_purposes": ["profiling"], **changes}
    response = api.put("/v1/segments/m", json=body)
    assert response.status_code == 422, response.text
    return list(response.json()["detail"][0]["loc"])


def trainees_in(local: ModelAssigner, redis_view: RedisView, cluster: int) -> set[str]:
    """The consenting trainees the model places in `cluster` (the unconsented `u-*` never count)."""
    now = time.time()
    features = {c: rule_features(redis_view.features(c), now) for c in [f"t-{i}" for i in range(60)]}
    return {c for c, f in features.items() if local.assign(MODEL, f, {"profiling"}) == cluster}


async def test_profiling_consent_decides_model_segment_membership(
    service_env: dict[str, str],
    topic_prefix: str,
    redis_url: str,
    tmp_path: Path,
    start_service: Any,
    kafka_io: tuple[Inputs, Outputs],
    redis_view: RedisView,
) -> None:
    local, store = await train(service_env, topic_prefix, redis_url, tmp_path)
    loyal = [features for group, features in population(3, seed=21) if group == LOYAL]
    cluster = local.assign(MODEL, loyal[0], {"profiling"})
    assert cluster is not None and all(local.assign(MODEL, f, {"profiling"}) == cluster for f in loyal)
    # The default (slow) sweep: a removed model must be noticed by the model watcher.
    service = start_service("segmenter").wait_ready()
    api = httpx.Client(base_url=service.url, headers=ADMIN, timeout=10)
    assert [m["id"] for m in api.get("/v1/models").json()] == [MODEL]
    assert refused(api, model="no-such-model") == ["body", "model"]
    assert refused(api, cluster=3) == ["body", "cluster"]  # the model has clusters 0..2
    assert refused(api, required_purposes=["marketing_email"]) == ["body", "required_purposes"]
    body = {"name": "loyal", "model": MODEL, "cluster": cluster, "required_purposes": ["profiling"]}
    assert api.put("/v1/segments/loyal", json=body).status_code == 200, "defined"

    inputs, outputs = kafka_io
    expected = trainees_in(local, redis_view, cluster)
    assert len(expected) >= 15
    await wait_until(lambda: redis_view.members("loyal") == expected, what="trainees of the cluster to join")
    await wait_until(
        lambda: all(outputs.find(c, "loyal", "joined", "segment_changed") for c in expected),
        what="every trainee's joined (segment_changed)",
    )

    consenting, denied, unrecorded = "live-a", "live-b", "live-c"
    await inputs.consent(consenting, "profiling", "granted")
    await inputs.consent(denied, "profiling", "denied")
    await wait_until(
        lambda: all(redis_view.consent(c, "profiling") for c in (consenting, denied)),
        what="consent recorded before the events",
    )
    counts = {c: await send_history(inputs, c, loyal[0]) for c in (denied, unrecorded, consenting)}

    def stored() -> bool:
        return all(int(redis_view.features(c).get("events", 0)) == n for c, n in counts.items())

    await wait_until(stored, what="every event stored")
    await wait_until(
        lambda: outputs.find(consenting, "loyal", "joined", "rule_matched"),
        what="the consenting customer's join",
    )
    assert redis_view.segments_of(consenting) == {"loyal"}

    await inputs.consent(consenting, "profiling", "denied")
    await wait_until(
        lambda: outputs.find(consenting, "loyal", "left", "consent_withdrawn"), what="eviction on withdrawal"
    )
    assert redis_view.segments_of(consenting) == set() and consenting not in redis_view.members("loyal")

    store.remove(MODEL)
    await wait_until(lambda: not redis_view.members("loyal"), what="the model's removal to empty the segment")
    await wait_until(
        lambda: all(outputs.find(c, "loyal", "left", "segment_changed") for c in expected),
        what="every member's left (segment_changed)",
    )
    assert refused(api, model=MODEL) == ["body", "model"]
    # Seconds after their events were evaluated, the customers without profiling never joined.
    for customer in (denied, unrecorded):
        assert outputs.of(customer) == [] and redis_view.segments_of(customer) == set()
    api.close()
