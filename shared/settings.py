"""Typed settings shared by every service; each service subclasses `ServiceSettings`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlparse

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import failpoints
from shared.files import private_directory

_REDIS_SCHEMES = {"redis", "rediss", "unix"}
KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


def renamed(name: str, *old_names: str, **field: Any) -> Any:
    """A setting whose variable was renamed (to the naming rule of docs/contract.md, Settings):
    `name` is read first, then each old name, so an environment written for an older release
    keeps working. The field must be called `name`, so code and tests use one spelling."""
    return Field(validation_alias=AliasChoices(name, *old_names), **field)


class ServiceSettings(BaseSettings):
    """Settings every process reads from the environment (names as in the contract)."""

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # How every Kafka client (producers, consumers, admin, faust) talks to the brokers;
    # shared.kafka.kafka_security turns these into client arguments. Contract: Settings.
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: KafkaSaslMechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None  # unset: the system's CA bundle
    kafka_ssl_certfile: Path | None = None  # client certificate (mutual TLS); may hold the key too
    kafka_ssl_keyfile: Path | None = None
    topic_prefix: str = ""
    topic_partitions: int = Field(6, ge=1, le=1024)
    topic_replication_factor: int = Field(1, ge=1, le=16)
    redis_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path = Path("./.data")
    pseudonym_key: str | None = None
    auth_tokens: str | None = None
    bind_host: str = "127.0.0.1"
    log_level: str = "INFO"
    purposes_file: Path | None = None
    # No aggregate shows a group smaller than this (segment breakdowns, data-use answers).
    k_anonymity: int = Field(10, ge=1)
    # Where services find each other (the consent export gathers segments and the audit trail).
    consent_url: str = "http://127.0.0.1:8001"
    segmenter_url: str = "http://127.0.0.1:8002"
    audit_url: str = "http://127.0.0.1:8003"
    delivery_url: str = "http://127.0.0.1:8004"
    # Bearer token for service-to-service calls; defaults to the generated admin token.
    internal_token: str | None = None

    # Group timings that join in ~3 s on the embedded broker and are valid on Apache
    # Kafka (its group.min.session.timeout.ms is 6000); see docs/broker.md.
    kafka_session_timeout_ms: int = Field(6000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(1000, ge=100)
    # Hot-path consumers wait this long for data: the embedded broker sleeps out most
    # of the wait when a partition is idle, so it bounds end-to-end latency.
    kafka_fetch_max_wait_ms: int = Field(50, ge=0, le=5000)
    kafka_linger_ms: int = Field(2, ge=0, le=1000)
    # Largest request body any route reads: bigger ones get 413 before a byte is parsed.
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # How long topics keep a record on Apache Kafka (retention.ms, set on new and existing topics
    # at start; the embedded broker never expires anything). Contract: Topics, Retention.
    topic_retention_input_hours: int = Field(72, ge=1)  # customer.events, consent.requests
    topic_retention_change_hours: int = Field(7 * 24, ge=1)  # consent.changes, segment.membership
    topic_retention_erasure_hours: int = Field(72, ge=1)  # erasure.requests
    topic_retention_dead_letter_hours: int = Field(72, ge=1)  # every <topic>.dlq
    topic_retention_audit_days: int = Field(730, ge=1)  # audit.log (pseudonymized)
    topic_compaction_lag_hours: int = Field(24, ge=1)  # consent.state, segment.definitions
    # How much of a failed input a dead letter keeps (the rest is cut; its size is recorded).
    dead_letter_max_value_bytes: int = Field(4096, ge=256, le=256 * 1024)
    # Test-only fault injection (shared/failpoints.py); empty in production.
    failpoints: str = ""

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {server!r}")
        return value

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    @classmethod
    def _check_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no readable file at {value}")
        return value

    @field_validator("failpoints")
    @classmethod
    def _check_failpoints(cls, value: str) -> str:
        failpoints.parse(value)  # a misspelt failpoint fails at start instead of never firing
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        url = urlparse(value)
        if url.scheme not in _REDIS_SCHEMES:
            # The URL is not echoed: it may hold the password.
            raise ValueError("expected a redis://, rediss:// or unix:// URL")
        if parse_qs(url.query).get("ssl_cert_reqs", ["required"])[-1].lower() != "required":
            raise ValueError("ssl_cert_reqs must stay 'required': TLS without a verified server is not TLS")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if value and not all(ch.isalnum() or ch in "._-" for ch in value):
            raise ValueError("may hold only letters, digits, '.', '_' and '-'")
        return value

    @model_validator(mode="after")
    def _check_retention(self) -> ServiceSettings:
        # A replay of customer.events (a segmenter rebuild) skips the customers erased since only
        # while their erasure requests are still on erasure.requests.
        if self.topic_retention_erasure_hours < self.topic_retention_input_hours:
            raise ValueError(
                "TOPIC_RETENTION_ERASURE_HOURS must be at least TOPIC_RETENTION_INPUT_HOURS "
                "(a replay of customer.events must still see the erasures)"
            )
        return self

    @model_validator(mode="after")
    def _check_kafka_security(self) -> ServiceSettings:
        mistakes = _kafka_security_mistakes(self)
        if mistakes:
            name, problem = mistakes[0]
            raise ValueError(f"{name} {problem} (KAFKA_SECURITY_PROTOCOL is {self.kafka_security_protocol})")
        return self

    @property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",")]

    @property
    def redis_namespace(self) -> str:
        """Prefix of every Redis key, so stacks (and tests) sharing a Redis stay apart."""
        return f"sw:{self.topic_prefix}"

    def ensure_data_dir(self) -> Path:
        return private_directory(self.data_dir)

    def sqlite_url(self, name: str) -> str:
        return f"sqlite:///{(self.data_dir / name).resolve()}"


def _kafka_security_mistakes(settings: ServiceSettings) -> list[tuple[str, str]]:
    """Combinations a client would silently get wrong: credentials it would never send, files it
    would never load, a password sent in clear."""
    sasl = settings.kafka_security_protocol.startswith("SASL_")
    tls = settings.kafka_security_protocol in ("SSL", "SASL_SSL")
    mistakes = []
    for name in ("kafka_sasl_username", "kafka_sasl_password"):
        if sasl and not getattr(settings, name):
            mistakes.append((name.upper(), "is required with SASL"))
        if not sasl and getattr(settings, name):
            mistakes.append((name.upper(), "is set but would never be sent: use SASL_SSL"))
    for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        if not tls and getattr(settings, name):
            mistakes.append((name.upper(), "is set but would never be loaded: use SSL or SASL_SSL"))
    if settings.kafka_ssl_keyfile and not settings.kafka_ssl_certfile:
        mistakes.append(("KAFKA_SSL_KEYFILE", "needs KAFKA_SSL_CERTFILE"))
    if settings.kafka_security_protocol == "SASL_PLAINTEXT" and settings.kafka_sasl_mechanism == "PLAIN":
        mistakes.append(("KAFKA_SASL_MECHANISM", "PLAIN would send the password in clear: use SASL_SSL"))
    return mistakes
