"""Consent service benchmark: PUT throughput and latency (durable write + publish) against the raw DB floor.

Starts its own embedded broker and topic prefix, measures in one run:
  1. the floor: the same database transaction (`handlers.record_consent`) in a plain loop;
  2. the service: concurrent HTTP PUTs to `segwarden serve consent`, each acked after commit,
     and the time until every change is on consent.changes.
SQLite always; PostgreSQL too when it answers on 127.0.0.1:5432. Writes bench/results/consent.json.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer

from bench.common import run_facts, write_results
from services.consent import handlers
from services.consent.adapters.sql_engine import make_engine, run_migrations
from services.consent.adapters.sql_store import SqlConsentStore
from services.consent.domain.consent import RecordConsent
from services.consent.domain.policy import ConsentPolicy
from shared.catalog import load_catalog
from shared.embedded import EmbeddedBroker
from shared.events import ConsentStatus, utcnow
from shared.kafka import delete_topics, topic_names
from shared.settings import ServiceSettings
from tests.support import ServiceProcess

FLOOR_SECONDS = 5.0
LOAD_SECONDS = 10.0
CONCURRENCY = 16
CUSTOMERS = 300
TOKEN = "bench-admin-token"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def status_of(index: int) -> ConsentStatus:
    # Alternating per customer: every request changes the effective state, so every one publishes.
    return "granted" if (index // CUSTOMERS) % 2 == 0 else "denied"


def floor_rate(db_url: str) -> float:
    """Transactions per second of the service's own write path, without HTTP or Kafka."""
    engine = make_engine(db_url)
    run_migrations(engine)
    store, policy = SqlConsentStore(engine), ConsentPolicy(load_catalog())
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < FLOOR_SECONDS:
        command = RecordConsent(
            f"f-{done % CUSTOMERS}", "marketing_email", status_of(done), "bench", "GDPR", "v1"
        )
        handlers.record_consent(store, policy, command, utcnow())
        done += 1
    engine.dispose()
    return done / (time.perf_counter() - started)


async def put_load(url: str) -> tuple[list[float], float, float]:
    """PUTs from CONCURRENCY clients for LOAD_SECONDS; each is acked after its commit.

    The client is aiohttp (lighter than httpx): on a 2-core machine the load generator shares
    the CPU with the service and the broker, and what is measured is the service.
    """
    latencies: list[float] = []
    counter = iter(range(10**9))

    async def worker(session: aiohttp.ClientSession, stop_at: float) -> None:
        while time.perf_counter() < stop_at:
            index = next(counter)
            body = {
                "status": status_of(index),
                "source": "bench",
                "jurisdiction": "GDPR",
                "policy_version": "v1",
            }
            began = time.perf_counter()
            path = f"{url}/v1/customers/b-{index % CUSTOMERS}/consents/profiling"
            async with session.put(path, json=body) as response:
                response.raise_for_status()
                await response.read()
            latencies.append(time.perf_counter() - began)

    headers = {"Authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session, started + LOAD_SECONDS) for _ in range(CONCURRENCY)))
        return latencies, started, time.perf_counter()


async def await_published(bootstrap: str, topic: str, expected: int, started: float) -> float:
    """Seconds from the first PUT until `expected` changes were read back from consent.changes."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=20
    )
    await consumer.start()
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while len(seen) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                seen.update(json.loads(r.value)["event_id"] for r in records)
        if len(seen) < expected:
            raise RuntimeError(f"only {len(seen)} of {expected} changes were published")
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def run_service(bootstrap: str, db_url: str, data_dir: Path) -> dict[str, float]:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TOPIC_PREFIX": prefix,
        "TOPIC_PARTITIONS": "3",
        "DATA_DIR": str(data_dir),
        "CONSENT_DB_URL": db_url,
        "AUTH_TOKENS": f"{TOKEN}=*",
        "INTERNAL_TOKEN": TOKEN,
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    service = ServiceProcess("consent", {**env, "LOG_LEVEL": "WARNING"}, data_dir / "consent.log")
    service.wait_ready(60)
    try:
        latencies, started, finished = asyncio.run(put_load(service.url))
        published = asyncio.run(
            await_published(bootstrap, f"{prefix}consent.changes", len(latencies), started)
        )
    finally:
        service.stop(15)
        settings = ServiceSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix, topic_partitions=3)
        delete_topics(settings, [plan.name for plan in topic_names(settings).plan()])
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "put_per_second": len(latencies) / (finished - started),
        "published_per_second": len(latencies) / published,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
    }


def postgres_database() -> str | None:
    """A fresh database on the local PostgreSQL, or None when it does not answer."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=2) as admin:
            name = f"bench_{uuid.uuid4().hex[:10]}"
            admin.execute(f'CREATE DATABASE "{name}"')
    except Exception:  # no PostgreSQL here: the SQLite figures stand alone
        return None
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def drop_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def measure(name: str, floor_url: str, service_url: str, bootstrap: str, data_dir: Path) -> dict[str, float]:
    floor = floor_rate(floor_url)
    result = {"floor_tx_per_second": floor, **run_service(bootstrap, service_url, data_dir)}
    result["put_vs_floor"] = result["put_per_second"] / floor
    result["published_vs_floor"] = result["published_per_second"] / floor
    print(  # noqa: T201 - the benchmark's report
        f"{name:<10} floor {floor:7.0f} tx/s | PUT {result['put_per_second']:6.0f}/s "
        f"(p50 {result['p50_ms']:5.1f} ms, p99 {result['p99_ms']:6.1f} ms) | all published "
        f"{result['published_per_second']:6.0f}/s | PUT/floor {result['put_vs_floor']:.0%}, "
        f"published/floor {result['published_vs_floor']:.0%}"
    )
    return result


def main() -> int:
    print(f"consent bench: PUTs for {LOAD_SECONDS:.0f} s, {CONCURRENCY} concurrent, {CUSTOMERS} customers")  # noqa: T201
    results: dict[str, object] = {
        **run_facts(),
        "load_seconds": LOAD_SECONDS,
        "concurrency": CONCURRENCY,
    }
    broker = EmbeddedBroker().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            results["sqlite"] = measure(
                "sqlite",
                f"sqlite:///{base}/floor/consent.db",
                f"sqlite:///{base}/svc/consent.db",
                broker.bootstrap,
                base / "svc",
            )
            floor_db, service_db = postgres_database(), postgres_database()
            if floor_db and service_db:
                try:
                    results["postgresql"] = measure(
                        "postgresql", floor_db, service_db, broker.bootstrap, base / "pg"
                    )
                finally:
                    drop_postgres(floor_db)
                    drop_postgres(service_db)
    finally:
        broker.stop()
    out = write_results("consent", results)
    print(f"written to {out}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
