"""`SqlRelayLease`: one outbox relay per database, so replicas never publish the same rows together."""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)
# Any fixed 64-bit number, the same in every replica: the key of the relay's advisory lock.
RELAY_LOCK_KEY = 0x5E6A_C0DE_0001


class SqlRelayLease:
    """On PostgreSQL, a session advisory lock held on a connection of its own; the replica holding it
    relays, the others wait and take over when its session ends (a crash drops the lock).

    SQLite is one process per database file (see docs/consent.md), so the lease is always held.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Connection | None = None

    def hold(self) -> bool:
        """True while this process holds the lease (checking that its session is still alive)."""
        if self.engine.dialect.name != "postgresql":
            return True
        if self._connection is not None and self._alive(self._connection):
            return True
        self.release()
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        got = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": RELAY_LOCK_KEY}).scalar()
        if not got:
            connection.close()
            return False
        self._connection = connection
        log.info("this replica now relays the outbox")
        return True

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except DBAPIError:
                pass  # the session is gone, and the lock with it
            self._connection = None

    @staticmethod
    def _alive(connection: Connection) -> bool:
        try:
            connection.execute(text("SELECT 1"))
        except DBAPIError:
            return False
        return True
