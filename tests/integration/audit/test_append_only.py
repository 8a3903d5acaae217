"""The store on real SQLite and PostgreSQL: triggers refuse changes; tampering behind its back is found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import astuple
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from services.audit.adapters.ed25519 import Ed25519Signer
from services.audit.adapters.sql_database import create_schema, make_engine
from services.audit.adapters.sql_ledger import SqlLedgerStore
from services.audit.adapters.sql_rows import RUN_SIZE
from services.audit.adapters.sql_side_stores import SqlCheckpointStore
from services.audit.adapters.sql_tables import ledger_ddl
from services.audit.adapters.verify_workers import WorkerStore, check_ranges
from services.audit.domain.ledger import LedgerEntry, canonical
from services.audit.domain.ranges import SeqRange
from services.audit.domain.verify import VerifyReport, verify_ledger
from services.audit.handlers import Checkpointer
from tests.unit.audit.rfc9162 import check_chain


def fill(engine: Engine, count: int) -> SqlLedgerStore:
    ledger = SqlLedgerStore(engine)
    entries = [
        LedgerEntry("consent_change", "ab" * 32, f"e-{i}", {"i": i, "status": "granted"})
        for i in range(count)
    ]
    ledger.append(entries[: count // 2])
    ledger.append(entries[count // 2 :] + entries[:3])  # redelivered: skipped
    return ledger


def verify(
    engine: Engine, signer: Ed25519Signer, merkle: bool = False, workers: int = 1, run_size: int = RUN_SIZE
) -> VerifyReport:
    """Verify in this process, or with `workers` processes checking a range each ([0, 5), [5, 10)
    of the ten records `fill` appends), reading `run_size` records at a time."""
    ledger, checkpoints = SqlLedgerStore(engine, run_size), SqlCheckpointStore(engine).all()
    return verify_ledger(ledger, checkpoints, signer, merkle=merkle, workers=workers, records_per_worker=1)


def made_again(old: str, new: str) -> list[str]:
    """SQLite cannot drop a constraint: the statements that make the ledger's table again with
    `old` in its DDL replaced by `new`, its rows kept."""
    return [
        "ALTER TABLE audit_records RENAME TO old_records",
        ledger_ddl("sqlite", "audit_records").replace(old, new),
        "INSERT INTO audit_records (seq, body, hash) SELECT seq, body, hash FROM old_records",
        "DROP TABLE old_records",
    ]


def tamper(engine: Engine, *statements: str) -> None:
    """Change rows behind the service's back: drop the guard triggers, then edit."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_records DISABLE TRIGGER USER"))
        else:
            for op in ("update", "delete"):
                connection.execute(text(f"DROP TRIGGER audit_records_no_{op}"))
        for statement in statements:
            connection.exec_driver_sql(statement)


def test_appends_chain_and_skip_duplicates(engine: Engine) -> None:
    """What is served (the columns the database generates from the stored bytes) verifies with
    the contract's recipe, independently implemented; the stored bytes are what is hashed."""
    ledger = fill(engine, 10)
    records = ledger.find(None, None, -1, 100)
    assert [record.event_id for record in records] == [f"e-{i}" for i in range(10)]
    check_chain([record.to_dict() for record in records])
    runs = SqlLedgerStore(engine, run_size=3).runs()
    read = [(seq, body) for run in runs for seq, (body, _) in enumerate(run.records, run.first)]
    assert read == [(r.seq, canonical(*astuple(r)[:7])) for r in records]


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_records SET body = body WHERE seq = 1", "DELETE FROM audit_records"]
)
def test_the_database_refuses_updates_and_deletes(engine: Engine, statement: str) -> None:
    fill(engine, 4)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text(statement))


