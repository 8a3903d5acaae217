"""The announced membership read back from segment.membership.state, and its partitioning."""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord

from services.segmenter.adapters.kafka_publisher import customer_partition, state_key
from services.segmenter.membership_state import AnnouncedMembership, last_announced
from shared.events import MembershipChanged, MembershipState


def change(segment: str, customer: str, action: str) -> MembershipChanged:
    return MembershipChanged(
        event_id=f"{segment}-{customer}-{action}",
        segment_id=segment,
        customer_id=customer,
        action=action,  # type: ignore[arg-type]
        reason="rule_matched" if action == "joined" else "consent_withdrawn",
        cause_event_id=None,
        cause_at=None,
        at=datetime.now(UTC),
    )


def record(offset: int, segment: str, customer: str, value: bytes | None) -> ConsumerRecord:
    return ConsumerRecord(
        topic="segment.membership.state",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=state_key(segment, customer),
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=0,
        headers=(),
    )


def test_the_last_value_per_key_wins_and_a_tombstone_means_left() -> None:
    records = [
        record(0, "mail", "c-1", change("mail", "c-1", "joined").to_bytes()),
        record(1, "mail", "c-2", change("mail", "c-2", "joined").to_bytes()),
        record(2, "mail", "c-1", None),
        record(3, "sms", "c-1", change("sms", "c-1", "joined").to_bytes()),
        record(4, "mail", "c-3", b"not json"),
    ]
    joined = last_announced(records)
    assert set(joined) == {("mail", "c-2"), ("sms", "c-1")}
    assert isinstance(joined[("sms", "c-1")], MembershipState)


def test_what_this_worker_publishes_while_reading_overrides_the_topic() -> None:
    announced = AnnouncedMembership()
    announced.observe([change("mail", "c-1", "left"), change("sms", "c-2", "joined")])
    announced.load([record(0, "mail", "c-1", change("mail", "c-1", "joined").to_bytes())])
    assert announced.segments_of("c-1") == set() and announced.segments_of("c-2") == {"sms"}
    announced.observe([change("sms", "c-2", "left")])
    assert announced.joined == {}


def test_state_records_go_to_the_partition_of_the_customer_id_key() -> None:
    partitions = list(range(6))
    for customer in ("c-1", "alice@example.com", "C.9:x", "42"):
        expected = DefaultPartitioner()(customer.encode(), partitions, partitions)
        assert customer_partition(customer, 6) == expected


def test_only_the_wanted_customers_are_kept_and_a_forgotten_one_is_gone() -> None:
    """A reconcile keeps what was announced of its own customers only, and drops each once compared:
    kept for everyone while a paced reconcile ran, the changes published meanwhile grew with the
    drain."""
    announced = AnnouncedMembership(lambda customer: customer != "c-9")
    announced.observe([change("mail", "c-9", "joined")])  # while reading: not wanted either
    announced.load(
        [
            record(0, "mail", "c-1", change("mail", "c-1", "joined").to_bytes()),
            record(1, "mail", "c-9", change("mail", "c-9", "joined").to_bytes()),
        ]
    )
    assert announced.joined == {"c-1": {"mail"}}
    announced.observe([change("sms", "c-9", "joined"), change("sms", "c-1", "joined")])
    assert announced.joined == {"c-1": {"mail", "sms"}}
    announced.forget(["c-1"])
    assert announced.joined == {}
