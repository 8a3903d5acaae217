"""`segwarden up`: everything ready, Ctrl-C stops everything, broker loss is reported and healed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.e2e.test_consent_to_eviction import put_consent
from tests.support import http_client


def broker_pid(port: int) -> int:
    """The embedded broker started by `segwarden up` for `port`, found by its command line."""
    marker = f"tcp://127.0.0.1:{port}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"broker" in cmdline and marker in cmdline:
                return int(entry.name)
    raise AssertionError(f"no broker process for port {port}")


def test_up_starts_everything_ctrl_c_stops_everything_and_a_restart_keeps_every_record(
    stack_launcher,
) -> None:
    stack = stack_launcher()
    stack.wait_all_ready()
    stack.wait_until(lambda: "segwarden is up" in stack.output(), 10, "the banner")
    banner = stack.output()
    for service in ("consent", "segmenter", "audit", "delivery"):
        assert stack.url(service) in banner
    assert f"127.0.0.1:{stack.broker_port}" in banner
    assert str((stack.data_dir / "admin-token").resolve()) in banner
    token = (stack.data_dir / "admin-token").read_text().strip()
    assert token not in banner
    records_before = write_records(stack)
    broker = broker_pid(stack.broker_port)

    assert stack.interrupt() == 0
    assert stack.listening_ports() == []
    assert not Path(f"/proc/{broker}").exists()

    # The embedded broker forgot everything; the services' own stores did not.
    again = stack_launcher(data_dir=stack.data_dir)
    again.wait_all_ready()
    assert (stack.data_dir / "admin-token").read_text().strip() == token
    history, definition, ledger = read_records(again)
    assert history == records_before[0]
    assert definition["rule"] == records_before[1]["rule"]
    assert ledger[: len(records_before[2])] == records_before[2]
    assert again.interrupt() == 0
    assert again.listening_ports() == []


SEGMENT = {"name": "Keepers", "rule": "event_count >= 1", "required_purposes": ["marketing_sms"]}


def write_records(stack) -> tuple[list, dict, list]:
    """A consent granted then denied, a segment, and the ledger once it holds all three."""
    headers = stack.admin_headers()
    assert put_consent(stack, "c-restart", "marketing_sms", "granted").status_code == 200
    assert put_consent(stack, "c-restart", "marketing_sms", "denied").status_code == 200
    response = http_client.put(f"{stack.url('segmenter')}/v1/segments/keepers", json=SEGMENT, headers=headers)
    assert response.status_code == 200, response.text
    stack.wait_until(
        lambda: len(read_records(stack)[2]) >= 3, 60, "the ledger to hold the changes and definition"
    )
    return read_records(stack)


def read_records(stack) -> tuple[list, dict, list]:
    headers = stack.admin_headers()
    history = http_client.get(
        f"{stack.url('consent')}/v1/customers/c-restart/consents/history", headers=headers, timeout=10
    ).json()["history"]
    definition = http_client.get(
        f"{stack.url('segmenter')}/v1/segments/keepers", headers=headers, timeout=10
    ).json()
    verify = http_client.get(f"{stack.url('audit')}/v1/audit/verify", headers=headers, timeout=30).json()
    assert verify["ok"] is True, verify
    ledger = http_client.get(
        f"{stack.url('audit')}/v1/audit", params={"limit": 1000}, headers=headers, timeout=30
    ).json()["records"]
    return history, definition, ledger


def test_broker_loss_is_reported_then_healed(stack_launcher) -> None:
    stack = stack_launcher()
    stack.wait_all_ready()
    os.kill(broker_pid(stack.broker_port), signal.SIGKILL)

    def reports_kafka() -> bool:
        response = http_client.get(f"{stack.url('consent')}/readyz", timeout=8)
        return response.status_code == 503 and "kafka" in response.text

    stack.wait_until(reports_kafka, 30, "consent /readyz to report the broker")
    stack.wait_until(lambda: "restarting" in stack.output(), 30, "the supervisor to restart the broker")
    stack.wait_all_ready(timeout=90)
    assert stack.interrupt() == 0


def test_a_dying_child_is_named_with_its_last_lines_and_the_rest_stop(stack_launcher) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        stack = stack_launcher(extra_env={"AUDIT_PORT": str(taken)})
        stack.ports["audit"] = taken
        assert stack.process.wait(60) == 1
    output = stack.output()
    assert "audit exited with code 2" in output
    assert f"AUDIT_PORT={taken}" in output
    stack.ports.pop("audit")
    assert stack.listening_ports() == []
