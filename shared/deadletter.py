"""Dead letters: a record that fails to parse or validate goes to `<topic>.dlq` with the reason.

The dead letter is bounded so the broker always accepts it: its key is the record key's pseudonym
(never the raw customer id) and its value the first `DEAD_LETTER_MAX_VALUE_BYTES` of the input,
with the input's size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from pydantic import BaseModel, ValidationError

from shared.events import MAX_DEAD_LETTER_ERROR, DeadLetter
from shared.metrics import DEAD_LETTERS, MESSAGES_PUBLISHED
from shared.pseudonym import pseudonymize_bytes
from shared.topics import DLQ_SUFFIX

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
DEFAULT_MAX_VALUE_BYTES = 4096


@dataclass(frozen=True)
class DeadLetters:
    """Where one service's consumers send what they cannot process (built in its composition root)."""

    producer: AIOKafkaProducer
    pseudonym_key: bytes
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES


def describe_error(exc: Exception) -> str:
    """A short reason naming the offending field(s), for people reading the dead-letter topic."""
    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors(include_url=False)[:5]:
            where = ".".join(str(p) for p in error["loc"]) or "record"
            parts.append(f"{where}: {error['msg']}")
        return "; ".join(parts)
    return f"{type(exc).__name__}: {exc}"


def truncate_utf8(raw: bytes, limit: int) -> str:
    """At most `limit` bytes of `raw` as text, cut on a character boundary (bad bytes replaced)."""
    if len(raw) > limit:
        cut = limit
        while cut > 0 and raw[cut] & 0xC0 == 0x80:  # a continuation byte: its character began before
            cut -= 1
        raw = raw[:cut]
    return raw.decode("utf-8", errors="replace")


def dead_letter_for(
    record: ConsumerRecord,
    error: str,
    pseudonym_key: bytes,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
) -> DeadLetter:
    raw = record.value if isinstance(record.value, bytes) else b""
    key = record.key if isinstance(record.key, bytes) else None
    return DeadLetter(
        error=error[:MAX_DEAD_LETTER_ERROR],
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        value=truncate_utf8(raw, max_value_bytes),
        key_pseudonym=pseudonymize_bytes(pseudonym_key, key) if key is not None else None,
        value_bytes=len(raw),
        truncated=len(raw) > max_value_bytes,
    )


async def send_dead_letter(dead_letters: DeadLetters, record: ConsumerRecord, error: str) -> None:
    """Publish the dead letter and wait for the broker's ack, so it is never lost silently."""
    letter = dead_letter_for(record, error, dead_letters.pseudonym_key, dead_letters.max_value_bytes)
    dlq = record.topic + DLQ_SUFFIX
    key = letter.key_pseudonym.encode() if letter.key_pseudonym is not None else None
    await dead_letters.producer.send_and_wait(dlq, letter.to_bytes(), key=key)
    DEAD_LETTERS.labels(record.topic).inc()
    MESSAGES_PUBLISHED.labels(dlq).inc()
    log.warning(
        "dead-lettered a record", extra={"topic": record.topic, "offset": record.offset, "error": error}
    )


async def decode_or_dead_letter(
    dead_letters: DeadLetters, record: ConsumerRecord, model: type[M]
) -> M | None:
    """The decoded record, or None after it went to the dead-letter topic."""
    if record.value is None:
        await send_dead_letter(
            dead_letters, record, "record: a value is required (tombstone on a non-compacted topic)"
        )
        return None
    try:
        return model.model_validate_json(record.value)
    except ValidationError as exc:
        await send_dead_letter(dead_letters, record, describe_error(exc))
        return None
