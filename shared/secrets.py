"""Secrets generated once into DATA_DIR and reused across restarts (admin token, keys)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def read_or_create_secret(path: Path, make: Callable[[], bytes]) -> bytes:
    """The secret stored at `path`; created (mode 0600) by the first process that asks.

    O_EXCL makes concurrent first starts agree on one secret: the loser reads the winner's.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_complete(path)
    with os.fdopen(fd, "wb") as out:
        out.write(make())
        out.flush()
        os.fsync(out.fileno())
    return path.read_bytes()


def _read_complete(path: Path) -> bytes:
    # The creator may still be writing; a secret is never empty, so wait for its bytes.
    for _ in range(100):
        data = path.read_bytes()
        if data:
            return data
        os.sched_yield()
    raise RuntimeError(f"{path} is empty; delete it to have it generated again")
