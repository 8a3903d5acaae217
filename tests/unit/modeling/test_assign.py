"""`ModelAssigner`: verified models only, noticed without a restart, never applied without consent."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest

from services.segmenter.modeling.assign import ModelAssigner
from services.segmenter.modeling.store import FileModelStore
from services.segmenter.modeling.synthetic import GROUPS, customer_features
from services.segmenter.modeling.training import TrainedModel
from shared.supervise import Supervisor

KEY = b"k" * 32
PROFILING = {"profiling", "marketing_email"}


@pytest.fixture
def store(tmp_path: Path) -> FileModelStore:
    return FileModelStore(tmp_path, KEY)


def one_of_each_group() -> list[dict[str, float | int]]:
    rng = random.Random(1)
    return [customer_features(group, rng) for group in GROUPS]


def test_customers_of_different_groups_get_the_trained_clusters(
    store: FileModelStore, trained: TrainedModel
) -> None:
    store.save(trained.metadata, trained.pipeline)
    assigner = ModelAssigner(store)
    assert assigner.refresh() == {"rfm-3"}
    clusters = [assigner.assign("rfm-3", features, PROFILING) for features in one_of_each_group()]
    assert sorted(clusters) == [0, 1, 2]  # type: ignore[type-var]
    assert assigner.models() == [trained.metadata]


def test_no_assignment_without_the_models_purpose_or_the_model(
    store: FileModelStore, trained: TrainedModel
) -> None:
    store.save(trained.metadata, trained.pipeline)
    assigner = ModelAssigner(store)
    assigner.refresh()
    features = one_of_each_group()[0]
    assert assigner.assign("rfm-3", features, {"marketing_email"}) is None
    assert assigner.assign("rfm-3", features, set()) is None
    assert assigner.assign("other", features, PROFILING) is None


def test_new_replaced_and_removed_models_are_noticed(store: FileModelStore, trained: TrainedModel) -> None:
    assigner = ModelAssigner(store)
    assert assigner.refresh() == set() and assigner.models() == []
    store.save(trained.metadata, trained.pipeline)
    assert assigner.refresh() == {"rfm-3"}
    assert assigner.refresh() == set()  # nothing changed, nothing reloaded
    store.save(trained.metadata.model_copy(update={"random_state": 5}), trained.pipeline, replace=True)
    assert assigner.refresh() == {"rfm-3"}
    assert assigner.get("rfm-3").random_state == 5  # type: ignore[union-attr]
    (store.directory / "rfm-3.json").unlink()
    assert assigner.refresh() == {"rfm-3"} and assigner.get("rfm-3") is None


def test_a_tampered_model_is_refused_and_the_others_keep_working(
    store: FileModelStore, trained: TrainedModel
) -> None:
    store.save(trained.metadata, trained.pipeline)
    store.save(trained.metadata.model_copy(update={"id": "rfm-b"}), trained.pipeline)
    path = store.directory / "rfm-b.json"
    doc = json.loads(path.read_bytes())
    doc["metadata"]["clusters"] = 4
    path.write_text(json.dumps(doc))
    assigner = ModelAssigner(store)
    assigner.refresh()
    assert [m.id for m in assigner.models()] == ["rfm-3"]
    assert "metadata signature does not match" in assigner.refused()["rfm-b"]
    assert assigner.assign("rfm-b", one_of_each_group()[0], PROFILING) is None
    assert assigner.refresh() == set()  # refused once, not re-read until the file changes


async def test_watch_picks_up_a_model_trained_while_running(
    store: FileModelStore, trained: TrainedModel
) -> None:
    assigner, noticed = ModelAssigner(store), asyncio.Queue[set[str]]()
    supervisor = Supervisor()
    supervisor.every("model-watch", 0.05, lambda: assigner.refresh_and_notify(noticed.put), first_now=True)
    try:
        await asyncio.to_thread(store.save, trained.metadata, trained.pipeline)
        assert await asyncio.wait_for(noticed.get(), timeout=30) == {"rfm-3"}
        assert assigner.get("rfm-3") == trained.metadata
        await asyncio.to_thread(store.remove, "rfm-3")
        assert await asyncio.wait_for(noticed.get(), timeout=30) == {"rfm-3"}
        assert assigner.get("rfm-3") is None
    finally:
        await supervisor.stop()