@pytest.mark.parametrize(
    ("statements", "first_bad"),
    [
        (["UPDATE audit_records SET body = replace(body, '\"granted\"', '\"denied\"') WHERE seq = 4"], 4),
        ([f"UPDATE audit_records SET body = replace(body, '\"{'ab' * 32}\"', 'null') WHERE seq = 6"], 6),
        (["UPDATE audit_records SET hash = (SELECT hash FROM audit_records WHERE seq = 2) WHERE seq = 3"], 3),
        (["DELETE FROM audit_records WHERE seq = 5"], 5),
        (
            [
                "UPDATE audit_records SET seq = -1 WHERE seq = 3",
                "UPDATE audit_records SET seq = 3 WHERE seq = 2",
                "UPDATE audit_records SET seq = 2 WHERE seq = -1",
            ],
            2,
        ),
        (["DELETE FROM audit_records WHERE seq = 9"], 9),  # the tail: caught by the signed checkpoint
        # At the boundary of two ranges: record 4 ends the first, its hash heads the second.
        (["UPDATE audit_records SET hash = (SELECT hash FROM audit_records WHERE seq = 3) WHERE seq = 4"], 4),
        (["DELETE FROM audit_records WHERE seq = 4"], 4),
        (["UPDATE audit_records SET body = replace(body, '\"granted\"', '\"denied\"') WHERE seq = 5"], 5),
    ],
    ids=[
        "edit-payload",
        "edit-subject",
        "edit-hash",
        "delete",
        "reorder",
        "truncate",
        "edit-hash-at-boundary",
        "delete-at-boundary",
        "edit-after-boundary",
    ],
)
@pytest.mark.parametrize("workers", [1, 2], ids=["one-pass", "two-workers"])
# Runs of 3: seq ranges read without their seqs until one comes up short; of 512: ten records are
# one short range, read with their seqs.
@pytest.mark.parametrize("run_size", [3, RUN_SIZE], ids=["runs-of-3", "runs-of-512"])
def test_verify_names_the_first_bad_seq(
    engine: Engine, tmp_path: Path, statements: list[str], first_bad: int, workers: int, run_size: int
) -> None:
    ledger, signer = fill(engine, 10), Ed25519Signer.from_data_dir(tmp_path)
    Checkpointer(ledger, SqlCheckpointStore(engine), signer).checkpoint()
    intact = verify(engine, signer, workers=workers, run_size=run_size)
    assert intact.ok and intact.length == 10 and intact.checkpoints_checked == 1, intact
    tamper(engine, *statements)
    report = verify(engine, signer, workers=workers, run_size=run_size)
    assert not report.ok and report.first_bad_seq == first_bad, report


@pytest.mark.parametrize("run_size", [3, RUN_SIZE], ids=["runs-of-3", "runs-of-512"])
def test_a_record_without_its_bytes_is_named_not_a_crash(
    engine: Engine, tmp_path: Path, run_size: int
) -> None:
    ledger, signer = fill(engine, 10), Ed25519Signer.from_data_dir(tmp_path)
    Checkpointer(ledger, SqlCheckpointStore(engine), signer).checkpoint()
    if engine.dialect.name == "postgresql":
        nullable = ["ALTER TABLE audit_records ALTER COLUMN body DROP NOT NULL"]
    else:
        nullable = made_again("body TEXT NOT NULL", "body TEXT")
    tamper(engine, *nullable, "UPDATE audit_records SET body = NULL WHERE seq = 4")
    report = verify(engine, signer, run_size=run_size)
    assert not report.ok and report.first_bad_seq == 4, report
    assert report.reason == "the record's stored bytes are missing", report


def test_verification_beside_appends_is_intact_as_far_as_it_read(engine: Engine, tmp_path: Path) -> None:
    """Its runs are separate statements, so the ledger grows between them (the service verifies
    beside its consumer): every verification is intact, none shorter than the one before."""
    ledger, signer = fill(engine, 10), Ed25519Signer.from_data_dir(tmp_path)
    Checkpointer(ledger, SqlCheckpointStore(engine), signer).checkpoint()

    def append() -> None:
        for i in range(40):
            ledger.append([LedgerEntry("consent_change", None, f"more-{i}-{j}", {"i": i}) for j in range(7)])

    writer = threading.Thread(target=append)
    writer.start()
    reports = [verify(engine, signer, run_size=3)]
    while writer.is_alive():
        reports.append(verify(engine, signer, run_size=3))
    writer.join()
    reports.append(verify(engine, signer, run_size=3))
    assert all(report.ok for report in reports), [r for r in reports if not r.ok]
    lengths = [report.length for report in reports]
    assert lengths == sorted(lengths) and lengths[-1] == 10 + 40 * 7, lengths


