"""Verify seq ranges of the ledger in worker processes, one range each, reading the store themselves.

`python -m services.audit.adapters.verify_workers` is the worker: it reads its job (the store and
the range) as JSON on stdin, prints `progress N` after each chunk and `result {...}` at the end.
Processes, not threads: SHA-256 of a record and SQLite's row building both hold the GIL. Only the
standard library, the domain and `sql_rows` are imported, so a worker starts in about 0.1 s.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

from services.audit.adapters.sql_rows import read_rows
from services.audit.domain.ranges import RangeCheck, SeqRange, check_range

# The directory that holds the `services` package this module came from: workers run that code.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[3])


@dataclass(frozen=True)
class WorkerStore:
    """Where a worker reads: a SQLite file's path, or a libpq connection string."""

    dialect: str
    address: str


def check_ranges(
    store: WorkerStore, ranges: Sequence[SeqRange], progress: Callable[[int], None] | None
) -> list[RangeCheck]:
    """Each range's check, in the order given, from one worker process per range run at once."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [_SOURCE_ROOT, os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", __name__]
    # stderr to a file: a worker that says much there can never block on a pipe nobody reads.
    errors = [tempfile.TemporaryFile(mode="w+") for _ in ranges]
    workers = [
        subprocess.Popen(
            command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
        )
        for err in errors
    ]
    try:
        lines: queue.Queue[tuple[int, str | None]] = queue.Queue()
        for index, (worker, span) in enumerate(zip(workers, ranges, strict=True)):
            job = {**asdict(store), "range": asdict(span)}
            threading.Thread(target=_relay, args=(index, worker, json.dumps(job), lines), daemon=True).start()
        found = _collect(workers, errors, lines, progress)
        for worker, err in zip(workers, errors, strict=True):
            if worker.wait() != 0:
                _failed(worker, err)
        return found
    finally:
        for worker, err in zip(workers, errors, strict=True):
            if worker.poll() is None:
                worker.kill()
            worker.wait()
            err.close()


def _relay(
    index: int, worker: subprocess.Popen[str], job: str, lines: queue.Queue[tuple[int, str | None]]
) -> None:
    """Hand the worker its job, then pass on each line it prints; None when its output ends."""
    assert worker.stdin is not None and worker.stdout is not None
    try:
        worker.stdin.write(job)
        worker.stdin.close()
        for line in worker.stdout:
            lines.put((index, line))
    finally:
        lines.put((index, None))


def _collect(
    workers: Sequence[subprocess.Popen[str]],
    errors: Sequence[IO[str]],
    lines: queue.Queue[tuple[int, str | None]],
    progress: Callable[[int], None] | None,
) -> list[RangeCheck]:
    results: dict[int, RangeCheck] = {}
    for _ in workers:
        while (item := lines.get())[1] is not None:
            index, line = item
            word, _, rest = (line or "").partition(" ")
            if word == "progress" and progress is not None:
                progress(int(rest))
            elif word == "result":
                found = json.loads(rest)
                results[index] = RangeCheck(
                    **{**found, "picked": {int(k): v for k, v in found["picked"].items()}}
                )
        if item[0] not in results:
            _failed(workers[item[0]], errors[item[0]])
    return [results[index] for index in range(len(workers))]


def _failed(worker: subprocess.Popen[str], err: IO[str]) -> NoReturn:
    """A worker that ended without a result, or with an error: the verification cannot say ok."""
    code = worker.wait()
    err.seek(0)
    raise RuntimeError(f"a verify worker failed (exit {code}): {err.read()[-2000:]}")


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
        rows = read_rows(connection, store.dialect, max(span.start - 1, 0), span.stop)
        found = check_range(span, rows, lambda n: _say(f"progress {n}"))
    finally:
        connection.close()
    _say(f"result {json.dumps(asdict(found))}")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
