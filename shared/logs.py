"""Structured (JSON lines) logging for every process; configured once by the entry point."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Libraries that log personal data below these levels: httpx logs every request URL at INFO
# (customer ids are in paths), aiokafka, kafka-python and faust log record keys and values at
# DEBUG. They are held at these levels whatever LOG_LEVEL says, so no level logs a customer id
# (tests/e2e/test_consent_to_eviction.py searches a DEBUG run's logs for one).
LIBRARY_FLOORS = {
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "aiokafka": logging.INFO,
    "kafka": logging.INFO,
    "faust": logging.INFO,
    "mode": logging.INFO,
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with any `extra=` fields; redaction is the caller's duty."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", service: str | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name, floor in LIBRARY_FLOORS.items():
        logging.getLogger(name).setLevel(max(root.level, floor))
    if service:
        old_factory = logging.getLogRecordFactory()

        def factory(*args: object, **kwargs: object) -> logging.LogRecord:
            record = old_factory(*args, **kwargs)
            record.service = service
            return record

        logging.setLogRecordFactory(factory)
