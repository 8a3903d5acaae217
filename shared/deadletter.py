"""Dead letters: a record that fails to parse or validate goes to `<topic>.dlq` with the reason."""

from __future__ import annotations

import logging
from typing import TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from pydantic import BaseModel, ValidationError

from shared.events import DeadLetter
from shared.metrics import DEAD_LETTERS, MESSAGES_PUBLISHED
from shared.topics import DLQ_SUFFIX

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


def describe_error(exc: Exception) -> str:
    """A short reason naming the offending field(s), for people reading the dead-letter topic."""
    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors(include_url=False)[:5]:
            where = ".".join(str(p) for p in error["loc"]) or "record"
            parts.append(f"{where}: {error['msg']}")
        return "; ".join(parts)
    return f"{type(exc).__name__}: {exc}"


def dead_letter_for(record: ConsumerRecord, error: str) -> DeadLetter:
    raw = record.value if isinstance(record.value, bytes) else b""
    return DeadLetter(
        error=error,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        value=raw.decode("utf-8", errors="replace"),
    )


async def send_dead_letter(producer: AIOKafkaProducer, record: ConsumerRecord, error: str) -> None:
    """Publish the dead letter and wait for the broker's ack, so it is never lost silently."""
    letter = dead_letter_for(record, error)
    dlq = record.topic + DLQ_SUFFIX
    await producer.send_and_wait(dlq, letter.to_bytes(), key=record.key)
    DEAD_LETTERS.labels(record.topic).inc()
    MESSAGES_PUBLISHED.labels(dlq).inc()
    log.warning(
        "dead-lettered a record", extra={"topic": record.topic, "offset": record.offset, "error": error}
    )


async def decode_or_dead_letter(
    producer: AIOKafkaProducer, record: ConsumerRecord, model: type[M]
) -> M | None:
    """The decoded record, or None after it went to the dead-letter topic."""
    if record.value is None:
        await send_dead_letter(
            producer, record, "record: a value is required (tombstone on a non-compacted topic)"
        )
        return None
    try:
        return model.model_validate_json(record.value)
    except ValidationError as exc:
        await send_dead_letter(producer, record, describe_error(exc))
        return None
