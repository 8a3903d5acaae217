"""Delivery benchmark: latency from a membership change to the acknowledged webhook, beside a bare
HTTP POST to the same receiver in the same run.

- delivery: a `MembershipChanged` published on the embedded broker (its `at` is when it was
  sent), read by `segwarden serve delivery`, routed through its SQLite outbox and POSTed, signed,
  to a receiver; the latency ends when the receiver answers 200. One change at a time, so each
  figure is one change's whole path, not a queue;
- withdrawal: then each of those customers withdraws the destination's purpose (a
  `consent.state` snapshot, its `updated_at` when sent) to the acknowledged `left` (the issue's
  "within a second");
- floor: the same receiver answering a bare `httpx` POST of a body of the same size, on a kept
  connection, as the delivery service's client does.

Run: `.venv/bin/python -m bench.bench_delivery` (or `make bench`). JSON goes to bench/results/.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench.common import ready, run_facts, wait, write_results
from shared.embedded import EmbeddedBroker, free_port
from shared.events import ConsentStateSnapshot, MembershipChanged, PurposeState, new_event_id, utcnow

CHANGES = 200  # per repeat
REPEATS = 3
WARMUP = 10
PURPOSE = "marketing_email"
TOKEN = "bench-token-0001"
SECRET = "bench-signing-secret-" + "0" * 32


class Receiver:
    """A webhook receiver that notes when it answered each request (time.time(), as `at` is)."""

    def __init__(self) -> None:
        self.answered: list[float] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver.arrived:
                    receiver.answered.append(time.time())
                    receiver.arrived.notify_all()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, count: int, timeout: float = 30) -> float:
        """When the `count`-th request was answered."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.answered) >= count, timeout):
                raise RuntimeError(f"the receiver got {len(self.answered)} of {count} webhooks")
            return self.answered[count - 1]


def start_delivery(broker: EmbeddedBroker, work: Path, prefix: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "TOPIC_PREFIX": prefix,
        "DATA_DIR": str(work),
        "DELIVERY_PORT": str(port),
        "AUTH_TOKENS": f"{TOKEN}=*",
        "INTERNAL_TOKEN": TOKEN,
    }
    command = [sys.executable, "-m", "segwarden", "serve", "delivery"]
    service = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait(lambda: ready(url), 90)
    return service, url


def put_destination(url: str, receiver: Receiver) -> None:
    today = datetime.now(UTC).date()
    spec = {
        "name": "bench",
        "endpoint": receiver.url,
        "segments": ["vip"],
        "purposes": [PURPOSE],
        "agreement": {
            "processor": "Bench GmbH",
            "reference": "DPA-1",
            "signed_on": (today - timedelta(days=1)).isoformat(),
            "expires_on": (today + timedelta(days=365)).isoformat(),
            "country": "DE",
            "transfer_mechanism": "none",
        },
        "signing_secret": SECRET,
    }
    headers = {"Authorization": f"Bearer {TOKEN}"}
    httpx.put(f"{url}/v1/destinations/bench", json=spec, headers=headers).raise_for_status()


def consent_everyone(producer: KafkaProducer, bootstrap: str, prefix: str, customers: list[str]) -> None:
    """Every customer consents; returns once the service committed it all, so no join overtakes
    its customer's consent (another topic)."""
    state = PurposeState(status="granted", effective=True, sequence=1)
    for customer in customers:
        snapshot = ConsentStateSnapshot(
            event_id=new_event_id(), customer_id=customer, purposes={PURPOSE: state}, updated_at=utcnow()
        )
        producer.send(f"{prefix}consent.state", snapshot.to_bytes(), key=customer.encode(), partition=0)
    producer.flush(30)
    # Never subscribes, so it only reads the group's offsets and never joins the group.
    group = KafkaConsumer(bootstrap_servers=bootstrap, group_id=f"{prefix}segwarden-delivery")
    partition = TopicPartition(f"{prefix}consent.state", 0)
    try:
        wait(lambda: (group.committed(partition) or 0) >= len(customers), 60)
    finally:
        group.close()


def join(producer: KafkaProducer, prefix: str, customer: str) -> float:
    """Publish one join and return its `at` (unix time), where the delivery latency starts."""
    change = MembershipChanged(
        event_id=new_event_id(),
        segment_id="vip",
        customer_id=customer,
        action="joined",
        reason="rule_matched",
        cause_event_id=None,
        cause_at=None,
        at=utcnow(),
    )
    topic = f"{prefix}segment.membership"
    producer.send(topic, change.to_bytes(), key=customer.encode()).get(10)
    return change.at.timestamp()


