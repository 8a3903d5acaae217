"""Every adapter of the segmenter, and every fake of tests/unit/segmenter/memory_store.py, fits
the ports it stands for (services/segmenter/domain/ports.py): mypy checks the assignments below,
and the test checks that each implements every method of its port under the same parameters,
so a port and its adapters cannot drift apart unnoticed."""

from __future__ import annotations

import inspect

import pytest

from services.segmenter.adapters.kafka_consent import KafkaConsentFollower
from services.segmenter.adapters.kafka_events import KafkaEventFollower
from services.segmenter.adapters.kafka_publisher import KafkaMembershipPublisher
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.adapters.sqlite_definitions import SqliteDefinitionStore
from services.segmenter.domain.ports import (
    ConsentBarrier,
    CustomerStore,
    DefinitionPublisher,
    DefinitionStore,
    ExpiryQueue,
    LiveInput,
    MembershipPublisher,
    SweptCustomerStore,
)
from services.segmenter.expiry import ExpiryScheduler
from tests.unit.segmenter.memory_store import (
    Backlog,
    GateBarrier,
    MemoryCustomerStore,
    MemoryDefinitionStore,
    RecordingExpiryQueue,
    RecordingPublisher,
)

# Typed so that mypy refuses an adapter (or fake) whose methods do not fit its port.
CUSTOMER_STORES: list[type[SweptCustomerStore]] = [RedisCustomerStore, MemoryCustomerStore]
MEMBERSHIP_PUBLISHERS: list[type[MembershipPublisher]] = [KafkaMembershipPublisher, RecordingPublisher]
DEFINITION_PUBLISHERS: list[type[DefinitionPublisher]] = [KafkaMembershipPublisher, RecordingPublisher]
DEFINITION_STORES: list[type[DefinitionStore]] = [SqliteDefinitionStore, MemoryDefinitionStore]
BARRIERS: list[type[ConsentBarrier]] = [KafkaConsentFollower, GateBarrier]
EXPIRY_QUEUES: list[type[ExpiryQueue]] = [ExpiryScheduler, RecordingExpiryQueue]
LIVE_INPUTS: list[type[LiveInput]] = [KafkaConsentFollower, KafkaEventFollower, Backlog]

PAIRS = [
    *((SweptCustomerStore, c) for c in CUSTOMER_STORES),
    *((MembershipPublisher, c) for c in MEMBERSHIP_PUBLISHERS),
    *((DefinitionPublisher, c) for c in DEFINITION_PUBLISHERS),
    *((DefinitionStore, c) for c in DEFINITION_STORES),
    *((ConsentBarrier, c) for c in BARRIERS),
    *((ExpiryQueue, c) for c in EXPIRY_QUEUES),
    *((LiveInput, c) for c in LIVE_INPUTS),
]


def _methods(port: type) -> list[str]:
    """The port's own methods and those of the ports it extends."""
    own = (vars(k) for k in port.__mro__ if k is not object and getattr(k, "_is_protocol", False))
    return sorted(
        {name for names in own for name, v in names.items() if inspect.isfunction(v) and name[0] != "_"}
    )


def test_the_swept_store_extends_the_customer_store() -> None:
    assert set(_methods(CustomerStore)) < set(_methods(SweptCustomerStore))


@pytest.mark.parametrize(("port", "implementation"), PAIRS, ids=lambda k: k.__name__)
def test_each_implementation_has_every_method_of_its_port(port: type, implementation: type) -> None:
    for name in _methods(port):
        wanted = list(inspect.signature(getattr(port, name)).parameters)
        found = getattr(implementation, name, None)
        assert found is not None, f"{implementation.__name__} lacks {name}"
        # The port's parameters, in order; an implementation may add some with defaults.
        assert list(inspect.signature(found).parameters)[: len(wanted)] == wanted, name
