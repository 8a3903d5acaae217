"""The ledger stores the bytes it hashes and generates every other column from them (migration
0002): a column cannot be edited apart from the bytes, a column detached from them is found,
and a ledger from before the migration keeps its chain, forged records included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from services.audit.adapters.ed25519 import Ed25519Signer
from services.audit.adapters.sql_database import MIGRATIONS, create_schema, make_engine, writer_connection
from services.audit.adapters.sql_ledger import SqlLedgerStore
from services.audit.adapters.sql_side_stores import SqlCheckpointStore
from services.audit.domain.ledger import GENESIS, LedgerEntry, seal
from services.audit.handlers import Checkpointer
from tests.integration.audit.test_append_only import fill, tamper, verify
from tests.unit.audit.rfc9162 import check_chain


@pytest.fixture
def bare_engine(db_url: str) -> Iterator[Engine]:
    made = make_engine(db_url)
    yield made
    made.dispose()


def test_a_generated_column_cannot_be_edited_even_without_the_triggers(engine: Engine) -> None:
    fill(engine, 4)
    with pytest.raises(DBAPIError, match="generated column|can only be updated to DEFAULT"):
        tamper(engine, "UPDATE audit_records SET kind = 'forged' WHERE seq = 1")


def test_an_edit_of_the_bytes_shows_in_the_columns_and_fails_verification(
    engine: Engine, tmp_path: Path
) -> None:
    ledger, signer = fill(engine, 6), Ed25519Signer.from_data_dir(tmp_path)
    tamper(
        engine, "UPDATE audit_records SET body = replace(body, 'consent_change', 'forged_kind') WHERE seq = 2"
    )
    assert [r.seq for r in ledger.find(None, "forged_kind", -1, 10)] == [2]
    report = verify(engine, signer)
    assert not report.ok and report.first_bad_seq == 2, report


DETACH = {
    # An insider rebuilds the table with plain columns and edits one of them.
    "rebuilt": [
        "ALTER TABLE audit_records RENAME TO audit_records_old",
        "CREATE TABLE audit_records AS SELECT * FROM audit_records_old",
        "UPDATE audit_records SET kind = 'forged' WHERE seq = 1",
    ],
    # PostgreSQL can turn a generated column into a plain one in place.
    "drop-expression": [
        "ALTER TABLE audit_records ALTER COLUMN kind DROP EXPRESSION",
        "UPDATE audit_records SET kind = 'forged' WHERE seq = 1",
    ],
}


@pytest.mark.parametrize("how", sorted(DETACH))
def test_a_column_detached_from_the_bytes_fails_verification(
    engine: Engine, tmp_path: Path, how: str
) -> None:
    if how == "drop-expression" and engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no DROP EXPRESSION")
    ledger, signer = fill(engine, 6), Ed25519Signer.from_data_dir(tmp_path)
    Checkpointer(ledger, SqlCheckpointStore(engine), signer).checkpoint()
    tamper(engine, *DETACH[how])
    assert [r.seq for r in ledger.find(None, "forged", -1, 10)] == [1]  # the bytes still verify...
    report = verify(engine, signer)
    assert not report.ok and "kind" in (report.reason or ""), report  # ...but the columns are named


def _upgrade(engine: Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with writer_connection(engine) as connection, connection.begin():
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _old_ledger(engine: Engine, count: int) -> list[dict]:
    """A ledger as the schema before 0002 held it: eight stored columns a record."""
    _upgrade(engine, "0001")
    rows, head = [], GENESIS
    for seq in range(count):
        entry = LedgerEntry(
            "consent_change", "cd" * 32 if seq % 2 else None, f"old-{seq}", {"i": seq, "é": "\n"}
        )
        record = seal(entry, seq, "2026-11-30T00:00:00.000000Z", head)
        rows.append(vars(record))
        head = record.hash
    columns = ", ".join(rows[0])
    with engine.begin() as connection:
        connection.execute(
            text(f"INSERT INTO audit_records ({columns}) VALUES ({', '.join(':' + c for c in rows[0])})"),
            rows,
        )
    return rows


def test_a_ledger_from_before_the_bytes_were_stored_is_rebuilt_and_keeps_its_chain(
    bare_engine: Engine, tmp_path: Path
) -> None:
    old = _old_ledger(bare_engine, 40)
    create_schema(bare_engine)
    ledger, signer = SqlLedgerStore(bare_engine), Ed25519Signer.from_data_dir(tmp_path)
    served = ledger.find(None, None, -1, 100)
    assert [vars(record) for record in served] == old
    ledger.append([LedgerEntry("consent_change", None, "new-0", {"i": 0})])
    Checkpointer(ledger, SqlCheckpointStore(bare_engine), signer).checkpoint()
    check_chain([record.to_dict() for record in ledger.find(None, None, -1, 100)])
    report = verify(bare_engine, signer)
    assert report.ok and report.length == 41, report
    with pytest.raises(DBAPIError, match="append-only"), bare_engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_records WHERE seq = 0"))


def test_a_record_forged_before_the_migration_still_fails_verification(
    bare_engine: Engine, tmp_path: Path
) -> None:
    _old_ledger(bare_engine, 10)
    tamper(bare_engine, "UPDATE audit_records SET event_id = 'forged' WHERE seq = 3")
    create_schema(bare_engine)
    report = verify(bare_engine, Ed25519Signer.from_data_dir(tmp_path))
    assert not report.ok and report.first_bad_seq == 3, report
