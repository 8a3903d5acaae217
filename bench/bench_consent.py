"""Consent service benchmark: PUT throughput and latency (durable write + publish) against the raw DB floor.

Starts its own embedded broker and topic prefix, measures in one run:
  1. the floor: the same database transaction (`handlers.record_consent`) in a plain loop;
  2. the service: concurrent HTTP PUTs to `segwarden serve consent`, each acked after commit,
     and the time until every change is on consent.changes.
SQLite always; PostgreSQL too when it answers on 127.0.0.1:5432. `BENCH_RUNS` runs (default 3),
each with its own floor, and their medians; the load average and the service's CPU time per PUT
(less sensitive to a shared machine than the rates) beside them. Writes bench/results/consent.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer

from bench.common import cpu_seconds, run_facts, write_results
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
RUNS = int(os.environ.get("BENCH_RUNS", "3"))


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
    assert service.process is not None
    pid = service.process.pid
    try:
        cpu_before = cpu_seconds(pid)
        latencies, started, finished = asyncio.run(put_load(service.url))
        cpu = cpu_seconds(pid) - cpu_before
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
        "service_cpu_ms_per_put": 1000 * cpu / len(latencies),
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
    load = os.getloadavg()[0]
    floor = floor_rate(floor_url)
    result = {
        "load_average": load,
        "floor_tx_per_second": floor,
        **run_service(bootstrap, service_url, data_dir),
    }
    result["put_vs_floor"] = result["put_per_second"] / floor
    result["published_vs_floor"] = result["published_per_second"] / floor
    print(  # noqa: T201 - the benchmark's report
        f"{name:<10} load {load:4.1f} | floor {floor:7.0f} tx/s | PUT {result['put_per_second']:6.0f}/s "
        f"(p50 {result['p50_ms']:5.1f} ms, p99 {result['p99_ms']:6.1f} ms, "
        f"{result['service_cpu_ms_per_put']:.2f} CPU ms) | all published "
        f"{result['published_per_second']:6.0f}/s | PUT/floor {result['put_vs_floor']:.0%}, "
        f"published/floor {result['published_vs_floor']:.0%}",
        flush=True,
    )
    return result


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def measure_once(base: Path, bootstrap: str, runs: dict[str, list[dict[str, float]]]) -> None:
    """One run: SQLite, then PostgreSQL when it answers; each beside its own floor."""
    runs["sqlite"].append(
        measure(
            "sqlite",
            f"sqlite:///{base}/floor/consent.db",
            f"sqlite:///{base}/svc/consent.db",
            bootstrap,
            base / "svc",
        )
    )
    floor_db, service_db = postgres_database(), postgres_database()
    if floor_db and service_db:
        try:
            runs["postgresql"].append(measure("postgresql", floor_db, service_db, bootstrap, base / "pg"))
        finally:
            drop_postgres(floor_db)
            drop_postgres(service_db)


def main() -> int:
    print(  # noqa: T201
        f"consent bench: {RUNS} runs of PUTs for {LOAD_SECONDS:.0f} s, {CONCURRENCY} concurrent, "
        f"{CUSTOMERS} customers"
    )
    results: dict[str, object] = {
        **run_facts(),
        "load_seconds": LOAD_SECONDS,
        "concurrency": CONCURRENCY,
    }
    runs: dict[str, list[dict[str, float]]] = {"sqlite": [], "postgresql": []}
    broker = EmbeddedBroker().start()
    try:
        for run in range(RUNS):
            with tempfile.TemporaryDirectory() as tmp:
                measure_once(Path(tmp) / str(run), broker.bootstrap, runs)
    finally:
        broker.stop()
    for name, done in runs.items():
        if done:
            middle = medians(done)
            results[name] = {"runs": done, "median": middle}
            print(  # noqa: T201
                f"{name:<10} median of {len(done)}: PUT/floor {middle['put_vs_floor']:.0%} "
                f"(lowest {min(r['put_vs_floor'] for r in done):.0%}), "
                f"{middle['service_cpu_ms_per_put']:.2f} CPU ms a PUT"
            )
    out = write_results("consent", results)
    print(f"written to {out}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
