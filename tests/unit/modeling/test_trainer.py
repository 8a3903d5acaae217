"""The training service: counts only what its source allows, stores, reports and audits, or keeps nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from services.segmenter.modeling.store import FileModelStore, ModelExistsError
from services.segmenter.modeling.synthetic import population
from services.segmenter.modeling.trainer import LedgerError, TrainingRun, train_model
from services.segmenter.modeling.training import TrainedModel, TrainingSpec
from shared.events import ModelTrained
from tests.support import RecordedTrainings


class ListSource:
    """An in-memory `TrainingSource`: (consented, features) pairs, filtered like a real source must."""

    def __init__(self, people: list[tuple[bool, Mapping[str, object]]]) -> None:
        self.people = people
        self.without_consent = 0

    async def population(self) -> int | None:
        return len(self.people)

    async def consented_features(self, purpose: str) -> AsyncIterator[Mapping[str, object]]:
        for consented, features in self.people:
            if consented:
                yield features
            else:
                self.without_consent += 1


class RefusingLedger:
    async def record(self, training: ModelTrained) -> None:
        raise OSError("disk full")


def people() -> list[tuple[bool, Mapping[str, object]]]:
    return [(index % 4 != 0, features) for index, (_, features) in enumerate(population(40, seed=2))]


async def test_a_training_is_stored_reported_and_audited_with_counts_only(tmp_path: Path) -> None:
    store, ledger = FileModelStore(tmp_path / "models", b"k" * 32), RecordedTrainings()
    scanned: list[int] = []
    run = TrainingRun(TrainingSpec("rfm", 3), store, ledger, on_scanned=scanned.append)
    model = await train_model(ListSource(people()), run)
    assert model.metadata.n_training == 90 and scanned[-1] == 120
    assert store.load("rfm").metadata == model.metadata
    assert store.report_path("rfm").read_bytes().startswith(b"\x89PNG")
    (training,) = ledger.trainings
    assert training.model_id == "rfm" and training.event_id.startswith("model_trained:rfm:")
    assert training.n_training == 90 and training.n_without_consent == 30
    assert training.sha256 == store.metadata_and_checksum("rfm")[1]


async def test_a_model_the_ledger_refuses_is_not_kept(tmp_path: Path) -> None:
    store = FileModelStore(tmp_path, b"k" * 32)
    with pytest.raises(LedgerError, match="disk full"):
        await train_model(ListSource(people()), TrainingRun(TrainingSpec("rfm", 3), store, RefusingLedger()))
    assert not store.exists("rfm") and list(tmp_path.iterdir()) == []


async def test_an_existing_id_is_refused_before_reading_anyone(tmp_path: Path, trained: TrainedModel) -> None:
    store = FileModelStore(tmp_path, b"k" * 32)
    store.save(trained.metadata, trained.pipeline)
    source = ListSource(people())
    with pytest.raises(ModelExistsError, match="train a new id"):
        await train_model(source, TrainingRun(TrainingSpec("rfm-3", 3), store, RefusingLedger()))
    assert source.without_consent == 0
