"""Training reads the segmenter's Redis state: consented customers only, and the known groups come out."""

from __future__ import annotations

import time
from pathlib import Path

from sklearn.metrics import adjusted_rand_score

from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.domain.consent import PurposeConsent
from services.segmenter.domain.feature_values import rule_features
from services.segmenter.modeling.assign import ModelAssigner
from services.segmenter.modeling.sources import RedisTrainingSource
from services.segmenter.modeling.store import FileModelStore
from services.segmenter.modeling.synthetic import GROUPS, population
from services.segmenter.modeling.trainer import TrainingRun, train_model
from services.segmenter.modeling.training import TrainingSpec
from tests.integration.modeling.conftest import PARTITIONS, Person, seed
from tests.support import RecordedTrainings

# The customers without profiling consent form a group of their own, far from the others: if
# any of them reached training, a cluster (or a centre) would show it.
OUTSIDERS = {"purchase_count": 90, "events.page_view": 5, "total_spend": 90000.0, "first_seen_days": 3000.0}


def cohort() -> tuple[list[Person], dict[str, int]]:
    """90 consenting customers of three groups; 40 outsiders denied, unrecorded or expired."""
    people: list[Person] = []
    groups: dict[str, int] = {}
    for index, (group, features) in enumerate(population(30, seed=4)):
        customer_id = f"c-{index}"
        people.append((customer_id, features, "granted"))
        groups[customer_id] = group
    for index in range(40):
        features = {**OUTSIDERS, "last_seen_days": 1.0, "last_purchase_days": 1.0}
        people.append((f"x-{index}", features, ("denied", None, "expired")[index % 3]))
    return people, groups


async def test_training_sees_exactly_the_consented_customers_and_finds_their_groups(
    customers: RedisCustomerStore, tmp_path: Path
) -> None:
    people, groups = cohort()
    await seed(customers, people)
    source = RedisTrainingSource(customers, PARTITIONS)
    assert await source.population() == len(people)
    store = FileModelStore(tmp_path / "models", b"k" * 32)
    run = TrainingRun(TrainingSpec("rfm", None), store, RecordedTrainings())
    model = await train_model(source, run)
    assert model.metadata.n_training == len(groups) == 90 and source.without_consent == 40
    assert model.metadata.clusters == len(GROUPS)
    assert max(centre["frequency"] for centre in model.metadata.centers) < OUTSIDERS["purchase_count"] / 2
    assigner = ModelAssigner(store)
    assigner.refresh()
    found = {customer_id: await assigned(assigner, customers, customer_id) for customer_id, _, _ in people}
    ids = sorted(groups)
    assert adjusted_rand_score([groups[i] for i in ids], [found[i] for i in ids]) > 0.95
    assert {customer_id for customer_id, cluster in found.items() if cluster is None} == {
        customer_id for customer_id, _, _ in people if customer_id not in groups
    }
    # A withdrawal after training: no cluster at the very next assignment.
    await customers.apply_consent("c-0", {"profiling": PurposeConsent("denied", None, time.time() + 1)})
    assert found["c-0"] is not None and await assigned(assigner, customers, "c-0") is None


async def assigned(assigner: ModelAssigner, customers: RedisCustomerStore, customer_id: str) -> int | None:
    """Online assignment as the segmenter does it, from the customer's stored features and consent."""
    snapshot, now = await customers.read(customer_id), time.time()
    granted = {p for p in snapshot.consent.purposes if snapshot.consent.effective(p, now)}
    return assigner.assign("rfm", rule_features(snapshot.features, now), granted)


async def test_a_withdrawal_before_training_keeps_the_customer_out(customers: RedisCustomerStore) -> None:
    people, groups = cohort()
    await seed(customers, people)
    withdrawn = sorted(groups)[:5]
    for customer_id in withdrawn:
        await customers.apply_consent(
            customer_id, {"profiling": PurposeConsent("denied", None, time.time() + 1)}
        )
    source = RedisTrainingSource(customers, PARTITIONS)
    rows = [row async for row in source.consented_features("profiling")]
    assert len(rows) == len(groups) - len(withdrawn) and source.without_consent == 40 + len(withdrawn)
    counts = [row["purchase_count"] for row in rows]
    assert all(isinstance(n, int | float) and n < OUTSIDERS["purchase_count"] for n in counts)