def test_a_ledger_whose_seq_is_no_longer_its_key_is_read_with_every_seq(
    engine: Engine, tmp_path: Path
) -> None:
    """Without the key a seq range can hold a seq twice and miss another and still be full, so
    the records are read with their seqs: a duplicate is named as such, not as a bad hash."""
    ledger, signer = fill(engine, 10), Ed25519Signer.from_data_dir(tmp_path)
    Checkpointer(ledger, SqlCheckpointStore(engine), signer).checkpoint()
    if engine.dialect.name == "postgresql":
        unkeyed = [
            "ALTER TABLE audit_records DROP CONSTRAINT audit_records_pkey",
            "DROP INDEX ix_audit_records_event_id",  # unique too: the duplicate would be refused
        ]
    else:
        unkeyed = made_again("seq INTEGER PRIMARY KEY", "seq INTEGER")
    duplicate = (
        "INSERT INTO audit_records (seq, body, hash) SELECT seq, body, hash FROM audit_records WHERE seq = 4"
    )
    tamper(engine, *unkeyed, duplicate, "DELETE FROM audit_records WHERE seq = 5")
    report = verify(engine, signer, run_size=3)  # [3, 6) holds 3, 4, 4: three records
    assert not report.ok and report.first_bad_seq == 5, report
    assert report.reason == "record 5 is missing or out of place (found 4)", report


@pytest.mark.parametrize(
    ("merkle", "workers"),
    [(False, 1), (True, 1), (False, 2)],
    ids=["signed-head", "merkle-root", "two-workers"],
)
def test_a_rewritten_suffix_is_caught_by_the_signed_checkpoints(
    engine: Engine, tmp_path: Path, merkle: bool, workers: int
) -> None:
    ledger, signer = fill(engine, 6), Ed25519Signer.from_data_dir(tmp_path)
    checkpointer = Checkpointer(ledger, SqlCheckpointStore(engine), signer)
    checkpointer.checkpoint()
    ledger.append([LedgerEntry("consent_change", None, f"later-{i}", {"i": i}) for i in range(4)])
    checkpointer.checkpoint()
    # Rewrite records 7.. with a consistent chain, as an insider with the code could.
    tamper(engine, "DELETE FROM audit_records WHERE seq >= 7")
    ledger.append([LedgerEntry("consent_change", None, f"forged-{i}", {"i": i}) for i in range(3)])
    report = verify(engine, signer, merkle, workers)
    assert not report.ok and report.first_bad_seq == 6 and "checkpoint" in (report.reason or "")
    assert report.checkpoints_checked == 1


def test_the_cli_verifies_the_store_and_names_the_first_bad_seq(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    engine = make_engine(url)
    create_schema(engine)
    ledger = fill(engine, 10)
    Checkpointer(ledger, SqlCheckpointStore(engine), Ed25519Signer.from_data_dir(tmp_path)).checkpoint()
    env = {**os.environ, "DATA_DIR": str(tmp_path), "AUDIT_DB_URL": url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "segwarden", "audit", "verify", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    good = cli("--json")
    assert good.returncode == 0 and json.loads(good.stdout)["ok"] is True, good.stderr
    tamper(engine, """UPDATE audit_records SET body = replace(body, '"at":"2', '"at":"1') WHERE seq = 7""")
    bad = cli("--merkle")
    assert bad.returncode == 1 and "first bad seq 7" in bad.stdout, bad.stdout + bad.stderr
    engine.dispose()


def test_a_worker_that_fails_fails_the_verification(tmp_path: Path) -> None:
    """A worker process that cannot read its range (here: no ledger in its file) is an error,
    never a range that verified."""
    nowhere = WorkerStore("sqlite", str(tmp_path / "no-ledger.db"))
    with pytest.raises(RuntimeError, match="(?s)verify worker failed.*no such table"):
        check_ranges(nowhere, [SeqRange(0, 5), SeqRange(5, 10)], None)
