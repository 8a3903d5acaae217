"""Verify seq ranges of the ledger in worker processes (`verify_worker.py`), one range each, at once.

Processes, not threads: SHA-256 of a record and SQLite's row building both hold the GIL.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO, NoReturn

from services.audit.adapters.verify_worker import WorkerStore
from services.audit.domain.ranges import RangeCheck, SeqRange

# The directory that holds the `services` package this module came from: workers run that code.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[3])


def check_ranges(
    store: WorkerStore, ranges: Sequence[SeqRange], progress: Callable[[int], None] | None
) -> list[RangeCheck]:
    """Each range's check, in the order given, from one worker process per range run at once."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [_SOURCE_ROOT, os.environ.get("PYTHONPATH")])),
    }
    # -S for SQLite: the worker needs nothing from site-packages, and skipping them halves its start.
    isolated = ["-S"] if store.dialect == "sqlite" else []
    command = [sys.executable, *isolated, "-m", "services.audit.adapters.verify_worker"]
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
