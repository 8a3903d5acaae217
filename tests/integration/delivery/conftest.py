"""Fixtures of the delivery tests: receiver processes and a producer on the test's broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer

from tests.integration.delivery.harness import Receivers


@pytest.fixture
def receivers(tmp_path: Path) -> Iterator[Receivers]:
    started = Receivers(tmp_path)
    yield started
    for receiver in started:
        receiver.kill()


@pytest.fixture
def producer(kafka_bootstrap: str) -> Iterator[KafkaProducer]:
    client = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    yield client
    client.close()
