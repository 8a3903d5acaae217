"""A refused offset commit neither stalls the ledger nor appends anything twice."""

from __future__ import annotations

import httpx

from tests.integration.audit.conftest import all_records, ledger_length
from tests.integration.audit.test_restarts import produce, verified
from tests.support import http_client, wait_for


def commit_retries(url: str) -> float:
    for line in http_client.get(f"{url}/metrics").text.splitlines():
        if line.startswith('segwarden_step_retries_total{step="audit-commit"}'):
            return float(line.split()[-1])
    return 0.0


def test_a_failed_commit_is_retried_and_the_ledger_goes_on(start_service, sources) -> None:
    # The first three commits fail as a broker error would (the failpoint raises an OSError).
    audit = start_service("audit", FAILPOINTS="audit.commit=raise@1x3").wait_ready()
    ids = produce(sources, 10, chunk=10)
    wait_for(lambda: ledger_length(audit.url) >= len(ids), what="the first batch")
    # Records after the failed commits are still appended: the consumer went on.
    ids += produce(sources, 30, chunk=3)
    wait_for(lambda: ledger_length(audit.url) >= len(ids), what="every record after the failed commits")
    assert commit_retries(audit.url) == 3
    assert sorted(r["event_id"] for r in all_records(audit.url)) == sorted(ids)
    # The offsets were committed in the end: a restart redelivers nothing that gets appended.
    audit.stop()
    audit.start().wait_ready()
    ids += produce(sources, 4, chunk=4)
    wait_for(lambda: ledger_length(audit.url) >= len(ids), what="records after the restart")
    assert sorted(r["event_id"] for r in all_records(audit.url)) == sorted(ids)
    assert verified(audit.url)["length"] == len(ids)


def test_readyz_names_a_task_that_keeps_failing(start_service, sources) -> None:
    # Every batch fails after its append: the consumer crashes and is restarted, again and again.
    audit = start_service("audit", FAILPOINTS="audit.mid_batch=raise@1x100000")
    produce(sources, 5, chunk=5)

    def failing_task() -> str | None:
        try:
            response = http_client.get(f"{audit.url}/readyz")
        except httpx.HTTPError:
            return None  # not serving yet
        reason = response.json().get("reasons", {}).get("tasks", "")
        return reason if response.status_code == 503 and "consumer: failed" in reason else None

    reason = wait_for(failing_task, what="/readyz to name the failing consumer")
    assert "InjectedFaultError at failpoints.py" in reason
    metrics = http_client.get(f"{audit.url}/metrics").text
    assert 'segwarden_task_failures_total{task="consumer"}' in metrics
