"""`SqlConsentStore`, `SqlOutbox` and the use cases on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, event, inspect, select, text

from services.consent import handlers
from services.consent.adapters.sql_engine import MIGRATIONS, make_engine, run_migrations
from services.consent.adapters.sql_outbox import SqlOutbox
from services.consent.adapters.sql_store import SqlConsentStore
from services.consent.adapters.sql_tables import consent_current, metadata
from services.consent.domain.consent import ErasureHoldings, RecordConsent
from services.consent.domain.policy import ConsentPolicy
from shared.catalog import load_catalog
from shared.database import driver_url
from shared.events import ConsentChanged, ConsentStateSnapshot, new_event_id, utcnow
from tests.support import present

POLICY = ConsentPolicy(load_catalog())


def _url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'consent.db'}"
    return request.getfixturevalue("postgres_url").replace("postgresql+psycopg", "postgresql")


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(_url(request, tmp_path))
    run_migrations(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def bare_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty database, for tests that migrate step by step."""
    engine = make_engine(_url(request, tmp_path))
    yield engine
    engine.dispose()


def _migrate(engine: Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def grant(
    customer: str = "c-1", purpose: str = "marketing_email", status: str = "granted", **fields
) -> RecordConsent:
    return RecordConsent(customer, purpose, status, "test", "GDPR", "v1", **fields)  # type: ignore[arg-type]


def test_plain_postgresql_urls_get_the_psycopg_driver() -> None:
    assert driver_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert driver_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert driver_url("sqlite:///x.db") == "sqlite:///x.db"


def test_migrations_create_the_schema_and_run_again_harmlessly(engine: Engine) -> None:
    run_migrations(engine)
    assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert version == ScriptDirectory.from_config(config).get_current_head()


def test_a_change_and_its_outbox_rows_commit_together(engine: Engine) -> None:
    store, outbox = SqlConsentStore(engine), SqlOutbox(engine)
    [entry] = handlers.record_consent(store, POLICY, grant(), utcnow()) or []
    rows = outbox.pending(100)
    assert [(r.topic, r.event_id) for r in rows][0] == ("consent.changes", entry.event_id)
    assert rows[1].topic == "consent.state" and json.loads(rows[1].payload or b"")["customer_id"] == "c-1"
    with pytest.raises(RuntimeError), store.customer("c-1") as unit:
        denial = POLICY.decide(grant(status="denied"), unit.current(), utcnow())
        unit.append(denial)
        unit.enqueue("consent.changes", denial[0].event_id, b"{}", utcnow())
        raise RuntimeError("crash before commit")
    assert len(store.history("c-1")) == 1 and len(outbox.pending(100)) == 2


def test_sent_rows_leave_the_queue_and_age_out(engine: Engine) -> None:
    store, outbox = SqlConsentStore(engine), SqlOutbox(engine)
    handlers.record_consent(store, POLICY, grant(), utcnow())
    rows = outbox.pending(100)
    assert outbox.stats().pending == 2 and outbox.stats().oldest_created_at is not None
    outbox.mark_sent(rows[:1], utcnow())
    assert [r.id for r in outbox.pending(100)] == [rows[1].id]
    outbox.mark_sent(rows[1:], utcnow())
    assert outbox.stats().pending == 0 and outbox.prune_sent(utcnow() + timedelta(seconds=1)) == 2


def test_only_marking_rows_sent_commits_without_waiting_for_the_disk(engine: Engine) -> None:
    """A choice's transaction syncs fully (a 200 means it is on disk); marking outbox rows sent
    does not (a lost mark only republishes them). Read inside each transaction, as the
    connections are pooled and one used for a mark must not carry its setting to the next write."""
    store, outbox = SqlConsentStore(engine), SqlOutbox(engine)
    probe = "SHOW synchronous_commit" if engine.dialect.name == "postgresql" else "PRAGMA synchronous"
    seen: list[str] = []

    @event.listens_for(engine, "commit")
    def note(connection: Connection) -> None:
        seen.append(str(connection.exec_driver_sql(probe).scalar()))

    handlers.record_consent(store, POLICY, grant(), utcnow())
    outbox.mark_sent(outbox.pending(100), utcnow())
    handlers.record_consent(store, POLICY, grant(status="denied"), utcnow())
    full, relaxed = ("on", "off") if engine.dialect.name == "postgresql" else ("2", "1")
    assert seen == [full, relaxed, full]


def test_a_request_id_is_recorded_once(engine: Engine) -> None:
    store = SqlConsentStore(engine)
    assert handlers.record_consent(store, POLICY, grant(request_id="r-1"), utcnow())
    assert handlers.record_consent(store, POLICY, grant(status="denied", request_id="r-1"), utcnow()) is None
    assert [h["status"] for h in store.history("c-1")] == ["granted"]


def test_lapsed_grants_are_found_and_expired(engine: Engine) -> None:
    store = SqlConsentStore(engine)
    now = utcnow()
    handlers.record_consent(store, POLICY, grant(expires_at=now + timedelta(seconds=1)), now)
    handlers.record_consent(store, POLICY, grant("c-2", expires_at=now + timedelta(days=1)), now)
    later = now + timedelta(seconds=2)
    assert store.customers_with_lapsed_grants(later, 10) == ["c-1"]
    [entry] = handlers.expire_customer(store, POLICY, "c-1", later)
    assert (entry.reason, entry.status) == ("expired", "denied")
    assert store.customers_with_lapsed_grants(later, 10) == []
    assert store.current("c-1")["marketing_email"].status == "denied"


def test_concurrent_writers_of_one_customer_keep_a_consistent_chain(engine: Engine) -> None:
    store = SqlConsentStore(engine)
    statuses = ["granted", "denied"] * 10
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda s: handlers.record_consent(store, POLICY, grant(status=s), utcnow()), statuses))
    history = store.history("c-1")
    assert len(history) == len(statuses)
    for before, after in zip(history, history[1:], strict=False):
        assert after["previous_status"] == before["status"]
        assert after["published"] == (after["status"] != before["status"])
        assert after["sequence"] > before["sequence"]  # history order is sequence order