def withdraw(producer: KafkaProducer, prefix: str, customer: str) -> float:
    """Publish the customer's withdrawal (a later consent sequence) and return its `updated_at`."""
    state = PurposeState(status="denied", effective=False, sequence=2)
    snapshot = ConsentStateSnapshot(
        event_id=new_event_id(), customer_id=customer, purposes={PURPOSE: state}, updated_at=utcnow()
    )
    producer.send(f"{prefix}consent.state", snapshot.to_bytes(), key=customer.encode()).get(10)
    return snapshot.updated_at.timestamp()


def withdrawal_latencies(
    producer: KafkaProducer, prefix: str, receiver: Receiver, customers: list[str]
) -> list[float]:
    """Withdrawal -> acknowledged `left` (reason `consent_withdrawn`), one customer at a time."""
    latencies = []
    for customer in customers:
        expected = len(receiver.answered) + 1
        sent = withdraw(producer, prefix, customer)
        latencies.append(receiver.wait_for(expected) - sent)
    return latencies


def delivery_latencies(
    producer: KafkaProducer, prefix: str, receiver: Receiver, customers: list[str]
) -> list[float]:
    latencies = []
    for customer in customers:
        expected = len(receiver.answered) + 1  # before the join: its webhook may come at once
        sent = join(producer, prefix, customer)
        latencies.append(receiver.wait_for(expected) - sent)
    return latencies


def bare_latencies(receiver: Receiver, count: int) -> list[float]:
    body = b'{"action":"joined","at":"' + b"x" * 200 + b'"}'  # about a webhook's size
    latencies = []
    with httpx.Client() as client:
        for _ in range(count):
            started = time.time()
            client.post(receiver.url, content=body, headers={"Content-Type": "application/json"})
            latencies.append(time.time() - started)
    return latencies


def percentiles(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000}


def bench_run(
    producer: KafkaProducer, prefix: str, receiver: Receiver, customers: list[str]
) -> dict[str, Any]:
    delivered = percentiles(delivery_latencies(producer, prefix, receiver, customers))
    withdrawn = percentiles(withdrawal_latencies(producer, prefix, receiver, customers))
    bare = percentiles(bare_latencies(receiver, len(customers)))
    return {"delivery": delivered, "withdrawal": withdrawn, "bare_post": bare}


def median(runs: list[dict[str, Any]], path: str, figure: str) -> float:
    return statistics.median(run[path][figure] for run in runs)


def report(results: dict[str, Any]) -> None:
    d, w, b = results["delivery"], results["withdrawal"], results["bare_post"]
    lines = [
        f"delivery bench on {results['machine']} at {results['at']}",
        f"  membership change -> acknowledged webhook  p50 {d['p50_ms']:7.2f} ms   p99 {d['p99_ms']:7.2f} ms",
        f"  consent withdrawal -> acknowledged left   p50 {w['p50_ms']:7.2f} ms   p99 {w['p99_ms']:7.2f} ms",
        f"  bare POST to the same receiver            p50 {b['p50_ms']:7.2f} ms   p99 {b['p99_ms']:7.2f} ms",
        f"  ratio (medians of {REPEATS} runs of {CHANGES})        p50 {results['ratio_p50']:.1f}x"
        f"   p99 {results['ratio_p99']:.1f}x",
    ]
    sys.stdout.write("\n".join(lines) + "\n")


def main() -> None:
    broker = EmbeddedBroker().start()
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    receiver = Receiver()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    with tempfile.TemporaryDirectory(prefix="segwarden-bench-delivery-") as tmp:
        service, url = start_delivery(broker, Path(tmp), prefix)
        try:
            put_destination(url, receiver)
            customers = [f"c-{i}" for i in range(WARMUP + REPEATS * CHANGES)]
            consent_everyone(producer, broker.bootstrap, prefix, customers)
            delivery_latencies(producer, prefix, receiver, customers[:WARMUP])  # group joined, warm
            batches = [customers[WARMUP + r * CHANGES : WARMUP + (r + 1) * CHANGES] for r in range(REPEATS)]
            runs = [bench_run(producer, prefix, receiver, batch) for batch in batches]
        finally:
            service.terminate()
            service.wait(15)
            producer.close()
            broker.stop()
    results: dict[str, Any] = {
        **run_facts(),
        "changes_per_run": CHANGES,
        "runs": runs,
        "delivery": {f: median(runs, "delivery", f) for f in ("p50_ms", "p99_ms")},
        "withdrawal": {f: median(runs, "withdrawal", f) for f in ("p50_ms", "p99_ms")},
        "bare_post": {f: median(runs, "bare_post", f) for f in ("p50_ms", "p99_ms")},
    }
    results["ratio_p50"] = results["delivery"]["p50_ms"] / results["bare_post"]["p50_ms"]
    results["ratio_p99"] = results["delivery"]["p99_ms"] / results["bare_post"]["p99_ms"]
    report(results)
    write_results("bench_delivery", results)


if __name__ == "__main__":
    main()
