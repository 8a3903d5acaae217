"""The consent store's schema (SQLAlchemy Core); alembic migrations under `migrations/` create it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    TypeDecorator,
)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect (SQLite keeps no offset, so it is put back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the consent store")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments a column typed exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer, "sqlite")
metadata = MetaData()

# Every choice is a new row: history is appended to, never rewritten.
consent_records = Table(
    "consent_records",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("customer_id", String(128), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("previous_status", String(16)),
    Column("reason", String(16), nullable=False),
    Column("method", String(16), nullable=False),
    Column("source", String(256), nullable=False),
    Column("jurisdiction", String(8), nullable=False),
    Column("policy_version", String(256), nullable=False),
    Column("user_agent", String(256)),
    Column("ip_truncated", String(64)),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),
    Column("published", Boolean, nullable=False),
    # The consent sequence (see `next_sequences`); NULL on rows recorded before it existed.
    Column("sequence", BigInteger),
    # Set when the retention job pseudonymized the row (then `customer_id` holds the pseudonym).
    Column("retired_at", UtcDateTime),
    # The purpose's notice version the choice was made under (migration 0006); NULL when not given.
    Column("notice_version", Integer),
    Index("ix_consent_records_customer", "customer_id", "id"),
    Index("ix_consent_records_retention", "purpose", "recorded_at"),
)

# The latest row per customer and purpose: a projection kept in the same transaction, for reads
# and for the expiry job's index scan.
consent_current = Table(
    "consent_current",
    metadata,
    Column("customer_id", String(128), primary_key=True),
    Column("purpose", String(64), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("source", String(256), nullable=False),
    Column("jurisdiction", String(8), nullable=False),
    Column("policy_version", String(256), nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),
    Column("sequence", BigInteger),
    Column("notice_version", Integer),
    Index("ix_consent_current_expiry", "status", "expires_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("topic", String(64), nullable=False),
    Column("payload", LargeBinary),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime),
    # Rows that name an erased customer are deleted once sent instead of kept as sent.
    Column("purge_when_sent", Boolean, nullable=False),
    Index("ix_outbox_pending", "sent_at", "id"),
    Index("ix_outbox_customer", "customer_id"),
    # Ids are never reused (migration 0003): SQLite would otherwise give a new row a deleted
    # row's id, and the relay, marking by id what it sent, would mark a row it never sent.
    sqlite_autoincrement=True,
)

processed_requests = Table(
    "processed_requests",
    metadata,
    Column("request_id", String(128), primary_key=True),
    Column("processed_at", UtcDateTime, nullable=False),
)

# What the law needs to prove an erasure happened, under the pseudonym only.
erasures = Table(
    "erasures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("subject", String(64), nullable=False),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("records_deleted", Integer, nullable=False),
    Index("ix_erasures_subject", "subject"),
)

# The consent sequence's counter: a PostgreSQL SEQUENCE (CACHE 1, so values grow in the order
# they are drawn across sessions); on SQLite, one row in a table of its own (one writer at a time).
CONSENT_SEQUENCE = "consent_sequence"

# The customer's stated (zero-party) preferences, one row per catalog key, the value as JSON: what
# the preference center shows back. Each change also enqueues a profile_update on customer.events.
customer_preferences = Table(
    "customer_preferences",
    metadata,
    Column("customer_id", String(128), primary_key=True),
    Column("preference", String(64), primary_key=True),
    Column("value", String(1024), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# The preference center's optional "how do you feel about how we use your data" question: counts
# per answer only, and apart from them the pseudonyms of those who answered (so each answers once),
# which say nothing of what they answered. No row holds an answer together with a customer.
data_use_feelings = Table(
    "data_use_feelings",
    metadata,
    Column("answer", String(32), primary_key=True),
    Column("count", Integer, nullable=False),
)
data_use_answered = Table(
    "data_use_answered",
    metadata,
    Column("subject", String(64), primary_key=True),
)

# The preference-link generation per customer, under the pseudonym only: a link carries the
# generation it was issued in, and revoking a customer's links moves the generation on.
preference_link_generations = Table(
    "preference_link_generations",
    metadata,
    Column("subject", String(64), primary_key=True),
    Column("generation", Integer, nullable=False),
)
