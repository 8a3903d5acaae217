"""The store's retention job on a real SQLite file: what ended and was relayed goes, except the
latest webhook of each destination, segment and customer, which the propagation answers with."""

from __future__ import annotations

from pathlib import Path

from services.delivery.adapters.sqlite_store import SqliteDeliveryStore, open_database
from services.delivery.domain.routing import Cause, Consent
from services.delivery.handlers import erased_update
from tests.unit.delivery.test_destinations import TODAY
from tests.unit.delivery.test_routing import destination


def store_at(path: Path) -> SqliteDeliveryStore:
    store = SqliteDeliveryStore(open_database(str(path)), b"k" * 32)
    store.migrate(str(path))
    return store


def member(joined: bool):  # type: ignore[no-untyped-def]
    def update(members: set[str], consent: Consent) -> tuple[set[str], Consent]:
        return ({"vip"} if joined else set()), {"marketing_email": (True, 1)}

    return update


def route(store: SqliteDeliveryStore, customer_id: str, joined: bool) -> None:
    cause = Cause(f"{customer_id}-{joined}", "membership", "rule_matched" if joined else "rule_unmatched")
    assert store.route(customer_id, member(joined), cause, TODAY, "2026-12-01T00:00:00+00:00")


def rows(store: SqliteDeliveryStore) -> list[tuple[str, str, str]]:
    with store._lock:  # noqa: SLF001 (the test reads the file's rows as they are)
        found = store._db.execute(  # noqa: SLF001
            "SELECT customer_id, action, status FROM deliveries ORDER BY seq"
        ).fetchall()
    return [tuple(row) for row in found]


def settle_all(store: SqliteDeliveryStore, at: float, report: bool) -> None:
    for row in store.claim_due(now=at, limit=100, lease_until=at):
        store.settle(row["seq"], "delivered", 1, None, at)
    if report:
        store.mark_reported([row["seq"] for row in store.unreported(100)])


def test_ended_and_relayed_rows_go_but_the_latest_one_and_pending_ones_stay(tmp_path: Path) -> None:
    store = store_at(tmp_path / "delivery.db")
    store.put_destination(destination(), now=100.0)
    store.mark_changes_reported([row["seq"] for row in store.unreported_changes(10)])  # relayed
    store.put_destination(destination(), now=100.0)  # `changed`, not relayed yet
    route(store, "c-1", joined=True)
    settle_all(store, at=100.0, report=True)
    route(store, "c-1", joined=False)  # supersedes the join
    route(store, "c-2", joined=True)
    settle_all(store, at=100.0, report=True)
    route(store, "c-3", joined=True)
    settle_all(store, at=100.0, report=False)  # ended, not yet on delivery.outcomes
    route(store, "c-4", joined=True)  # pending
    assert store.prune(before=50.0) == {"webhooks": 0, "destination_changes": 0}  # none old enough

    assert store.prune(before=200.0) == {"webhooks": 1, "destination_changes": 1}
    assert rows(store) == [
        ("c-1", "left", "delivered"),  # the latest of c-1: the propagation still shows it
        ("c-2", "joined", "delivered"),
        ("c-3", "joined", "delivered"),  # unreported: kept until the relay has published it
        ("c-4", "joined", "pending"),
    ]
    assert [(p["action"], p["held"]) for p in store.propagation("c-1")] == [("left", 0)]
    # The relayed `created` went; the `changed` waits for the relay.
    assert [row["change"] for row in store.unreported_changes(10)] == ["changed"]

    # An erased customer's rows name no one any more: the latest one goes too.
    store.route("c-2", *erased_update("e-2", None), TODAY, "2026-12-01T00:00:01+00:00")
    settle_all(store, at=150.0, report=True)  # the erasure's leave
    assert store.prune(before=200.0) == {"webhooks": 2, "destination_changes": 0}
    assert [customer for customer, _, _ in rows(store)] == ["c-1", "c-3", "c-4"]
