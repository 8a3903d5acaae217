"""The consent use cases against the in-memory store: the history each writes and the outbox
rows it queues in the same transaction (tests/integration/consent/test_store.py runs them on SQL)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.consent import handlers
from services.consent.domain.consent import ConsentEntry, InvalidConsentError, RecordConsent
from services.consent.domain.policy import ConsentPolicy, Current
from shared.events import ConsentChanged, ConsentStateSnapshot, ErasureRequested
from tests.unit.consent.memory_store import MemoryConsentStore, Queued
from tests.unit.consent.test_policy import NOW, POLICY, command


def changes(store: MemoryConsentStore) -> list[ConsentChanged]:
    return [
        ConsentChanged.model_validate_json(q.payload or b"")
        for q in store.state.outbox
        if q.topic == "consent.changes"
    ]


def snapshots(store: MemoryConsentStore) -> list[ConsentStateSnapshot]:
    return [
        ConsentStateSnapshot.model_validate_json(q.payload or b"")
        for q in store.state.outbox
        if q.topic == "consent.state" and q.payload
    ]


def test_a_grant_is_recorded_numbered_and_queued_with_the_new_state() -> None:
    store = MemoryConsentStore()
    [entry] = handlers.record_consent(store, POLICY, command(), NOW) or []
    assert (entry.status, entry.reason, entry.sequence, entry.publishes) == ("granted", "user", 1, True)
    assert store.history("c-1") == [entry]
    assert [q.topic for q in store.state.outbox] == ["consent.changes", "consent.state"]
    assert [(c.event_id, c.sequence) for c in changes(store)] == [(entry.event_id, 1)]
    [snapshot] = snapshots(store)
    assert snapshot.purposes["marketing_email"].effective and not snapshot.purposes["profiling"].effective
    assert handlers.snapshot_bytes(store, POLICY, "c-1", NOW) != b""
    assert store.current("c-1")["marketing_email"].sequence == 1


def test_a_denial_that_keeps_the_default_is_recorded_but_queues_nothing() -> None:
    store = MemoryConsentStore()
    [entry] = handlers.record_consent(store, POLICY, command(status="denied"), NOW) or []
    assert store.history("c-1") == [entry] and not entry.publishes
    assert store.state.outbox == []
    [withdrawal] = handlers.record_consent(store, POLICY, command(status="denied"), NOW) or []
    assert not withdrawal.publishes and store.state.outbox == []


def test_a_denial_after_a_grant_queues_the_withdrawal() -> None:
    store = MemoryConsentStore()
    handlers.record_consent(store, POLICY, command(), NOW)
    [denial] = handlers.record_consent(store, POLICY, command(status="denied"), NOW) or []
    assert (denial.previous_status, denial.sequence, denial.publishes) == ("granted", 2, True)
    assert [(c.status, c.previous_status) for c in changes(store)] == [
        ("granted", None),
        ("denied", "granted"),
    ]
    assert not snapshots(store)[-1].purposes["marketing_email"].effective


def test_a_redelivered_request_id_returns_none_and_writes_nothing() -> None:
    store = MemoryConsentStore()
    assert handlers.record_consent(store, POLICY, command(request_id="r-1"), NOW)
    history, outbox = store.history("c-1"), list(store.state.outbox)
    assert handlers.record_consent(store, POLICY, command(status="denied", request_id="r-1"), NOW) is None
    assert store.history("c-1") == history and store.state.outbox == outbox
    # In one group commit too: the second use of the id is the redelivery.
    twice = [command("profiling", request_id="r-2"), command("profiling", "denied", request_id="r-2")]
    first, second = handlers.record_many(store, POLICY, twice, NOW)
    assert first and second is None and store.current("c-1")["profiling"].status == "granted"


def test_gpc_denies_the_sale_or_share_purposes_in_the_same_transaction() -> None:
    store = MemoryConsentStore()
    handlers.record_consent(store, POLICY, command("third_party_sharing"), NOW)
    entries = handlers.record_consent(store, POLICY, command(gpc=True), NOW) or []
    assert [(e.purpose, e.status, e.reason, e.sequence) for e in entries] == [
        ("marketing_email", "granted", "user", 2),
        ("third_party_sharing", "denied", "gpc", 3),
    ]
    assert [(c.purpose, c.reason) for c in changes(store)][-2:] == [
        ("marketing_email", "user"),
        ("third_party_sharing", "gpc"),
    ]
    # One snapshot for the transaction, after both rows.
    last = snapshots(store)[-1].purposes
    assert last["marketing_email"].effective and not last["third_party_sharing"].effective
    assert len(snapshots(store)) == 2


def test_the_notice_version_is_kept_and_a_future_one_writes_nothing() -> None:
    store = MemoryConsentStore()
    [entry] = handlers.record_consent(store, POLICY, command(notice_version=1), NOW) or []
    assert entry.notice_version == 1 and store.current("c-1")["marketing_email"].notice_version == 1
    assert snapshots(store)[-1].purposes["marketing_email"].notice_version == 1
    with pytest.raises(InvalidConsentError) as raised:
        handlers.record_consent(store, POLICY, command("profiling", notice_version=2), NOW)
    assert raised.value.field == "notice_version"
    assert store.history("c-1") == [entry] and len(store.state.outbox) == 2


class FailsFor(ConsentPolicy):
    """The policy, failing its decision for one customer: a fault in the middle of a transaction."""

    def __init__(self, customer_id: str) -> None:
        super().__init__(POLICY.catalog)
        self.customer_id = customer_id

    def decide(self, command: RecordConsent, current: Current, now: datetime) -> list[ConsentEntry]:
        if command.customer_id == self.customer_id:
            raise RuntimeError("the decision failed")
        return super().decide(command, current, now)


def test_a_group_commit_that_fails_on_one_choice_keeps_none_of_them() -> None:
    store = MemoryConsentStore()
    handlers.record_consent(store, POLICY, command("profiling", customer_id="c-2"), NOW)
    before = (store.history("c-2"), list(store.state.outbox))
    batch = [
        command(request_id="r-1"),
        command("profiling", "denied", customer_id="c-2"),
        command(customer_id="c-3"),
    ]
    with pytest.raises(RuntimeError):
        handlers.record_many(store, FailsFor("c-3"), batch, NOW)
    assert store.history("c-1") == [] and (store.history("c-2"), store.state.outbox) == before
    # The request id was released with the rest, so the retry records the choice.
    results = handlers.record_many(store, POLICY, batch, NOW)
    assert [[e.status for e in r or []] for r in results] == [["granted"], ["denied"], ["granted"]]
    assert [e.customer_id for e in changes(store)] == ["c-2", "c-1", "c-2", "c-3"]


def test_expiry_denies_the_lapsed_grants_only_and_queues_them() -> None:
    store = MemoryConsentStore()
    handlers.record_consent(store, POLICY, command(expires_at=NOW + timedelta(hours=1)), NOW)
    handlers.record_consent(store, POLICY, command("profiling", expires_at=NOW + timedelta(days=1)), NOW)
    assert handlers.expire_customer(store, POLICY, "c-1", NOW) == []
    [denial] = handlers.expire_customer(store, POLICY, "c-1", NOW + timedelta(hours=2))
    assert (denial.purpose, denial.status, denial.reason, denial.method) == (
        "marketing_email",
        "denied",
        "expired",
        "expiry",
    )
    assert store.history("c-1")[-1] == denial and changes(store)[-1].event_id == denial.event_id
    last = snapshots(store)[-1].purposes
    assert last["marketing_email"].status == "denied" and last["profiling"].status == "granted"
    assert handlers.expire_customer(store, POLICY, "c-1", NOW + timedelta(hours=3)) == []


def test_an_erasure_replaces_the_pending_rows_with_denials_a_tombstone_and_the_request() -> None:
    store = MemoryConsentStore()
    handlers.record_consent(store, POLICY, command(), NOW)
    handlers.record_consent(store, POLICY, command("profiling", customer_id="c-keep"), NOW)
    kept = [q for q in store.state.outbox if q.customer_id == "c-keep"]
    request, [denial] = handlers.erase_customer(store, POLICY, "c-1", "ab" * 32, NOW)
    assert (denial.purpose, denial.reason, denial.sequence, request.sequence) == (
        "marketing_email",
        "erasure",
        3,  # the sequence is the store's, not the customer's: c-keep's grant took 2
        4,
    )
    assert store.history("c-1") == [] and store.current("c-1") == {}
    erased = [q for q in store.state.outbox if q.customer_id == "c-1"]
    assert erased == [
        Queued("consent.changes", denial.event_id, "c-1", denial.to_event().to_bytes(), True),
        Queued("consent.state", erased[1].event_id, "c-1", None, True),
        Queued("erasure.requests", request.event_id, "c-1", request.to_bytes(), True),
    ]
    assert ErasureRequested.model_validate_json(erased[2].payload or b"") == request
    assert [q for q in store.state.outbox if q.customer_id == "c-keep"] == kept
    [proof] = store.state.erasures["ab" * 32]
    assert (proof.event_id, proof.records_deleted) == (request.event_id, 1 + 1 + 2)  # row, current, outbox


def test_retiring_history_pseudonymizes_superseded_old_rows_and_the_erasure_deletes_them() -> None:
    store, subject = MemoryConsentStore(), "cd" * 32
    old = NOW - timedelta(days=800)
    handlers.record_consent(store, POLICY, command(user_agent="ua"), old - timedelta(days=1))
    handlers.record_consent(store, POLICY, command(status="denied"), old)
    handlers.record_consent(store, POLICY, command("profiling", user_agent="ua"), old)  # in force: kept
    handlers.record_consent(store, POLICY, command(status="granted"), NOW)
    assert handlers.retire_history(store, POLICY, "c-1", subject, NOW) == {"marketing_email": 2}
    assert [(e.purpose, e.recorded_at) for e in store.history("c-1")] == [
        ("profiling", old),
        ("marketing_email", NOW),
    ]
    assert [e.user_agent for e in store.history(subject)] == [None, None]
    assert handlers.retire_history(store, POLICY, "c-1", subject, NOW) == {}
    handlers.erase_customer(store, POLICY, "c-1", subject, NOW)
    assert store.history(subject) == [] and store.history("c-1") == []


def test_a_choice_after_an_erasure_continues_the_sequence() -> None:
    store = MemoryConsentStore()
    handlers.record_consent(store, POLICY, command(), NOW)
    request, _ = handlers.erase_customer(store, POLICY, "c-1", "ef" * 32, NOW)
    [again] = handlers.record_consent(store, POLICY, command(), NOW) or []
    assert request.sequence is not None and again.sequence == request.sequence + 1
    assert again.previous_status is None  # the erased choice is gone
