"""SqliteDeliveryStore: destinations, each customer's consent and memberships, holdings and the
webhook outbox, in one SQLite file under DATA_DIR, its schema upgraded by alembic
(services/delivery/migrations). Blocking: call it through `asyncio.to_thread`."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

from services.delivery.domain.destinations import Agreement, Destination
from services.delivery.domain.routing import Cause, Consent, Holding, Intent, plan
from services.delivery.domain.webhooks import CIRCUIT_OPEN, subject
from shared.database import configure_sqlite, upgrade_sqlite_file
from shared.pseudonym import pseudonymize

ERASED_PREFIX = "erased:"
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# The oldest pending webhook of each destination and customer: only it may be sent, so order
# holds. A paused destination has no heads: its webhooks wait, in order, for it to resume.
_HEADS = """
SELECT d.* FROM deliveries d JOIN (
    SELECT MIN(seq) AS seq FROM deliveries WHERE status = 'pending' GROUP BY destination_id, ledger_subject
) heads ON d.seq = heads.seq
WHERE d.destination_id NOT IN (SELECT destination_id FROM paused)
"""


def run_migrations(path: str) -> None:
    """Upgrade the store at `path` to the newest revision (idempotent; never drops data), on an
    engine of its own: the store's queries stay on its one sqlite3 connection."""
    upgrade_sqlite_file(path, MIGRATIONS)


def open_database(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, check_same_thread=False)
    configure_sqlite(connection)
    connection.row_factory = sqlite3.Row
    return connection


