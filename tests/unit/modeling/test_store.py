"""The model store: round trip, and refusal of anything this installation did not write."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.segmenter.modeling.integrity import ModelIntegrityError, envelope
from services.segmenter.modeling.store import (
    FileModelStore,
    ModelExistsError,
    ModelNotFoundError,
    model_store,
)
from services.segmenter.modeling.training import TrainedModel
from shared.settings import ServiceSettings

KEY = bytes(range(32))


@pytest.fixture
def store(tmp_path: Path, trained: TrainedModel) -> FileModelStore:
    store = FileModelStore(tmp_path, KEY)
    store.save(trained.metadata, trained.pipeline)
    return store


def bytes_file(store: FileModelStore) -> Path:
    (path,) = store.directory.glob("rfm-3.*.pkl")
    return path


def test_a_saved_model_loads_and_predicts_the_same(store: FileModelStore, trained: TrainedModel) -> None:
    loaded = store.load("rfm-3")
    assert loaded.metadata == trained.metadata
    assert np.array_equal(loaded.pipeline.predict(trained.samples), trained.labels)
    assert store.list() == [trained.metadata]


def test_flipped_model_bytes_are_refused_before_unpickling(store: FileModelStore) -> None:
    path = bytes_file(store)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="model bytes do not match the signed checksum"):
        store.load("rfm-3")


def test_edited_metadata_is_refused(store: FileModelStore) -> None:
    path = store.directory / "rfm-3.json"
    doc = json.loads(path.read_bytes())
    doc["metadata"]["n_training"] += 1
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelIntegrityError, match="metadata signature does not match"):
        store.load("rfm-3")
    assert store.list() == []


def test_a_swapped_checksum_is_refused(store: FileModelStore) -> None:
    path = store.directory / "rfm-3.json"
    doc = json.loads(path.read_bytes())
    doc["sha256"] = "0" * 64
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelIntegrityError, match="metadata signature does not match"):
        store.load("rfm-3")


def test_a_model_of_another_installation_is_refused(store: FileModelStore, tmp_path: Path) -> None:
    other = FileModelStore(tmp_path, bytes(32))
    with pytest.raises(ModelIntegrityError, match="another installation"):
        other.load("rfm-3")


def test_a_signed_pickle_that_runs_code_is_still_refused(
    store: FileModelStore, trained: TrainedModel, tmp_path: Path
) -> None:
    # Even with the key (say it leaked), only estimators and arrays may be rebuilt.
    payload = pickle.dumps(os.system)
    signed = envelope(KEY, trained.metadata, payload)
    (tmp_path / f"rfm-3.{signed['sha256'][:16]}.pkl").write_bytes(payload)
    (tmp_path / "rfm-3.json").write_text(json.dumps(signed))
    with pytest.raises(ModelIntegrityError, match="posix.system is not part of a segwarden model"):
        store.load("rfm-3")


def test_garbage_in_place_of_an_envelope_is_refused(store: FileModelStore) -> None:
    (store.directory / "rfm-3.json").write_text("not json")
    with pytest.raises(ModelIntegrityError, match="not a signed model envelope"):
        store.load("rfm-3")


def test_missing_bytes_and_missing_models_are_named(store: FileModelStore) -> None:
    bytes_file(store).unlink()
    with pytest.raises(ModelIntegrityError, match="model bytes are missing"):
        store.load("rfm-3")
    with pytest.raises(ModelNotFoundError):
        store.load("nothing")


def test_an_existing_model_is_replaced_only_when_asked(store: FileModelStore, trained: TrainedModel) -> None:
    with pytest.raises(ModelExistsError):
        store.save(trained.metadata, trained.pipeline)
    changed = trained.metadata.model_copy(update={"random_state": 99})
    trained.pipeline.set_params(cluster__random_state=99)  # other bytes, so a new bytes file
    try:
        store.save(changed, trained.pipeline, replace=True)
    finally:
        trained.pipeline.set_params(cluster__random_state=0)
    assert store.load("rfm-3").metadata.random_state == 99
    assert len(list(store.directory.glob("rfm-3.*.pkl"))) == 1


def test_the_installation_key_is_created_once(tmp_path: Path, trained: TrainedModel) -> None:
    settings = ServiceSettings(data_dir=tmp_path)
    model_store(settings).save(trained.metadata, trained.pipeline)
    assert model_store(settings).load("rfm-3").metadata == trained.metadata
    assert (tmp_path / "model-key").stat().st_mode & 0o777 == 0o600


def test_a_removed_model_leaves_no_file_behind(store: FileModelStore) -> None:
    store.save_report("rfm-3", b"\x89PNG")
    assert store.exists("rfm-3")
    store.remove("rfm-3")
    assert not store.exists("rfm-3") and list(store.directory.iterdir()) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.floats(min_value=0, max_value=1, exclude_max=True), mask=st.integers(1, 255))
def test_any_flipped_byte_of_the_model_bytes_is_refused(
    store: FileModelStore, position: float, mask: int
) -> None:
    path = bytes_file(store)
    original = path.read_bytes()
    data = bytearray(original)
    data[int(position * len(data))] ^= mask
    path.write_bytes(bytes(data))
    try:
        with pytest.raises(ModelIntegrityError):
            store.load("rfm-3")
    finally:
        path.write_bytes(original)


json_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_edited_metadata_field_is_refused(store: FileModelStore, data: st.DataObject) -> None:
    path = store.directory / "rfm-3.json"
    original = path.read_bytes()
    doc = json.loads(original)
    field = data.draw(st.sampled_from(sorted(doc["metadata"])))
    value = data.draw(json_values.filter(lambda v: v != doc["metadata"][field]))
    doc["metadata"][field] = value
    path.write_text(json.dumps(doc))
    try:
        with pytest.raises(ModelIntegrityError, match="metadata signature does not match"):
            store.load("rfm-3")
    finally:
        path.write_bytes(original)
