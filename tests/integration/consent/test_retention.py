"""The retention job in a real consent process: history past its purpose's retention is
pseudonymized at start and every CONSENT_RETENTION_INTERVAL_S; the choice in force stays; each
run reaches the audit ledger as a `retention_run` record, counts only."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shared.catalog import load_catalog
from tests.conftest import bearer
from tests.integration.consent.conftest import choice, put
from tests.support import http_client, libfaketime, wait_for

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def one_day_catalog(path: Path) -> Path:
    """The shipped catalog with every purpose kept for one day (the shortest retention there is)."""
    purposes = [p.model_dump(mode="json") | {"retention_days": 1} for p in load_catalog().purposes]
    path.write_text(yaml.safe_dump({"purposes": purposes}))
    return path


def _retired(service) -> float:
    text = http_client.get(f"{service.url}/metrics", timeout=5).text
    name = 'segwarden_consent_history_retired_total{purpose="marketing_email"}'
    line = next((line for line in text.splitlines() if line.startswith(name + " ")), None)
    return float(line.split()[1]) if line else 0.0


def retention_runs(audit, service: str) -> list[dict]:
    """The ledger's `retention_run` records of `service`, oldest first."""
    url = f"{audit.url}/v1/audit"
    records = http_client.get(url, params={"kind": "retention_run"}, headers=bearer(), timeout=10).json()[
        "records"
    ]
    return [r for r in records if r["payload"]["service"] == service]


def test_history_older_than_its_retention_is_pseudonymized_by_the_job(
    start_service, tmp_path, customer
) -> None:
    catalog = one_day_catalog(tmp_path / "purposes.yaml")
    # Recorded three days ago: the process runs with its wall clock shifted back (libfaketime).
    service = start_service(
        "consent",
        PURPOSES_FILE=str(catalog),
        LD_PRELOAD=libfaketime(),
        FAKETIME="-3d",
        FAKETIME_DONT_FAKE_MONOTONIC="1",
        NO_FAKE_STAT="1",
    ).wait_ready()
    ua = {"User-Agent": "Firefox/140"}
    for status in ("granted", "denied", "granted"):
        assert put(service, customer, "marketing_email", choice(status), **ua).status_code == 200
    assert put(service, customer, "profiling", choice("granted"), **ua).status_code == 200
    service.stop()
    for name in ("LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC", "NO_FAKE_STAT"):
        del service.env[name]
    service.env["CONSENT_RETENTION_INTERVAL_S"] = "0.5"
    service.start().wait_ready()

    audit = start_service("audit").wait_ready(90)
    wait_for(lambda: _retired(service) == 2, what="the retention job to retire two rows")

    # Every run is in the ledger (those that found nothing too), the one that retired the rows once.
    def retiring() -> list[dict]:
        return [r["payload"] for r in retention_runs(audit, "consent") if r["payload"]["customers"]]

    [run] = wait_for(retiring, timeout=60, what="the retiring run in the ledger")
    assert (run["customers"], run["records"]) == (1, {"marketing_email": 2})
    runs = retention_runs(audit, "consent")
    assert len(runs) >= 2 and customer not in str(runs) and all(r["subject"] is None for r in runs)
    url = f"{service.url}/v1/customers/{customer}/consents/history"
    history = http_client.get(url, headers=bearer(), timeout=10).json()["history"]
    # The grant in force of each purpose stays, with what it was recorded with.
    assert [(h["purpose"], h["status"]) for h in history] == [
        ("marketing_email", "granted"),
        ("profiling", "granted"),
    ]
    states = http_client.get(
        f"{service.url}/v1/customers/{customer}/consents", headers=bearer(), timeout=10
    ).json()
    assert states["purposes"]["marketing_email"]["effective"] is True
