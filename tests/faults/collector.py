"""Reads `segment.membership` from offset 0 with its own group-less consumer, as a campaign tool would."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from shared.events import MembershipChanged

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Announced:
    """One record read: where it was, and the message (first reading of its event_id wins)."""

    partition: int
    offset: int
    message: MembershipChanged


class MembershipCollector:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.records: list[Announced] = []  # every record, duplicates included, in reading order
        self.read = 0
        self._rewind = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="membership-collector", daemon=True)

    def start(self) -> MembershipCollector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def rewind(self) -> None:
        """After a broker restart the topic starts again at offset 0: read it again from there."""
        self._rewind.set()

    def messages(self) -> list[MembershipChanged]:
        """The announcements a de-duplicating reader keeps (by event_id), in reading order."""
        with self._lock:
            seen: set[str] = set()
            kept = []
            for record in self.records:
                if record.message.event_id not in seen:
                    seen.add(record.message.event_id)
                    kept.append(record.message)
            return kept

    def _run(self) -> None:
        while not self._stop.is_set():
            consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=50,
                metadata_max_age_ms=1000,
                request_timeout_ms=5000,
                reconnect_backoff_max_ms=500,
            )
            try:
                self._follow(consumer)
            except Exception as exc:  # the broker went away: connect again and carry on
                log.info("collector reconnects after %r", exc)
                time.sleep(0.3)
            finally:
                consumer.close()

    def _follow(self, consumer: KafkaConsumer) -> None:
        self._rewind.clear()
        partitions = self._partitions(consumer)
        if not partitions:
            return
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        while not self._stop.is_set() and not self._rewind.is_set():
            for tp, batch in consumer.poll(timeout_ms=200).items():
                with self._lock:
                    for record in batch:
                        message = MembershipChanged.model_validate_json(record.value)
                        self.records.append(Announced(tp.partition, record.offset, message))
                        self.read += 1

    def _partitions(self, consumer: KafkaConsumer) -> list[TopicPartition]:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not self._stop.is_set():
            found = consumer.partitions_for_topic(self.topic)
            if found:
                return [TopicPartition(self.topic, p) for p in sorted(found)]
            consumer.topics()  # refreshes the metadata
            time.sleep(0.2)
        return []
