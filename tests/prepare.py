"""Run by `make test` before pytest: start (or install) what the suite needs that a fresh machine lacks."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from shared.embedded import ensure_redis

logging.basicConfig(level=logging.INFO, format="prepare: %(message)s")


def main() -> None:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    started = ensure_redis(url, Path(".data/test-redis"))
    # A Redis started here must outlive this script: the test run uses it.
    logging.info("redis at %s %s", url, "started" if started else "already running")


if __name__ == "__main__":
    main()
