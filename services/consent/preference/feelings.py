"""The optional "how do you feel about how we use your data" question. An answer only increments
its count; who answered is kept apart, under the pseudonym and without the answer, so each customer
answers once and no row ties an answer to a customer. The privacy officer reads the counts with
groups smaller than K_ANONYMITY suppressed."""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine, insert, select, update

from services.consent import metrics
from services.consent.adapters.sql_engine import lock_customer, reader, write_transaction
from services.consent.adapters.sql_tables import data_use_answered as answered
from services.consent.adapters.sql_tables import data_use_feelings as feelings
from shared.kanon import suppress_small_groups
from shared.pseudonym import pseudonymize

ANSWERS = ("comfortable", "unsure", "uneasy")
# One lock for every answer: two first answers of one kind would both insert its count row.
_LOCK = "data-use-feelings"


class SqlDataUseFeelings:
    """Sync: call from a thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def answered(self, subject: str) -> bool:
        query = select(answered.c.subject).where(answered.c.subject == subject)
        with self.engine.connect() as connection:
            return reader(connection).execute(query).first() is not None

    def answer(self, subject: str, answer: str) -> bool:
        """Count the answer unless the subject answered before; whether it was counted."""
        with write_transaction(self.engine) as connection:
            lock_customer(connection, _LOCK)
            if connection.execute(select(answered).where(answered.c.subject == subject)).first():
                return False
            connection.execute(insert(answered).values(subject=subject))
            bump = update(feelings).where(feelings.c.answer == answer).values(count=feelings.c.count + 1)
            if connection.execute(bump).rowcount == 0:
                connection.execute(insert(feelings).values(answer=answer, count=1))
            return True

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = reader(connection).execute(select(feelings.c.answer, feelings.c.count))
            return {answer: int(count) for answer, count in rows}


class DataUseFeelings:
    def __init__(self, store: SqlDataUseFeelings, pseudonym_key: bytes, k_anonymity: int) -> None:
        self.store = store
        self.pseudonym_key = pseudonym_key
        self.k_anonymity = k_anonymity

    async def answered(self, customer_id: str) -> bool:
        return await asyncio.to_thread(self.store.answered, self._subject(customer_id))

    async def answer(self, customer_id: str, answer: str) -> bool:
        counted = await asyncio.to_thread(self.store.answer, self._subject(customer_id), answer)
        metrics.DATA_USE_ANSWERS.labels(str(counted).lower()).inc()  # never the answer: it is counted
        return counted

    async def counts(self) -> dict[str, int]:
        """The counts per answer, each group under K_ANONYMITY merged into `_suppressed`."""
        return suppress_small_groups(await asyncio.to_thread(self.store.counts), self.k_anonymity)

    def _subject(self, customer_id: str) -> str:
        return pseudonymize(self.pseudonym_key, customer_id)
