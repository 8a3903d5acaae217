"""Restarting the whole stack (its embedded broker forgets everything) loses no record."""

from __future__ import annotations

import httpx

from tests.e2e.test_consent_to_eviction import put_consent


def audit_length(stack) -> int:
    response = httpx.get(f"{stack.url('audit')}/v1/audit/verify", headers=stack.admin_headers(), timeout=30)
    body = response.json()
    assert body["ok"] is True, body
    return body["length"]


def ledger(stack) -> list[dict]:
    response = httpx.get(
        f"{stack.url('audit')}/v1/audit", params={"limit": 1000}, headers=stack.admin_headers(), timeout=30
    )
    return response.json()["records"]


def test_restart_keeps_consents_definitions_and_ledger(stack_launcher) -> None:
    stack = stack_launcher()
    stack.wait_all_ready()
    headers = stack.admin_headers()
    assert put_consent(stack, "c-restart", "marketing_sms", "granted").status_code == 200
    assert put_consent(stack, "c-restart", "marketing_sms", "denied").status_code == 200
    segment = {"name": "Keepers", "rule": "event_count >= 1", "required_purposes": ["marketing_sms"]}
    assert (
        httpx.put(f"{stack.url('segmenter')}/v1/segments/keepers", json=segment, headers=headers).status_code
        == 200
    )
    stack.wait_until(lambda: audit_length(stack) >= 3, 60, "the ledger to hold the changes and definition")
    history_before = httpx.get(
        f"{stack.url('consent')}/v1/customers/c-restart/consents/history", headers=headers
    ).json()["history"]
    length_before = audit_length(stack)
    ledger_before = ledger(stack)
    assert stack.interrupt() == 0

    again = stack_launcher(data_dir=stack.data_dir)
    again.wait_all_ready()
    headers = again.admin_headers()
    history_after = httpx.get(
        f"{again.url('consent')}/v1/customers/c-restart/consents/history", headers=headers
    ).json()["history"]
    assert history_after == history_before
    assert (
        httpx.get(f"{again.url('segmenter')}/v1/segments/keepers", headers=headers).json()["rule"]
        == segment["rule"]
    )
    assert audit_length(again) >= length_before
    assert ledger(again)[:length_before] == ledger_before[:length_before]
    assert again.interrupt() == 0
