"""Reading seq ranges without their seqs finds what reading every seq finds, on a real SQLite
ledger tampered behind the service's back, whatever the run size."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.audit.adapters.sql_database import create_schema, make_engine
from services.audit.adapters.sql_ledger import SqlLedgerStore
from services.audit.domain.ledger import ChainCheck, LedgerEntry, runs
from services.audit.domain.verify import verify_ledger

COUNT = 12


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ledger of COUNT records, without its guard triggers (each example edits a copy)."""
    path = tmp_path_factory.mktemp("ledger") / "audit.db"
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    SqlLedgerStore(engine).append(
        [LedgerEntry("consent_change", None, f"e-{i}", {"i": i}) for i in range(COUNT)]
    )
    engine.dispose()
    run(path, [f"DROP TRIGGER audit_records_no_{op}" for op in ("update", "delete")])
    return path


def run(path: Path, statements: list[str]) -> None:
    """The statements in one transaction, the connection closed after (its log checkpointed into
    the file, so a copy of the file alone is the whole ledger)."""
    with closing(sqlite3.connect(path)) as db, db:
        for statement in statements:
            db.execute(statement)


def tampering(k: int) -> st.SearchStrategy[list[str]]:
    return st.sampled_from(
        [
            [],
            [f"DELETE FROM audit_records WHERE seq = {k}"],
            [f"UPDATE audit_records SET body = replace(body, '\"i\":', '\"i\":-') WHERE seq = {k}"],
            [
                f"UPDATE audit_records SET hash = (SELECT hash FROM audit_records WHERE seq = 0) "
                f"WHERE seq = {k}"
            ],
            [  # two records change places, each under the other's seq
                f"UPDATE audit_records SET seq = -1 WHERE seq = {k}",
                f"UPDATE audit_records SET seq = {k} WHERE seq = {k + 1}",
                f"UPDATE audit_records SET seq = {k + 1} WHERE seq = -1",
            ],
            [f"UPDATE audit_records SET seq = {COUNT + 5} WHERE seq = {k}"],  # moved past the end
        ]
    )


def every_seq(path: Path) -> tuple[int | None, str | None, int, str]:
    """The model: every row with its seq, in seq order, fed to the chain in runs cut at breaks."""
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            "SELECT seq, CAST(body AS BLOB), hash FROM audit_records WHERE seq >= 0 ORDER BY seq"
        ).fetchall()
    chain = ChainCheck()
    all(chain.feed(run) for run in runs(rows, COUNT * 2))
    return chain.first_bad_seq, chain.reason, chain.length, chain.head


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data(), st.integers(1, COUNT + 2))
def test_runs_of_any_size_find_what_every_seq_finds(
    pristine: Path, tmp_path: Path, data: st.DataObject, run_size: int
) -> None:
    k = data.draw(st.integers(0, COUNT - 2))
    path = tmp_path / f"{uuid.uuid4().hex}.db"  # a name of its own: no log of another example
    shutil.copy(pristine, path)
    run(path, data.draw(tampering(k)))
    engine = make_engine(f"sqlite:///{path}")
    try:
        report = verify_ledger(SqlLedgerStore(engine, run_size), [], None)
    finally:
        engine.dispose()
    # The reason too: with the key in place, a range that misses a seq is read with its seqs,
    # so a missing record is named as missing, not as the bad hash its successor would show.
    assert (report.first_bad_seq, report.reason, report.length, report.head) == every_seq(path)
