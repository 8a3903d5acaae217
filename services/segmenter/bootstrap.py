"""The composition root's runtime: builds every adapter from settings and starts them in order.

It runs in the background of the HTTP server, so /healthz answers at once and /readyz says
what is still missing while the broker or Redis are away.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from services.segmenter.adapters.kafka_compacted import KafkaCompactedReader
from services.segmenter.adapters.kafka_consent import KafkaConsentFollower
from services.segmenter.adapters.kafka_events import KafkaEventFollower
from services.segmenter.adapters.kafka_publisher import KafkaMembershipPublisher, customer_partition
from services.segmenter.adapters.redis_generation import RedisGenerationMarker
from services.segmenter.adapters.redis_keys import KeyLayout
from services.segmenter.adapters.redis_membership import RedisMembershipReader
from services.segmenter.adapters.redis_store import RedisCustomerStore
from services.segmenter.adapters.sqlite_definitions import SqliteDefinitionStore
from services.segmenter.consent_loader import load_consent_state
from services.segmenter.definition_feed import DefinitionFeed
from services.segmenter.domain.retention import RetentionPolicy
from services.segmenter.domain.segments import SegmentRegistry
from services.segmenter.expiry import ExpiryScheduler
from services.segmenter.handlers import DefinitionService
from services.segmenter.membership_service import MembershipService
from services.segmenter.modeling.assign import ModelAssigner
from services.segmenter.modeling.feature_vector import SOURCE_FEATURES
from services.segmenter.modeling.store import model_store
from services.segmenter.pacing import COMPLIANCE, SWEEP, Pacer
from services.segmenter.rebuild import StateRebuilder
from services.segmenter.reconcile import AnnouncedReconciler
from services.segmenter.recovery import CHECK_INTERVAL_S, HeldStreamHandlers, RedisRecovery
from services.segmenter.reevaluation import TASK as REEVALUATION_TASK
from services.segmenter.reevaluation import SegmentReevaluator
from services.segmenter.retention import RetentionJob
from services.segmenter.settings import SegmenterSettings
from services.segmenter.stream_app import (
    create_stream_app,
    on_assignment,
    owned_partitions,
    record_lag,
)
from services.segmenter.sweeps import Sweeper
from shared.catalog import load_catalog
from shared.database import sqlite_file
from shared.deadletter import DeadLetters
from shared.http import ReadinessCheck, kafka_ready
from shared.kafka import (
    ensure_topics,
    make_producer,
    start_client,
    topic_names,
    topic_retention,
)
from shared.metrics import CONSUMER_LAG
from shared.pseudonym import load_pseudonym_key
from shared.retention_runs import KafkaRetentionRuns
from shared.supervise import Supervisor, for_each, handle_or_dead_letter
from shared.topics import CONSENT_CHANGES, CONSENT_STATE, CUSTOMER_EVENTS, SEGMENT_DEFINITIONS

log = logging.getLogger(__name__)
LAG_INTERVAL_S = 5.0
MODEL_WATCH_INTERVAL_S = 2.0
# An opt-out of a customer in 1,000 segments is 1,000 `left`s (about 400 KB) to one partition of
# each membership topic: one batch each, so one produce round trip, and under the 1 MB that
# Kafka accepts in one batch by default (message.max.bytes).
MEMBERSHIP_BATCH_BYTES = 512 * 1024


class SegmenterRuntime:
    def __init__(self, settings: SegmenterSettings) -> None:
        self.settings = settings
        # A client connects on first use, so building it here does not wait for Redis.
        self.redis = redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        keys = KeyLayout(settings.redis_namespace)
        self.registry = SegmentRegistry(SOURCE_FEATURES)
        self.assigner = ModelAssigner(model_store(settings))
        self.pseudonym_key = load_pseudonym_key(settings)
        self.catalog = load_catalog(settings.purposes_file)
        self.retention = RetentionPolicy.from_catalog(self.catalog)
        self.store = RedisCustomerStore(
            redis, keys, self.pseudonym_key, topic_retention(settings).erasure_marker_ms()
        )
        self.membership_reader = RedisMembershipReader(redis, keys)
        self.producer: AIOKafkaProducer | None = None
        self.definitions: DefinitionService | None = None
        self.membership: MembershipService | None = None
        self.sweeper: Sweeper | None = None
        self.reevaluator = SegmentReevaluator()
        # Passes over every owned customer give way to live input (the followers, once started).
        self.pacer = Pacer(
            ratio=settings.segmenter_pass_pause_ratio,
            intervals={
                SWEEP: settings.segmenter_sweep_interval_s,
                COMPLIANCE: settings.segmenter_compliance_interval_s,
            },
        )
        self.expiry: ExpiryScheduler | None = None
        self.stream: Any = None
        self.consent: KafkaConsentFollower | None = None
        self.events: KafkaEventFollower | None = None
        self.recovery: RedisRecovery | None = None
        self.consent_loaded = False
        self.stream_started = False
        # Owns every background task; app.py runs `start` under it and adds it to /readyz.
        self.supervisor = Supervisor()

    async def start(self) -> None:
        settings = self.settings
        supervisor = self.supervisor
        await supervisor.retry("topics", lambda: asyncio.to_thread(ensure_topics, settings))
        producer = await start_client(
            lambda: make_producer(settings, "segwarden-segmenter", MEMBERSHIP_BATCH_BYTES), "producer"
        )
        self.producer = producer
        pseudonym_key = self.pseudonym_key
        dead_letters = DeadLetters(producer, pseudonym_key, settings.dead_letter_max_value_bytes)
        publisher = KafkaMembershipPublisher(self.producer, topic_names(settings))
        self.membership = MembershipService(
            self.store, publisher, self._required_purposes, self.assigner.assign, retention=self.retention
        )
        self.expiry = ExpiryScheduler(
            self.store, self.registry, self.membership, lambda: owned_partitions(self.stream, settings)
        )
        self.recovery = self._recovery(publisher)
        publisher.gate = self.recovery  # joins wait for a rebuilt Redis
        # Before anything reads or writes Redis: is its state still ours?
        await supervisor.retry("redis generation", self.recovery.check)
        # Model segments evaluated before their models are loaded would evict everyone.
        await supervisor.retry("models", lambda: asyncio.to_thread(self.assigner.refresh))
        store = SqliteDefinitionStore(Path(sqlite_file(settings.db_url)))
        self.definitions = DefinitionService(
            self.registry,
            store,
            publisher,
            lambda segment_id, deleted: self.reevaluator.mark([segment_id], deleted),
        )
        await supervisor.retry("consent state", self._load_consent)
        feed = DefinitionFeed(self._reader(SEGMENT_DEFINITIONS.base), self.definitions, dead_letters)
        supervisor.spawn("definition-feed", feed.run)
        # Events evaluated before the definitions are in would miss their segments.
        await self.definitions.loaded.wait()
        handlers = HeldStreamHandlers(self.store, self.registry, self.membership, dead_letters, self.expiry)
        handlers.recovery = self.recovery  # events and erasures wait while their partition is rebuilt
        names = topic_names(settings)
        self.consent = KafkaConsentFollower(
            settings,
            names.name(CONSENT_CHANGES),
            f"{settings.consumer_group}-consent",
            lambda record: handle_or_dead_letter(
                dead_letters, CONSENT_CHANGES.base, [record], for_each(handlers.on_consent_change)
            ),
        )
        await supervisor.retry("consent consumer", self.consent.start)
        handlers.give_way = self.consent.give_way  # a batch pauses for them at its yield points too
        self.membership.barrier = self.consent  # joins wait until the follower read the opt-outs
        self.events = events = KafkaEventFollower(
            settings,
            names.name(CUSTOMER_EVENTS),
            f"{settings.consumer_group}-events",
            (settings.segmenter_event_batch_size, settings.segmenter_event_batch_wait_s),
            lambda records: handle_or_dead_letter(
                dead_letters, CUSTOMER_EVENTS.base, records, handlers.on_events
            ),
            give_way=self.consent.give_way,  # consent changes never wait behind a batch of events
        )
        await supervisor.retry("events consumer", events.start)
        self.pacer.inputs = (self.consent, events)
        self.stream = create_stream_app(settings, handlers)
        on_assignment(self.stream, settings, self._follow)
        supervisor.spawn("consent-follower", self.consent.run)
        supervisor.spawn("event-follower", events.run)
        self.recovery.follow_assignment(self.stream, lambda: owned_partitions(self.stream, settings))
        supervisor.spawn("redis-rebuild", self.recovery.run)
        supervisor.every("redis-generation", CHECK_INTERVAL_S, self.recovery.check)
        await self.stream.start()
        self.stream_started = True
        sweeper = self.sweeper = Sweeper(
            self.store,
            self.registry,
            self.membership,
            lambda: owned_partitions(self.stream, settings),
            pseudonym_key,
            self.recovery.trusted,
            self.pacer,
        )
        # A definition may have changed while no worker ran: bring the owned customers up to date.
        self.reevaluator.sweeper = sweeper
        self.reevaluator.mark(s.id for s in self.registry.all())
        supervisor.spawn(REEVALUATION_TASK, self.reevaluator.run)
        supervisor.spawn("expiry", self.expiry.run)
        supervisor.every("sweep", settings.segmenter_sweep_interval_s, sweeper.sweep_once)
        supervisor.every("compliance", settings.segmenter_compliance_interval_s, sweeper.compliance_once)
        runs = KafkaRetentionRuns(self._started_producer, names)
        retention = RetentionJob(
            self.store, self.registry, self.membership, self.retention, sweeper.owned, runs
        )
        supervisor.every("retention", settings.segmenter_retention_interval_s, retention.run_once)
        supervisor.every("lag", LAG_INTERVAL_S, self._record_lag)
        supervisor.every(
            "model-watch",
            MODEL_WATCH_INTERVAL_S,
            lambda: self.assigner.refresh_and_notify(self._models_changed),
        )
        # What start-up built (modules, faust, pydantic's validators, models) lives as long as the
        # process: out of the collector's scans. Full collections over it cost a quarter of the
        # CPU under a steady event load (py-spy, docs/segmenter.md "Benchmark").
        gc.freeze()

    async def _started_producer(self) -> AIOKafkaProducer:
        assert self.producer is not None, "started in start()"
        return self.producer

    async def refresh_models(self) -> None:
        """Load new or changed models now (a PUT naming a model trained a moment ago)."""
        changed = await asyncio.to_thread(self.assigner.refresh)
        if changed:
            await self._models_changed(changed)

    async def _models_changed(self, model_ids: set[str]) -> None:
        """A model appeared, changed or went away: its segments' members re-evaluated."""
        segment_ids = self.registry.using_models(model_ids)
        if segment_ids:
            log.info("models changed", extra={"models": sorted(model_ids), "segments": sorted(segment_ids)})
            self.reevaluator.mark(segment_ids)

    def _recovery(self, publisher: KafkaMembershipPublisher) -> RedisRecovery:
        settings, keys = self.settings, KeyLayout(self.settings.redis_namespace)
        assert self.membership is not None and self.expiry is not None
        n = settings.topic_partitions
        marker = RedisGenerationMarker(self.redis, settings.redis_namespace, settings.ensure_data_dir(), n)
        rebuilder = StateRebuilder(
            settings, self.store, self.registry, self.membership, self._positions, self.expiry.track
        )
        reconciler = AnnouncedReconciler(
            settings, self.store, self.registry, self.membership, publisher, self.pacer
        )
        return RedisRecovery(marker, rebuilder, reconciler, [keys.known(p) for p in range(n)])

    async def _follow(self, partitions: list[int]) -> None:
        """Both plain consumers read the customer partitions faust assigned this worker; the joins
        of the others that wait unpublished are handed over (before the next owner starts)."""
        assert self.consent is not None and self.events is not None and self.membership is not None
        await self.consent.follow(partitions)
        await self.events.follow(partitions)
        owned, n = set(partitions), self.settings.topic_partitions
        await self.membership.hand_over(lambda c: customer_partition(c, n) not in owned)

    async def _positions(self, partitions: Sequence[int]) -> dict[int, int | None]:
        """Where the event follower is on each customer.events partition (None before its first fetch)."""
        assert self.events is not None
        return {partition: await self.events.position(partition) for partition in partitions}

    def _required_purposes(self, segment_id: str) -> tuple[str, ...] | None:
        segment = self.registry.get(segment_id)
        return None if segment is None else segment.required_purposes

    async def _record_lag(self) -> None:
        record_lag(self.stream)
        if self.events is not None:
            topic = topic_names(self.settings).name(CUSTOMER_EVENTS)
            for partition, lag in self.events.lag().items():
                CONSUMER_LAG.labels(self.events.group_id, topic, str(partition)).set(lag)

    def _reader(self, base: str) -> KafkaCompactedReader:
        topic = topic_names(self.settings).prefix + base
        return KafkaCompactedReader(self.settings, topic, f"segwarden-segmenter-{base}")

    async def _load_consent(self) -> None:
        assert self.expiry is not None
        await load_consent_state(self._reader(CONSENT_STATE.base), self.store, self.expiry.track)
        self.consent_loaded = True

    async def stop(self) -> None:
        await self.supervisor.stop()
        if self.membership is not None:
            await self.membership.close()
        if self.stream is not None:
            await self.stream.stop()
        if self.consent is not None:
            await self.consent.stop()
        if self.events is not None:
            await self.events.stop()
        if self.producer is not None:
            await self.producer.stop()
        await self.redis.aclose()  # type: ignore[attr-defined]  # stubs predate aclose

    def readiness_checks(self) -> Mapping[str, ReadinessCheck]:
        broker = kafka_ready(lambda: self.producer)

        async def kafka() -> str | None:
            if self.producer is not None and not self.stream_started:
                return "kafka: stream starting"
            return await broker()

        return {
            "kafka": kafka,
            "redis": self._redis_ready,
            "consent": self._consent_ready,
            "definitions": self._definitions_ready,
        }

    async def _redis_ready(self) -> str | None:
        await self.redis.ping()
        return None if self.recovery is None else self.recovery.reason()

    async def _consent_ready(self) -> str | None:
        return None if self.consent_loaded else "consent: consent.state not loaded yet"

    async def _definitions_ready(self) -> str | None:
        loaded = self.definitions is not None and self.definitions.loaded.is_set()
        return None if loaded else "definitions: segment.definitions not loaded yet"
