"""`SqlCheckpointStore` (signed tree heads) and `SqlPublicationMark` (how far audit.log is fed)."""

from __future__ import annotations

from sqlalchemy import Engine, insert, select, update

from services.audit.adapters.sql_database import writer_connection
from services.audit.adapters.sql_tables import checkpoints, publication
from services.audit.domain.checkpoints import Checkpoint


class SqlCheckpointStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, checkpoint: Checkpoint) -> None:
        with writer_connection(self.engine) as connection, connection.begin():
            exists = connection.execute(
                select(checkpoints.c.tree_size).where(checkpoints.c.tree_size == checkpoint.tree_size)
            ).first()
            if exists is None:
                connection.execute(insert(checkpoints), [vars(checkpoint)])

    def all(self) -> list[Checkpoint]:
        with self.engine.connect() as connection:
            return [Checkpoint(*row) for row in connection.execute(select(checkpoints))]

    def latest(self) -> Checkpoint | None:
        query = select(checkpoints).order_by(checkpoints.c.tree_size.desc()).limit(1)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else Checkpoint(*row)


class SqlPublicationMark:
    """The seq of the last record published to audit.log (-1: none)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self) -> int:
        with self.engine.connect() as connection:
            value = connection.execute(select(publication.c.last_seq).where(publication.c.id == 1)).scalar()
        return -1 if value is None else int(value)

    def set(self, last_seq: int) -> None:
        with writer_connection(self.engine) as connection, connection.begin():
            done = connection.execute(
                update(publication).where(publication.c.id == 1).values(last_seq=last_seq)
            )
            if done.rowcount == 0:
                connection.execute(insert(publication), [{"id": 1, "last_seq": last_seq}])
