"""The segment API against a running segmenter: validation, auth, lifecycle, members, stats, restart."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from tests.conftest import bearer
from tests.integration.segmenter.conftest import ADMIN, put_segment, wait_until
from tests.support import http_client, wait_for


@pytest.fixture
def io_prefix(shared_prefix: str) -> str:
    """This module's tests share one segmenter, so its topics."""
    return shared_prefix


def test_bad_rules_unknown_names_and_missing_scopes_are_refused(api: httpx.Client, segmenter: Any) -> None:
    bad = api.put("/v1/segments/s1", json={"name": "s", "rule": "total_spend >= and x"})
    assert bad.status_code == 422
    detail = bad.json()["detail"][0]
    assert detail["loc"] == ["body", "rule"] and detail["position"] == 15 and "position 15" in detail["msg"]
    unknown = api.put("/v1/segments/s1", json={"name": "s", "rule": "total_spend > 1 and ltv > 2"})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["position"] == 20
    assert "unknown feature 'ltv'" in unknown.json()["detail"][0]["msg"]
    purpose = api.put(
        "/v1/segments/s1", json={"name": "s", "rule": "event_count > 1", "required_purposes": ["spam"]}
    )
    assert purpose.status_code == 422 and purpose.json()["detail"][0]["loc"] == [
        "body",
        "required_purposes",
        0,
    ]
    both = api.put(
        "/v1/segments/s1", json={"name": "s", "rule": "event_count > 1", "model": "m", "cluster": 1}
    )
    assert both.status_code == 422
    assert api.put("/v1/segments/Bad_Id", json={"name": "s", "rule": "event_count > 1"}).status_code == 422
    assert api.get("/v1/segments/s1").status_code == 404

    assert api.get("/v1/models").json() == []  # none trained under this DATA_DIR
    assert http_client.get(f"{segmenter.url}/v1/models").status_code == 401
    url = f"{segmenter.url}/v1/segments"
    assert http_client.get(url).status_code == 401
    assert http_client.get(url, headers=bearer("not-a-token-at-all")).status_code == 401
    assert http_client.get(url, headers=bearer("consent-reader-01")).status_code == 403
    assert http_client.get(url, headers=bearer("segments-rw-0001")).status_code == 200
    body = {"name": "s", "rule": "event_count > 1"}
    assert http_client.put(f"{url}/s2", json=body, headers=bearer("auditor-token-01")).status_code == 403
    assert http_client.put(f"{url}/s2", json=body, headers=bearer("segments-rw-0001")).status_code == 200


def test_rules_over_the_limits_or_holding_personal_data_get_422_with_the_position(api: httpx.Client) -> None:
    huge = api.put("/v1/segments/huge", json={"name": "s", "rule": " or ".join(["1"] * 10_000)})
    assert huge.status_code == 422, huge.text
    detail = huge.json()["detail"][0]
    assert (
        detail["loc"] == ["body", "rule"]
        and detail["position"] == 4096
        and "MAX_RULE_LENGTH" in detail["msg"]
    )
    terms = api.put("/v1/segments/huge", json={"name": "s", "rule": "or".join(["''"] * 1024)})
    assert terms.status_code == 422 and terms.json()["detail"][0]["position"] == 1024
    assert "more than 256 terms (MAX_TERMS)" in terms.json()["detail"][0]["msg"]
    email = api.put("/v1/segments/pii", json={"name": "s", "rule": "profile.email == 'jane@example.com'"})
    assert email.status_code == 422 and email.json()["detail"][0]["position"] == 17
    assert "looks like an e-mail address" in email.json()["detail"][0]["msg"]
    phone = api.put("/v1/segments/pii", json={"name": "s", "rule": "profile.phone in ['+49 170 1234567']"})
    assert phone.status_code == 422 and "looks like a phone number" in phone.json()["detail"][0]["msg"]
    assert api.get("/v1/segments/huge").status_code == 404 and api.get("/v1/segments/pii").status_code == 404
    put_segment(api, "paged", "event_count < 0")  # never has members: other tests' customers stay out
    cursor = api.get("/v1/segments/paged/members", params={"cursor": "9" * 20})  # past 2**64 - 1
    assert cursor.status_code == 422 and cursor.json()["detail"][0]["loc"] == ["query", "cursor"]
    assert api.delete("/v1/segments/paged").status_code == 200


