"""Kafka helpers: idempotent topic creation, and producer and consumer factories tuned from settings."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.helpers import create_ssl_context
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from shared.settings import ServiceSettings
from shared.supervise import retry, within
from shared.topics import HOUR_MS, Retention, TopicNames, TopicPlan

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

log = logging.getLogger(__name__)


class _Startable(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


ClientT = TypeVar("ClientT", bound=_Startable)


def kafka_ssl_context(settings: ServiceSettings) -> ssl.SSLContext:
    """Verifies the brokers' certificates (against KAFKA_SSL_CAFILE, else the system's CAs) and
    their host names; presents a client certificate when one is set."""
    return create_ssl_context(
        cafile=settings.kafka_ssl_cafile,
        certfile=settings.kafka_ssl_certfile,
        keyfile=settings.kafka_ssl_keyfile,
    )


def kafka_security(settings: ServiceSettings) -> dict[str, Any]:
    """The security arguments of every Kafka client: aiokafka and kafka-python take the same names."""
    protocol = settings.kafka_security_protocol
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = kafka_ssl_context(settings)
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        password = settings.kafka_sasl_password
        kwargs |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": password.get_secret_value() if password else None,
        }
    return kwargs


def faust_credentials(settings: ServiceSettings) -> CredentialsT | None:
    """The same security as faust's `broker_credentials` (SASL_SSL is SASL with a TLS context)."""
    # Imported here: only the segmenter runs faust, and importing it is slow.
    from faust.auth import SASLCredentials, SSLCredentials

    kwargs = kafka_security(settings)
    context = kwargs.get("ssl_context")
    if "sasl_mechanism" in kwargs:
        return SASLCredentials(
            username=kwargs["sasl_plain_username"],
            password=kwargs["sasl_plain_password"],
            mechanism=kwargs["sasl_mechanism"],
            ssl_context=context,
        )
    return SSLCredentials(context) if context is not None else None


def topic_retention(settings: ServiceSettings) -> Retention:
    return Retention(
        input_ms=settings.topic_retention_input_hours * HOUR_MS,
        change_ms=settings.topic_retention_change_hours * HOUR_MS,
        erasure_ms=settings.topic_retention_erasure_hours * HOUR_MS,
        dead_letter_ms=settings.topic_retention_dead_letter_hours * HOUR_MS,
        audit_ms=settings.topic_retention_audit_days * 24 * HOUR_MS,
        compaction_lag_ms=settings.topic_compaction_lag_hours * HOUR_MS,
    )


def topic_names(settings: ServiceSettings) -> TopicNames:
    return TopicNames(settings.topic_prefix, settings.topic_partitions, topic_retention(settings))


class TopicConfigError(KafkaError):
    """The broker refused to bring an existing topic's configs (its retention) in line."""


def ensure_topics(settings: ServiceSettings, plans: list[TopicPlan] | None = None) -> list[str]:
    """Create every missing topic with its final partitions and configs, and bring the configs of
    existing ones (their retention) in line with the plan; return the created names.

    Blocking (kafka-python's admin); call it through `asyncio.to_thread` from async code.
    """
    plans = plans if plans is not None else topic_names(settings).plan()
    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id="segwarden-admin",
        request_timeout_ms=10_000,
        # kafka-python waits 30 s by default for a broker that never answers; every service
        # retries this call under its supervisor, and `segwarden model train` should refuse in
        # seconds, not half a minute.
        bootstrap_timeout_ms=10_000,
        **kafka_security(settings),
    )
    try:
        existing = set(admin.list_topics())
        missing = [plan for plan in plans if plan.name not in existing]
        for plan in missing:
            topic = NewTopic(
                plan.name, plan.partitions, settings.topic_replication_factor, topic_configs=plan.configs
            )
            try:
                admin.create_topics([topic])
            except TopicAlreadyExistsError:
                # Another process created it between our list and create: that is the goal.
                continue
        if missing:
            log.info("created topics", extra={"topics": [p.name for p in missing]})
        _align_configs(admin, [plan for plan in plans if plan.name in existing and plan.configs])
        return [plan.name for plan in missing]
    finally:
        admin.close()


