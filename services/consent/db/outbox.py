"""`SqlOutbox`: the pending side of the transactional outbox, read and marked by the relay."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, func, select, update

from services.consent.db.engine import reader, write_transaction
from services.consent.db.tables import outbox


@dataclass(frozen=True)
class OutboxRow:
    id: int
    event_id: str
    customer_id: str
    topic: str
    payload: bytes | None
    purge_when_sent: bool


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    oldest_created_at: datetime | None


class SqlOutbox:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def pending(self, limit: int) -> list[OutboxRow]:
        """The oldest unsent rows in commit order per customer (ids grow under the customer lock)."""
        query = (
            select(outbox.c.id, outbox.c.event_id, outbox.c.customer_id, outbox.c.topic)
            .add_columns(outbox.c.payload, outbox.c.purge_when_sent)
            .where(outbox.c.sent_at.is_(None))
            .order_by(outbox.c.id)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [OutboxRow(*row) for row in reader(connection).execute(query)]

    def mark_sent(self, rows: list[OutboxRow], now: datetime) -> None:
        """Mark rows sent; rows about an erased customer are deleted instead, so no id survives."""
        purge = [row.id for row in rows if row.purge_when_sent]
        keep = [row.id for row in rows if not row.purge_when_sent]
        with write_transaction(self.engine) as connection:
            if keep:
                connection.execute(update(outbox).where(outbox.c.id.in_(keep)).values(sent_at=now))
            if purge:
                connection.execute(delete(outbox).where(outbox.c.id.in_(purge)))

    def prune_sent(self, before: datetime) -> int:
        """Forget rows sent before `before`: the history table is the record, the outbox a queue."""
        with write_transaction(self.engine) as connection:
            return connection.execute(delete(outbox).where(outbox.c.sent_at < before)).rowcount

    def stats(self) -> OutboxStats:
        query = select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.sent_at.is_(None))
        with self.engine.connect() as connection:
            count, oldest = reader(connection).execute(query).one()
        return OutboxStats(int(count), oldest)
