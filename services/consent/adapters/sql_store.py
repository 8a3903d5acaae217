"""`SqlConsentStore`: consent history, the current projection and the outbox, in one database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
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


class _GroupWrites:
    """What the customers of one transaction write, sent together just before it commits: one
    executemany per statement instead of one statement per row (a group commit of 16 choices ran
    some 100). The current projection of these customers is read once, up front, and kept here as
    they change it (their locks are held, so no other writer can). Nothing in the transaction
    reads the queued rows back; ids follow the order queued."""

    def __init__(self, connection: Connection, customer_ids: list[str]) -> None:
        self.connection = connection
        self.currents: dict[str, dict[str, CurrentConsent]] = {c: {} for c in customer_ids}
        query = select(consent_current).where(consent_current.c.customer_id.in_(sorted(self.currents)))
        for row in connection.execute(query):
            self.currents[row.customer_id][row.purpose] = _current_of(row)
        self.records: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []
        self.new_currents: list[dict[str, Any]] = []
        self.moved_currents: list[dict[str, Any]] = []

    def flush(self) -> None:
        # New current rows before updates: a purpose first chosen in this batch may change again.
        for statement, rows in (
            (_INSERT_RECORD, self.records),
            (_INSERT_CURRENT, self.new_currents),
            (_UPDATE_CURRENT, self.moved_currents),
            (_INSERT_OUTBOX, self.outbox),
        ):
            if rows:
                self.connection.execute(statement, rows)
                rows.clear()


class SqlCustomerUnit:
    """One write transaction that holds one customer's lock: read, decide, append, enqueue."""

    def __init__(self, connection: Connection, customer_id: str, writes: _GroupWrites) -> None:
        self.connection = connection
        self.customer_id = customer_id
        self.writes = writes

    def current(self) -> dict[str, CurrentConsent]:
        return dict(self.writes.currents[self.customer_id])

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
        current = self.writes.currents[self.customer_id]
        for entry in entries:
            row = {k: v for k, v in vars(entry).items() if k != "publishes"}
            self.writes.records.append({**row, "published": entry.publishes})
            values = {field: getattr(entry, field) for field in _CURRENT_FIELDS}
            key = {"customer_id": self.customer_id, "purpose": entry.purpose}
            if entry.purpose in current:
                self.writes.moved_currents.append(
                    {"k_customer": key["customer_id"], "k_purpose": entry.purpose, **values}
                )
            else:
                self.writes.new_currents.append({**key, **values})
            current[entry.purpose] = _as_stored(entry.as_current())

    def enqueue(
        self, topic: str, event_id: str, payload: bytes | None, now: datetime, purge: bool = False
    ) -> None:
        row = {"event_id": event_id, "customer_id": self.customer_id, "topic": topic, "payload": payload}
        self.writes.outbox.append({**row, "created_at": now, "purge_when_sent": purge})

    def retire(self, cutoffs: dict[str, datetime], subject: str, now: datetime) -> dict[str, int]:
        """Pseudonymize the customer's superseded history rows recorded before their purpose's
        cutoff: the customer id becomes `subject`, user agent and IP prefix are dropped. The row
        in force for each purpose stays as it is (it is the proof of the current choice).
        Returns how many rows were retired, by purpose."""
        self.writes.flush()  # rows queued before are retired too, as if written at once
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
        self.writes.flush()  # rows queued before the erasure are erased with the rest
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
        self.writes.currents[self.customer_id] = {}
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
    def customer(self, customer_id: str) -> Iterator[SqlCustomerUnit]:
        with self.customers([customer_id]) as units:
            yield units[customer_id]

    @contextmanager
    def customers(self, customer_ids: list[str]) -> Iterator[dict[str, SqlCustomerUnit]]:
        """One transaction holding the locks of several customers (a group commit: one fsync)."""
        with write_transaction(self.engine) as connection:
            # Locks in one global order, so two writers' batches can never deadlock on PostgreSQL.
            for customer_id in sorted(set(customer_ids)):
                lock_customer(connection, customer_id)
            writes = _GroupWrites(connection, customer_ids)
            yield {
                customer_id: SqlCustomerUnit(connection, customer_id, writes) for customer_id in customer_ids
            }
            writes.flush()

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
        row.purpose: _current_of(row)
        for row in connection.execute(_SELECT_CURRENT, {"customer_id": customer_id})
    }


def _as_stored(current: CurrentConsent) -> CurrentConsent:
    """As the database gives it back: times in UTC."""
    expires = current.expires_at.astimezone(UTC) if current.expires_at else None
    return replace(current, recorded_at=current.recorded_at.astimezone(UTC), expires_at=expires)


def _current_of(row: Any) -> CurrentConsent:
    return CurrentConsent(**{field: getattr(row, field) for field in _CURRENT_FIELDS})
