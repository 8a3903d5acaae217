"""`SqlOutbox`: the pending side of the transactional outbox, read and marked by the relay."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, bindparam, delete, func, select, update

from services.consent.adapters.sql_engine import reader, truncate_log, write_transaction
from services.consent.adapters.sql_tables import outbox

_SAME_ROW = (outbox.c.id == bindparam("k_id")) & (outbox.c.event_id == bindparam("k_event"))
_MARK_SENT = update(outbox).where(_SAME_ROW).values(sent_at=bindparam("now"))
_PURGE_SENT = delete(outbox).where(_SAME_ROW)


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
        # Set before an erasure's last rows are deleted, cleared once the log is truncated: until
        # then SQLite's write-ahead log may still hold the erased customer's pages.
        self.log_holds_erased = False

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
        """Mark rows sent; rows about an erased customer are deleted instead, so no id survives.

        Matched by id and event id: a row deleted meanwhile (an erasure supersedes the pending
        rows of its customer) is never confused with another row, whatever its id.
        """
        purge = [{"k_id": r.id, "k_event": r.event_id} for r in rows if r.purge_when_sent]
        keep = [{"k_id": r.id, "k_event": r.event_id, "now": now} for r in rows if not r.purge_when_sent]
        if purge:
            self.log_holds_erased = True
        # Not durable: a mark lost to a power cut only publishes its rows again (same event ids),
        # and the fsync it saves held the write lock the next group commit waits for.
        with write_transaction(self.engine, durable=False) as connection:
            if keep:
                connection.execute(_MARK_SENT, keep)
            if purge:
                connection.execute(_PURGE_SENT, purge)

    def scrub_log(self) -> None:
        """Once an erasure's rows are gone, truncate the write-ahead log that still holds their
        pages (retried on the relay's next round while a reader holds an older snapshot)."""
        if self.log_holds_erased:
            self.log_holds_erased = not truncate_log(self.engine)

    def last_id(self) -> int:
        """The highest id committed so far (0 for an empty outbox)."""
        with self.engine.connect() as connection:
            return int(
                reader(connection).execute(select(func.coalesce(func.max(outbox.c.id), 0))).scalar_one()
            )

    def has_unsent(self) -> bool:
        """Whether any committed row waits to be published (a replica's, say)."""
        query = select(outbox.c.id).where(outbox.c.sent_at.is_(None)).limit(1)
        with self.engine.connect() as connection:
            return reader(connection).execute(query).first() is not None

    def unsent_through(self, last_id: int) -> bool:
        """Whether a committed row with an id up to `last_id` still waits to be published."""
        query = select(outbox.c.id).where(outbox.c.sent_at.is_(None), outbox.c.id <= last_id).limit(1)
        with self.engine.connect() as connection:
            return reader(connection).execute(query).first() is not None

    def prune_sent(self, before: datetime) -> int:
        """Forget rows sent before `before`: the history table is the record, the outbox a queue."""
        with write_transaction(self.engine) as connection:
            return connection.execute(delete(outbox).where(outbox.c.sent_at < before)).rowcount

    def stats(self) -> OutboxStats:
        query = select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.sent_at.is_(None))
        with self.engine.connect() as connection:
            count, oldest = reader(connection).execute(query).one()
        return OutboxStats(int(count), oldest)
