"""Everything the services create under DATA_DIR is private to their user (0600 files, 0700 dirs)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.conftest import bearer
from tests.support import http_client


def shared_modes(root: Path) -> list[str]:
    """Every path under `root` (and `root`) that its group or others may read, write or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {mode:o}")
    return found


def test_files_under_data_dir_are_private_after_the_services_ran(start_service, service_env) -> None:
    inherited = os.umask(0o022)  # the usual shell umask, passed on to the services started now
    try:
        services = [start_service(name) for name in ("consent", "segmenter", "audit")]  # one DATA_DIR
    finally:
        os.umask(inherited)
    consent, segmenter, audit = (service.wait_ready() for service in services)
    body = {"status": "granted", "source": "test", "jurisdiction": "GDPR", "policy_version": "1"}
    put = http_client.put(
        f"{consent.url}/v1/customers/c-1/consents/marketing_email", json=body, headers=bearer()
    )
    assert put.status_code == 200, put.text
    segment = {"name": "s", "rule": "event_count >= 1"}
    assert (
        http_client.put(f"{segmenter.url}/v1/segments/s", json=segment, headers=bearer()).status_code == 200
    )
    assert http_client.post(f"{audit.url}/v1/audit/checkpoint", headers=bearer()).status_code == 200
    for service in services:
        assert service.stop() is not None

    data_dir = Path(service_env["DATA_DIR"])
    created = {p.name for p in data_dir.iterdir()}
    assert {"consent.db", "audit.db", "pseudonym-key"} <= created, created
    assert shared_modes(data_dir) == []
