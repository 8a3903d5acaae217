"""`KafkaTrainingPublisher`: a model training out to `model.trainings`, where the audit service records it.

The trainer never touches the audit service's database: the ledger learns of a training the
way it learns of every other fact, from a topic. `record` returns once the broker
acknowledged the record (acks=all), so a model is kept only when its record is on the topic.
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from shared.events import ModelTrained
from shared.metrics import MESSAGES_PUBLISHED


class KafkaTrainingPublisher:
    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer, self.topic = producer, topic

    async def record(self, training: ModelTrained) -> None:
        await self.producer.send_and_wait(self.topic, training.to_bytes(), key=training.model_id.encode())
        MESSAGES_PUBLISHED.labels(self.topic).inc()