def test_erasure_leaves_only_a_pseudonymous_proof(engine: Engine) -> None:
    store, outbox = SqlConsentStore(engine), SqlOutbox(engine)
    handlers.record_consent(store, POLICY, grant("c-erase-me", gpc=True), utcnow())
    handlers.record_consent(store, POLICY, grant("c-keep"), utcnow())
    request, denials = handlers.erase_customer(store, POLICY, "c-erase-me", "ab" * 32, utcnow())
    assert [d.purpose for d in denials] == ["marketing_email"]
    queued = [r for r in outbox.pending(100) if r.customer_id == "c-erase-me"]
    assert [r.topic for r in queued] == ["consent.changes", "consent.state", "erasure.requests"]
    assert queued[1].payload is None and all(r.purge_when_sent for r in queued)
    # The receipt's view: the erasure's three messages wait, then nothing names the customer.
    assert store.still_held("c-erase-me") == ErasureHoldings(records=0, unsent=3)
    outbox.mark_sent(queued, utcnow())
    assert store.still_held("c-erase-me") == ErasureHoldings(records=0, unsent=0)
    assert _tables_naming(engine, "c-erase-me") == []
    assert store.history("c-keep") and store.erasure_count("ab" * 32) == 1
    latest = store.latest_erasure("ab" * 32)
    assert latest is not None and latest.event_id == request.event_id and latest.records_deleted > 0
    assert store.latest_erasure("cd" * 32) is None
    assert request.customer_id == "c-erase-me"


def _tables_naming(engine: Engine, needle: str) -> list[str]:
    found = []
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                if any(
                    needle in (v.decode(errors="replace") if isinstance(v, bytes) else str(v)) for v in row
                ):
                    found.append(table.name)
    return found


