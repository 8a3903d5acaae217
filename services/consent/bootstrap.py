"""The consent service's composition root: builds the adapters from settings and runs the background work."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta
from functools import partial

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.consent.adapters.http_peers import HttpPeerExport
from services.consent.adapters.kafka_relay import KafkaOutboxRelay, sample_outbox_once
from services.consent.adapters.kafka_requests import KafkaConsentRequestConsumer
from services.consent.adapters.sql_engine import make_engine, ping, run_migrations
from services.consent.adapters.sql_lease import SqlRelayLease
from services.consent.adapters.sql_outbox import SqlOutbox
from services.consent.adapters.sql_store import SqlConsentStore
from services.consent.domain.policy import ConsentPolicy
from services.consent.expiry import expire_all_lapsed, retire_all_past_retention
from services.consent.preference.access import PreferenceAccess
from services.consent.preference.feelings import DataUseFeelings, SqlDataUseFeelings
from services.consent.preference.links import PreferenceLinks, load_link_key
from services.consent.preference.reach import RecentChoices
from services.consent.preference.store import SqlLinkGenerations
from services.consent.preference.zero_party import SqlStatedPreferences, StatedPreferences
from services.consent.receipt import ErasureReceipts
from services.consent.service import ConsentService
from services.consent.settings import ConsentSettings
from shared import topics
from shared.auth import internal_token
from shared.catalog import load_catalog, load_preference_catalog
from shared.deadletter import DeadLetters
from shared.http import ReadinessCheck, database_ready, kafka_ready
from shared.kafka import (
    ensure_topics,
    make_consumer,
    make_producer,
    start_client,
    topic_names,
)
from shared.pseudonym import load_pseudonym_key
from shared.retention_runs import KafkaRetentionRuns
from shared.supervise import Supervisor

log = logging.getLogger(__name__)
OUTBOX_SAMPLE_SECONDS = 1.0
# How often the relaying replica looks for rows another replica committed (one indexed probe).
PEER_POLL_SECONDS = 0.05


class ConsentRuntime:
    """Everything the consent service runs: store, service, relay, consumer, expiry and retention jobs."""

    def __init__(self, settings: ConsentSettings) -> None:
        self.settings = settings
        settings.ensure_data_dir()
        self.engine = make_engine(settings.db_url)
        self.names = topic_names(settings)
        self.outbox = SqlOutbox(self.engine)
        self.lease = SqlRelayLease(self.engine)
        self.relay = KafkaOutboxRelay(
            self.outbox,
            self.lease,
            self.names,
            # The service is built below (it hands commits to the relay); the relay reads states through it.
            state_page=lambda after, limit: self.service.state_page(after, limit),
            ensure_topics=lambda: asyncio.to_thread(ensure_topics, settings),
            poll_interval=settings.consent_outbox_poll_interval_s,
            # Replicas share a PostgreSQL database; SQLite is one process per file.
            peer_poll_interval=PEER_POLL_SECONDS if self.engine.dialect.name == "postgresql" else None,
            retention=timedelta(seconds=settings.consent_outbox_retention_s),
        )
        policy = ConsentPolicy(load_catalog(settings.purposes_file))
        self.pseudonym_key = load_pseudonym_key(settings)
        store = SqlConsentStore(self.engine)
        self.service = ConsentService(
            store, policy, self.pseudonym_key, self.relay, settings.consent_publish_wait_s
        )
        self.preferences = StatedPreferences(
            SqlStatedPreferences(store),
            load_preference_catalog(settings.consent_preferences_file),
            self.service,
        )
        self.peers = HttpPeerExport(
            settings.segmenter_url,
            settings.audit_url,
            settings.delivery_url,
            internal_token(settings),
            settings.consent_export_timeout_s,
        )
        self.recent_choices = RecentChoices(self.service, self.engine, self.peers)
        self.feelings = DataUseFeelings(
            SqlDataUseFeelings(self.engine), self.pseudonym_key, settings.k_anonymity
        )
        self.receipts = ErasureReceipts(self.service, self.outbox, self.peers, self.names)
        self.preference_access = PreferenceAccess(
            PreferenceLinks(load_link_key(settings)),
            SqlLinkGenerations(self.engine),
            self.pseudonym_key,
            settings.consent_preference_link_ttl_s,
        )
        self.producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        # Owns every background task: a dead relay would silently stop publishing.
        self.supervisor = Supervisor()
        self._connected = asyncio.Event()
        self.retention_runs = KafkaRetentionRuns(self._connected_producer, self.names)

    async def start(self) -> None:
        """Migrate the store, then connect to Kafka in the background so HTTP serves at once."""
        await asyncio.to_thread(run_migrations, self.engine)
        supervisor = self.supervisor
        supervisor.spawn("writer", self.service.run_writer)
        supervisor.spawn("kafka-connect", self._connect)
        supervisor.spawn("relay", self._run_relay)
        supervisor.spawn("requests-consumer", self._run_consumer)
        expiry_interval = self.settings.consent_expiry_interval_s
        supervisor.every("expiry", expiry_interval, partial(expire_all_lapsed, self.service), first_now=True)
        retention = partial(retire_all_past_retention, self.service, self.retention_runs)
        supervisor.every("retention", self.settings.consent_retention_interval_s, retention, first_now=True)
        gauges = partial(sample_outbox_once, self.outbox)
        supervisor.every("outbox-gauges", OUTBOX_SAMPLE_SECONDS, gauges, first_now=True)

    async def stop(self) -> None:
        await self.supervisor.stop()
        for client in (self.consumer, self.producer):
            if client is not None:
                await client.stop()
        await asyncio.to_thread(self.lease.release)
        self.engine.dispose()

    def readiness_checks(self) -> Mapping[str, ReadinessCheck]:
        return {
            "kafka": kafka_ready(lambda: self.producer),
            "database": database_ready(lambda: ping(self.engine)),
        }

    async def _connect(self) -> None:
        """Start the producer and create the topics, retrying while the broker is away."""
        if self.producer is None:
            self.producer = await start_client(
                lambda: make_producer(self.settings, "segwarden-consent"), "producer"
            )
        await self.supervisor.retry("topics", lambda: asyncio.to_thread(ensure_topics, self.settings))
        self._connected.set()

    async def _connected_producer(self) -> AIOKafkaProducer:
        await self._connected.wait()
        assert self.producer is not None
        return self.producer

    async def _run_relay(self) -> None:
        await self._connected.wait()
        assert self.producer is not None
        await self.relay.run(self.producer)

    async def _run_consumer(self) -> None:
        await self._connected.wait()
        assert self.producer is not None
        # A fresh consumer after a crash: it resumes from the committed offsets, so nothing that
        # was fetched but not handled before the crash is skipped.
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None
        self.consumer = await start_client(self._make_consumer, "consumer")
        dead_letters = DeadLetters(
            self.producer, self.pseudonym_key, self.settings.dead_letter_max_value_bytes
        )
        await KafkaConsentRequestConsumer(self.consumer, dead_letters, self.service).run()

    def _make_consumer(self) -> AIOKafkaConsumer:
        return make_consumer(
            self.settings,
            self.names.name(topics.CONSENT_REQUESTS),
            group_id=self.settings.consumer_group,
            client_id="segwarden-consent",
        )
