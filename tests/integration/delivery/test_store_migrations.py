"""The delivery store's schema by alembic: a fresh store, and one made by the first release's own DDL."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from services.delivery.adapters.sqlite_store import SqliteDeliveryStore, open_database
from services.delivery.domain.webhooks import destination_key
from shared.pseudonym import pseudonymize

KEY = b"k" * 32
# What the first release created itself (services/delivery/adapters/sqlite_store.py at 609d08c).
FIRST_RELEASE = """
CREATE TABLE destinations (destination_id TEXT PRIMARY KEY, spec TEXT NOT NULL, signing_secret TEXT NOT NULL);
CREATE TABLE consent (customer_id TEXT PRIMARY KEY, purposes TEXT NOT NULL);
CREATE TABLE members (
    customer_id TEXT NOT NULL, segment_id TEXT NOT NULL, PRIMARY KEY (customer_id, segment_id)
);
CREATE TABLE holdings (
    destination_id TEXT NOT NULL, segment_id TEXT NOT NULL, customer_id TEXT NOT NULL,
    PRIMARY KEY (destination_id, customer_id, segment_id)
);
CREATE TABLE deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    destination_id TEXT NOT NULL, customer_id TEXT NOT NULL, segment_id TEXT NOT NULL,
    action TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0, last_error TEXT
);
CREATE INDEX deliveries_pending ON deliveries (status, destination_id, customer_id, seq);
"""
SPEC = {
    "destination_id": "mailer",
    "name": "Mailer",
    "endpoint": "http://127.0.0.1:9/hook",
    "segments": ["vip"],
    "purposes": [],
    "agreement": None,
    "identifier": "pseudonym",
}


def migrated(path: Path) -> SqliteDeliveryStore:
    store = SqliteDeliveryStore(open_database(str(path)), KEY)
    store.migrate(str(path))
    return store


def test_a_fresh_store_is_created_at_the_newest_revision_and_a_second_run_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "delivery.db"
    migrated(path)
    migrated(path)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0004",)]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "destinations",
        "consent",
        "consent_inputs",
        "members",
        "holdings",
        "paused",
        "deliveries",
    } <= tables


def test_a_store_of_the_first_release_is_adopted_and_its_rows_get_their_subjects(tmp_path: Path) -> None:
    path = tmp_path / "delivery.db"
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_RELEASE)
        db.execute("INSERT INTO destinations VALUES ('mailer', ?, ?)", (json.dumps(SPEC), "s" * 32))
        rows = [("k-1", "delivered"), ("k-2", "pending")]
        db.executemany(
            "INSERT INTO deliveries (idempotency_key, destination_id, customer_id, segment_id, action,"
            " reason, at, status) VALUES (?, 'mailer', 'c-1', 'vip', 'joined', 'rule_matched', 'x', ?)",
            rows,
        )
    store = migrated(path)
    (pending,) = store.claim_due(now=1.0, limit=10, lease_until=2.0)
    assert pending["idempotency_key"] == "k-2"
    assert pending["ledger_subject"] == pseudonymize(KEY, "c-1")
    assert pending["subject"] == pseudonymize(destination_key(KEY, "mailer"), "c-1")
    (reported,) = store.unreported(limit=10)  # the delivered row's outcome is still to be published
    assert (reported["idempotency_key"], reported["reported"]) == ("k-1", 0)
    with sqlite3.connect(path) as db:
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "deliveries_queue" in indexes and "deliveries_pending" not in indexes
    assert pending["cause_id"] is None  # enqueued before causes were recorded
