"""`SqlConsentStore`: consent history, the current projection and the outbox, in one database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, or_, select, update

from services.consent.adapters.sql_engine import lock_customer, next_sequences, reader, write_transaction
from services.consent.adapters.sql_tables import (
    consent_current,
    consent_records,
    customer_preferences,
    data_use_answered,
    erasures,
    outbox,
    processed_requests,
)
from services.consent.domain.consent import ConsentEntry, CurrentConsent, ErasureHoldings, ErasureRecord

_CURRENT_FIELDS = (
    "status",
    "source",
    "jurisdiction",
    "policy_version",
    "recorded_at",
    "expires_at",
    "sequence",
    "notice_version",
)
# Built once with bound parameters, so SQLAlchemy compiles each statement once (the hot path).
_INSERT_RECORD = insert(consent_records)
_INSERT_CURRENT = insert(consent_current)
_INSERT_OUTBOX = insert(outbox)
_UPDATE_CURRENT = update(consent_current).where(
    consent_current.c.customer_id == bindparam("k_customer"),
    consent_current.c.purpose == bindparam("k_purpose"),
)
_SELECT_CURRENT = select(consent_current).where(consent_current.c.customer_id == bindparam("customer_id"))


class CustomerUnit:
    """One write transaction that holds one customer's lock: read, decide, append, enqueue."""

    def __init__(self, connection: Connection, customer_id: str) -> None:
        self.connection = connection
        self.customer_id = customer_id

    def current(self) -> dict[str, CurrentConsent]:
        return _current(self.connection, self.customer_id)

    def claim_request(self, request_id: str, now: datetime) -> bool:
        """False when this request id was processed before (a redelivery): then it is already done."""
        seen = select(processed_requests.c.request_id).where(processed_requests.c.request_id == request_id)
        if self.connection.execute(seen).first() is not None:
            return False
        self.connection.execute(insert(processed_requests).values(request_id=request_id, processed_at=now))
        return True

    def number(self, entries: list[ConsentEntry]) -> list[ConsentEntry]:
        """The entries with their consent sequence, ascending in list order (the commit order)."""
        if not entries:
            return []
        sequences = next_sequences(self.connection, len(entries))
        return [replace(entry, sequence=s) for entry, s in zip(entries, sequences, strict=True)]

    def next_sequence(self) -> int:
        """One new consent sequence number, above every one drawn for the customer before."""
        return next_sequences(self.connection, 1)[0]

    def append(self, entries: list[ConsentEntry]) -> None:
        """New history rows (numbered by `number`), and the current projection moved to them."""
        for entry in entries:
            row = {k: v for k, v in vars(entry).items() if k != "publishes"}
            self.connection.execute(_INSERT_RECORD, {**row, "published": entry.publishes})
            values = {field: getattr(entry, field) for field in _CURRENT_FIELDS}
            key = {"k_customer": self.customer_id, "k_purpose": entry.purpose}
            if self.connection.execute(_UPDATE_CURRENT, {**key, **values}).rowcount == 0:
                self.connection.execute(
                    _INSERT_CURRENT, {"customer_id": self.customer_id, "purpose": entry.purpose, **values}
                )

    def enqueue(
        self, topic: str, event_id: str, payload: bytes | None, now: datetime, purge: bool = False
    ) -> None:
        row = {"event_id": event_id, "customer_id": self.customer_id, "topic": topic, "payload": payload}
        self.connection.execute(_INSERT_OUTBOX, {**row, "created_at": now, "purge_when_sent": purge})

    def retire(self, cutoffs: dict[str, datetime], subject: str, now: datetime) -> dict[str, int]:
        """Pseudonymize the customer's superseded history rows recorded before their purpose's
        cutoff: the customer id becomes `subject`, user agent and IP prefix are dropped. The row
        in force for each purpose stays as it is (it is the proof of the current choice).
        Returns how many rows were retired, by purpose."""
        retired: dict[str, int] = {}
        for purpose, cutoff in cutoffs.items():
            latest = (
                select(func.max(consent_records.c.id))
                .where(
                    consent_records.c.customer_id == self.customer_id, consent_records.c.purpose == purpose
                )
                .scalar_subquery()
            )
            result = self.connection.execute(
                update(consent_records)
                .where(
                    consent_records.c.customer_id == self.customer_id,
                    consent_records.c.purpose == purpose,
                    consent_records.c.recorded_at < cutoff,
                    consent_records.c.id < latest,
                )
                .values(customer_id=subject, user_agent=None, ip_truncated=None, retired_at=now)
            )
            if result.rowcount:
                retired[purpose] = result.rowcount
        return retired

    def erase(self, subject: str, event_id: str, now: datetime) -> int:
        """Delete every row naming the customer, the retired history under their pseudonym too;
        keep a proof under the pseudonym. Returns rows deleted."""
        deleted = self.connection.execute(
            delete(consent_records).where(
                consent_records.c.customer_id == subject, consent_records.c.retired_at.is_not(None)
            )
        ).rowcount
        # Whether they answered the data-use question (never what: the counts stay).
        deleted += self.connection.execute(
            delete(data_use_answered).where(data_use_answered.c.subject == subject)
        ).rowcount
        for table in (consent_records, consent_current, customer_preferences, outbox):
            result = self.connection.execute(delete(table).where(table.c.customer_id == self.customer_id))
            deleted += result.rowcount
        self.connection.execute(
            insert(erasures).values(
                subject=subject, event_id=event_id, requested_at=now, records_deleted=deleted
            )
        )
        return deleted


