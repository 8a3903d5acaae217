"""Helpers for the audit service's integration tests: source events, producing, polling the API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from sqlalchemy import Engine

from services.audit.adapters.sql_database import create_schema, make_engine
from shared import topics
from shared.events import (
    ConsentChanged,
    ConsentStatus,
    ErasureRequested,
    MembershipAction,
    MembershipChanged,
    ModelTrained,
    SegmentDefinition,
    new_event_id,
)
from shared.topics import TopicNames, TopicSpec
from tests.conftest import bearer
from tests.support import http_client

NOW = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)


def consent(
    customer: str, purpose: str = "marketing_email", status: ConsentStatus = "granted"
) -> ConsentChanged:
    return ConsentChanged(
        event_id=new_event_id(),
        customer_id=customer,
        purpose=purpose,
        status=status,
        previous_status=None,
        reason="user",
        source="preference-center",
        jurisdiction="GDPR",
        policy_version="2026-03",
        recorded_at=NOW,
    )


def membership(
    customer: str, segment: str = "eu-high-value", action: MembershipAction = "joined"
) -> MembershipChanged:
    return MembershipChanged(
        event_id=new_event_id(),
        segment_id=segment,
        customer_id=customer,
        action=action,
        reason="rule_matched",
        cause_event_id=None,
        cause_at=None,
        at=NOW,
    )


def erasure(customer: str) -> ErasureRequested:
    return ErasureRequested(event_id=new_event_id(), customer_id=customer, requested_at=NOW)


def definition(segment: str, purposes: tuple[str, ...] = ("marketing_email",)) -> SegmentDefinition:
    return SegmentDefinition(
        event_id=new_event_id(),
        segment_id=segment,
        name=segment,
        rule="total_spend >= 100",
        required_purposes=purposes,
        updated_at=NOW,
    )


def training(model_id: str = "rfm") -> ModelTrained:
    return ModelTrained(
        event_id=f"model_trained:{model_id}:{new_event_id()}",
        model_id=model_id,
        purpose="profiling",
        algorithm="kmeans",
        clusters=2,
        features=("recency_days", "frequency"),
        n_training=40,
        n_without_consent=10,
        cluster_sizes=(25, 15),
        silhouette=0.5,
        sha256="ab" * 32,
        trained_at=NOW,
    )


class Sources:
    """Produces source records to one test's topics (kafka-python, acks from the broker)."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.names = TopicNames(prefix)
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)

    def send(self, spec: topics.TopicSpec, key: str | None, value: bytes | None) -> None:
        self.producer.send(self.names.name(spec), value=value, key=key.encode() if key else None)

    def event(self, event: Any) -> None:
        specs: dict[type, TopicSpec] = {
            ConsentChanged: topics.CONSENT_CHANGES,
            MembershipChanged: topics.SEGMENT_MEMBERSHIP,
            ErasureRequested: topics.ERASURE_REQUESTS,
            SegmentDefinition: topics.SEGMENT_DEFINITIONS,
            ModelTrained: topics.MODEL_TRAININGS,
        }
        spec = specs[type(event)]
        key = {topics.SEGMENT_DEFINITIONS: "segment_id", topics.MODEL_TRAININGS: "model_id"}.get(
            spec, "customer_id"
        )
        self.send(spec, getattr(event, key), event.to_bytes())

    def flush(self) -> None:
        self.producer.flush(30)

    def close(self) -> None:
        self.producer.close(10)


@pytest.fixture
def sources(kafka_bootstrap: str, topic_prefix: str):
    made = Sources(kafka_bootstrap, topic_prefix)
    yield made
    made.close()


def all_records(url: str, token: str = "auditor-token-01", **params: Any) -> list[dict[str, Any]]:
    """Every record the API lists, following `next_after_seq`."""
    out: list[dict[str, Any]] = []
    after = -1
    while True:
        page = http_client.get(
            f"{url}/v1/audit", params={**params, "after_seq": after, "limit": 1000}, headers=bearer(token)
        )
        page.raise_for_status()
        body = page.json()
        out.extend(body["records"])
        if body["next_after_seq"] is None:
            return out
        after = body["next_after_seq"]


def ledger_length(url: str) -> int:
    return int(http_client.get(f"{url}/v1/audit/verify", headers=bearer("auditor-token-01")).json()["length"])


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty audit database: a SQLite file, or the test PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    made = make_engine(db_url)
    create_schema(made)
    yield made
    made.dispose()