def test_a_group_commit_applies_its_commands_in_order(engine: Engine) -> None:
    store, outbox = SqlConsentStore(engine), SqlOutbox(engine)
    commands = [grant("c-1"), grant("c-2"), grant("c-1", status="denied"), grant("c-1")]
    results = handlers.record_many(store, POLICY, commands, utcnow())
    assert [[e.publishes for e in r or []] for r in results] == [[True], [True], [True], [True]]
    assert [(h["status"], h["previous_status"]) for h in store.history("c-1")] == [
        ("granted", None),
        ("denied", "granted"),
        ("granted", "denied"),
    ]
    states = [json.loads(r.payload or b"") for r in outbox.pending(100) if r.topic == "consent.state"]
    c1_states = [s["purposes"]["marketing_email"]["status"] for s in states if s["customer_id"] == "c-1"]
    assert c1_states == ["granted", "denied", "granted"]


def test_a_group_commit_writes_its_rows_in_one_statement_per_table(engine: Engine) -> None:
    """History, current projection and outbox rows of a whole batch go in one executemany each
    (the projection read once for all its customers), and read back as if written one by one."""
    store = SqlConsentStore(engine)
    handlers.record_consent(store, POLICY, grant("c-9"), utcnow())  # c-9 has a current row, c-8 none
    writes: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def note(conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
        if statement.split()[0] in ("INSERT", "UPDATE") and "consent_sequence" not in statement:
            writes.append(" ".join(statement.split()[:3]))

    commands = [grant("c-8"), grant("c-9", status="denied"), grant("c-8", status="denied"), grant("c-9")]
    handlers.record_many(store, POLICY, commands, utcnow())
    event.remove(engine, "before_cursor_execute", note)
    assert sorted(writes) == [
        "INSERT INTO consent_current",
        "INSERT INTO consent_records",
        "INSERT INTO outbox",
        "UPDATE consent_current SET",
    ]
    assert {p: c.status for p, c in store.current("c-8").items()} == {"marketing_email": "denied"}
    assert {p: c.status for p, c in store.current("c-9").items()} == {"marketing_email": "granted"}
    assert [h["status"] for h in store.history("c-8")] == ["granted", "denied"]


def _changes(outbox: SqlOutbox, customer: str) -> list[ConsentChanged]:
    return [
        ConsentChanged.model_validate_json(r.payload or b"")
        for r in outbox.pending(1000)
        if r.topic == "consent.changes" and r.customer_id == customer
    ]


def _snapshots(outbox: SqlOutbox, customer: str) -> list[ConsentStateSnapshot]:
    return [
        ConsentStateSnapshot.model_validate_json(r.payload or b"")
        for r in outbox.pending(1000)
        if r.topic == "consent.state" and r.customer_id == customer and r.payload
    ]


def test_a_group_commit_numbers_its_choices_in_commit_order(engine: Engine) -> None:
    store, outbox = SqlConsentStore(engine), SqlOutbox(engine)
    commands = [grant("c-1"), grant("c-2"), grant("c-1", status="denied"), grant("c-1", gpc=True)]
    results = handlers.record_many(store, POLICY, commands, utcnow())
    numbered = present(e.sequence for r in results for e in r or [])
    assert numbered == sorted(set(numbered))  # unique, in command order
    history = store.history("c-1")
    assert [h["sequence"] for h in history] == sorted({h["sequence"] for h in history})
    # Published: each change carries its row's sequence, in outbox (publishing) order.
    by_event = {h["event_id"]: h["sequence"] for h in history}
    changes = _changes(outbox, "c-1")
    assert [c.sequence for c in changes] == [by_event[c.event_id] for c in changes]
    published = present(c.sequence for c in changes)
    assert published == sorted(published)
    # Each snapshot carries, per recorded purpose, the sequence of the row that set it.
    last = _snapshots(outbox, "c-1")[-1].purposes
    current = store.current("c-1")
    assert {p: s.sequence for p, s in last.items() if s.recorded_at} == {
        p: c.sequence for p, c in current.items()
    }
    assert last["marketing_email"].sequence == history[-2]["sequence"]  # the GPC rows came after
    assert last["personalization"].sequence is None  # never recorded: the catalog default


def test_sequences_continue_after_an_erasure_and_across_purposes(engine: Engine) -> None:
    store, outbox = SqlConsentStore(engine), SqlOutbox(engine)
    [first] = handlers.record_consent(store, POLICY, grant("c-9"), utcnow()) or []
    [second] = handlers.record_consent(store, POLICY, grant("c-9", "profiling"), utcnow()) or []
    request, denials = handlers.erase_customer(store, POLICY, "c-9", "cd" * 32, utcnow())
    [again] = handlers.record_consent(store, POLICY, grant("c-9"), utcnow()) or []
    sequences = present(
        [
            first.sequence,
            second.sequence,
            *(d.sequence for d in denials),
            request.sequence,  # after its denials: consumers order the erasure against every change
            again.sequence,
        ]
    )
    assert len(denials) == 2 and sequences == sorted(set(sequences)), sequences
    published = [*(d.sequence for d in denials), again.sequence]
    assert [c.sequence for c in _changes(outbox, "c-9")][-3:] == published


def test_rows_recorded_before_the_sequence_keep_null_and_newer_rows_are_numbered(
    bare_engine: Engine,
) -> None:
    _migrate(bare_engine, "0001")
    now = utcnow().replace(tzinfo=None)  # as the store writes it on SQLite; PostgreSQL reads it as UTC
    with bare_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO consent_records (event_id, customer_id, purpose, status, reason, method,"
                " source, jurisdiction, policy_version, recorded_at, published)"
                " VALUES (:e, 'c-old', 'marketing_email', 'granted', 'user', 'api', 't', 'GDPR', 'v0',"
                " :at, :published)"
            ),
            {"e": new_event_id(), "at": now, "published": True},
        )
        connection.execute(
            text(
                "INSERT INTO consent_current (customer_id, purpose, status, source, jurisdiction,"
                " policy_version, recorded_at) VALUES ('c-old', 'marketing_email', 'granted', 't',"
                " 'GDPR', 'v0', :at)"
            ),
            {"at": now},
        )
    run_migrations(bare_engine)
    store = SqlConsentStore(bare_engine)
    assert store.current("c-old")["marketing_email"].sequence is None
    [denial] = handlers.record_consent(store, POLICY, grant("c-old", status="denied"), utcnow()) or []
    assert denial.sequence == 1 and denial.previous_status == "granted"
    assert [h["sequence"] for h in store.history("c-old")] == [None, 1]
    with bare_engine.connect() as connection:
        assert connection.execute(select(consent_current.c.sequence)).scalar_one() == 1


