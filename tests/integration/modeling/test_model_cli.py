"""`segwarden model train` as an operator runs it: Redis state in; model, report and ledger record out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from matplotlib import image
from typer.testing import CliRunner

from segwarden.cli import app
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.modeling.store import model_store
from services.segmenter.modeling.synthetic import population
from services.segmenter.modeling.training import TrainingSpec, feature_matrix, train
from shared import topics
from shared.embedded import free_port
from shared.events import ModelTrained
from shared.settings import ServiceSettings
from shared.topics import TopicNames
from tests.integration.modeling.conftest import PARTITIONS, Person, seed
from tests.support import read_topic


def segwarden(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "segwarden", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


async def test_train_stores_a_verified_model_its_report_and_publishes_its_audit_record(
    customers: RedisCustomerStore, redis_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    consenting: list[Person] = [
        (f"c-{i}", features, "granted") for i, (_, features) in enumerate(population(20, seed=9))
    ]
    refusing: list[Person] = [
        (f"d-{i}", features, "denied") for i, (_, features) in enumerate(population(5, seed=8))
    ]
    await seed(customers, consenting + refusing)
    data = tmp_path / "data"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "REDIS_URL": redis_url,
        "TOPIC_PREFIX": topic_prefix,
        "TOPIC_PARTITIONS": str(PARTITIONS),
        "DATA_DIR": str(data),
    }
    done = segwarden(env, "model", "train", "--name", "rfm-cli", "--clusters", "3")
    assert done.returncode == 0, done.stderr
    assert "trained on 60 customers with profiling consent" in done.stdout
    envelope = json.loads((data / "models" / "rfm-cli.json").read_text())
    assert envelope["metadata"]["n_training"] == 60 and envelope["metadata"]["clusters"] == 3
    assert image.imread(data / "models" / "rfm-cli.png").shape[:2] == (850, 1500)
    # The audit service records what is on `model.trainings` (tests/integration/audit).
    (value,) = read_topic(kafka_bootstrap, TopicNames(topic_prefix).name(topics.MODEL_TRAININGS), 1)
    training = ModelTrained.model_validate_json(value)
    assert training.model_id == "rfm-cli" and training.n_training == 60 and training.n_without_consent == 15
    assert "c-" not in value.decode()


def test_list_shows_verified_models_and_train_refuses_a_used_id_a_bad_count_or_no_broker(
    redis_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "REDIS_URL": redis_url,
        "TOPIC_PREFIX": topic_prefix,
        "DATA_DIR": str(tmp_path),
    }
    people = population(20, seed=9)
    model = train(TrainingSpec("rfm-cli", 3), feature_matrix(f for _, f in people))
    model_store(ServiceSettings(data_dir=tmp_path)).save(model.metadata, model.pipeline)
    runner = CliRunner()
    listed = runner.invoke(app, ["model", "list"], env=env)
    assert listed.exit_code == 0 and "rfm-cli" in listed.stdout
    again = runner.invoke(app, ["model", "train", "--name", "rfm-cli", "--clusters", "3"], env=env)
    assert again.exit_code == 1 and "train a new id" in again.stderr
    bad = runner.invoke(app, ["model", "train", "--name", "rfm-2", "--clusters", "many"], env=env)
    assert bad.exit_code == 2 and "--clusters" in bad.stderr
    gone = {**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    unreachable = runner.invoke(app, ["model", "train", "--name", "rfm-2", "--clusters", "3"], env=gone)
    assert (
        unreachable.exit_code == 1
        and "Redis" in unreachable.stderr
        and "did not answer" in unreachable.stderr
    )
    no_broker = {**env, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    unaudited = runner.invoke(app, ["model", "train", "--name", "rfm-3", "--clusters", "3"], env=no_broker)
    assert unaudited.exit_code == 1 and "did not answer" in unaudited.stderr
    assert not model_store(ServiceSettings(data_dir=tmp_path)).exists("rfm-3")
