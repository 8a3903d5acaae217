"""The preference-link generation of each customer in the consent store (sync: call from a thread)."""

from __future__ import annotations

from sqlalchemy import Engine, insert, select, update

from services.consent.adapters.sql_engine import lock_customer, reader, write_transaction
from services.consent.adapters.sql_tables import preference_link_generations as generations


class SqlLinkGenerations:
    """A customer's links are valid while they carry the current generation (0 until a revoke)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def current(self, subject: str) -> int:
        query = select(generations.c.generation).where(generations.c.subject == subject)
        with self.engine.connect() as connection:
            return reader(connection).execute(query).scalar() or 0

    def revoke(self, subject: str) -> int:
        """Invalidate every link issued so far; the new generation."""
        with write_transaction(self.engine) as connection:
            lock_customer(connection, subject)  # two first revokes would both insert
            where = generations.c.subject == subject
            found = connection.execute(select(generations.c.generation).where(where)).scalar()
            if found is None:
                connection.execute(insert(generations).values(subject=subject, generation=1))
                return 1
            connection.execute(update(generations).where(where).values(generation=found + 1))
            return found + 1