def test_an_erasure_while_the_relay_publishes_loses_none_of_its_rows(engine: Engine) -> None:
    """Issue 12: the relay read a customer's rows; the erasure deleted them and queued its own;
    marking what was read as sent must not touch the erasure's rows (SQLite reused the ids)."""
    store, outbox = SqlConsentStore(engine), SqlOutbox(engine)
    handlers.record_consent(store, POLICY, grant("c-new"), utcnow())
    read = outbox.pending(100)  # the relay has these in flight...
    handlers.erase_customer(store, POLICY, "c-new", "ef" * 32, utcnow())
    queued = outbox.pending(100)
    assert [r.topic for r in queued] == ["consent.changes", "consent.state", "erasure.requests"]
    assert not {r.id for r in queued} & {r.id for r in read}, "an outbox id was reused"
    outbox.mark_sent(read, utcnow())  # ...and marks them sent once the broker acked
    assert outbox.pending(100) == queued


def test_marking_sent_matches_the_event_id_too(engine: Engine) -> None:
    store, outbox = SqlConsentStore(engine), SqlOutbox(engine)
    handlers.record_consent(store, POLICY, grant(), utcnow())
    rows = outbox.pending(100)
    outbox.mark_sent([replace(r, event_id=new_event_id()) for r in rows], utcnow())
    assert outbox.pending(100) == rows


