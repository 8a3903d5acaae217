"""The consent sequence against real consent processes: group commits, two replicas, a clock step back."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from shared.events import ConsentChanged, ConsentStateSnapshot
from tests.conftest import bearer
from tests.integration.consent.conftest import choice, for_key, put, read_topic, topic
from tests.support import ServiceProcess, http_client, libfaketime

pytestmark = [pytest.mark.timeout(180)]
PURPOSE = "marketing_sms"


def history(service: ServiceProcess, customer: str) -> list[dict]:
    url = f"{service.url}/v1/customers/{customer}/consents/history"
    return http_client.get(url, headers=bearer(), timeout=10).json()["history"]


def burst(services: list[ServiceProcess], customer: str, statuses: list[str]) -> None:
    """Concurrent PUTs of one customer and purpose, spread over `services`, all acked."""

    def one(index: int) -> int:
        service = services[index % len(services)]
        return put(service, customer, PURPOSE, choice(statuses[index])).status_code

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(one, range(len(statuses)))) == {200}


def alternating(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)  # mostly alternating, with repeats (recorded, not published)
    return [rng.choice(["granted", "denied", "granted" if n % 2 else "denied"]) for n in range(count)]


def published_changes(
    bootstrap: str, service: ServiceProcess, customer: str, rows: list[dict]
) -> list[ConsentChanged]:
    """The customer's consent.changes in topic order, first delivery of each event id."""
    wanted = {r["event_id"] for r in rows if r["published"]}

    def arrived(records) -> bool:
        return wanted <= {ConsentChanged.model_validate_json(v).event_id for v in for_key(records, customer)}

    records = read_topic(bootstrap, topic(service, "consent.changes"), arrived, timeout=60)
    seen: dict[str, ConsentChanged] = {}
    for value in for_key(records, customer):
        change = ConsentChanged.model_validate_json(value)
        seen.setdefault(change.event_id, change)
    return list(seen.values())


def last_state(bootstrap: str, service: ServiceProcess, customer: str, sequence: int) -> ConsentStateSnapshot:
    """The customer's last consent.state value, once one carrying `sequence` for the purpose arrived."""

    def arrived(records) -> bool:
        return any(
            v and ConsentStateSnapshot.model_validate_json(v).purposes[PURPOSE].sequence == sequence
            for v in for_key(records, customer)
        )

    records = read_topic(bootstrap, topic(service, "consent.state"), arrived, timeout=60)
    value = for_key(records, customer)[-1]
    assert value is not None
    return ConsentStateSnapshot.model_validate_json(value)


def check_ordered(bootstrap: str, service: ServiceProcess, customer: str, rows: list[dict]) -> None:
    """Sequences strictly increase in history order and on the topics; the last word is the last row."""
    sequences = [r["sequence"] for r in rows]
    assert None not in sequences and sequences == sorted(set(sequences)), sequences
    published = [r for r in rows if r["published"]]
    changes = published_changes(bootstrap, service, customer, rows)
    assert [(c.event_id, c.sequence) for c in changes] == [(r["event_id"], r["sequence"]) for r in published]
    assert changes[-1].status == rows[-1]["status"]
    state = last_state(bootstrap, service, customer, published[-1]["sequence"]).purposes[PURPOSE]
    assert (state.status, state.sequence) == (rows[-1]["status"], published[-1]["sequence"])


def test_a_burst_sharing_group_commits_is_published_in_sequence_order(
    consent, kafka_bootstrap, customer
) -> None:
    burst([consent], customer, alternating(10, 48))
    rows = history(consent, customer)
    assert len(rows) == 48
    # Some choices shared a group commit (one transaction, one clock reading): the case where
    # ordering by recorded_at cannot tell them apart.
    assert len({r["recorded_at"] for r in rows}) < len(rows), "no group commit was shared"
    check_ordered(kafka_bootstrap, consent, customer, rows)


def test_two_replicas_racing_on_one_customer_never_share_or_reorder_a_sequence(
    start_service, kafka_bootstrap, postgres_url, customer
) -> None:
    replicas = [start_service("consent", CONSENT_DB_URL=postgres_url) for _ in range(2)]
    for replica in replicas:
        replica.wait_ready()
    burst(replicas, customer, alternating(12, 60))
    rows = history(replicas[1], customer)
    assert len(rows) == 60
    assert len({r["event_id"] for r in rows}) == 60
    check_ordered(kafka_bootstrap, replicas[0], customer, rows)


def test_a_clock_stepped_back_leaves_the_order_to_the_sequence(
    start_service, kafka_bootstrap, customer
) -> None:
    service = start_service("consent").wait_ready()
    burst([service], customer, ["granted", "denied", "granted"])
    service.stop()
    # The same process restarted 10 minutes in the past (libfaketime shifts the wall clock only;
    # more than a restart can take on a loaded machine, so its first record is dated earlier).
    service.env |= {
        "LD_PRELOAD": libfaketime(),
        "FAKETIME": "-10m",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "NO_FAKE_STAT": "1",
    }
    service.start().wait_ready()
    assert put(service, customer, PURPOSE, choice("denied")).status_code == 200
    assert put(service, customer, PURPOSE, choice("granted", jurisdiction="CCPA")).status_code == 200
    assert put(service, customer, PURPOSE, choice("denied")).status_code == 200
    rows = history(service, customer)
    stamps = [datetime.fromisoformat(r["recorded_at"]) for r in rows]
    assert stamps[3] < stamps[2], "the clock did not step back: the fault was not injected"
    check_ordered(kafka_bootstrap, service, customer, rows)
    states = http_client.get(f"{service.url}/v1/customers/{customer}/consents", headers=bearer()).json()
    assert (states["purposes"][PURPOSE]["status"], states["purposes"][PURPOSE]["sequence"]) == (
        "denied",
        rows[-1]["sequence"],
    )
