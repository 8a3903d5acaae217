"""One verify worker: `python -m services.audit.adapters.verify_worker` checks one seq range.

It reads its job (the store and the range, `WorkerStore` and `SeqRange` as JSON) on stdin,
reads the records itself, prints `progress N` after each run and `result {...}` (a `RangeCheck`)
at the end. It imports only the standard library, the domain and `sql_rows` (and psycopg for
PostgreSQL), so it starts in a fraction of the time the service's SQL stack would take.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from dataclasses import asdict, dataclass
from typing import Any

from services.audit.adapters.sql_rows import RUN_SIZE, read_runs
from services.audit.domain.ranges import SeqRange, check_range


@dataclass(frozen=True)
class WorkerStore:
    """Where a worker reads (a SQLite file's path, or a libpq connection string), and how many
    records a read."""

    dialect: str
    address: str
    run_size: int = RUN_SIZE


def _connect(store: WorkerStore) -> Any:
    if store.dialect == "postgresql":
        import psycopg  # only a PostgreSQL worker pays for importing it

        return psycopg.connect(store.address)
    connection = sqlite3.connect(store.address, isolation_level=None)
    connection.execute("PRAGMA query_only = ON")
    connection.execute("PRAGMA busy_timeout = 30000")
    return connection


def main() -> None:
    job = json.loads(sys.stdin.read())
    wanted = job.pop("range")
    span, store = SeqRange(wanted["start"], wanted["stop"], tuple(wanted["picks"])), WorkerStore(**job)
    connection = _connect(store)
    try:
        runs = read_runs(connection, store.dialect, max(span.start - 1, 0), span.stop, store.run_size)
        found = check_range(span, runs, lambda n: _say(f"progress {n}"))
    finally:
        connection.close()
    _say(f"result {json.dumps(asdict(found))}")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