class SqliteDeliveryStore:
    def __init__(self, connection: sqlite3.Connection, installation_key: bytes) -> None:
        self._db, self._key = connection, installation_key
        self._lock = threading.Lock()  # one connection, shared by the threads of to_thread

    def ping(self) -> None:
        with self._lock:
            self._db.execute("SELECT 1 FROM deliveries LIMIT 1").fetchall()

    def migrate(self, path: str) -> None:
        """Upgrade the schema (alembic, services/delivery/migrations), then fill what SQL cannot."""
        run_migrations(path)
        with self._transaction():
            self._backfill()

    def _backfill(self) -> None:
        """Subjects of rows enqueued before they were stored (HMACs: not computable in SQL)."""
        rows = self._db.execute(
            "SELECT seq, destination_id, customer_id FROM deliveries WHERE ledger_subject IS NULL"
        ).fetchall()
        for seq, destination_id, customer_id in rows:
            row = self._db.execute(
                "SELECT * FROM destinations WHERE destination_id = ?", (destination_id,)
            ).fetchone()
            shown = subject(self._key, _destination(row), customer_id) if row else None
            self._db.execute(
                "UPDATE deliveries SET subject = ?, ledger_subject = ? WHERE seq = ?",
                (shown, pseudonymize(self._key, customer_id), seq),
            )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # Destinations

    def put_destination(self, destination: Destination, now: float) -> bool:
        """Store it, and the change for the ledger in the same transaction; True when it is new."""
        spec = {k: v for k, v in asdict(destination).items() if k != "signing_secret"}
        text = json.dumps(spec, default=_jsonable, sort_keys=True)
        destination_id = destination.destination_id
        with self._transaction() as db:
            new = db.execute("SELECT 1 FROM destinations WHERE destination_id = ?", (destination_id,))
            created = new.fetchone() is None
            db.execute(
                "INSERT INTO destinations VALUES (?, ?, ?) ON CONFLICT (destination_id) DO UPDATE"
                " SET spec = excluded.spec, signing_secret = excluded.signing_secret",
                (destination_id, text, destination.signing_secret),
            )
            resumed = db.execute("DELETE FROM paused WHERE destination_id = ?", (destination_id,)).rowcount
            change = "created" if created else "resumed" if resumed else "changed"
            _record_change(db, destination_id, change, now)
        return created

    def get_destination(self, destination_id: str) -> Destination | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM destinations WHERE destination_id = ?", (destination_id,)
            ).fetchone()
        return _destination(row) if row else None

    def delete_destination(self, destination_id: str, now: float) -> bool:
        """Forget it, what it holds and what was still to be sent to it (the ledger gets the count)."""
        with self._transaction() as db:
            if db.execute(
                "SELECT 1 FROM destinations WHERE destination_id = ?", (destination_id,)
            ).fetchone():
                _record_change(db, destination_id, "deleted", now)
            gone = db.execute("DELETE FROM destinations WHERE destination_id = ?", (destination_id,)).rowcount
            db.execute("DELETE FROM holdings WHERE destination_id = ?", (destination_id,))
            db.execute("DELETE FROM paused WHERE destination_id = ?", (destination_id,))
            db.execute(
                "DELETE FROM deliveries WHERE destination_id = ? AND status = 'pending'", (destination_id,)
            )
        return bool(gone)

    def list_destinations(self) -> list[Destination]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM destinations ORDER BY destination_id").fetchall()
        return [_destination(row) for row in rows]

    def propagation(self, customer_id: str) -> list[dict[str, Any]]:
        """Per destination and segment the customer was ever sent: whether the destination holds
        the customer there, and the latest webhook (its action, reason and state)."""
        with self._lock:
            latest = self._db.execute(
                "SELECT d.destination_id, d.segment_id, d.action, d.reason, d.status, d.at, d.settled_at,"
                " h.customer_id IS NOT NULL AS held FROM deliveries d JOIN ("
                "  SELECT MAX(seq) AS seq FROM deliveries WHERE customer_id = ?"
                "  GROUP BY destination_id, segment_id) last ON d.seq = last.seq"
                " LEFT JOIN holdings h ON h.destination_id = d.destination_id"
                "  AND h.segment_id = d.segment_id AND h.customer_id = d.customer_id"
                " ORDER BY d.destination_id, d.segment_id",
                (customer_id,),
            ).fetchall()
        return [dict(row) for row in latest]

    def applied_consent(self, customer_id: str) -> dict[str, dict[str, Any]]:
        """Per purpose: the consent delivery holds, the inputs that carried that change, and the
        webhooks that followed from them, by status (ended ones go after the outbox retention)."""
        with self._lock:
            consent = _consent(self._db, customer_id)
            inputs = self._db.execute(
                "SELECT purpose, sequence, cause_id, at FROM consent_inputs WHERE customer_id = ?"
                " ORDER BY at",
                (customer_id,),
            ).fetchall()
            counts = self._db.execute(
                "SELECT cause_id, status, COUNT(*) FROM deliveries WHERE customer_id = ? AND cause_id IN"
                " (SELECT cause_id FROM consent_inputs WHERE customer_id = ?) GROUP BY cause_id, status",
                (customer_id, customer_id),
            ).fetchall()
        return _held_changes(consent, inputs, counts)

    def counts(self, destination_id: str) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT status, COUNT(*) FROM deliveries WHERE destination_id = ? GROUP BY status",
                (destination_id,),
            ).fetchall()
        return dict(rows)

    def pause(self, destination_id: str, reason: str, now: float) -> bool:
        """True when that paused it (webhooks in flight may answer 410 after the first one)."""
        with self._transaction() as db:
            paused = db.execute("INSERT OR IGNORE INTO paused VALUES (?, ?)", (destination_id, reason))
            if paused.rowcount:
                _record_change(db, destination_id, "paused", now)
            return bool(paused.rowcount)

    def unreported_changes(self, limit: int) -> list[dict[str, Any]]:
        """Changes to destinations not yet on `delivery.destinations`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM destination_changes WHERE reported = 0 ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [dict(row) for row in rows]

    def mark_changes_reported(self, seqs: list[int]) -> None:
        with self._transaction() as db:
            db.executemany(
                "UPDATE destination_changes SET reported = 1 WHERE seq = ?", [(seq,) for seq in seqs]
            )

    def paused(self, destination_id: str) -> str | None:
        """Why the destination is paused, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT reason FROM paused WHERE destination_id = ?", (destination_id,)
            ).fetchone()
        return None if row is None else str(row[0])

    def paused_ids(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT destination_id FROM paused")}

    # Inputs: one transaction updates the customer's state, the holdings and the outbox.

    def route(
        self,
        customer_id: str,
        update: Callable[[set[str], Consent], tuple[set[str], Consent]],
        cause: Cause,
        today: date,
        at: str,
    ) -> list[Intent]:
        """Apply `update` to the customer's memberships and consent, and enqueue what follows."""
        with self._transaction() as db:
            members, consent = update(_members(db, customer_id), _consent(db, customer_id))
            held = _held(db, customer_id)
            destinations = [_destination(r) for r in db.execute("SELECT * FROM destinations")]
            intents = plan(destinations, today, members, consent, held, cause)
            by_id = {d.destination_id: d for d in destinations}
            pseudonym = pseudonymize(self._key, customer_id)
            for intent in intents:
                shown = subject(self._key, by_id[intent.destination_id], customer_id)
                _enqueue(db, customer_id, intent, at, cause, (shown, pseudonym))
            if cause.kind == "erasure":
                _forget_customer(db, customer_id, pseudonym)
            else:
                _save_customer(db, customer_id, members, consent)
                _record_consent_inputs(db, customer_id, consent, cause, at)
        if cause.kind == "erasure":
            self._truncate_log()
        return intents

    def _truncate_log(self) -> None:
        """The write-ahead log keeps the pages as they were before the erasure until it is
        checkpointed and truncated; this connection is the only one, so nothing holds it back."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    # The outbox

    def claim_due(self, now: float, limit: int, lease_until: float) -> list[dict[str, Any]]:
        """The due heads, each leased until `lease_until`: not due again while it is being sent
        (after a crash, the lease runs out and it is sent again, under the same idempotency key)."""
        with self._transaction() as db:
            rows = db.execute(
                _HEADS + " AND d.next_attempt_at <= ? ORDER BY d.seq LIMIT ?", (now, limit)
            ).fetchall()
            # A claimed webhook loses the circuit's mark: leased, it is no longer held back.
            db.executemany(
                "UPDATE deliveries SET next_attempt_at = ?, last_error = NULLIF(last_error, ?) WHERE seq = ?",
                [(lease_until, CIRCUIT_OPEN, row["seq"]) for row in rows],
            )
        return [dict(row) for row in rows]

    def next_due(self) -> float | None:
        with self._lock:
            row = self._db.execute(f"SELECT MIN(next_attempt_at) FROM ({_HEADS})").fetchone()
        return row[0]

    def settle(self, seq: int, status: str, attempts: int, error: str | None, now: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET status = ?, attempts = ?, last_error = ?, settled_at = ?"
                " WHERE seq = ?",
                (status, attempts, error, now, seq),
            )

    def unreported(self, limit: int) -> list[dict[str, Any]]:
        """Settled webhooks whose outcome is not yet on `delivery.outcomes`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM deliveries WHERE reported = 0 AND status != 'pending' ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [dict(row) for row in rows]

    def mark_reported(self, seqs: list[int]) -> None:
        with self._transaction() as db:
            db.executemany("UPDATE deliveries SET reported = 1 WHERE seq = ?", [(seq,) for seq in seqs])

    def prune(self, before: float) -> dict[str, int]:
        """Delete what ended before `before` and is on its topic already; counts per kind.

        A webhook that ended (delivered, dead, withheld) goes unless it is the latest one of its
        destination, segment and customer: that one is what the propagation answers with (who
        got the customer, GDPR Art. 15(1)(c), 19), so it stays while the id is known; an erased
        customer's rows name no one any more and all go. A change to a destination goes once
        relayed.
        """
        with self._transaction() as db:
            webhooks = db.execute(
                "DELETE FROM deliveries WHERE status != 'pending' AND reported = 1 AND settled_at < ?"
                " AND (customer_id LIKE ? OR seq NOT IN (SELECT MAX(seq) FROM deliveries"
                "  GROUP BY destination_id, segment_id, customer_id))",
                (before, ERASED_PREFIX + "%"),
            ).rowcount
            changes = db.execute(
                "DELETE FROM destination_changes WHERE reported = 1 AND at < ?", (before,)
            ).rowcount
        return {"webhooks": webhooks, "destination_changes": changes}

    def release_deferred(self, destination_ids: list[str], now: float) -> None:
        """Make due now what a circuit held back (marked by its error; a leased one in flight is not)."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE deliveries SET next_attempt_at = ? WHERE status = 'pending'"
                " AND destination_id = ? AND last_error = ?",
                [(now, destination_id, CIRCUIT_OPEN) for destination_id in destination_ids],
            )

    def retry_at(self, seq: int, attempts: int, when: float, error: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE deliveries SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE seq = ?",
                (attempts, when, error, seq),
            )


def _jsonable(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, frozenset):
        return sorted(value)
    raise TypeError(type(value).__name__)


def _destination(row: sqlite3.Row) -> Destination:
    spec = json.loads(row["spec"])
    agreement = spec.pop("agreement")
    if agreement is not None:
        agreement = Agreement(
            **agreement | {k: date.fromisoformat(agreement[k]) for k in ("signed_on", "expires_on")}
        )
    return Destination(
        **spec | {"segments": frozenset(spec["segments"]), "purposes": frozenset(spec["purposes"])},
        agreement=agreement,
        signing_secret=row["signing_secret"],
    )


def _record_change(db: sqlite3.Connection, destination_id: str, change: str, now: float) -> None:
    """The change as the ledger gets it: what the destination receives and its pending count,
    never its secret, endpoint or agreement (a deleted one receives nothing any more)."""
    row = db.execute("SELECT spec FROM destinations WHERE destination_id = ?", (destination_id,)).fetchone()
    spec = json.loads(row[0]) if row and change != "deleted" else {}
    (pending,) = db.execute(
        "SELECT COUNT(*) FROM deliveries WHERE destination_id = ? AND status = 'pending'", (destination_id,)
    ).fetchone()
    db.execute(
        "INSERT INTO destination_changes (destination_id, change, segments, purposes, pending, at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            destination_id,
            change,
            json.dumps(sorted(spec.get("segments", []))),
            json.dumps(sorted(spec.get("purposes", []))),
            pending,
            now,
        ),
    )


def _members(db: sqlite3.Connection, customer_id: str) -> set[str]:
    rows = db.execute("SELECT segment_id FROM members WHERE customer_id = ?", (customer_id,))
    return {row[0] for row in rows}


def _consent(db: sqlite3.Connection, customer_id: str) -> Consent:
    row = db.execute("SELECT purposes FROM consent WHERE customer_id = ?", (customer_id,)).fetchone()
    stored = json.loads(row[0]) if row else {}
    return {purpose: (bool(effective), sequence) for purpose, (effective, sequence) in stored.items()}


def _held(db: sqlite3.Connection, customer_id: str) -> set[Holding]:
    rows = db.execute("SELECT destination_id, segment_id FROM holdings WHERE customer_id = ?", (customer_id,))
    return {(row[0], row[1]) for row in rows}


def _save_customer(db: sqlite3.Connection, customer_id: str, members: set[str], consent: Consent) -> None:
    db.execute("DELETE FROM members WHERE customer_id = ?", (customer_id,))
    db.executemany("INSERT INTO members VALUES (?, ?)", [(customer_id, s) for s in sorted(members)])
    db.execute(
        "INSERT INTO consent VALUES (?, ?)"
        " ON CONFLICT (customer_id) DO UPDATE SET purposes = excluded.purposes",
        (customer_id, json.dumps(consent, sort_keys=True)),
    )


def _forget_customer(db: sqlite3.Connection, customer_id: str, pseudonym: str) -> None:
    """The customer's state, what suspended destinations held of them (they get no `left`), and
    their id in the outbox: its rows keep only the subjects, which is all sending needs."""
    for table in ("members", "consent", "consent_inputs", "holdings"):
        db.execute(f"DELETE FROM {table} WHERE customer_id = ?", (customer_id,))
    db.execute(
        "UPDATE deliveries SET customer_id = ? WHERE customer_id = ?",
        (ERASED_PREFIX + pseudonym, customer_id),
    )


def _held_changes(
    consent: Consent, inputs: list[sqlite3.Row], counts: list[sqlite3.Row]
) -> dict[str, dict[str, Any]]:
    by_cause: dict[str, dict[str, int]] = {}
    for cause_id, status, count in counts:
        by_cause.setdefault(cause_id, {})[status] = count
    held: dict[str, dict[str, Any]] = {
        purpose: {"effective": effective, "sequence": sequence, "inputs": [], "at": None, "statuses": {}}
        for purpose, (effective, sequence) in consent.items()
    }
    for row in inputs:
        state = held.get(row["purpose"])
        if state is None or state["sequence"] != row["sequence"]:
            continue
        state["inputs"].append(row["cause_id"])
        state["at"] = state["at"] or row["at"]
        for status, count in by_cause.get(row["cause_id"], {}).items():
            state["statuses"][status] = state["statuses"].get(status, 0) + count
    return held


def _record_consent_inputs(
    db: sqlite3.Connection, customer_id: str, consent: Consent, cause: Cause, at: str
) -> None:
    """The input as one that carried each consent change delivery now holds (the change record
    and its snapshot both do); the inputs of changes held no longer go."""
    for purpose, sequence in cause.consent_changes:
        if consent.get(purpose, (False, None))[1] != sequence:
            continue  # an older change, redelivered or overtaken: delivery holds a later one
        db.execute(
            "DELETE FROM consent_inputs WHERE customer_id = ? AND purpose = ? AND sequence < ?",
            (customer_id, purpose, sequence),
        )
        db.execute(
            "INSERT OR IGNORE INTO consent_inputs (customer_id, purpose, sequence, cause_id, at)"
            " VALUES (?, ?, ?, ?, ?)",
            (customer_id, purpose, sequence, cause.event_id, at),
        )


def _enqueue(
    db: sqlite3.Connection,
    customer_id: str,
    intent: Intent,
    at: str,
    cause: Cause,
    subjects: tuple[str, str],
) -> None:
    key = (intent.destination_id, intent.segment_id, customer_id)
    if intent.action == "joined":
        db.execute(
            "INSERT OR IGNORE INTO holdings (destination_id, segment_id, customer_id) VALUES (?, ?, ?)", key
        )
    else:
        db.execute(
            "DELETE FROM holdings WHERE destination_id = ? AND segment_id = ? AND customer_id = ?", key
        )
    db.execute(
        "INSERT OR IGNORE INTO deliveries (idempotency_key, destination_id, customer_id, segment_id,"
        " action, reason, at, changed_at, subject, ledger_subject, cause_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            intent.idempotency_key,
            intent.destination_id,
            customer_id,
            intent.segment_id,
            intent.action,
            intent.reason,
            at,
            cause.at,
            *subjects,
            cause.webhook_cause,
        ),
    )