def test_the_migration_keeps_pending_rows_and_stops_id_reuse_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'consent.db'}")
    _migrate(engine, "0002")
    store, outbox = SqlConsentStore(engine), SqlOutbox(engine)
    _pending_rows(engine, 2)  # as a change left them (the store itself writes today's schema)
    pending = outbox.pending(100)
    run_migrations(engine)  # at start, before the relay reads anything
    assert outbox.pending(100) == pending
    with engine.begin() as connection:  # the highest row goes (pruned, purged or erased)
        connection.execute(text("DELETE FROM outbox WHERE id = :id"), {"id": pending[-1].id})
    handlers.record_consent(store, POLICY, grant(), utcnow())
    assert min(r.id for r in outbox.pending(100)[1:]) > pending[-1].id
    with engine.connect() as connection:
        ddl = connection.execute(text("SELECT sql FROM sqlite_master WHERE name = 'outbox'")).scalar_one()
    assert "AUTOINCREMENT" in ddl
    engine.dispose()


def _pending_rows(engine: Engine, count: int) -> None:
    at = utcnow().replace(tzinfo=None)  # as the store writes it on SQLite
    with engine.begin() as connection:
        for _ in range(count):
            connection.execute(
                text(
                    "INSERT INTO outbox (event_id, customer_id, topic, payload, created_at,"
                    " purge_when_sent) VALUES (:e, 'c-1', 'consent.changes', :p, :at, 0)"
                ),
                {"e": new_event_id(), "p": b"{}", "at": at},
            )


def test_history_past_its_retention_is_pseudonymized_and_the_row_in_force_kept(engine: Engine) -> None:
    store = SqlConsentStore(engine)
    now = utcnow()
    days = POLICY.catalog.get("marketing_email").retention_days  # type: ignore[union-attr]
    old, older = now - timedelta(days=days + 2), now - timedelta(days=days + 1)
    ua = {"user_agent": "Firefox/140", "ip_truncated": "203.0.113.0/24"}
    handlers.record_consent(store, POLICY, grant("c-old", **ua), old)
    handlers.record_consent(store, POLICY, grant("c-old", status="denied", **ua), older)
    handlers.record_consent(store, POLICY, grant("c-old", "profiling", **ua), old)  # in force: kept
    handlers.record_consent(store, POLICY, grant("c-new", **ua), now)
    handlers.record_consent(store, POLICY, grant("c-new", status="denied"), now)  # recent: kept
    cutoffs = handlers.retention_cutoffs(POLICY, now)
    assert store.customers_with_history_past(cutoffs, 10) == ["c-old"]

    subject = "ef" * 32
    assert handlers.retire_history(store, POLICY, "c-old", subject, now) == {"marketing_email": 1}
    history = store.history("c-old")
    assert [(h["purpose"], h["status"]) for h in history] == [
        ("marketing_email", "denied"),
        ("profiling", "granted"),
    ]
    [retired] = store.history(subject)
    assert (retired["purpose"], retired["status"], retired["retired_at"]) == (
        "marketing_email",
        "granted",
        now,
    )
    assert (retired["user_agent"], retired["ip_truncated"]) == (None, None)
    assert store.current("c-old")["marketing_email"].status == "denied"  # the projection is untouched
    assert len(store.history("c-new")) == 2
    assert store.customers_with_history_past(cutoffs, 10) == []  # done: nothing found twice

    # An erasure also deletes what was retired under the customer's pseudonym.
    handlers.erase_customer(store, POLICY, "c-old", subject, now)
    assert store.history(subject) == []


def test_the_notice_version_is_kept_in_the_history_and_the_projection(bare_engine: Engine) -> None:
    _migrate(bare_engine, "0005")  # a row from before notice versions keeps none
    now = utcnow().replace(tzinfo=None)  # as the store writes it on SQLite; PostgreSQL reads it as UTC
    with bare_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO consent_current (customer_id, purpose, status, source, jurisdiction,"
                " policy_version, recorded_at) VALUES ('c-old', 'marketing_email', 'granted', 't',"
                " 'GDPR', 'v0', :at)"
            ),
            {"at": now},
        )
    run_migrations(bare_engine)
    store = SqlConsentStore(bare_engine)
    handlers.record_consent(store, POLICY, grant("c-old", "profiling", notice_version=1), utcnow())
    assert {p: c.notice_version for p, c in store.current("c-old").items()} == {
        "marketing_email": None, "profiling": 1,
    }  # fmt: skip
    assert [h["notice_version"] for h in store.history("c-old")] == [1]