def topic_configs(admin: KafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """The configs each topic has, as the broker describes them (every key, not only modified)."""
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    described = admin.describe_configs(resources, config_filter="all").get("topic", {})
    return {name: {key: entry["value"] for key, entry in described.get(name, {}).items()} for name in names}


def _align_configs(admin: KafkaAdminClient, plans: list[TopicPlan]) -> None:
    """Set the planned configs an existing topic lacks or holds with another value (a changed
    retention setting reaches topics created before it)."""
    current = topic_configs(admin, [plan.name for plan in plans])
    changes = {
        plan.name: {key: value for key, value in plan.configs.items() if current[plan.name].get(key) != value}
        for plan in plans
    }
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, name, configs=configs)
        for name, configs in changes.items()
        if configs
    ]
    if not resources:
        return
    # raise_on_unknown off: the embedded broker describes only the configs a topic was given.
    results = admin.alter_configs(resources, raise_on_unknown=False).get("topic", {})
    failed = {name: result for name, result in results.items() if result != "OK"}
    if failed:
        raise TopicConfigError(f"could not set topic configs: {failed}")
    log.info("set topic configs", extra={"topics": {r.name: r.configs for r in resources}})


def delete_topics(settings: ServiceSettings, names: list[str]) -> None:
    """Delete topics (benchmarks and tests clean up after themselves; see docs/broker.md)."""
    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id="segwarden-admin", **kafka_security(settings)
    )
    try:
        existing = set(admin.list_topics())
        doomed = [name for name in names if name in existing]
        if doomed:
            admin.delete_topics(doomed)
    except KafkaError:
        log.warning("could not delete topics", exc_info=True)
    finally:
        admin.close()


def make_producer(
    settings: ServiceSettings, client_id: str, max_batch_size: int = 16_384
) -> AIOKafkaProducer:
    # acks=all for durability on a replicated cluster. Idempotence stays off: the embedded
    # broker refuses aiokafka's InitProducerId, so consumers de-duplicate on event_id instead.
    # aiokafka holds one batch per partition and sends one request per broker at a time, so a
    # burst larger than `max_batch_size` for one partition goes out in that many round trips.
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=client_id,
        acks="all",
        linger_ms=settings.kafka_linger_ms,
        max_batch_size=max_batch_size,
        request_timeout_ms=10_000,
        retry_backoff_ms=200,
        **kafka_security(settings),
    )


def make_consumer(
    settings: ServiceSettings, *topics: str, group_id: str | None, client_id: str
) -> AIOKafkaConsumer:
    """A consumer that commits by hand (after the effect) and reads from the start when new."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        rebalance_timeout_ms=settings.kafka_session_timeout_ms,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        request_timeout_ms=max(40_000, settings.kafka_session_timeout_ms + 5_000),
        metadata_max_age_ms=30_000,
        **kafka_security(settings),
    )


async def broker_answers(producer: AIOKafkaProducer, timeout: float = 2.0) -> str | None:
    """None when the broker answers a metadata request within `timeout`, else the reason."""
    try:
        ok = await within(timeout, producer.client.fetch_all_metadata())
    except (TimeoutError, KafkaError, OSError) as exc:
        return f"kafka: no answer from the broker ({type(exc).__name__})"
    return None if ok is not None else "kafka: no metadata from the broker"


def clamp_lag(end_offset: int | None, position: int | None) -> int:
    """Consumer lag for metrics only, never for correctness.

    The embedded broker under-reports end offsets (last batch's start + 1), which can make
    end minus position negative; a negative lag means "caught up", so it is clamped to 0.
    """
    if end_offset is None or position is None:
        return 0
    return max(0, end_offset - position)


async def start_client(make: Callable[[], ClientT], what: str) -> ClientT:
    """Start an aiokafka client, retrying with backoff while the broker is away.

    Services call this from a background task, so HTTP is up at once and /readyz reports
    "connecting" instead of the process failing because the broker started second.
    """

    async def attempt() -> ClientT:
        client = make()
        try:
            await client.start()
        except BaseException:
            await client.stop()
            raise
        return client

    return await retry(f"kafka {what}", attempt, (KafkaError, AIOKafkaError, OSError))
