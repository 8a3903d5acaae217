"""Audit ledger benchmark: append and verify rates beside their floors, measured in the same run.

- append: `SqlLedgerStore.append` in batches of 1,000 (as the consumer does), against the floor
  of raw inserts of the same rows into a table of the same form, without triggers;
- verify: `verify_ledger` (chain + signed checkpoint heads) in one process and with two worker
  processes (a seq range each), and with Merkle roots, against the floor of raw SHA-256 over the
  same canonical bytes held in memory: in one loop, and in two processes hashing half each;
- end to end: source events on the embedded broker to records in the ledger, through
  `segwarden serve audit`.

Run: `.venv/bin/python -m bench.bench_audit` (or `make bench`). JSON goes to bench/results/.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bench.common import metric_total, ready, run_facts, wait, write_results
from services.audit.adapters.ed25519 import Ed25519Signer
from services.audit.adapters.sql_database import create_schema, make_engine
from services.audit.adapters.sql_ledger import SqlLedgerStore
from services.audit.adapters.sql_side_stores import SqlCheckpointStore
from services.audit.adapters.sql_tables import APPEND_ONLY, ledger_ddl, ledger_indexes
from services.audit.domain.ledger import GENESIS, LedgerEntry
from services.audit.domain.verify import verify_ledger
from services.audit.handlers import Checkpointer
from shared.embedded import EmbeddedBroker, free_port
from shared.events import ConsentChanged, new_event_id

APPEND_N = 20_000
VERIFY_N = 200_000
E2E_N = 5_000
BATCH = 1_000
REPEATS = 3
WORKERS = 2  # verify's worker processes, as on this project's 2-core machines
# The floor: the ledger's table (generated columns and indexes included), without chain, lock,
# duplicate check or triggers.
RAW = "bench_raw_inserts"


def entry(i: int) -> LedgerEntry:
    payload = {
        "purpose": "marketing_email",
        "status": "denied",
        "previous_status": "granted",
        "reason": "user",
        "source": "preference-center",
        "jurisdiction": "GDPR",
        "policy_version": "2026-03",
        "recorded_at": "2026-11-29T10:00:00Z",
        "expires_at": None,
    }
    return LedgerEntry(
        "consent_change", hashlib.sha256(str(i).encode()).hexdigest(), uuid.uuid4().hex, payload
    )


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def median_rate(count: int, runs: list[float]) -> float:
    return count / statistics.median(runs)


def bench_append(url: str) -> dict[str, float]:
    """Median records/s of ledger appends and of raw inserts of the same rows, on fresh tables."""
    append_runs, insert_runs = [], []
    for _ in range(REPEATS):
        engine = fresh_engine(url)
        append_runs.append(
            timed(partial(append_all, SqlLedgerStore(engine), [entry(i) for i in range(APPEND_N)]))
        )
        rows = [
            {"seq": seq, "body": body.decode(), "hash": hash_}
            for run in SqlLedgerStore(engine).runs()
            for seq, (body, hash_) in enumerate(run.records, run.first)
        ]
        insert_runs.append(timed(partial(raw_insert, engine, rows)))
        engine.dispose()
    append, floor = median_rate(APPEND_N, append_runs), median_rate(APPEND_N, insert_runs)
    return {"append_per_s": append, "raw_insert_per_s": floor, "ratio": append / floor}


def append_all(ledger: SqlLedgerStore, entries: list[LedgerEntry]) -> None:
    for start in range(0, len(entries), BATCH):
        ledger.append(entries[start : start + BATCH])


def raw_insert(engine: Engine, rows: list[dict[str, Any]]) -> None:
    statement = text(f"INSERT INTO {RAW} (seq, body, hash) VALUES (:seq, :body, :hash)")
    for i in range(0, len(rows), BATCH):
        with engine.begin() as connection:
            connection.execute(statement, rows[i : i + BATCH])


def fresh_engine(url: str) -> Engine:
    engine = make_engine(url)
    with engine.begin() as connection:
        for table in (RAW, *APPEND_ONLY, "alembic_version"):
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    create_schema(engine)
    with engine.begin() as connection:
        for statement in (ledger_ddl(engine.dialect.name, RAW), *ledger_indexes(RAW)):
            connection.exec_driver_sql(statement)
    return engine


def bench_verify(url: str, data_dir: Path, count: int = VERIFY_N) -> dict[str, float]:
    """Median records/s of verify (chain + signed heads; in one process and in WORKERS) and verify
    --merkle, beside raw SHA-256 in one process and in WORKERS."""
    engine = fresh_engine(url)
    ledger = SqlLedgerStore(engine)
    for start in range(0, count, 10_000):
        ledger.append([entry(i) for i in range(start, start + 10_000)])
    signer = Ed25519Signer.from_data_dir(data_dir)
    Checkpointer(ledger, SqlCheckpointStore(engine), signer).checkpoint()
    checkpoints = SqlCheckpointStore(engine).all()
    records = [record for run in ledger.runs() for record in run.records]
    previous = [GENESIS, *(stored for _, stored in records)]  # each record's prev_hash
    bodies = [(bytes.fromhex(prev), body) for prev, (body, _) in zip(previous, records, strict=False)]
    kinds = ("one", "parallel", "merkle", "floor", "floor_parallel")
    runs: dict[str, list[float]] = {kind: [] for kind in kinds}
    check = partial(checked_verify, ledger, checkpoints, signer, count)
    for _ in range(REPEATS):
        runs["one"].append(timed(partial(check, False, 1)))
        runs["parallel"].append(timed(partial(check, False, WORKERS)))
        runs["merkle"].append(timed(partial(check, True, 1)))
        runs["floor"].append(timed(partial(raw_hashing, bodies)))
        runs["floor_parallel"].append(raw_hashing_in_workers(bodies, WORKERS))
    engine.dispose()
    rates = {
        "verify_per_s": median_rate(count, runs["one"]),
        "verify_parallel_per_s": median_rate(count, runs["parallel"]),
        "verify_merkle_per_s": median_rate(count, runs["merkle"]),
        "raw_sha256_per_s": median_rate(count, runs["floor"]),
        "raw_sha256_parallel_per_s": median_rate(count, runs["floor_parallel"]),
    }
    floor, floor_parallel = rates["raw_sha256_per_s"], rates["raw_sha256_parallel_per_s"]
    rates["ratio"] = rates["verify_per_s"] / floor
    rates["parallel_ratio"] = rates["verify_parallel_per_s"] / floor
    rates["parallel_ratio_to_parallel_floor"] = rates["verify_parallel_per_s"] / floor_parallel
    rates["merkle_ratio"] = rates["verify_merkle_per_s"] / floor
    rates["seconds_per_million"] = 1e6 / rates["verify_per_s"]
    rates["parallel_seconds_per_million"] = 1e6 / rates["verify_parallel_per_s"]
    return rates


def checked_verify(
    ledger: SqlLedgerStore, checkpoints: list, signer: Ed25519Signer, count: int, merkle: bool, workers: int
) -> None:
    result = verify_ledger(ledger, checkpoints, signer, merkle=merkle, workers=workers)
    if not (result.ok and result.length == count and result.checkpoints_checked == 1):
        raise RuntimeError(f"verification failed: {result}")


def raw_hashing(bodies: list[tuple[bytes, bytes]]) -> None:
    for prev, body in bodies:
        hashlib.sha256(prev + body).digest()


def raw_hashing_in_workers(bodies: list[tuple[bytes, bytes]], workers: int) -> float:
    """Seconds for `workers` forked processes to hash a share of the bytes each, all at once: from
    the first one's start to the last one's end, not counting the fork or the copy-on-write of
    their share (each touches it first), so the strictest floor that many processes have."""
    context = multiprocessing.get_context("fork")
    ready, marks = context.Barrier(workers), context.Queue()
    shares = [bodies[i::workers] for i in range(workers)]
    processes = [context.Process(target=_hash_share, args=(share, ready, marks)) for share in shares]
    for process in processes:
        process.start()
    spans = [marks.get(timeout=120) for _ in processes]
    for process in processes:
        process.join()
    return max(end for _, end in spans) - min(start for start, _ in spans)


def _hash_share(share: list[tuple[bytes, bytes]], ready: Any, marks: Any) -> None:
    raw_hashing(share)  # touches every object once: the copy-on-write faults happen here
    ready.wait()
    started = time.perf_counter()
    raw_hashing(share)
    marks.put((started, time.perf_counter()))


def bench_end_to_end(work: Path) -> dict[str, float]:
    """Source events on the broker to ledger records, through the real service process."""
    broker = EmbeddedBroker().start()
    port, prefix = free_port(), f"bench{uuid.uuid4().hex[:8]}."
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "TOPIC_PREFIX": prefix,
        "DATA_DIR": str(work / "e2e"),
        "AUDIT_PORT": str(port),
        "AUTH_TOKENS": "bench-token-0001=*",
        "INTERNAL_TOKEN": "bench-token-0001",
    }
    service = subprocess.Popen(
        [sys.executable, "-m", "segwarden", "serve", "audit"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait(lambda: ready(url), 90)
        produce(broker.bootstrap, f"{prefix}consent.changes")
        started = time.perf_counter()
        wait(lambda: metric_total(url, "segwarden_audit_ledger_length") >= E2E_N, 120)
        elapsed = time.perf_counter() - started
    finally:
        service.terminate()
        service.wait(15)
        broker.stop()
    return {"records": E2E_N, "records_per_s": E2E_N / elapsed}


def produce(bootstrap: str, topic: str) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024)
    now = datetime.now(UTC)
    for i in range(E2E_N):
        event = ConsentChanged(
            event_id=new_event_id(),
            customer_id=f"c-{i}",
            purpose="marketing_email",
            status="granted",
            previous_status=None,
            reason="user",
            source="bench",
            jurisdiction="GDPR",
            policy_version="2026-03",
            recorded_at=now,
        )
        producer.send(topic, event.to_bytes(), key=event.customer_id.encode())
    producer.flush(60)
    producer.close()


def report(results: dict[str, Any]) -> None:
    lines = [
        f"audit bench on {results['machine']} at {results['at']}, load average "
        f"{results['load_average_at_start'][0]:.1f} at start, {results['load_average_at_end'][0]:.1f} at end"
    ]
    for db, figures in results["databases"].items():
        a, v = figures["append"], figures["verify"]
        lines.append(
            f"  {db:10s} append {a['append_per_s']:>9,.0f}/s   raw insert {a['raw_insert_per_s']:>9,.0f}/s"
            f"   ratio {a['ratio']:.0%} (target >= 50%)"
        )
        lines.append(
            f"  {db:10s} verify {v['verify_per_s']:>9,.0f}/s   raw SHA-256 {v['raw_sha256_per_s']:>9,.0f}/s"
            f"   ratio {v['ratio']:.0%} (target >= 50%)   1M records in {v['seconds_per_million']:.1f} s"
        )
        lines.append(
            f"  {db:10s} verify, {WORKERS} workers {v['verify_parallel_per_s']:>9,.0f}/s   ratio "
            f"{v['parallel_ratio']:.0%} to one loop, {v['parallel_ratio_to_parallel_floor']:.0%} to raw "
            f"SHA-256 in {WORKERS} processes ({v['raw_sha256_parallel_per_s']:,.0f}/s)   "
            f"1M records in {v['parallel_seconds_per_million']:.1f} s"
        )
        lines.append(
            f"  {db:10s} verify --merkle {v['verify_merkle_per_s']:>9,.0f}/s   ratio {v['merkle_ratio']:.0%}"
        )
    e2e = results["end_to_end"]
    lines.append(f"  end to end (broker -> service -> SQLite): {e2e['records_per_s']:,.0f} records/s")
    sys.stdout.write("\n".join(lines) + "\n")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="segwarden-bench-audit-") as tmp:
        work = Path(tmp)
        databases = {"sqlite": f"sqlite:///{work / 'bench.db'}"}
        if os.environ.get("BENCH_POSTGRES_URL"):
            databases["postgresql"] = os.environ["BENCH_POSTGRES_URL"]
        results: dict[str, Any] = {
            **run_facts(),
            "load_average_at_start": os.getloadavg(),
            "sizes": {"append": APPEND_N, "verify": VERIFY_N, "end_to_end": E2E_N},
            "databases": {
                name: {"append": bench_append(url), "verify": bench_verify(url, work / name)}
                for name, url in databases.items()
            },
            "end_to_end": bench_end_to_end(work),
        }
        results["load_average_at_end"] = os.getloadavg()
    report(results)
    write_results("bench_audit", results)


if __name__ == "__main__":
    main()
