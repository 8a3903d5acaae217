"""Preference-center benchmark: a withdrawal clicked on the page to the segmenter's eviction, beside
the same withdrawal sent as the consent PUT in the same run (the floor: the page adds the browser,
its script's fetch and the page's own PUT around it).

Real `segwarden serve consent` and `segwarden serve segmenter` on an embedded broker and Redis,
Debian's chromium through Playwright (`/usr/bin/chromium`, as the browser tests). Each customer
is put in a segment requiring marketing_email (a grant, then a purchase); then one withdrawal at
a time, timed from the click (or the PUT) to the `left` read from `segment.membership` by a
consumer of this process: the issue's "withdraw a purpose and see the segmenter evict within a
second". Page and PUT rounds alternate, so both see the same load.

Run: `.venv/bin/python -m bench.bench_preference` (or `make bench`). JSON goes to bench/results/.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, KafkaProducer
from playwright.sync_api import Browser, sync_playwright

from bench.common import run_facts, wait, write_results
from shared.embedded import EmbeddedBroker, ensure_redis, free_port
from shared.events import CustomerEvent, MembershipChanged, new_event_id, utcnow
from tests.support import ServiceProcess

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CHROMIUM = "/usr/bin/chromium"
ROUNDS = 30  # withdrawals of each kind
WARMUP = 3
TOKEN = "bench-token-0001"
PURPOSE = "marketing_email"
CHOICE = {"source": "preference-center", "jurisdiction": "GDPR", "policy_version": "2026-03"}


class Memberships:
    """Reads `segment.membership` in a thread: when each customer's first `joined` and `left` came."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=10
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            for records in self._consumer.poll(timeout_ms=50).values():
                now = time.time()
                for record in records:
                    change = MembershipChanged.model_validate_json(record.value)
                    self.seen.setdefault((change.customer_id, change.action), now)

    def wait(self, customer: str, action: str, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while (customer, action) not in self.seen:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {action} of {customer} after {timeout}s")
            time.sleep(0.002)
        return self.seen[(customer, action)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def start(name: str, env: dict[str, str], work: Path) -> ServiceProcess:
    base = {"AUTH_TOKENS": f"{TOKEN}=*", "INTERNAL_TOKEN": TOKEN, "LOG_LEVEL": "WARNING"}
    return ServiceProcess(name, {**base, **env, "DATA_DIR": str(work / name)}, work / f"{name}.log")


def in_segment(consent: str, producer: KafkaProducer, prefix: str, members: Memberships) -> str:
    """A new customer who allowed marketing e-mail and spent enough: in the segment."""
    customer = f"c-{uuid.uuid4().hex[:12]}"
    url = f"{consent}/v1/customers/{customer}/consents/{PURPOSE}"
    httpx.put(url, json={"status": "granted", **CHOICE}, headers=_auth(), timeout=10).raise_for_status()
    event = CustomerEvent(
        event_id=new_event_id(),
        customer_id=customer,
        type="purchase",
        occurred_at=utcnow(),
        source="bench",
        attributes={"amount": 150.0, "currency": "EUR"},
    )
    producer.send(prefix + "customer.events", event.to_bytes(), key=customer.encode()).get(10)
    members.wait(customer, "joined")
    return customer


def by_page(browser: Browser, consent: str, customer: str, members: Memberships) -> float:
    response = httpx.post(
        f"{consent}/v1/customers/{customer}/preference-link",
        json={"jurisdiction": "GDPR", "policy_version": "2026-03"},
        headers=_auth(),
        timeout=10,
    )
    response.raise_for_status()
    page = browser.new_page()
    try:
        page.goto(response.json()["url"])
        button = page.locator(f'.purpose[data-purpose="{PURPOSE}"] button.toggle')
        button.wait_for()
        clicked = time.time()
        button.click()
        return members.wait(customer, "left") - clicked
    finally:
        page.close()


def by_put(consent: str, customer: str, members: Memberships) -> float:
    url = f"{consent}/v1/customers/{customer}/consents/{PURPOSE}"
    sent = time.time()
    httpx.put(url, json={"status": "denied", **CHOICE}, headers=_auth(), timeout=10).raise_for_status()
    return members.wait(customer, "left") - sent


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def figures(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000, "max_ms": max(latencies) * 1000}


def rounds(browser: Browser, consent: str, producer: KafkaProducer, prefix: str, members: Memberships) -> Any:
    page: list[float] = []
    put: list[float] = []
    for i in range(WARMUP + ROUNDS):
        clicked = by_page(browser, consent, in_segment(consent, producer, prefix, members), members)
        sent = by_put(consent, in_segment(consent, producer, prefix, members), members)
        if i >= WARMUP:
            page.append(clicked)
            put.append(sent)
    return page, put


def main() -> None:
    broker = EmbeddedBroker().start()
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    shared = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "TOPIC_PREFIX": prefix, "REDIS_URL": REDIS_URL}
    closed = f"http://127.0.0.1:{free_port()}"  # no audit or delivery: the page says "not known"
    with tempfile.TemporaryDirectory(prefix="segwarden-bench-preference-") as tmp:
        work = Path(tmp)
        redis_process = ensure_redis(REDIS_URL, work / "redis")
        segmenter = start("segmenter", shared, work).wait_ready(120)
        peers = {"SEGMENTER_URL": segmenter.url, "AUDIT_URL": closed, "DELIVERY_URL": closed}
        consent = start("consent", {**shared, **peers}, work).wait_ready(90)
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
        members = Memberships(broker.bootstrap, prefix + "segment.membership")
        try:
            rule = {"name": "Big spenders", "rule": "total_spend >= 100", "required_purposes": [PURPOSE]}
            httpx.put(f"{segmenter.url}/v1/segments/big", json=rule, headers=_auth()).raise_for_status()
            wait(
                lambda: httpx.get(f"{segmenter.url}/v1/segments/big", headers=_auth()).status_code == 200, 30
            )
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page, put = rounds(browser, consent.url, producer, prefix, members)
                browser.close()
        finally:
            members.close()
            producer.close()
            for service in (consent, segmenter):
                service.kill()
            if redis_process:
                redis_process.terminate()
            broker.stop()
    results: dict[str, Any] = {
        **run_facts(),
        "load_average": os.getloadavg(),
        "rounds": ROUNDS,
        "page": figures(page),
        "put": figures(put),
    }
    results["ratio_p50"] = results["page"]["p50_ms"] / results["put"]["p50_ms"]
    results["ratio_p99"] = results["page"]["p99_ms"] / results["put"]["p99_ms"]
    report(results)
    write_results("bench_preference", results)


def report(results: dict[str, Any]) -> None:
    p, f = results["page"], results["put"]
    lines = [
        f"preference-center bench on {results['machine']} at {results['at']}"
        f" (load average {results['load_average'][0]:.1f})",
        f"  click on the page -> segmenter's left   p50 {p['p50_ms']:7.1f} ms   p99 {p['p99_ms']:7.1f} ms"
        f"   max {p['max_ms']:7.1f} ms",
        f"  consent PUT -> segmenter's left (floor) p50 {f['p50_ms']:7.1f} ms   p99 {f['p99_ms']:7.1f} ms"
        f"   max {f['max_ms']:7.1f} ms",
        f"  ratio ({results['rounds']} of each)              p50 {results['ratio_p50']:.2f}x"
        f"   p99 {results['ratio_p99']:.2f}x",
    ]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
