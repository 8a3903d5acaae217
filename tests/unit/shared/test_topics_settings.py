"""Topic registry and settings: names carry the prefix, partitions and policies are right."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared import topics
from shared.settings import ServiceSettings
from shared.topics import TopicNames


def test_names_carry_the_prefix() -> None:
    names = TopicNames("stack1.", 6)
    assert names.name(topics.CUSTOMER_EVENTS) == "stack1.customer.events"
    assert names.dlq(topics.CUSTOMER_EVENTS) == "stack1.customer.events.dlq"


def test_plan_copartitions_customer_topics_and_compacts_the_compacted() -> None:
    plan = {p.name: p for p in TopicNames("", 6).plan()}
    for spec in topics.ALL:
        if spec.customer_keyed:
            assert plan[spec.base].partitions == 6, spec.base
    assert plan["audit.log"].partitions == 1
    assert plan["consent.state"].configs["cleanup.policy"] == "compact"
    assert plan["segment.definitions"].configs["cleanup.policy"] == "compact"
    assert plan["consent.changes"].configs["cleanup.policy"] == "delete"
    assert "customer.events.dlq" in plan


def test_every_contract_topic_is_registered() -> None:
    contract = {
        "customer.events",
        "consent.requests",
        "consent.changes",
        "consent.state",
        "segment.definitions",
        "segment.membership",
        "segment.membership.state",
        "erasure.requests",
        "model.trainings",
        "retention.runs",
        "delivery.outcomes",
        "delivery.destinations",
        "audit.log",
    }
    assert {spec.base for spec in topics.ALL} == contract


def test_settings_defaults_match_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "TOPIC_PREFIX", "TOPIC_PARTITIONS", "REDIS_URL", "BIND_HOST"):
        monkeypatch.delenv(name, raising=False)
    settings = ServiceSettings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.topic_partitions == 6
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.bind_host == "127.0.0.1"


def test_empty_variables_fall_back_to_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPIC_PREFIX", "")
    monkeypatch.setenv("TOPIC_PARTITIONS", "")
    assert ServiceSettings().topic_partitions == 6


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost"),
        ("KAFKA_BOOTSTRAP_SERVERS", "host:99999"),
        ("REDIS_URL", "postgres://x"),
        ("TOPIC_PREFIX", "bad prefix"),
        ("TOPIC_PARTITIONS", "0"),
    ],
)
def test_bad_settings_fail_fast_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        ServiceSettings()
    assert caught.value.errors()[0]["loc"] == (variable.lower(),)


def test_every_topic_has_an_explicit_retention() -> None:
    for plan in TopicNames("", 6).plan():
        assert "retention.ms" in plan.configs, plan.name


def test_erasures_must_outlive_the_events_a_replay_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPIC_RETENTION_INPUT_HOURS", "100")
    monkeypatch.setenv("TOPIC_RETENTION_ERASURE_HOURS", "99")
    with pytest.raises(ValidationError, match="TOPIC_RETENTION_ERASURE_HOURS"):
        ServiceSettings()