async def test_lifecycle_members_stats_and_delete(api: httpx.Client, kafka_io: Any, redis_view: Any) -> None:
    inputs, outputs = kafka_io
    first = put_segment(
        api, "active", "event_count >= 2 and profile.country in ['DE', 'FR']", "marketing_email"
    )
    assert (
        first["version"] == 1
        and put_segment(api, "active", "event_count >= 1", "marketing_email")["version"] == 2
    )
    customers = [f"c-{i}" for i in range(12)]
    for i, customer in enumerate(customers):
        await inputs.consent(customer, "marketing_email", "granted", wait=False)
        await inputs.event(
            customer, "profile_update", wait=False, country="DE" if i < 11 else "IT", tier="gold"
        )
    await inputs.producer.flush()
    await wait_until(lambda: len(redis_view.members("active")) == 12, what="12 members")
    # Announced too: a join still waiting for the admission barrier when the rule changes is
    # withheld, and then its leave is never announced either (each segment's stream alternates).
    await wait_until(lambda: all(outputs.find(c, "active", "joined") for c in customers), what="12 joins")

    pages, cursor = [], None
    while True:
        page = api.get(
            "/v1/segments/active/members", params={"limit": 5, **({"cursor": cursor} if cursor else {})}
        )
        pages += page.json()["members"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(pages) == sorted(customers)
    assert api.get("/v1/customers/c-3/segments").json() == {
        "customer_id": "c-3",
        "segments": ["active"],
        "explained": [
            {
                "segment_id": "active",
                "name": "active",
                "description": "",
                "required_purposes": ["marketing_email"],
                "reason": {
                    "kind": "condition", "feature": "event_count", "op": ">=", "value": 1,
                    "text": None, "parts": [],
                },
            }
        ],
    }  # fmt: skip
    stats = api.get("/v1/segments/active/stats").json()
    assert stats["size"] == 12 and stats["breakdowns"]["country"] == {"DE": 11}  # IT (1) is suppressed
    assert stats["breakdowns"]["tier"] == {"gold": 12}

    changed = put_segment(api, "active", "event_count >= 1 and profile.country == 'DE'", "marketing_email")
    assert changed["version"] == 3
    await wait_until(
        lambda: outputs.find("c-11", "active", "left", "segment_changed"), what="the re-evaluation"
    )
    assert "c-11" not in redis_view.members("active") and len(redis_view.members("active")) == 11

    assert api.delete("/v1/segments/active").json() == {"segment_id": "active", "deleted": True}
    await wait_until(lambda: not redis_view.members("active"), what="the deleted segment to empty")
    await wait_until(
        lambda: all(outputs.find(c, "active", "left", "segment_deleted") for c in customers[:11]),
        what="lefts",
    )
    assert api.get("/v1/segments/active").status_code == 404
    assert api.get("/v1/customers/c-3/segments").json()["segments"] == []


async def test_definitions_survive_a_fresh_broker_and_reach_the_topic(
    start_service: Any, service_env: dict[str, str], kafka_bootstrap: str
) -> None:
    first = start_service("segmenter").wait_ready()
    with httpx.Client(base_url=first.url, headers=ADMIN) as client:
        put_segment(client, "kept", "total_spend > 10", "marketing_email")
        put_segment(client, "gone", "total_spend > 10")
        assert client.delete("/v1/segments/gone").status_code == 200
    first.stop()
    # Same DATA_DIR, new topic prefix: what a restarted embedded broker looks like to the service.
    fresh_prefix = service_env["TOPIC_PREFIX"] + "again."
    second = start_service("segmenter", TOPIC_PREFIX=fresh_prefix).wait_ready()
    with httpx.Client(base_url=second.url, headers=ADMIN) as client:
        listed = wait_for(lambda: client.get("/v1/segments").json()["segments"], what="the stored segment")
        assert [s["segment_id"] for s in listed] == ["kept"] and listed[0]["version"] == 1
    consumer = AIOKafkaConsumer(
        fresh_prefix + "segment.definitions", bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        records = (await consumer.getmany(timeout_ms=5000)).values()
        keys = {r.key: r.value for batch in records for r in batch}
    finally:
        await consumer.stop()
    assert keys[b"kept"] is not None and b'"rule":"total_spend > 10"' in keys[b"kept"]


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on, from /proc (Linux)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                found.add((address, int(port, 16)))
    return found


def test_only_the_api_port_listens_and_only_on_loopback(segmenter: Any) -> None:
    assert segmenter.process is not None
    loopback = format(socket.htonl(0x7F000001), "08X")  # 127.0.0.1 as /proc/net/tcp writes it
    assert listening_sockets(segmenter.process.pid) == {(loopback, segmenter.port)}  # no faust web on 6066