class SqlConsentStore:
    """Reads and per-customer write units over SQLAlchemy (sync: call it from a worker thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def customer(self, customer_id: str) -> Iterator[CustomerUnit]:
        with self.customers([customer_id]) as units:
            yield units[customer_id]

    @contextmanager
    def customers(self, customer_ids: list[str]) -> Iterator[dict[str, CustomerUnit]]:
        """One transaction holding the locks of several customers (a group commit: one fsync)."""
        with write_transaction(self.engine) as connection:
            # Locks in one global order, so two writers' batches can never deadlock on PostgreSQL.
            for customer_id in sorted(set(customer_ids)):
                lock_customer(connection, customer_id)
            yield {customer_id: CustomerUnit(connection, customer_id) for customer_id in customer_ids}

    def current(self, customer_id: str) -> dict[str, CurrentConsent]:
        with self.engine.connect() as connection:
            return _current(reader(connection), customer_id)

    def history(self, customer_id: str) -> list[dict[str, Any]]:
        query = (
            select(consent_records)
            .where(consent_records.c.customer_id == customer_id)
            .order_by(consent_records.c.id)
        )
        with self.engine.connect() as connection:
            return [dict(row) for row in reader(connection).execute(query).mappings()]

    def customers_with_lapsed_grants(self, now: datetime, limit: int) -> list[str]:
        query = (
            select(consent_current.c.customer_id)
            .where(consent_current.c.status == "granted", consent_current.c.expires_at <= now)
            .distinct()
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return list(reader(connection).execute(query).scalars())

    def customers_with_history_past(self, cutoffs: dict[str, datetime], limit: int) -> list[str]:
        """Customers with a superseded, unretired history row recorded before its purpose's cutoff."""
        newer = consent_records.alias("newer")
        superseded = (
            select(newer.c.id)
            .where(
                newer.c.customer_id == consent_records.c.customer_id,
                newer.c.purpose == consent_records.c.purpose,
                newer.c.id > consent_records.c.id,
            )
            .exists()
        )
        past = or_(
            *(
                (consent_records.c.purpose == purpose) & (consent_records.c.recorded_at < cutoff)
                for purpose, cutoff in cutoffs.items()
            )
        )
        query = (
            select(consent_records.c.customer_id)
            .where(past, consent_records.c.retired_at.is_(None), superseded)
            .distinct()
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return list(reader(connection).execute(query).scalars())

    def customer_ids(self, after: str, limit: int) -> list[str]:
        """A page of customers with a record, in id order (to republish consent.state)."""
        query = (
            select(consent_current.c.customer_id)
            .where(consent_current.c.customer_id > after)
            .group_by(consent_current.c.customer_id)
            .order_by(consent_current.c.customer_id)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return list(reader(connection).execute(query).scalars())

    def latest_erasure(self, subject: str) -> ErasureRecord | None:
        """The customer's latest erasure (by its pseudonym), or None when never erased."""
        query = (
            select(erasures.c.event_id, erasures.c.requested_at, erasures.c.records_deleted)
            .where(erasures.c.subject == subject)
            .order_by(erasures.c.id.desc())
            .limit(1)
        )
        with self.engine.connect() as connection:
            row = reader(connection).execute(query).first()
        return None if row is None else ErasureRecord(row.event_id, row.requested_at, row.records_deleted)

    def still_held(self, customer_id: str) -> ErasureHoldings:
        """What still names the customer: consent records (only a signup after the erasure makes
        new ones) and the erasure's outbox rows the broker has not acknowledged (deleted once sent)."""
        with self.engine.connect() as connection:
            connection = reader(connection)
            records = connection.execute(
                select(func.count())
                .select_from(consent_records)
                .where(consent_records.c.customer_id == customer_id)
            ).scalar_one()
            unsent = connection.execute(
                select(func.count())
                .select_from(outbox)
                .where(outbox.c.customer_id == customer_id, outbox.c.purge_when_sent.is_(True))
            ).scalar_one()
        return ErasureHoldings(int(records), int(unsent))

    def erasure_count(self, subject: str) -> int:
        query = select(func.count()).select_from(erasures).where(erasures.c.subject == subject)
        with self.engine.connect() as connection:
            return int(reader(connection).execute(query).scalar_one())


def _current(connection: Connection, customer_id: str) -> dict[str, CurrentConsent]:
    return {
        row.purpose: CurrentConsent(**{field: getattr(row, field) for field in _CURRENT_FIELDS})
        for row in connection.execute(_SELECT_CURRENT, {"customer_id": customer_id})
    }
