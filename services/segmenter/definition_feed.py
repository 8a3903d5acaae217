"""Loads segment definitions from the compacted topic, republishes what it lacks, then follows it."""

from __future__ import annotations

import logging

from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from services.segmenter.adapters.kafka_compacted import KafkaCompactedReader
from services.segmenter.handlers import DefinitionService
from services.segmenter.rules import RuleError, compile_rule
from shared.deadletter import DeadLetters, describe_error, send_dead_letter
from shared.events import SegmentDefinition, key_id, tombstone_version

log = logging.getLogger(__name__)


class DefinitionFeed:
    def __init__(
        self, reader: KafkaCompactedReader, service: DefinitionService, dead_letters: DeadLetters
    ) -> None:
        self.reader = reader
        self.service = service
        self.dead_letters = dead_letters

    async def run(self) -> None:
        await self.reader.start()
        try:
            await self._load_and_follow()
        finally:
            # Cancelled at stop (or crashed, then restarted with a new consumer): an unstopped
            # consumer keeps its connections and is logged as `Unclosed AIOKafkaConsumer`.
            await self.reader.stop()

    async def _load_and_follow(self) -> None:
        stored = await self.service.load_store()
        # Per segment, its last record as decoded: (definition or None, a tombstone's version).
        latest: dict[str, tuple[SegmentDefinition | None, int]] = {}
        for record in await self.reader.read_to_end():
            decoded = await self._decode(record)
            if decoded is not None:
                latest[decoded[0]] = decoded[1:]
        for segment_id, (definition, deleted_at) in latest.items():
            await self._apply(segment_id, definition, deleted_at)
        for row in stored:
            # Republished when the topic lacks it or holds an older version (a crash between the
            # store's write and the publish); a tombstone of unknown version (0) wins, as it always did.
            on_topic = latest.get(row.segment_id)
            if on_topic is None or 0 < _version_of(*on_topic) < row.version:
                refused = _rule_error(row.definition)
                if refused:  # stored by an older version with laxer limits: never republished
                    log.error(
                        "skipped a stored definition whose rule is refused",
                        extra={"segment": row.segment_id, "error": refused},
                    )
                    continue
                log.info("republishing a definition the topic lacks", extra={"segment": row.segment_id})
                await self.service.publisher.publish_definition(row.segment_id, row.definition, row.version)
                await self._apply(row.segment_id, row.definition, row.version)
        self.service.loaded.set()
        async for record in self.reader.follow():
            decoded = await self._decode(record)
            if decoded is not None:
                await self._apply(*decoded)

    async def _apply(self, segment_id: str, definition: SegmentDefinition | None, version: int = 0) -> None:
        """`version`: a deletion's, 0 when unknown (a tombstone without the header)."""
        if definition is not None:
            await self.service.store.upsert(definition)
        else:  # the store keeps the newer row if this tombstone is older
            await self.service.store.mark_deleted(
                segment_id, version or self.service.versions.get(segment_id, 0)
            )
        await self.service.apply(segment_id, definition, version)

    async def _decode(self, record: ConsumerRecord) -> tuple[str, SegmentDefinition | None, int] | None:
        """(segment id, definition or None for a tombstone, the tombstone's version or 0), or None
        after dead-lettering it."""
        if record.value is None:
            segment_id = key_id(record.key, "segment")
            if segment_id is None:
                await send_dead_letter(
                    self.dead_letters, record, "key: a tombstone's key is not a segment id"
                )
                return None
            version = tombstone_version(record.headers)
            if version is None:
                await send_dead_letter(self.dead_letters, record, "headers: version is not a positive number")
                return None
            return segment_id, None, version
        try:
            definition = SegmentDefinition.model_validate_json(record.value)
        except ValidationError as exc:
            await send_dead_letter(self.dead_letters, record, describe_error(exc))
            return None
        refused = _rule_error(definition)
        if refused:  # a rule the API would refuse (over a limit, personal data) is never applied
            await send_dead_letter(self.dead_letters, record, f"rule: {refused}")
            return None
        return definition.segment_id, definition, 0


def _version_of(definition: SegmentDefinition | None, deleted_at: int) -> int:
    return definition.version if definition is not None else deleted_at


def _rule_error(definition: SegmentDefinition | None) -> str | None:
    if definition is None or definition.rule is None:
        return None
    try:
        compile_rule(definition.rule)
    except RuleError as exc:
        return str(exc)
    return None
